"""SMTP AUTH exchanges (RFC 4954): outcome and user name per mechanism, never the secret."""

from __future__ import annotations

import binascii
from enum import StrEnum
from typing import Final

from sensor.records import AuthAttempt

REPLY_AUTH_OK: Final = 235  # RFC 4954 6: authentication succeeded
REPLY_AUTH_CONTINUE: Final = 334  # RFC 4954 4: server challenge, a client response follows
ABORT_LINE: Final = b"*"  # RFC 4954 4: the client cancels the exchange
_MAX_USER: Final = 256  # characters of a user name kept
_B64_CHARS: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


class AuthOutcome(StrEnum):
    """How an AUTH exchange ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    TEMP_FAILURE = "temp_failure"
    ABORTED = "aborted"
    UNKNOWN = "unknown"


# Client response lines that follow the AUTH command, without / with an initial response.
# None: the mechanism's length is open (NTLM, GSSAPI...): base64-looking lines are taken.
_RESPONSES: dict[str, tuple[int, int]] = {
    "PLAIN": (1, 0),  # RFC 4616
    "LOGIN": (2, 1),  # draft-murchison-sasl-login: user name, then password
    "CRAM-MD5": (1, 1),  # RFC 2195
    "XOAUTH2": (1, 0),  # Google XOAUTH2
    "OAUTHBEARER": (1, 0),  # RFC 7628
    "SCRAM-SHA-1": (2, 1),  # RFC 5802: client-first, client-final
    "SCRAM-SHA-256": (2, 1),  # RFC 7677
    "ANONYMOUS": (1, 0),  # RFC 4505: trace string, no credentials
    "EXTERNAL": (1, 0),  # RFC 4422 appendix A
}


def looks_like_response(line: bytes) -> bool:
    """True for a line that can be a SASL response: base64 text or ``*`` (never a command)."""
    return line == ABORT_LINE or (bool(line) and all(b in _B64_CHARS for b in line)) or line == b""


def _b64(raw: bytes) -> bytes | None:
    """Decode base64 leniently; None when it is not base64 (the response is then ignored)."""
    if raw == b"=":  # RFC 4954 4: "=" is an empty initial response
        return b""
    try:
        return binascii.a2b_base64(raw)
    except binascii.Error:  # the documented signal of malformed base64
        return None


def _name(raw: bytes) -> str | None:
    name = raw.decode("utf-8", "replace")[:_MAX_USER]
    return name or None


def _kv(decoded: bytes, key: bytes, sep: bytes) -> str | None:
    """Value of ``key`` in a ``sep``-separated list of ``k=v`` fields (XOAUTH2, GS2 headers)."""
    for part in decoded.split(sep):
        if part.startswith(key):
            return _name(part[len(key) :])
    return None


def user_from_response(mechanism: str, index: int, response: bytes) -> str | None:
    """User name revealed by the ``index``-th client response (0 = initial), else None."""
    decoded = _b64(response)
    if decoded is None:
        return None
    if mechanism == "PLAIN" and index == 0:
        fields = decoded.split(b"\0")
        if len(fields) < 3:
            return None
        return _name(fields[1]) or _name(fields[0])
    if mechanism == "LOGIN" and index == 0:
        return _name(decoded)
    if mechanism == "CRAM-MD5" and index == 0:
        return _name(decoded.rsplit(b" ", 1)[0]) if b" " in decoded else None
    if mechanism == "XOAUTH2" and index == 0:
        return _kv(decoded, b"user=", b"\x01")
    if mechanism == "OAUTHBEARER" and index == 0:
        return _kv(decoded.split(b"\x01", 1)[0], b"a=", b",")
    if mechanism.startswith("SCRAM-") and index == 0:
        return _kv(decoded, b"n=", b",")
    return None


class AuthExchange:
    """An AUTH exchange in progress: how many client responses to expect and what they revealed.

    A plain class, not a dataclass: a brute force makes one per attempt, and a dataclass's
    generated ``__init__`` stays interpreted when the module is compiled.
    """

    __slots__ = (
        "aborted_by_client", "after_starttls", "code", "done", "expected", "index", "mechanism",
        "outcome", "ts", "user",
    )  # fmt: skip

    def __init__(self, ts: float, mechanism: str, expected: int | None) -> None:
        self.ts = ts
        self.mechanism = mechanism
        self.expected = expected  # client response lines still expected; None when open-ended
        self.index = 0  # index of the next client response (the initial response is 0)
        self.user: str | None = None
        self.outcome = AuthOutcome.UNKNOWN
        self.code = 0
        self.aborted_by_client = False
        self.done = False
        self.after_starttls = False  # seen in plaintext after a 220 to STARTTLS

    @classmethod
    def start(cls, ts: float, mechanism: str, initial: bytes | None) -> AuthExchange:
        """An exchange opened by ``AUTH mechanism [initial]``."""
        counts = _RESPONSES.get(mechanism)
        expected = None if counts is None else counts[initial is not None]
        ex = cls(ts, mechanism, expected)
        if initial is not None:
            ex.user = user_from_response(mechanism, 0, initial)
            ex.index = 1
        return ex

    @property
    def wants_response(self) -> bool:
        """True while the next client line is taken as a SASL response."""
        return not self.done and (self.expected is None or self.expected > 0)

    def response(self, line: bytes) -> None:
        """A client response line; only the user name is extracted from it."""
        if line == ABORT_LINE:
            self.aborted_by_client = True
            self.expected = 0
            return
        if self.user is None:
            self.user = user_from_response(self.mechanism, self.index, line)
        self.index += 1
        if self.expected is not None:
            self.expected -= 1

    def reply(self, code: int, loss: bool = False) -> None:
        """A server reply to the AUTH command or to a response; a non-334 reply ends it.

        ``loss``: bytes of the dialogue were lost (or its start was not seen), so the reply
        matched to the exchange may belong to a command in the hole: only 235 then says
        success, another 2xx (QUIT's 221, a 250) leaves the outcome unknown.
        """
        if code == REPLY_AUTH_CONTINUE or self.done:
            return
        self.code = code
        self.done = True
        self.expected = 0
        if self.aborted_by_client:
            self.outcome = AuthOutcome.ABORTED
        elif code // 100 == 2 and loss and code != REPLY_AUTH_OK:
            self.outcome = AuthOutcome.UNKNOWN
        elif code // 100 == 2:
            self.outcome = AuthOutcome.SUCCESS
        elif code // 100 == 4:
            self.outcome = AuthOutcome.TEMP_FAILURE
        elif code // 100 == 5:
            self.outcome = AuthOutcome.FAILURE

    def record(self) -> AuthAttempt:
        """The emitted record (outcome ``unknown`` if no final reply was seen)."""
        outcome = self.outcome
        if not self.done and self.aborted_by_client:
            outcome = AuthOutcome.ABORTED
        return AuthAttempt(self.ts, self.mechanism, outcome.value, self.code, self.user,
                           self.after_starttls)
