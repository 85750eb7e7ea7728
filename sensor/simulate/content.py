"""Names, domains and RFC 5322 / MIME messages (built with `email`) for simulated mail."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from enum import StrEnum

_SYLLABLES = ("an", "bel", "cor", "dan", "el", "fen", "gor", "hal", "ix", "jor", "kal", "lum",
              "mor", "nor", "or", "pel", "quin", "ros", "sel", "tor", "ul", "ven", "wel", "zen")
_TLDS = ("example", "test")  # RFC 2606 reserved names: simulated traffic names no real domain
_FIRST = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
          "mallory", "nina", "oscar", "peggy", "rupert", "sybil", "trent", "victor", "walter")
_LAST = ("smith", "jones", "garcia", "muller", "rossi", "novak", "silva", "kim", "sato",
         "larsen", "dubois", "kowalski", "ivanova", "okafor", "nguyen", "haddad")
_WORDS = ("meeting", "report", "the", "attached", "please", "review", "budget", "schedule",
          "project", "update", "and", "of", "for", "next", "week", "invoice", "draft", "team",
          "results", "agenda", "notes", "thanks", "regards", "question", "about", "we", "will",
          "send", "shortly", "data", "server", "course", "students", "deadline", "friday")
_SPAM_WORDS = ("cheap", "offer", "winner", "click", "free", "limited", "bonus", "crypto",
               "pills", "prize", "urgent", "account", "verify", "now", "exclusive", "deal")
_ATTACHMENTS = (("report", "application", "pdf", "pdf"), ("notes", "application",
                "vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
                ("photo", "image", "jpeg", "jpg"), ("data", "text", "csv", "csv"),
                ("archive", "application", "zip", "zip"))
_SPAM_ATTACHMENTS = (("invoice", "application", "zip", "zip"), ("document", "text", "html",
                     "html"), ("payment", "application", "x-msdownload", "exe"))
_THREAD_ATTACHMENTS = (("invoice", "application", "vnd.ms-word.document.macroEnabled.12", "docm"),
                       ("document", "application", "zip", "zip"),
                       ("report", "application", "vnd.ms-excel.sheet.macroEnabled.12", "xlsm"))
THREAD_TEXT_BYTES = (200, 600)  # a hijacked-thread reply: a line or two above the attachment
MAX_MESSAGE_BYTES = 4_000_000  # cap on one generated message, whatever the size distribution


class Flavour(StrEnum):
    """The kind of prose and attachments a message pool contains."""

    PERSONAL = "personal"
    NEWSLETTER = "newsletter"
    SPAM = "spam"
    SCAN = "scan"
    THREAD = "thread"
    """Replies in stolen mail threads ("Re:"), a short text and a macro document or archive."""


def domain_name(rng: random.Random) -> str:
    """A synthetic registrable domain under a reserved top-level name."""
    n = rng.randint(2, 3)
    return "".join(rng.choice(_SYLLABLES) for _ in range(n)) + "." + rng.choice(_TLDS)


def user_name(rng: random.Random) -> str:
    """A first.last style local part."""
    return f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}"


def random_local_part(rng: random.Random) -> str:
    """A guessed local part, as a dictionary harvester tries them."""
    style = rng.randrange(3)
    if style == 0:
        return rng.choice(_FIRST) + str(rng.randint(1, 99))
    if style == 1:
        return rng.choice(_FIRST)[0] + rng.choice(_LAST)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))


@dataclass(slots=True, frozen=True)
class BodyTemplate:
    """The MIME part of a message (its MIME headers and body), shared by several messages."""

    mime_headers: bytes
    body: bytes


def _text(rng: random.Random, words: tuple[str, ...], nbytes: int) -> str:
    lines: list[str] = []
    size = 0
    while size < nbytes:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(6, 12)))
        if rng.random() < 0.05:
            line = "." + line  # a line starting with a dot, which DATA must dot-stuff
        lines.append(line)
        size += len(line) + 2
    return "\n".join(lines) + "\n"


def _build_template(rng: random.Random, flavour: Flavour, size: int, attach_prob: float,
                    html_prob: float) -> BodyTemplate:
    msg = EmailMessage(policy=SMTP)
    words = _SPAM_WORDS + _WORDS[:8] if flavour is Flavour.SPAM else _WORDS
    attach = rng.random() < attach_prob
    text_bytes = max(200, size // 3 if attach else size)
    if flavour is Flavour.THREAD:
        text_bytes = min(max(THREAD_TEXT_BYTES[0], size // 20), THREAD_TEXT_BYTES[1])
    msg.set_content(_text(rng, words, text_bytes))
    if flavour is Flavour.NEWSLETTER or rng.random() < html_prob:
        html = "<html><body><p>" + _text(rng, words, text_bytes).replace("\n", "</p><p>")
        msg.add_alternative(html + "</p></body></html>\n", subtype="html")
    if attach:
        pool = (_SPAM_ATTACHMENTS if flavour is Flavour.SPAM else
                _THREAD_ATTACHMENTS if flavour is Flavour.THREAD else _ATTACHMENTS)
        stem, maintype, subtype, ext = ("scan", "application", "pdf", "pdf") if (
            flavour is Flavour.SCAN) else rng.choice(pool)
        raw = max(64, (size - text_bytes) * 3 // 4)
        msg.add_attachment(rng.randbytes(raw), maintype=maintype, subtype=subtype,
                           filename=f"{stem}-{rng.randint(1000, 9999)}.{ext}")
    for part in msg.walk():
        if part.is_multipart():
            part.set_boundary(f"=_part_{rng.getrandbits(64):016x}")
    raw_msg = msg.as_bytes()
    head, _, body = raw_msg.partition(b"\r\n\r\n")
    return BodyTemplate(head + b"\r\n", body)


def build_templates(rng: random.Random, flavour: Flavour, count: int, median_bytes: int,
                    sigma: float, attach_prob: float, html_prob: float) -> list[BodyTemplate]:
    """`count` message bodies with log-normally distributed sizes around `median_bytes`."""
    out = []
    for _ in range(max(1, count)):
        size = int(min(MAX_MESSAGE_BYTES, rng.lognormvariate(math.log(max(median_bytes, 1)),
                                                             sigma)))
        out.append(_build_template(rng, flavour, size, attach_prob, html_prob))
    return out


_SUBJECTS = {
    Flavour.PERSONAL: ("Re: meeting notes", "Budget draft", "Course schedule update",
                       "Fwd: report", "Question about the project", "Agenda for Friday"),
    Flavour.NEWSLETTER: ("Your weekly digest", "News from the library", "Event calendar",
                         "This month's highlights"),
    Flavour.SPAM: ("You are a WINNER", "Verify your account now", "Limited offer inside",
                   "Invoice overdue", "Cheap meds, free shipping", "Your parcel is waiting"),
    Flavour.SCAN: ("Scanned document", "Message from scanner", "Scan to email"),
    Flavour.THREAD: ("Re: invoice", "RE: payment confirmation", "Re: meeting notes",
                     "Re: documents you asked for", "RE: order details"),
}


def compose(rng: random.Random, template: BodyTemplate, flavour: Flavour, ts_s: float,
            mail_from: str, rcpts: list[str], received: list[str]) -> bytes:
    """A complete RFC 5322 message: trace and origin headers followed by the template."""
    date = format_datetime(datetime.fromtimestamp(ts_s, UTC))
    from_dom = mail_from.rpartition("@")[2] or "localhost"
    lines = [f"Received: {r}; {date}" for r in received]
    lines.append(f"Date: {date}")
    lines.append(f"From: <{mail_from}>" if mail_from else "From: MAILER-DAEMON")
    lines.append("To: " + ", ".join(f"<{r}>" for r in rcpts[:3]))
    lines.append(f"Subject: {rng.choice(_SUBJECTS[flavour])}")
    lines.append(f"Message-ID: <{rng.getrandbits(64):016x}.{rng.getrandbits(20)}@{from_dom}>")
    head = "\r\n".join(lines).encode("ascii", "replace") + b"\r\n"
    return head + template.mime_headers + b"\r\n" + template.body


def dot_stuff(message: bytes) -> bytes:
    """The message as sent after DATA: dot-stuffed, CRLF-terminated, ending in CRLF.CRLF."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"
