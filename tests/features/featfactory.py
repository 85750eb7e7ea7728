"""Hand-made ConnRecords and SmtpSessions for feature and detector tests."""

from __future__ import annotations

from itertools import count
from typing import Any

from sensor.config import Config, parse_config
from sensor.records import AuthAttempt, ConnRecord, MailTransaction, Recipient, SmtpSession

_uid = count(1)
SITE_TOML = ('[site]\nhome_net = ["10.20.0.0/16", "2001:db8:20::/48"]\n'
             'mail_servers = ["10.20.0.10"]\nlocal_domains = ["campus.example"]\n')


def site_config(extra: str = "") -> Config:
    """The simulated campus of `sensor simulate`, plus extra TOML."""
    return parse_config(SITE_TOML + extra, "test.toml")


def conn(client: str, server: str, ts: float, state: str = "SF", **kw: Any) -> ConnRecord:
    base: dict[str, Any] = dict(
        uid=f"C{next(_uid)}", ts=ts, client_ip=client, client_port=40000, server_ip=server,
        server_port=25, duration_s=1.0, state=state, history="ShADadFf", bytes_to_server=100,
        bytes_to_client=0 if state in ("REJ", "S0") else 100, wire_bytes_to_server=300,
        wire_bytes_to_client=300, pkts_to_server=5,
        pkts_to_client=5, retrans_segments=0, ooo_segments=0, gaps=0, gap_bytes=0,
        conflicting_overlaps=0, rtt_s=0.01, syn_ttl=64, syn_window=64240, syn_mss=1460,
        syn_wscale=7, end_reason="fin")
    base.update(kw)
    return ConnRecord(**base)


def rcpt(addr: str, code: int = 250, enhanced: str | None = "2.1.5",
         text: str = "2.1.5 Ok") -> Recipient:
    return Recipient(addr, {}, code, enhanced, text)


def tx(ts: float, rcpts: list[Recipient], mail_from: str | None = "a@b.example",
       data: bool = True, size: int = 1000, mail_code: int = 250) -> MailTransaction:
    return MailTransaction(
        ts=ts, trans_depth=1, mail_from=mail_from, mail_params={}, mail_code=mail_code,
        rcpt_to=tuple(rcpts), rcpts_dropped=0, data_mode="data" if data else None,
        size=size if data else 0, headers={}, received_count=0, received_ips=(), mime_parts=1,
        attachments=(), last_reply="250 2.0.0 Ok", last_code=250, accepted=data,
        complete=True, truncated=False, tls=False)


def auth(ts: float, outcome: str, user: str | None = "alice") -> AuthAttempt:
    return AuthAttempt(ts, "LOGIN", outcome, 235 if outcome == "success" else 535, user)


def session(client: str, server: str, ts: float, txns: tuple[MailTransaction, ...] = (),
            **kw: Any) -> SmtpSession:
    base: dict[str, Any] = dict(
        uid=f"C{next(_uid)}", ts=ts, client_ip=client, client_port=40000, server_ip=server,
        server_port=25, duration_s=1.0, banner="mx ESMTP", banner_code=220,
        helo="mail.example.org", helo_verb="EHLO", helo_kind="fqdn", extensions=(),
        tls_offered=False, tls_attempted=False, tls_established=False, tls_bytes=0,
        tls_reply=None, auth=(), reply_codes={220: 1, 250: 2}, anomalies={},
        commands=("EHLO", "QUIT"), bytes_from_client=200, bytes_from_server=200,
        transactions=txns)
    base.update(kw)
    return SmtpSession(**base)
