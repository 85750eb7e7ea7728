"""Parity of the SMTP analyzer with Zeek's smtp.log and Wireshark's smtp.req on public captures."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from parity_exceptions import is_excepted
from zeek_util import read_zeek_log

from sensor.capture.bpf import build_filter
from sensor.capture.source import open_files
from sensor.pipeline import Pipeline
from sensor.records import SmtpSession
from sensor.smtp.zeek import zeek_rows

# baseline folder -> (trace, SMTP server ports to analyse)
ZEEK_CASES: dict[str, tuple[str, tuple[int, ...]]] = {
    "scripts.base.protocols.http.http-connect": ("http/connect-with-smtp.pcap", (8240,)),
    "scripts.base.protocols.smtp.attachment-msg": ("smtp-attachment-msg.pcap", (25,)),
    "scripts.base.protocols.smtp.attachment": ("smtp.pcap", (25,)),
    "scripts.base.protocols.smtp.basic": ("smtp.pcap", (25,)),
    "scripts.base.protocols.smtp.bdat-0-last": ("smtp/rfc3030-bdat-0-last.pcap", (25,)),
    "scripts.base.protocols.smtp.bdat-chunk-size-overflow": (
        "smtp/smtp-bdat-cmd-chunk-size-overflow.pcap", (25,)),
    "scripts.base.protocols.smtp.bdat-chunk-size-overflow2": (
        "smtp/smtp-bdat-cmd-chunk-size-overflow2.pcap", (25,)),
    "scripts.base.protocols.smtp.bdat-cmd-invalid": ("smtp/smtp-bdat-cmd-invalid.pcapng", (25,)),
    "scripts.base.protocols.smtp.bdat-gap": ("smtp/smtp-bdat-gap.pcap", (25,)),
    "scripts.base.protocols.smtp.bdat-multipart-chunked": (
        "smtp/rfc3030-bdat-multipart-chunked.pcap", (25,)),
    "scripts.base.protocols.smtp.bdat-multipart": ("smtp/rfc3030-bdat-multipart.pcap", (25,)),
    "scripts.base.protocols.smtp.bdat-negative-chunk-size": (
        "smtp/smtp-bdat-cmd-negative-chunk-size.pcap", (25,)),
    "scripts.base.protocols.smtp.bdat-pipeline-8bitmime": (
        "smtp/smtp-bdat-pipeline-8bitmime.pcap", (25,)),
    "scripts.base.protocols.smtp.bdat": ("smtp/rfc3030-bdat-example1.pcap", (25,)),
    "scripts.base.protocols.smtp.mail-transactions-invalid": (
        "smtp-mail-transactions-invalid.pcap", (25,)),
    "scripts.base.protocols.smtp.one-side": ("smtp-one-side-only.pcap", (25,)),
    "scripts.base.protocols.smtp.starttls": ("tls/smtp-starttls.pcap", (25,)),
}  # fmt: skip

FIELDS = ["helo", "mailfrom", "rcptto", "date", "from", "to", "cc", "reply_to", "msg_id",
          "in_reply_to", "subject", "last_reply", "tls"]  # fmt: skip
SET_FIELDS = {"rcptto", "to", "cc"}


def analyse(path: Path, ports: tuple[int, ...]) -> list[SmtpSession]:
    """Every SMTP session the real pipeline finds in a capture."""
    sessions: list[SmtpSession] = []
    pipe = Pipeline(ports=ports, on_session=sessions.append)
    errors: list[tuple[str, str]] = []
    pipe.run(open_files([str(path)], build_filter(ports), pipe.capture_stats,
                        lambda p, r: errors.append((p, r))))  # fmt: skip
    pipe.finish()
    assert errors == []
    return sessions


def _zeek_value(field: str, raw: Any) -> Any:
    if field in SET_FIELDS:
        return set(raw or [])
    if field == "tls":
        return raw == "T"
    return raw


def _our_value(field: str, value: Any) -> Any:
    if field in SET_FIELDS:
        return set(value or ())
    return value if value != "" else None


def _zeek_filenames(folder: Path) -> dict[str, list[str]]:
    """Attachment file names per Zeek connection uid, from files.log or files.log.cut."""
    out: dict[str, list[str]] = {}
    for name in ("files.log", "files.log.cut"):
        path = folder / name
        if not path.exists():
            continue
        for row in read_zeek_log(path) if name == "files.log" else _read_cut(path):
            uid = row.get("uid")
            fname = row.get("filename")
            if row.get("source") == "SMTP" and isinstance(uid, str) and isinstance(fname, str):
                out.setdefault(uid, []).append(fname)
    return out


def _read_cut(path: Path) -> list[dict[str, str | None]]:
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    head = lines[0].split("\t")
    return [
        {k: (None if v == "-" else v) for k, v in zip(head, ln.split("\t"), strict=False)}
        for ln in lines[1:]
    ]


@pytest.mark.parametrize("baseline", sorted(ZEEK_CASES))
def test_transactions_agree_with_zeek(baseline: str, zeek_traces: Path) -> None:
    trace, ports = ZEEK_CASES[baseline]
    folder = zeek_traces.parent / "baselines" / baseline
    theirs = read_zeek_log(folder / "smtp.log")
    sessions = analyse(zeek_traces / trace, ports)
    ours: dict[tuple[str, int, str, int], list[dict[str, Any]]] = {}
    by_tuple: dict[tuple[str, int, str, int], SmtpSession] = {}
    for s in sessions:
        key = (s.client_ip, s.client_port, s.server_ip, s.server_port)
        ours.setdefault(key, []).extend(zeek_rows(s))
        by_tuple[key] = s

    table: list[str] = []
    failures: list[str] = []
    zeek_by_key: dict[tuple[str, int, str, int], list[dict[str, Any]]] = {}
    zeek_uid: dict[tuple[str, int, str, int], str] = {}
    for row in theirs:
        key = (str(row["id.orig_h"]), int(str(row["id.orig_p"])), str(row["id.resp_h"]),
               int(str(row["id.resp_p"])))  # fmt: skip
        zeek_by_key.setdefault(key, []).append(row)
        zeek_uid[key] = str(row["uid"])
    for key, zrows in zeek_by_key.items():
        mine = ours.get(key, [])
        if len(mine) != len(zrows) and not is_excepted("zeek", baseline, trace, "rows"):
            failures.append(f"{key}: Zeek has {len(zrows)} rows, we have {len(mine)}")
        for i, (zrow, orow) in enumerate(zip(zrows, mine, strict=False)):
            for field in FIELDS:
                z = _zeek_value(field, zrow.get(field))
                o = _our_value(field, orow.get(field))
                ok = z == o
                table.append(f"{baseline} row {i} {field:<12} {'ok' if ok else 'DIFF'}")
                if not ok and not is_excepted("zeek", baseline, trace, field):
                    failures.append(f"{key} row {i} {field}: zeek={z!r} ours={o!r}")
        zeek_files = _zeek_filenames(folder).get(zeek_uid[key])
        if zeek_files is not None:
            our_files = [n for r in mine for n in r["filenames"]]
            ok = sorted(our_files) == sorted(zeek_files)
            table.append(f"{baseline} attachments  {'ok' if ok else 'DIFF'}")
            if not ok and not is_excepted("zeek", baseline, trace, "filenames"):
                failures.append(f"{key} attachments: zeek={zeek_files} ours={our_files}")
    extra = set(ours) - set(zeek_by_key)
    for key in extra:
        if ours[key] and not is_excepted("zeek", baseline, trace, "rows"):
            failures.append(f"{key}: we log {len(ours[key])} rows Zeek does not have")
    agreed = sum(1 for line in table if line.endswith("ok"))
    print(f"\n{baseline}: {agreed}/{len(table)} field comparisons agree")
    print("\n".join(line for line in table if line.endswith("DIFF")))
    assert not failures, "\n".join(failures)


def _tshark_commands(path: Path, ports: tuple[int, ...]) -> dict[tuple[str, int], list[str]]:
    """smtp.req.command per client endpoint, as Wireshark dissects it."""
    decode_as = [a for p in ports if p != 25 for a in ("-d", f"tcp.port=={p},smtp")]
    out = subprocess.run(
        ["tshark", "-r", str(path), *decode_as, "-Y", "smtp.req", "-T", "fields",
         "-E", "separator=|", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
         "-e", "smtp.req.command"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cmds: dict[tuple[str, int], list[str]] = {}
    for line in out.splitlines():
        f = line.split("|")
        if len(f) < 4 or not f[3]:
            continue
        src = (f[0] or f[1]).split(",")[-1]
        for verb in f[3].split(","):
            cmds.setdefault((src, int(f[2].split(",")[-1])), []).append(verb.upper())
    return cmds


TSHARK_TRACES = sorted({(t, p) for t, p in ZEEK_CASES.values()} | {
    ("smtp-multi-addr.pcap", (25,)),
    ("smtp/mime-header-size-limit.pcap.gz", (25,)),
    ("smtp/smtp-many-addresses.pcap.gz", (25,)),
    ("smtp/rfc3030-bdat-nonascii.pcap", (25,)),
})


@pytest.mark.parametrize(("trace", "ports"), TSHARK_TRACES)
def test_commands_agree_with_tshark(
    trace: str, ports: tuple[int, ...], zeek_traces: Path, tshark: str
) -> None:
    path = zeek_traces / trace
    theirs = _tshark_commands(path, ports)
    for s in analyse(path, ports):
        want = theirs.get((s.client_ip, s.client_port), [])
        got = list(s.commands)
        if got != want and not is_excepted("tshark", "smtp.req", trace, "commands"):
            diff = Counter(got) - Counter(want), Counter(want) - Counter(got)
            pytest.fail(f"{trace} {s.uid}: ours {got} tshark {want} (ours/theirs only: {diff})")
