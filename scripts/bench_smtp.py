#!/usr/bin/env python3
"""Benchmark of SMTP session analysis (and detection) against tshark and tcpdump, one invocation.

Times whole processes on the shared generator's workloads: `tshark -r F -Y smtp`, `tcpdump -r F
-w /dev/null FILTER`, `sensor analyze --sessions S F` and, with --alerts, the same run with
`--alerts /dev/null`. Checks that the session log counts exactly the generator's MAIL / RCPT /
DATA totals from FILE.json. Targets: issue 3 — SMTP-only 500k file >= 4x faster than tshark,
mixed 2M file within 4x of tcpdump, peak RSS < 150 MB; issue 5 — --alerts within 10% of the run
without it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from benchlib import (
    FILTER,
    WORKLOADS,
    common_arguments,
    ensure_workload,
    median_run,
    median_runs,
    print_table,
    require,
    run_timed,
    sensor_exe,
)


def count_sessions(path: Path) -> dict[str, int]:
    """MAIL / RCPT / DATA(+BDAT) totals in a session log."""
    mail = rcpt = data = sessions = 0
    with path.open() as fh:
        for line in fh:
            s = json.loads(line)
            sessions += 1
            for t in s["transactions"]:
                mail += t["mail_from"] is not None
                rcpt += len(t["rcpt_to"])
                data += t["data_mode"] is not None
    return {"sessions": sessions, "mail_cmds": mail, "rcpt_cmds": rcpt, "data_cmds": data}


def main() -> None:
    ap = common_arguments(__doc__)
    ap.add_argument("--alerts", action="store_true", help="also time the run with --alerts")
    args = ap.parse_args()
    require("tcpdump", "tshark")
    ok = True
    for name in [args.only] if args.only else list(WORKLOADS):
        pcap = ensure_workload(name, Path(args.workdir))
        truth = json.loads(Path(str(pcap) + ".json").read_text())
        packets = int(truth["packets"])
        print(f"\n== {name}: {pcap} ({pcap.stat().st_size / 1e6:.0f} MB, {packets:,} packets)")
        with tempfile.TemporaryDirectory() as tmp:
            sess = Path(tmp) / "sessions.jsonl"
            base = [sensor_exe(), "analyze", "--quiet", "--sessions", str(sess), str(pcap)]
            rows = {
                "tcpdump": median_run(["tcpdump", "-r", str(pcap), "-w", "/dev/null", FILTER],
                                      args.repeat),
            }  # fmt: skip
            # With --alerts, the runs with and without detection alternate: their ratio is the
            # figure, and a load that comes and goes then weighs on both alike.
            compared = {"sensor --sessions": base}
            if args.alerts:
                compared["sensor --alerts"] = [*base[:-1], "--alerts", "/dev/null", str(pcap)]
            rows.update(median_runs(compared, args.repeat))
            counted = {"sensor --sessions": count_sessions(sess)}  # the same log either way
            if args.workers > 1:
                run = f"sensor --workers {args.workers}"
                rows[run] = median_run([*base[:-1], "--workers", str(args.workers), str(pcap)],
                                       args.repeat)  # fmt: skip
                counted[run] = count_sessions(sess)
        if not args.skip_tshark:
            rows["tshark -Y smtp"] = run_timed(["tshark", "-r", str(pcap), "-Y", "smtp", "-T",
                                                "fields", "-e", "frame.number", "-e",
                                                "smtp.req.command"])  # fmt: skip
        print_table(rows, packets, "tcpdump")
        sensor = rows["sensor --sessions"]
        if "tshark -Y smtp" in rows:
            for run in (r for r in rows if r.startswith("sensor --")):
                print(f"tshark / {run} = {rows['tshark -Y smtp'][0] / rows[run][0]:.1f}x")
        print(f"sensor/tcpdump = {sensor[0] / rows['tcpdump'][0]:.2f}x, "
              f"peak RSS {sensor[1]:.0f} MB")  # fmt: skip
        if "sensor --alerts" in rows:
            print(f"--alerts / without = {rows['sensor --alerts'][0] / sensor[0]:.3f}")
        for run, got in counted.items():
            for key in ("mail_cmds", "rcpt_cmds", "data_cmds"):
                match = got[key] == truth[key]
                ok &= match
                print(f"{run}: {key} in the session log {got[key]:,}, generator {truth[key]:,} "
                      f"{'ok' if match else 'MISMATCH'}")  # fmt: skip
    if not ok:
        raise SystemExit("bench: session counts differ from the generator's ground truth")


if __name__ == "__main__":
    main()
