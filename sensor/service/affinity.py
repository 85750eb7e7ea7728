"""Which cores the capture processes run on (`[live] cpus`, `--cpus`): Suricata's worker
cpu-affinity and Zeek's pin_cpus, for the same reason.

A process that reads packets sleeps whenever it has caught up, and is woken by the kernel's
receive path on whatever core that ran (the NIC's interrupt, or on a veth the sender's). The
scheduler then favours waking it on that core ("wake affine"), where it shares the core with the
interrupt's work until load balancing moves it back. Measured on the 2-core benchmark machine
with tcpreplay pinned to core 1: an unpinned sensor was found running or runnable on core 1 in
8 to 16% of 2 ms samples, each time halving its speed and tcpreplay's. Pinned, never.

The list uses the kernel's cpu-list syntax (taskset -c, cpuset, systemd's CPUAffinity=):
"0,2-3". One capture process is pinned to the whole list; with several workers, worker i runs
on the list's i-th core (round robin). The other processes, the fanout parent (merge,
detection, outputs) and the model's scorer, run on the cores the list leaves out (Suricata's
management-cpu-set), so that they do not take time from a capture core either; when the list
names every core the process may use, they run anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Final

from sensor.errors import ConfigError

MAX_CPU: Final = 4095
"""Highest core number a list may name (the kernel's default NR_CPUS for x86_64 is 8192; no
tap sensor has more than this)."""


def parse_cpus(text: str) -> tuple[int, ...]:
    """Core numbers from a cpu-list ("0,2-3"), in the order written, without repeats; () for
    "". ValueError naming what was expected otherwise."""
    out: list[int] = []
    if not text.strip():
        return ()
    for part in text.split(","):
        lo_text, dash, hi_text = part.strip().partition("-")
        if not (lo_text.isdigit() and (not dash or hi_text.isdigit())):
            raise ValueError(f"expected core numbers and ranges like \"0,2-3\", got {text!r}")
        lo = int(lo_text)
        hi = int(hi_text) if dash else lo
        if hi < lo or hi > MAX_CPU:
            raise ValueError(f"expected ranges low-high of cores 0 to {MAX_CPU}, got {part!r}")
        for cpu in range(lo, hi + 1):
            if cpu in out:
                raise ValueError(f"core {cpu} is listed twice in {text!r}")
            out.append(cpu)
    return tuple(out)


def format_cpus(cpus: Iterable[int]) -> str:
    """The shortest cpu-list of a set of cores ("0-2,5"), sorted."""
    ranges: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if ranges and ranges[-1][1] == cpu - 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


def check_cpus(cpus: Sequence[int], where: str) -> None:
    """ConfigError unless this process may run on every core listed (its affinity mask, which
    a cpuset or systemd's CPUAffinity= may have narrowed); `where` names the setting."""
    allowed = os.sched_getaffinity(0)
    missing = [cpu for cpu in cpus if cpu not in allowed]
    if missing:
        raise ConfigError(f"{where}: core {missing[0]} is not one this process may run on "
                          f"(allowed: {format_cpus(allowed)})")  # fmt: skip


def worker_cpus(cpus: Sequence[int], index: int) -> tuple[int, ...]:
    """The cores of capture worker `index` (0-based over every interface's workers): the
    list's core at that place, round robin; () when the list is empty (not pinned)."""
    return (cpus[index % len(cpus)],) if cpus else ()


def others(cpus: Sequence[int]) -> tuple[int, ...]:
    """The cores this process may use that `cpus` leaves out; () when it leaves none, or for an
    empty list (nothing pinned: nothing to keep apart)."""
    if not cpus:
        return ()
    return tuple(sorted(os.sched_getaffinity(0) - set(cpus)))


def pin(cpus: Sequence[int]) -> None:
    """Run this process (every thread it has now, and those it starts later) on `cpus` only;
    nothing for an empty list. The caller checked the list (check_cpus)."""
    if not cpus:
        return
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: the calling thread only (threads it starts inherit it)
        threads = [0]
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue


def pinned_to() -> str:
    """This process's cores as a cpu-list (what the stats lines report)."""
    return format_cpus(os.sched_getaffinity(0))
