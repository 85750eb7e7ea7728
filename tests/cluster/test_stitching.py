"""Connections cut by file rotation come out of `--cluster` as from one process over it all."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster_helpers import analyze, interesting_cuts, read_records, segments, write_parts

from sensor.tcp.conn import ACK, SYN


@pytest.fixture(scope="module")
def reference(sim_capture: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The single-process run over the unsplit capture."""
    one, _ = analyze(tmp_path_factory.mktemp("one"), str(sim_capture))
    for name, data in one.items():
        assert data, f"{name}: the capture must give records for the comparison to mean much"
    return one


def cluster_run(scheduler: str, parts: list[str], out: Path) -> tuple[dict[str, bytes], str]:
    return analyze(out, "--cluster", scheduler, *parts)


def assert_same(got: dict[str, bytes], want: dict[str, bytes]) -> None:
    for name in want:
        assert got[name].splitlines() == want[name].splitlines(), name


@pytest.mark.parametrize("every", [150, 7])
def test_regular_rotation(
    every: int, sim_capture: Path, reference: dict[str, bytes], scheduler: str, tmp_path: Path
) -> None:
    head, recs = read_records(sim_capture)
    parts = write_parts(head, recs, list(range(every, len(recs), every)), tmp_path / "parts")
    got, err = cluster_run(scheduler, parts, tmp_path / "out")
    for part in parts:  # progress per file (a file analysed again shows twice)
        assert f"] {part}: " in err
    assert_same(got, reference)


def test_cuts_inside_handshakes_and_data(
    sim_capture: Path, reference: dict[str, bytes], scheduler: str, tmp_path: Path
) -> None:
    head, recs = read_records(sim_capture)
    found = interesting_cuts(recs)
    cuts = [i for kind in ("syn_ack", "handshake_ack", "in_data") for i in found[kind][::3]]
    assert len(found["in_data"]) > 10 and len(found["syn_ack"]) > 10
    parts = write_parts(head, recs, cuts, tmp_path / "parts")
    assert len(parts) > 40
    got, _ = cluster_run(scheduler, parts, tmp_path / "out")
    assert_same(got, reference)


def test_a_file_whose_guess_fails_is_analysed_again(
    sim_capture: Path, scheduler: str, tmp_path: Path
) -> None:
    """A SYN retransmitted across the cut looks like a new connection to the next file's task,
    and a connection picked up mid-stream like one the previous file carries: both guesses are
    wrong, the client runs those files again with the exact claims."""
    head, recs = read_records(sim_capture)
    segs = segments(recs)
    syns = [i for i, s in enumerate(segs) if s is not None and s[6] & (SYN | ACK) == SYN]
    rexmit = syns[len(syns) // 3]
    lost = syns[2 * len(syns) // 3]  # this connection's SYN and SYN-ACK are not captured
    synack = next(i for i in range(lost + 1, len(recs))
                  if segs[i] is not None and segs[i][6] & SYN)  # fmt: skip
    edited = [*recs[: rexmit + 1], recs[rexmit], *recs[rexmit + 1 :]]
    shift = 1
    del edited[synack + shift]
    del edited[lost + shift]
    whole = tmp_path / "whole.pcap"
    whole.write_bytes(head + b"".join(edited))
    want, _ = analyze(tmp_path / "one", str(whole))
    # cut between the SYN and its copy, and right where the mid-stream connection begins
    parts = write_parts(head, edited, [rexmit + 1, lost + shift - 1 + 0, lost + shift + 3],
                        tmp_path / "parts")  # fmt: skip
    got, err = cluster_run(scheduler, parts, tmp_path / "out")
    assert "analysing it again" in err
    assert_same(got, want)


def test_counters_are_those_of_one_process(
    sim_capture: Path, scheduler: str, tmp_path: Path
) -> None:
    """Each file's capture counters once (frames read on are not counted again), the TCP and
    session totals summed; only the file count and the peak of open connections differ."""
    import json

    from cluster_helpers import sensor

    head, recs = read_records(sim_capture)
    parts = write_parts(head, recs, list(range(150, len(recs), 150)), tmp_path / "parts")
    done = sensor("analyze", "-q", f"--stats={tmp_path / 'one'}", str(sim_capture))
    assert done.returncode == 0, done.stderr
    done = sensor("analyze", "-q", "--cluster", scheduler, f"--stats={tmp_path / 'two'}", *parts)
    assert done.returncode == 0, done.stderr
    one, two = (json.loads((tmp_path / n).read_text()) for n in ("one", "two"))
    assert two["capture"]["files"] == len(parts)
    for section, differ in (("capture", {"files", "files_filtered_by_libpcap"}),
                            ("tcp", {"active_peak"}), ("totals", {"wall_s"})):  # fmt: skip
        assert {k: v for k, v in two[section].items() if k not in differ} == {
            k: v for k, v in one[section].items() if k not in differ}, section  # fmt: skip
