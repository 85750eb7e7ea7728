"""drop_privileges in a child process: the uid, groups and capability sets the kernel reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sensor.errors import ConfigError
from sensor.service.privileges import capability_sets, drop_privileges

CHILD_TIMEOUT_S = 30.0
NOBODY = 65534
CAP_NET_RAW = 13

# Runs in a child: optionally become a non-root user holding CAP_NET_RAW in every set but the
# bounding one (what systemd's User= with AmbientCapabilities=CAP_NET_RAW gives), then drop
# and print what /proc/self/status says, and whether setuid(0) or re-raising a capability works.
CHILD = r"""
import ctypes, json, os, socket, sys
from sensor.service import privileges as p

mode, user = sys.argv[1], sys.argv[2] or None
libc = ctypes.CDLL(None, use_errno=True)
if mode == "ambient":
    p._prctl(libc, 8, 1)  # PR_SET_KEEPCAPS: keep the permitted set across setresuid
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    bit = 1 << 13  # CAP_NET_RAW
    data = (p._CapData * 2)((bit, bit, bit), (0, 0, 0))
    assert libc.capset(ctypes.byref(p._CapHeader(0x20080522, 0)), ctypes.byref(data)) == 0
    assert libc.prctl(47, 2, 13, 0, 0) == 0, ctypes.get_errno()  # PR_CAP_AMBIENT_RAISE
    before = p.capability_sets()
else:
    before = {}
did = p.drop_privileges(user)
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
try:  # what the capabilities were for: opening a packet socket
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()
    regained = True
except PermissionError:
    regained = False
print(json.dumps({"did": did, "before": before, "caps": p.capability_sets(),
                  "uid": status["Uid"].split(), "gid": status["Gid"].split(),
                  "groups": status["Groups"].split(), "nnp": status["NoNewPrivs"].strip(),
                  "regained": regained}))
"""


def _child(mode: str, user: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", CHILD, mode, user], capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_root_drops_to_nobody_with_no_capability_left() -> None:
    assert os.geteuid() == 0, "the privilege tests run as root, as CI does"
    r = _child("root", "")
    assert r["uid"] == [str(NOBODY)] * 4 and r["gid"] == [str(NOBODY)] * 4
    assert r["groups"] == [str(NOBODY)]  # nobody's own groups (nogroup), root's are gone
    assert r["caps"] == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}
    assert r["nnp"] == "1"
    assert not r["regained"]
    assert str(r["did"]).startswith("switched to user nobody (uid 65534")


def test_naming_root_keeps_the_uid_but_not_the_capabilities() -> None:
    r = _child("root", "root")
    assert r["uid"] == ["0"] * 4
    assert r["caps"] == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}
    assert r["nnp"] == "1"
    assert not r["regained"]  # uid 0 but no CAP_NET_RAW: no packet socket
    assert str(r["did"]).startswith("kept uid 0")


def test_non_root_with_ambient_cap_net_raw_keeps_its_uid_and_loses_the_capability() -> None:
    """systemd's User=sensor + AmbientCapabilities=CAP_NET_RAW: no uid change, every set but
    the bounding one (which needs CAP_SETPCAP; the unit's CapabilityBoundingSet does it) empty."""
    r = _child("ambient", "")
    before = r["before"]
    assert isinstance(before, dict)
    assert before["CapAmb"] == before["CapEff"] == 1 << CAP_NET_RAW  # the set-up worked
    assert r["uid"] == [str(NOBODY)] * 4
    caps = r["caps"]
    assert isinstance(caps, dict)
    assert caps["CapInh"] == caps["CapPrm"] == caps["CapEff"] == caps["CapAmb"] == 0
    assert r["nnp"] == "1"
    assert not r["regained"]
    assert str(r["did"]).startswith("kept uid 65534")


def test_unknown_user_is_a_config_error_and_changes_nothing() -> None:
    before = capability_sets()
    with pytest.raises(ConfigError, match="no such user 'no-such-user-p25'"):
        drop_privileges("no-such-user-p25")
    assert capability_sets() == before
    assert os.geteuid() == 0


def test_switching_user_without_root_is_refused() -> None:
    r = subprocess.run(
        [sys.executable, "-c",
         "import os, sys\n"
         "from sensor.errors import ConfigError\n"
         "from sensor.service.privileges import drop_privileges\n"
         "os.setresuid(65534, 65534, 0)\n"  # saved uid 0: the test may still read its output
         "try:\n    drop_privileges('daemon')\n"
         "except ConfigError as e:\n    print(e)\n"],
        capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        "--user daemon: switching user needs the sensor started as root (it runs as uid 65534)")
