"""Core lists (`[live] cpus`, `--cpus`): parsed, checked against the process's own mask, and
applied to every thread of a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensor.errors import ConfigError
from sensor.service.affinity import (
    MAX_CPU,
    check_cpus,
    format_cpus,
    others,
    parse_cpus,
    worker_cpus,
)

CHILD_TIMEOUT_S = 30.0


@pytest.mark.parametrize(("text", "cpus"), [
    ("", ()), ("  ", ()), ("0", (0,)), ("3,1", (3, 1)), ("0-2", (0, 1, 2)),
    ("4, 0-1 ,7", (4, 0, 1, 7)), (f"{MAX_CPU}", (MAX_CPU,)),
])  # fmt: skip
def test_cpu_lists_are_read_in_the_order_written(text: str, cpus: tuple[int, ...]) -> None:
    assert parse_cpus(text) == cpus


@pytest.mark.parametrize(("text", "why"), [
    ("a", "expected core numbers and ranges"), ("1,", "expected core numbers and ranges"),
    ("-1", "expected core numbers and ranges"), ("1-", "expected core numbers and ranges"),
    ("0x1", "expected core numbers and ranges"), ("2-1", "expected ranges low-high"),
    (f"{MAX_CPU + 1}", "expected ranges low-high"), ("0-2,1", "core 1 is listed twice"),
])  # fmt: skip
def test_bad_cpu_lists_say_what_was_expected(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_cpus(text)


@given(st.sets(st.integers(0, 300)))
def test_format_and_parse_round_trip(cpus: set[int]) -> None:
    text = format_cpus(cpus)
    assert parse_cpus(text) == tuple(sorted(cpus))
    assert len(text.split(",")) <= len(cpus) or not cpus  # runs are ranges


def test_workers_take_the_listed_cores_round_robin() -> None:
    assert [worker_cpus((4, 6), i) for i in range(5)] == [(4,), (6,), (4,), (6,), (4,)]
    assert worker_cpus((), 3) == ()


def test_the_other_processes_keep_the_cores_not_listed() -> None:
    allowed = tuple(sorted(os.sched_getaffinity(0)))
    assert others(allowed[-1:]) == allowed[:-1]
    assert others(allowed) == ()  # every core listed: the others run anywhere
    assert others(()) == ()  # nothing pinned


def test_a_core_outside_the_process_mask_is_a_config_error() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    check_cpus(tuple(allowed), "--cpus")  # the whole mask is fine
    missing = max(allowed) + 1
    with pytest.raises(ConfigError) as err:
        check_cpus((allowed[0], missing), "live.cpus")
    assert str(err.value) == (f"live.cpus: core {missing} is not one this process may run on "
                              f"(allowed: {format_cpus(allowed)})")  # fmt: skip


# A thread started before the pin and one started after it: both must end on the listed core,
# as the capture loop's process has threads (the model scorer's pipes, the stats timer) by then.
CHILD = r"""
import json, os, sys, threading
from sensor.service.affinity import pin, pinned_to
hold = threading.Event()
before = threading.Thread(target=hold.wait); before.start()
pin((int(sys.argv[1]),))
after = threading.Thread(target=hold.wait); after.start()
masks = {}
for tid in os.listdir("/proc/self/task"):
    status = open(f"/proc/self/task/{tid}/status").read()
    masks[tid] = [l.split(":")[1].strip() for l in status.splitlines()
                  if l.startswith("Cpus_allowed_list")][0]
hold.set(); before.join(); after.join()
print(json.dumps({"masks": masks, "reported": pinned_to()}))
"""


def test_pin_moves_every_thread_of_the_process() -> None:
    core = max(os.sched_getaffinity(0))
    done = subprocess.run([sys.executable, "-c", CHILD, str(core)], capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert len(out["masks"]) == 3  # main, before, after
    assert set(out["masks"].values()) == {str(core)}
    assert out["reported"] == str(core)
