#!/usr/bin/env python3
"""Coverage-guided fuzzing of one stage with atheris (libFuzzer), on the interpreted sources.

    .venv/bin/python scripts/fuzz.py TARGET [--seconds N] [--corpus DIR] [libFuzzer flags...]
    .venv/bin/python scripts/fuzz.py --list

Targets are the ``fuzz_*`` functions of tests/fuzz/harnesses.py. The compiled extensions are
invisible to atheris' coverage, so the package's .py sources are copied to a temporary folder
and imported from there, instrumented. The corpus starts from our own inputs (public captures,
dialogues, hostile messages, configs: see ``seeds``) plus whatever DIR holds; a crash is written
as ``crash-*`` in the current folder (or -artifact_prefix): copy it to tests/data/fuzz/TARGET/
and it becomes a regression test. docs/fuzzing.md has the long-run recipes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ROOT / "tests" / "data" / "public" / "zeek" / "traces"


def seeds(target: str) -> list[bytes]:
    """Starting inputs for a target, from the project's own data."""
    traces = sorted(p for p in PUBLIC.rglob("*") if p.is_file() and not p.name.endswith(".gz"))
    if target == "pcap":
        return [p.read_bytes() for p in traces if p.suffix == ".pcap"][:8]
    if target == "pcapng":
        return [p.read_bytes() for p in traces if p.suffix == ".pcapng"]
    if target == "decode":
        return [b"\x01" + p.read_bytes()[40:200] for p in traces if p.suffix == ".pcap"][:8]
    if target in ("smtp", "mime"):
        from smtp.dialogues import MESSAGE
        from smtp.hostile_mail import CRASHERS, attachment, with_header

        small = [m for m in CRASHERS.values() if len(m) < 8192]
        mails = [MESSAGE, attachment(b"attachment; filename*=utf-8''a%C3%A9.pdf"),
                 with_header(b"Subject: =?utf-8?q?caf=C3=A9?="), *small]  # fmt: skip
        if target == "mime":
            return mails
        # op byte: 0x11 client data, 0x01 server data, then a length byte and the bytes
        talk = [(0x01, b"220 mx ESMTP\r\n"), (0x11, b"EHLO c\r\n"), (0x01, b"250 ok\r\n"),
                (0x11, b"MAIL FROM:<a@b>\r\n"), (0x01, b"250 ok\r\n"), (0x11, b"DATA\r\n"),
                (0x01, b"354 go\r\n"), (0x11, MESSAGE[:200] + b"\r\n.\r\n")]  # fmt: skip
        return [b"".join(bytes([op, len(d)]) + d for op, d in talk)]
    if target == "config":
        return [(ROOT / "sensor" / "default_config.toml").read_bytes(),
                (ROOT / "pcaps" / "demo.toml").read_bytes()]  # fmt: skip
    if target == "model":  # mode byte, then member / offset / cut / insertion (harnesses)
        return [bytes([200]) + bytes(8), bytes([40, 0, 1, 0, 0, 10, 4]) + b"{}[]\"\\",
                bytes([130, 0, 0, 0, 100, 2, 6]) + b"999999"]
    if target == "records":
        import gzip

        from smtp.dialogues import AUTH_PLAIN, BASIC, STARTTLS, conn_record, run

        from sensor.output.jsonl import conn_to_dict, to_json_line
        from sensor.smtp.schema import session_to_dict

        lines = [to_json_line(session_to_dict(run(d))) for d in (BASIC, AUTH_PLAIN, STARTTLS)]
        lines.append(to_json_line(conn_to_dict(conn_record())))
        odd = session_to_dict(run(BASIC))
        odd["helo"] = "caf\udce9"  # a surrogate escape: the writer's standard-library fallback
        lines.append(to_json_line(odd))
        return [*lines, b"".join(lines), gzip.compress(b"".join(lines[:2]), mtime=0)]
    if target == "formats":  # lengths then bytes: every control byte, CR/LF, invalid UTF-8
        return [bytes(64), bytes(range(256)) * 2, b"\x05\x01" + "é\r\n\0]\"\\|=\t".encode() * 40]
    return [bytes(64)]  # pipeline: the structure comes from the input itself


def scratch(name: str) -> Path:
    """A folder of this process under the system's temporary folder. libFuzzer ends the process
    from C, past Python's exit handlers, so each run first removes what dead runs left."""
    base = Path(tempfile.gettempdir()) / "port25-fuzz"
    base.mkdir(exist_ok=True)
    for old in base.iterdir():
        pid = old.name.rpartition("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    path = base / f"{name}-{os.getpid()}"
    path.mkdir()
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", nargs="?")
    ap.add_argument("--list", action="store_true", help="print the targets and exit")
    ap.add_argument("--seconds", type=int, default=60, help="stop after this long (0: never)")
    ap.add_argument("--corpus", type=Path, help="corpus folder kept between runs")
    args, libfuzzer = ap.parse_known_args()

    pure = scratch("src")
    shutil.copytree(ROOT / "sensor", pure / "sensor",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))  # fmt: skip
    sys.path[:0] = [str(pure), str(ROOT / "tests")]

    import atheris

    with atheris.instrument_imports(include=["sensor"]):
        from fuzz.harnesses import TARGETS
    if args.list or args.target not in TARGETS:
        print("targets:", " ".join(TARGETS))
        sys.exit(0 if args.list else 2)
    target = TARGETS[args.target]
    if any(Path(a).is_file() for a in libfuzzer):  # reproduce: run just the inputs named
        atheris.Setup([sys.argv[0], *libfuzzer], target)
        atheris.Fuzz()
    corpus = args.corpus or scratch(f"corpus-{args.target}")
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(args.target)):
        (corpus / f"seed-{i}").write_bytes(seed)
    flags = [f"-max_total_time={args.seconds}"] if args.seconds else []
    atheris.Setup([sys.argv[0], *flags, *libfuzzer, str(corpus)], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
