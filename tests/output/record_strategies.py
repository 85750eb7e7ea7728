"""hypothesis strategies for the records the pipeline emits (values JSON lines can carry)."""

from __future__ import annotations

from hypothesis import strategies as st

from sensor.records import (
    Attachment,
    AuthAttempt,
    ConnRecord,
    MailTransaction,
    Recipient,
    SmtpSession,
)

# Text as the parser makes it: any character, and the low surrogates U+DC80-U+DCFF that
# surrogateescape decoding leaves for undecodable bytes (they take to_json_line's fallback path).
# High surrogates never occur: a lone high one followed by a lone low one would be written as a
# pair of escapes that reads back as one character.
TEXT = st.text(st.characters(codec="utf-8") | st.characters(min_codepoint=0xDC80,
                                                             max_codepoint=0xDCFF), max_size=12)
OPT_TEXT = st.none() | TEXT
NUM = st.floats(allow_nan=False, allow_infinity=False)  # orjson writes NaN and inf as null
# 64-bit integers: orjson reads a larger one (which the writer's fallback writes exactly) as a
# float, and the reader then refuses it as a wrong type; no counter of the pipeline comes near.
INT = st.integers(-(2**63), 2**63 - 1)
OPT_INT = st.none() | INT
TEXT_MAP = st.dictionaries(TEXT, TEXT, max_size=3)


def _tuple(strategy: st.SearchStrategy[object], n: int = 3
           ) -> st.SearchStrategy[tuple[object, ...]]:
    return st.lists(strategy, max_size=n).map(tuple)


recipients = st.builds(Recipient, TEXT, TEXT_MAP, INT, OPT_TEXT, TEXT)
attachments = st.builds(Attachment, OPT_TEXT, TEXT, OPT_TEXT, INT, TEXT, st.booleans())
auths = st.builds(AuthAttempt, NUM, TEXT, TEXT, INT, OPT_TEXT, st.booleans())
transactions = st.builds(
    MailTransaction, ts=NUM, trans_depth=INT, mail_from=OPT_TEXT, mail_params=TEXT_MAP,
    mail_code=INT, rcpt_to=_tuple(recipients), rcpts_dropped=INT, data_mode=OPT_TEXT, size=INT,
    headers=st.dictionaries(TEXT, OPT_TEXT, max_size=4), received_count=INT,
    received_ips=_tuple(TEXT), mime_parts=INT, attachments=_tuple(attachments, 2),
    last_reply=OPT_TEXT, last_code=INT, accepted=st.booleans(), complete=st.booleans(),
    truncated=st.booleans(), tls=st.booleans())  # fmt: skip
sessions = st.builds(
    SmtpSession, uid=TEXT, ts=NUM, client_ip=TEXT, client_port=INT, server_ip=TEXT,
    server_port=INT, duration_s=NUM, banner=OPT_TEXT, banner_code=INT, helo=OPT_TEXT,
    helo_verb=OPT_TEXT, helo_kind=OPT_TEXT, extensions=_tuple(TEXT), tls_offered=st.booleans(),
    tls_attempted=st.booleans(), tls_established=st.booleans(), tls_bytes=INT,
    tls_reply=OPT_TEXT, auth=_tuple(auths, 2), reply_codes=st.dictionaries(INT, INT, max_size=3),
    anomalies=st.dictionaries(TEXT, INT, max_size=3), commands=_tuple(TEXT),
    bytes_from_client=INT, bytes_from_server=INT, transactions=_tuple(transactions, 2),
    midstream=st.booleans())  # fmt: skip
conns = st.builds(
    ConnRecord, uid=TEXT, ts=NUM, client_ip=TEXT, client_port=INT, server_ip=TEXT,
    server_port=INT, duration_s=NUM, state=TEXT, history=TEXT, bytes_to_server=INT,
    bytes_to_client=INT, pkts_to_server=INT, pkts_to_client=INT, wire_bytes_to_server=INT,
    wire_bytes_to_client=INT, retrans_segments=INT, ooo_segments=INT, gaps=INT, gap_bytes=INT,
    conflicting_overlaps=INT, rtt_s=st.none() | NUM, syn_ttl=OPT_INT, syn_window=OPT_INT,
    syn_mss=OPT_INT, syn_wscale=OPT_INT, end_reason=TEXT)  # fmt: skip
