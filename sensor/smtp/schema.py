"""JSON-ready form of SmtpSession, schema ``smtp_session/1`` (docs/smtp_session_schema.md)."""

from __future__ import annotations

from typing import Any, Final

from sensor.records import MailTransaction, SmtpSession

SCHEMA_VERSION: Final = "smtp_session/1"  # bump on any rename/removal; additions keep the version


def _transaction(t: MailTransaction) -> dict[str, Any]:
    return {
        "ts": t.ts,
        "trans_depth": t.trans_depth,
        "mail_from": t.mail_from,
        "mail_params": dict(t.mail_params),
        "mail_code": t.mail_code,
        "rcpt_to": [
            {"addr": r.addr, "params": dict(r.params), "code": r.code, "enhanced": r.enhanced,
             "text": r.text}
            for r in t.rcpt_to
        ],
        "rcpts_dropped": t.rcpts_dropped,
        "data_mode": t.data_mode,
        "size": t.size,
        "headers": dict(t.headers),
        "received_count": t.received_count,
        "received_ips": list(t.received_ips),
        "mime_parts": t.mime_parts,
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "disposition": a.disposition,
             "size": a.size, "sha256": a.sha256, "truncated": a.truncated}
            for a in t.attachments
        ],
        "last_reply": t.last_reply,
        "last_code": t.last_code,
        "accepted": t.accepted,
        "complete": t.complete,
        "truncated": t.truncated,
        "tls": t.tls,
    }  # fmt: skip


def session_to_dict(s: SmtpSession) -> dict[str, Any]:
    """The session as plain JSON types (reply-code keys become strings), with its schema tag."""
    return {
        "schema": SCHEMA_VERSION,
        "uid": s.uid,
        "ts": s.ts,
        "client_ip": s.client_ip,
        "client_port": s.client_port,
        "server_ip": s.server_ip,
        "server_port": s.server_port,
        "duration_s": s.duration_s,
        "banner": s.banner,
        "banner_code": s.banner_code,
        "helo": s.helo,
        "helo_verb": s.helo_verb,
        "helo_kind": s.helo_kind,
        "extensions": list(s.extensions),
        "tls_offered": s.tls_offered,
        "tls_attempted": s.tls_attempted,
        "tls_established": s.tls_established,
        "tls_bytes": s.tls_bytes,
        "tls_reply": s.tls_reply,
        "auth": [
            {"ts": a.ts, "mechanism": a.mechanism, "outcome": a.outcome, "code": a.code,
             "user": a.user, "after_starttls": a.after_starttls}
            for a in s.auth
        ],
        "reply_codes": {str(k): v for k, v in s.reply_codes.items()},
        "anomalies": dict(s.anomalies),
        "commands": list(s.commands),
        "bytes_from_client": s.bytes_from_client,
        "bytes_from_server": s.bytes_from_server,
        "transactions": [_transaction(t) for t in s.transactions],
        "midstream": s.midstream,
    }  # fmt: skip
