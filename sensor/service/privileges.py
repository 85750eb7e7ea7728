"""Giving up root and every capability once the capture handles are open (Linux)."""

from __future__ import annotations

import ctypes
import os
import pwd
from typing import Final

from sensor.errors import ConfigError, SensorError

DEFAULT_USER: Final = "nobody"
"""The user a sensor started as root runs as when none is named."""
PR_CAPBSET_DROP: Final = 24
"""prctl(2) option (linux/prctl.h): remove one capability from the bounding set."""
PR_SET_NO_NEW_PRIVS: Final = 38
"""prctl(2) option: execve() can never grant privileges again (setuid bits, file caps)."""
PR_CAP_AMBIENT: Final = 47
"""prctl(2) option: the ambient capability set."""
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4
"""PR_CAP_AMBIENT sub-command: empty the ambient set."""
CAP_SETPCAP: Final = 8
"""capability(7): needed to drop capabilities from the bounding set."""
_LINUX_CAPABILITY_VERSION_3: Final = 0x20080522  # linux/capability.h: 64-bit sets, two words
_CAP_LAST_CAP_FILE: Final = "/proc/sys/kernel/cap_last_cap"
_CAP_LAST_CAP_FALLBACK: Final = 63  # every bit of the 64-bit sets, when /proc does not say
_STATUS_CAPS: Final = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]  # fmt: skip


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(libc: ctypes.CDLL, option: int, arg: int = 0) -> None:
    """prctl(option, arg, 0, 0, 0); OSError on failure."""
    if libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                  ctypes.c_ulong(0)) != 0:  # fmt: skip
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _last_cap() -> int:
    try:
        with open(_CAP_LAST_CAP_FILE, "rb") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return _CAP_LAST_CAP_FALLBACK


def _has_effective(cap: int) -> bool:
    """Whether this thread's effective set holds capability `cap`."""
    return bool(capability_sets().get("CapEff", 0) >> cap & 1)


def capability_sets(pid: int | str = "self") -> dict[str, int]:
    """The capability sets of a process as /proc/PID/status shows them (CapEff, ...: ints)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", "rb") as fh:  # bytes: no codec to import after the drop
        for line in fh:
            key, _, value = line.partition(b":")
            if key.decode() in _STATUS_CAPS:
                out[key.decode()] = int(value.strip(), 16)
    return out


def _clear_capsets(libc: ctypes.CDLL) -> None:
    """capset(2) with every bit of effective, permitted and inheritable cleared."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), ctypes.byref(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _resolve(user: str | None) -> pwd.struct_passwd | None:
    """The account to switch to, or None to keep this process's uid."""
    if not user:
        user = DEFAULT_USER if os.geteuid() == 0 else None
    if user is None:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        if not user.isdigit():
            raise ConfigError(f"--user: no such user {user!r}") from None
        try:
            entry = pwd.getpwuid(int(user))
        except KeyError:
            raise ConfigError(f"--user: no such user id {user}") from None
    if entry.pw_uid == os.getuid() == os.geteuid() and entry.pw_gid == os.getgid():
        return None  # already that user: capabilities are still cleared
    if os.geteuid() != 0:
        raise ConfigError(f"--user {user}: switching user needs the sensor started as root "
                          f"(it runs as uid {os.geteuid()})")
    return entry


def drop_privileges(user: str | None) -> str:
    """Run as `user` with no capability left and no way to regain one; returns what it did.

    Call it after every capture handle is open and before any thread or child starts (the
    capability sets are per thread). `user` None or "" means `nobody` when started as root,
    else the current user (e.g. a systemd unit's User= with AmbientCapabilities=CAP_NET_RAW);
    naming the current user (e.g. `root`) keeps the uid. Whatever the user, the effective,
    permitted, inheritable and ambient sets are emptied, the bounding set too while
    CAP_SETPCAP allows it, and no_new_privs is set. ConfigError on an unknown user; SensorError
    when the kernel refuses a step, since running on with privileges would be worse.
    """
    entry = _resolve(user)
    libc = _libc()
    steps: list[str] = []
    try:
        if _has_effective(CAP_SETPCAP):  # the bounding set can only shrink with CAP_SETPCAP
            for cap in range(_last_cap() + 1):
                _prctl(libc, PR_CAPBSET_DROP, cap)
            steps.append("bounding set emptied")
        _prctl(libc, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        if entry is not None:
            os.initgroups(entry.pw_name, entry.pw_gid)
            os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
            os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
        _clear_capsets(libc)
        _prctl(libc, PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        raise SensorError(f"cannot drop privileges: {exc.strerror}") from None
    left = {k: v for k, v in capability_sets().items() if k != "CapBnd" and v}
    if left:  # never go on parsing hostile traffic with a capability the kernel kept
        raise SensorError(f"cannot drop privileges: capabilities left: {left}")
    if entry is not None:
        steps.insert(0, f"switched to user {entry.pw_name} (uid {entry.pw_uid}, "
                        f"gid {entry.pw_gid})")
    else:
        steps.insert(0, f"kept uid {os.getuid()}")
    steps.append("capabilities cleared, no_new_privs set")
    return "; ".join(steps)
