"""Bounds of the SMTP parser, each with its default and the anomaly raised when it is hit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# RFC 5321 4.5.3.1.4: command line limit, 512 octets including CRLF.
RFC_COMMAND_LINE: Final = 512
# RFC 5321 4.5.3.1.5: reply line limit, 512 octets including CRLF.
RFC_REPLY_LINE: Final = 512
# RFC 5321 4.5.3.1.6: text line limit, 1000 octets including CRLF.
RFC_TEXT_LINE: Final = 1000


@dataclass(slots=True)
class SmtpLimits:
    """Every bound of one SmtpParser; hitting one is counted as the anomaly named beside it."""

    max_line: int = 4096  # line_truncated: longest command/reply line buffered
    max_rcpts_per_txn: int = 1000  # too_many_rcpts
    max_pending_cmds: int = 100  # pending_overflow: commands awaiting a reply
    max_txns_per_session: int = 1000  # too_many_txns
    max_unanswered_txns: int = 16  # txn_unanswered: ended transactions awaiting their replies
    max_header_bytes: int = 65536  # header_too_large: header block read per MIME entity
    max_mime_bytes: int = 4 << 20  # message copy walked for attachments; beyond it: truncated
    max_auth_attempts: int = 100  # auth_too_many
    max_commands: int = 10000  # too_many_commands: verbs kept in SmtpSession.commands
    max_reply_lines: int = 200  # lines of one multi-line reply kept (EHLO extensions)
    max_bdat_chunk: int = 1 << 31  # bdat_invalid_size: larger chunk sizes are not trusted
    max_mime_parts: int = 1000  # mime_limit: MIME leaf parts walked per message
    max_mime_depth: int = 20  # mime_limit: MIME nesting followed by the walk
    max_mime_headers: int = 1000  # mime_limit: header fields kept per MIME entity
    max_mime_params: int = 64  # mime_limit: parameters read from one Content-Type/-Disposition
    max_encoded_words: int = 256  # mime_limit: RFC 2047 words decoded in one header value
