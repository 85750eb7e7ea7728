"""JSON form of SmtpSession, schema ``smtp_session/1`` (docs/smtp_session_schema.md), both ways."""

from __future__ import annotations

from typing import Any, Final

from sensor.errors import RecordError
from sensor.output.fields import Fields
from sensor.records import Attachment, AuthAttempt, MailTransaction, Recipient, SmtpSession
from sensor.smtp.anomalies import Anomaly

SCHEMA_VERSION: Final = "smtp_session/1"  # bump on any rename/removal; additions keep the version
_ANOMALIES: Final[dict[str, str]] = {str(a): a for a in Anomaly}  # read back as the parser's keys


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


def _recipient(f: Fields) -> Recipient:
    return Recipient(f.text("addr"), f.text_map("params"), f.integer("code"),
                     f.opt_text("enhanced"), f.text("text"))  # fmt: skip


def _attachment(f: Fields) -> Attachment:
    return Attachment(f.opt_text("filename"), f.text("content_type"), f.opt_text("disposition"),
                      f.integer("size"), f.text("sha256"), f.flag("truncated"))  # fmt: skip


def _auth(f: Fields) -> AuthAttempt:
    return AuthAttempt(f.number("ts"), f.text("mechanism"), f.text("outcome"), f.integer("code"),
                       f.opt_text("user"), f.flag("after_starttls", False))  # fmt: skip


def _transaction_from(f: Fields) -> MailTransaction:
    return MailTransaction(
        ts=f.number("ts"),
        trans_depth=f.integer("trans_depth"),
        mail_from=f.opt_text("mail_from"),
        mail_params=f.text_map("mail_params"),
        mail_code=f.integer("mail_code"),
        rcpt_to=tuple([_recipient(r) for r in f.objects("rcpt_to")]),
        rcpts_dropped=f.integer("rcpts_dropped"),
        data_mode=f.opt_text("data_mode"),
        size=f.integer("size"),
        headers=f.opt_text_map("headers"),
        received_count=f.integer("received_count"),
        received_ips=f.texts("received_ips"),
        mime_parts=f.integer("mime_parts"),
        attachments=tuple([_attachment(a) for a in f.objects("attachments")]),
        last_reply=f.opt_text("last_reply"),
        last_code=f.integer("last_code"),
        accepted=f.flag("accepted"),
        complete=f.flag("complete"),
        truncated=f.flag("truncated"),
        tls=f.flag("tls"),
    )


def session_from_dict(d: object) -> SmtpSession:
    """The SmtpSession a `session_to_dict` object (e.g. one line of a --sessions log) stands for.

    Every field is type-checked: anything else raises RecordError (a ValueError) naming the field
    and what was expected. Fields unknown to this version are ignored (later additions within
    the version); `midstream` and `after_starttls` may be absent (logs written before them).
    """
    f = Fields(d)
    tag = f.d.get("schema")
    if tag != SCHEMA_VERSION:
        raise RecordError(f"schema: expected {SCHEMA_VERSION!r}, got "
                          f"{'nothing' if tag is None else repr(tag)[:40]}")  # fmt: skip
    return SmtpSession(
        uid=f.text("uid"),
        ts=f.number("ts"),
        client_ip=f.text("client_ip"),
        client_port=f.integer("client_port"),
        server_ip=f.text("server_ip"),
        server_port=f.integer("server_port"),
        duration_s=f.number("duration_s"),
        banner=f.opt_text("banner"),
        banner_code=f.integer("banner_code"),
        helo=f.opt_text("helo"),
        helo_verb=f.opt_text("helo_verb"),
        helo_kind=f.opt_text("helo_kind"),
        extensions=f.texts("extensions"),
        tls_offered=f.flag("tls_offered"),
        tls_attempted=f.flag("tls_attempted"),
        tls_established=f.flag("tls_established"),
        tls_bytes=f.integer("tls_bytes"),
        tls_reply=f.opt_text("tls_reply"),
        auth=tuple([_auth(a) for a in f.objects("auth")]),
        reply_codes=f.code_map("reply_codes"),
        anomalies={_ANOMALIES.get(k, k): n for k, n in f.count_map("anomalies").items()},
        commands=f.texts("commands"),
        bytes_from_client=f.integer("bytes_from_client"),
        bytes_from_server=f.integer("bytes_from_server"),
        transactions=tuple([_transaction_from(t) for t in f.objects("transactions")]),
        midstream=f.flag("midstream", False),
    )
