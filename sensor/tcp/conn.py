"""One TCP connection: both directions, Zeek-style endpoint states and history, its ConnRecord."""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Callable, Hashable
from enum import IntEnum, StrEnum
from typing import Final

from sensor.decode.packet import TcpFlag, tcp_options
from sensor.records import ConnRecord
from sensor.tcp.stream import Budget, EndpointState, Half, StreamSink

_c_uid_key: Callable[[float, str, int, str, int], bytes] | None
_c_ip4_text: Callable[[bytes], str] | None
try:  # the C writers (sensor/tcp/_ident.c), built beside the compiled modules
    from sensor.tcp import _ident

    _c_uid_key = _ident.uid_key
    _c_ip4_text = _ident.ip4_text
except ImportError:  # pure-Python install: the Python readings, the same text, slower
    _c_uid_key = None
    _c_ip4_text = None
NATIVE_IDENT: Final = _c_uid_key is not None

FIN: Final = int(TcpFlag.FIN)
SYN: Final = int(TcpFlag.SYN)
RST: Final = int(TcpFlag.RST)
ACK: Final = int(TcpFlag.ACK)


class Phase(IntEnum):
    """Life of a connection in the table."""

    OPEN = 0
    """Carrying data; the fast path applies."""
    CLOSING = 1
    """Both FINs seen: waiting for missing bytes and the last ACK, at most the linger time."""
    CLOSED = 2
    """Ended by FIN or RST, buffers flushed; lingers to count trailing packets, then emitted."""


class EndReason(StrEnum):
    """Why a connection record was emitted."""

    FIN = "fin"
    RST = "rst"
    TIMEOUT = "timeout"
    EVICTED = "evicted"
    EOF = "eof"


# enum members as module constants: a class attribute lookup per comparison is measurable here
_INACTIVE: Final = EndpointState.INACTIVE
_SYN_SENT: Final = EndpointState.SYN_SENT
_SYN_ACK_SENT: Final = EndpointState.SYN_ACK_SENT
_PARTIAL: Final = EndpointState.PARTIAL
_ESTABLISHED: Final = EndpointState.ESTABLISHED
_CLOSED: Final = EndpointState.CLOSED
_RESET: Final = EndpointState.RESET
_OPEN: Final = Phase.OPEN
_CLOSING: Final = Phase.CLOSING
_CLOSED_PHASE: Final = Phase.CLOSED

# Zeek: originator SYN then RST, no responder reply
_RSTOS0: Final = re.compile(r"\^?S[^HAFGIQ]*R")

_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_UID_CHARS: Final = 16  # plus the leading "C": 17 characters, like Zeek's uids
# one hash byte -> one character
_UID_TABLE: Final = bytes(ord(_BASE62[b % 62]) for b in range(256))


def make_uid(ts: float, cip: str, cport: int, sip: str, sport: int) -> str:
    """Deterministic Zeek-like uid: "C" and 16 base62 characters of a hash of ts and 4-tuple."""
    key = _c_uid_key(ts, cip, cport, sip, sport) if _c_uid_key is not None else uid_key_py(
        ts, cip, cport, sip, sport)  # fmt: skip
    digest = hashlib.blake2b(key, digest_size=_UID_CHARS)
    return "C" + digest.digest().translate(_UID_TABLE).decode()


def uid_key_py(ts: float, cip: str, cport: int, sip: str, sport: int) -> bytes:
    """What make_uid hashes: f"{ts!r}|{cip}|{cport}|{sip}|{sport}", encoded (the reading of
    sensor/tcp/_ident.c's uid_key, which writes repr(ts) without its cost)."""
    # joined: compiled, the f-string costs twice as much (0.6 us more per connection)
    return "|".join((repr(ts), cip, str(cport), sip, str(sport))).encode()


IP_MEMO_ENTRIES: Final = 8192  # addresses remembered as text (servers, returning clients)
_ip_memo: Final[dict[bytes, str]] = {}


def ip_text(addr: bytes) -> str:
    """`ip_text_of(addr)`, remembered for the addresses seen lately (a live capture hands the
    same bytes object for an address it saw lately: the lookup finds its hash cached)."""
    text = _ip_memo.get(addr)
    if text is None:
        text = ip_text_of(addr)
        if len(_ip_memo) >= IP_MEMO_ENTRIES:
            _ip_memo.clear()
        _ip_memo[addr] = text
    return text


def ip_text_of(addr: bytes) -> str:
    """A packed IPv4 or IPv6 address as text (hex for anything else)."""
    if len(addr) == 4:  # inet_ntop's text, built without its call (a third of the cost)
        if _c_ip4_text is not None:
            return _c_ip4_text(addr)
        return f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}"
    if len(addr) == 16:
        return socket.inet_ntop(socket.AF_INET6, addr)
    return addr.hex()


