"""Zeek smtp.log rows derived from an SmtpSession, for parity checks against Zeek's baselines."""

from __future__ import annotations

import re
from typing import Any

from sensor.records import MailTransaction, SmtpSession

_LIST_SPLIT = re.compile(r"[ \t]*,[ \t]*")  # Zeek splits To/Cc on commas with blanks around


def _addr_set(value: str | None) -> set[str]:
    return set(_LIST_SPLIT.split(value)) if value else set()


def _path(s: SmtpSession, t: MailTransaction | None) -> list[str]:
    path = [s.server_ip, s.client_ip]
    for ip in t.received_ips if t is not None else ():
        if path[-1] != ip:
            path.append(ip)
    return path


def zeek_rows(s: SmtpSession) -> list[dict[str, Any]]:
    """One dict per Zeek smtp.log row: a transaction each, plus the STARTTLS-only row Zeek writes.

    Sets are Python sets, absent values None; fuids are represented by the attachments' file names
    (``filenames``) and the count of MIME leaf parts (``mime_parts``).
    """
    rows: list[dict[str, Any]] = []
    for t in s.transactions:
        h = t.headers
        rows.append(
            {
                "trans_depth": t.trans_depth,
                "helo": s.helo,
                "mailfrom": t.mail_from or None,
                "rcptto": {r.addr for r in t.rcpt_to if r.addr},
                "date": h.get("date"),
                "from": h.get("from"),
                "to": _addr_set(h.get("to")),
                "cc": _addr_set(h.get("cc")),
                "reply_to": h.get("reply_to"),
                "msg_id": h.get("msg_id"),
                "in_reply_to": h.get("in_reply_to"),
                "subject": h.get("subject"),
                "first_received": h.get("first_received"),
                "second_received": h.get("second_received"),
                "last_reply": t.last_reply,
                "path": _path(s, t),
                "user_agent": h.get("user_agent"),
                "tls": t.tls,
                "filenames": [a.filename for a in t.attachments if a.filename],
                "mime_parts": t.mime_parts,
            }
        )
    if s.tls_established and not any(t.tls for t in s.transactions):
        done = sum(1 for t in s.transactions if t.data_mode is not None)
        rows.append(
            {
                "trans_depth": done + 1, "helo": s.helo, "mailfrom": None, "rcptto": set(),
                "date": None, "from": None, "to": set(), "cc": set(), "reply_to": None,
                "msg_id": None, "in_reply_to": None, "subject": None, "first_received": None,
                "second_received": None, "last_reply": s.tls_reply, "path": _path(s, None),
                "user_agent": None, "tls": True, "filenames": [], "mime_parts": 0,
            }
        )  # fmt: skip
    return rows
