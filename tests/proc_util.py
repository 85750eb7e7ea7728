"""Live processes read from /proc, for tests that check no worker outlives its run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def live_processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process that is not a zombie."""
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # it ended while we looked
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold ")"
        if fields[0] != "Z":
            yield int(entry), int(fields[1]), int(fields[2])


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid`."""
    return [pid for pid, _ppid, group in live_processes() if group == pgid]


def children_of(pid: int) -> list[int]:
    """Live child processes of `pid`."""
    return [child for child, ppid, _group in live_processes() if ppid == pid]