class Connection:
    """State of one 4-tuple: the client's and server's Half, timing, handshake facts, history."""

    __slots__ = (
        "_cip",
        "_sip",
        "_uid",
        "client",
        "client_addr",
        "client_port",
        "closing_ts",
        "end_reason",
        "end_ts",
        "handler",
        "heap_deadline",
        "heap_index",
        "heap_tick",
        "hist",
        "keys",
        "last_ts",
        "phase",
        "removed",
        "rtt",
        "rtt_pending",
        "server",
        "server_addr",
        "server_port",
        "syn_mss",
        "syn_ts",
        "syn_ttl",
        "syn_window",
        "syn_wscale",
        "synack_seen",
        "ts",
        "wired",
    )

    def __init__(
        self,
        ts: float,
        client: tuple[bytes, int],
        server: tuple[bytes, int],
        budget: Budget,
    ) -> None:
        self._uid = ""  # made when first asked for: most flows of a flood never need it early
        self._cip = self._sip = ""
        self.ts = ts
        self.last_ts = ts
        self.end_ts = ts
        self.client_addr, self.client_port = client  # packed addresses, as decoded
        self.server_addr, self.server_port = server
        self.wired = False  # the handler factory was asked (at the first payload byte)
        self.hist: list[str] = []
        self.client = Half(self, True, budget)
        self.server = Half(self, False, budget)
        self.handler: StreamSink | None = None
        self.keys: tuple[Hashable, ...] = ()  # reassembler.flow_key, both directions
        self.phase = Phase.OPEN
        self.closing_ts = 0.0
        self.end_reason = EndReason.EOF
        self.heap_deadline = 0.0  # sensor.tcp.deadlines: its timer
        self.heap_index = -1  # its place in the timers' heap, -1 when out of it
        self.heap_tick = 0
        self.removed = False
        self.syn_ts: float | None = None
        self.synack_seen = False
        self.rtt: float | None = None
        self.rtt_pending = False
        self.syn_ttl: int | None = None
        self.syn_window: int | None = None
        self.syn_mss: int | None = None
        self.syn_wscale: int | None = None

    def idents(self) -> tuple[str, str, str]:
        """The uid (see `make_uid`) and the client's and server's addresses as text."""
        if not self._uid:
            cip = self._cip = ip_text(self.client_addr)
            sip = self._sip = ip_text(self.server_addr)
            self._uid = make_uid(self.ts, cip, self.client_port, sip, self.server_port)
        return self._uid, self._cip, self._sip

    @property
    def uid(self) -> str:
        """The connection's uid."""
        return self._uid if self._uid else self.idents()[0]

    def peer(self, h: Half) -> Half:
        """The other direction."""
        return self.server if h is self.client else self.client

    def refresh_fast(self) -> None:
        """Recompute which packets of each direction may take the reassembler's fast path.

        A fast packet (ACK set, SYN/FIN/RST clear, window open, in order, nothing buffered)
        changes no endpoint state: its sender already sent a SYN, data or a FIN, so it left
        INACTIVE. When its history letter or the handshake RTT is still to be noted, the fast
        path calls `first_fast` first.
        """
        c, s = self.client, self.server
        if self.phase != _OPEN:
            c.fast = s.fast = False
            return
        buffered = bool(c.starts or s.starts)  # then ACKs may reveal capture loss: slow path
        c.fast = not buffered and c.next_seq >= 0
        s.fast = not buffered and s.next_seq >= 0
        rtt = self.rtt_pending  # ends at the client's first ACK
        c.note_a = rtt or "a" not in c.once
        c.note_d = rtt or "d" not in c.once
        s.note_a = "a" not in s.once
        s.note_d = "d" not in s.once

    def first_fast(self, h: Half, ts: float, letter: str) -> None:
        """Note what a fast-path packet of `h` adds to the history ("a" or "d") and the RTT."""
        h.letter(letter)
        if h is self.client:
            self._client_acked(ts)
        self.refresh_fast()

    def _client_acked(self, ts: float) -> None:
        """The client's first ACK after its SYN ends the handshake: the RTT, if a SYN-ACK came."""
        if self.rtt_pending:
            self.rtt_pending = False
            if self.synack_seen and self.syn_ts is not None:
                self.rtt = ts - self.syn_ts

    # ------------------------------------------------------------------------------------
    # per-packet bookkeeping outside the fast path

    def control(
        self,
        h: Half,
        ts: float,
        seq: int,
        flags: int,
        window: int,
        ttl: int,
        options: bytes,
        n: int,
    ) -> None:
        """History letters, endpoint state machine and handshake facts for one packet."""
        syn = flags & SYN
        fin = flags & FIN
        rst = flags & RST
        ack = flags & ACK
        is_client = h is self.client
        if syn:
            h.flag_letter("h" if ack else "s", seq)
            if fin or rst:
                h.letter("q")
            if not ack and is_client and self.syn_ts is None:
                self.syn_ts = ts
                self.rtt_pending = True
                self.syn_ttl = ttl
                self.syn_window = window
                self.syn_mss, self.syn_wscale, _, _ = tcp_options(options)
            elif ack and not is_client:
                self.synack_seen = True
        elif ack and is_client:
            self._client_acked(ts)
        if n:
            h.letter("d")
        elif ack and not (syn or fin or rst):
            h.letter("a")
        if fin:
            h.flag_letter("f", seq)
        if rst:
            h.flag_letter("r", seq)
            if fin and not syn:
                h.letter("i")
        if window == 0 and not rst:
            h.count_letter("w")
        self._update_state(h, self.peer(h), is_client, syn, fin, rst, ack, n)

    def _update_state(
        self, h: Half, peer: Half, is_client: bool, syn: int, fin: int, rst: int, ack: int, n: int
    ) -> None:
        """Zeek's endpoint transitions (TCPSessionAdapter Update*State), client = originator."""
        st = h.state
        if st == _INACTIVE:
            if syn:
                if is_client:
                    h.set_state(_SYN_ACK_SENT if ack else _SYN_SENT)
                else:
                    if peer.state in (_SYN_SENT, _SYN_ACK_SENT):
                        peer.set_state(_ESTABLISHED)
                    h.set_state(_ESTABLISHED)
            if fin:
                h.set_state(_CLOSED)
            if rst:
                h.set_state(_RESET)
            if h.state == _INACTIVE:
                if not is_client and n == 0 and peer.state == _SYN_SENT:
                    pass  # an ACK of the SYN before the SYN-ACK: not a partial connection
                elif ack and peer.state == _ESTABLISHED:
                    h.set_state(_ESTABLISHED)
                else:
                    h.set_state(_PARTIAL)
        elif st in (_SYN_SENT, _SYN_ACK_SENT):
            if fin:
                h.set_state(_CLOSED)
            if rst:
                h.set_state(_RESET)
        elif st in (_ESTABLISHED, _PARTIAL):
            if syn and st == _PARTIAL and peer.state == _INACTIVE and not ack:
                h.set_state(_SYN_SENT)
            if fin and not rst:
                h.set_state(_CLOSED)
                if peer.state == _RESET and peer.prev_state == _CLOSED:
                    peer.set_state(_CLOSED)  # FIN then RST from the peer: normal close
            if rst:
                h.set_state(_RESET)
        elif st == _CLOSED:
            if rst and peer.state != _CLOSED:
                h.set_state(_RESET)

    # ------------------------------------------------------------------------------------
    # the record

    def zeek_state(self) -> str:
        """Zeek's conn_state (base/protocols/conn/main.zeek) from both endpoint states."""
        os_, rs = self.client.state, self.server.state
        o_inactive = os_ in (_INACTIVE, _PARTIAL)
        r_inactive = rs in (_INACTIVE, _PARTIAL)
        if rs == _RESET:
            if os_ in (_SYN_SENT, _SYN_ACK_SENT) or (
                os_ == _RESET and self.client.delivered == 0 and self.server.delivered == 0
            ):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os_ == _RESET:
            if r_inactive:
                return "RSTOS0" if _RSTOS0.match("".join(self.hist)) else "OTH"
            return "RSTO"
        if rs == _CLOSED and os_ == _CLOSED:
            return "SF"
        if os_ == _CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == _CLOSED:
            return "SHR" if o_inactive else "S3"
        if os_ == _SYN_SENT and rs == _INACTIVE:
            return "S0"
        if os_ == _ESTABLISHED and rs == _ESTABLISHED:
            return "S1"
        return "OTH"

    def record(self) -> ConnRecord:
        """The conn.log-like record; call after both directions were flushed."""
        c, s = self.client, self.server
        end = self.end_ts if self.phase == _CLOSED_PHASE else self.last_ts
        uid, cip, sip = self.idents()
        return ConnRecord(
            uid=uid,
            ts=self.ts,
            client_ip=cip,
            client_port=self.client_port,
            server_ip=sip,
            server_port=self.server_port,
            duration_s=max(end - self.ts, 0.0),
            state=self.zeek_state(),
            history="".join(self.hist),
            bytes_to_server=c.delivered - c.gap_bytes,
            bytes_to_client=s.delivered - s.gap_bytes,
            pkts_to_server=c.pkts,
            pkts_to_client=s.pkts,
            wire_bytes_to_server=c.wire,
            wire_bytes_to_client=s.wire,
            retrans_segments=c.retrans + s.retrans,
            ooo_segments=c.ooo_segs + s.ooo_segs,
            gaps=c.gaps + s.gaps,
            gap_bytes=c.gap_bytes + s.gap_bytes,
            conflicting_overlaps=c.conflicts + s.conflicts,
            rtt_s=self.rtt,
            syn_ttl=self.syn_ttl,
            syn_window=self.syn_window,
            syn_mss=self.syn_mss,
            syn_wscale=self.syn_wscale,
            end_reason=str(self.end_reason),
        )
