"""One simulated TCP connection as seen from a tap: handshake, segmented data, ACKs and teardown."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from sensor.decode.packet import TcpFlag
from sensor.simulate.frames import (
    OS_TRAITS,
    SMTP_PORT,
    Direction,
    OsProfile,
    make_direction,
    syn_options,
    ts_option,
    words_sum,
)

CLIENT = 0
SERVER = 1
MIN_RTO_US = 200_000  # Linux TCP_RTO_MIN; RFC 6298 section 2.4 suggests at least 1 s
SYN_RETRY_BASE_US = 1_000_000  # RFC 6298 section 2.1 initial RTO of 1 s, doubled per retry
INITIAL_CWND = 10  # RFC 6928 initial window in segments
TLS_RECORD_MAX = 16384  # RFC 8446 section 5.1 maximum plaintext per record
TLS_OVERHEAD = 17  # inner content type (1) + AEAD tag (16), RFC 8446 section 5.2
MIN_TAIL = 5  # bytes in a final segment: "\r\n.\r\n" (RFC 5321 section 4.1.1.4) stays whole
MAX_DELACK_US = 500_000  # RFC 9293 section 3.8.6.3: an ACK must not be delayed more than 0.5 s

_ACK = int(TcpFlag.ACK)
_PSH_ACK = int(TcpFlag.PSH | TcpFlag.ACK)
_FIN_ACK = int(TcpFlag.FIN | TcpFlag.ACK)
_RST_ACK = int(TcpFlag.RST | TcpFlag.ACK)
_SYN = int(TcpFlag.SYN)
_SYN_ACK = int(TcpFlag.SYN | TcpFlag.ACK)


class ConnectOutcome(StrEnum):
    """How the server side answers the client's SYN."""

    ESTABLISHED = "established"
    """SYN, SYN-ACK, ACK: the three-way handshake completes."""
    REFUSED = "refused"
    """The server answers the SYN with RST-ACK (nothing listening or firewalled with reset)."""
    UNANSWERED = "unanswered"
    """No answer: the client retransmits its SYN with exponential back-off and gives up."""


@dataclass(slots=True, frozen=True)
class Impairments:
    """Network imperfections applied to a connection (probabilities per send or per flight)."""

    retransmit: float = 0.0
    reorder: float = 0.0
    syn_retries: int = 2


class TcpFlow:
    """Builds the frames of one connection into `packets` as (timestamp µs, frame) pairs."""

    def __init__(
        self,
        rng: random.Random,
        start_us: int,
        client_ip: str,
        server_ip: str,
        client_os: OsProfile,
        server_os: OsProfile,
        rtt_client_us: int,
        rtt_server_us: int,
        client_hops: int,
        server_hops: int,
        vlan: int,
        impair: Impairments,
        server_port: int = SMTP_PORT,
    ) -> None:
        self.rng = rng
        self.packets: list[tuple[int, bytes]] = []
        self.now = start_us
        self.rt = (max(rtt_client_us, 20), max(rtt_server_us, 20))
        self.impair = impair
        self.tls = False
        ct, st = OS_TRAITS[client_os], OS_TRAITS[server_os]
        self.traits = (ct, st)
        sport = rng.randint(ct.port_lo, ct.port_hi)
        flow_label = rng.getrandbits(20)
        self.dirs: tuple[Direction, Direction] = (
            make_direction(client_ip, server_ip, sport, server_port, ct.ttl - client_hops, vlan,
                           rng.getrandbits(16), flow_label),
            make_direction(server_ip, client_ip, server_port, sport, st.ttl - server_hops, vlan,
                           rng.getrandbits(16), rng.getrandbits(20)),
        )
        self.nxt = [rng.getrandbits(32), rng.getrandbits(32)]
        self.ts_base = (rng.getrandbits(31), rng.getrandbits(31))
        self.use_ts = ct.timestamps and st.timestamps
        use_ws = ct.wscale is not None and st.wscale is not None
        self.win = (
            (ct.window >> ct.wscale) if use_ws and ct.wscale else min(ct.window, 65535),
            (st.window >> st.wscale) if use_ws and st.wscale else min(st.window, 65535),
        )
        mss = min(ct.mss, st.mss) - (12 if self.use_ts else 0)
        self.mss = mss
        self.pace_us = rng.randint(15, 120)
        self.unacked = [False, False]  # side has received data it has not yet acknowledged
        self.last_rx = [0, 0]  # when the side's peer last sent it data (tap time)

    # ----------------------------------------------------------------------------- helpers

    def _tsval(self, side: int, t: int) -> int:
        return (self.ts_base[side] + t // 1000) & 0xFFFFFFFF

    def _opts(self, side: int, t: int) -> bytes:
        if not self.use_ts:
            return b""
        other = 1 - side
        return ts_option(self._tsval(side, t), self._tsval(other, max(t - self.rt[side], 0)))

    def _emit(self, side: int, t: int, flags: int, seq: int, ack: int, payload: bytes = b"",
              psum: int = 0) -> None:
        d = self.dirs[side]
        frame = d.frame(seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, self.win[side],
                        self._opts(side, t), payload, psum)
        self.packets.append((t, frame))

    def _ack_pending(self, side: int, before: int) -> None:
        """Emit `side`'s delayed pure ACK if it would be sent before `before`."""
        if not self.unacked[side]:
            return
        delack = min(self.traits[side].delack_us, MAX_DELACK_US)
        t_ack = self.last_rx[side] + self.rt[side] + delack
        if t_ack < before:
            self._emit(side, t_ack, _ACK, self.nxt[side], self.nxt[1 - side])
            self.unacked[side] = False

    # ----------------------------------------------------------------------------- phases

    def connect(self, outcome: ConnectOutcome) -> bool:
        """The handshake (or its failure); True when the connection is established."""
        ct, st = self.traits
        t = self.now
        c_isn, s_isn = self.nxt
        c_ts = self._tsval(CLIENT, t) if ct.timestamps else None
        syn = syn_options(ct.mss, ct.sack, c_ts, 0, ct.wscale)
        cdir = self.dirs[CLIENT]
        if outcome is ConnectOutcome.UNANSWERED:
            backoff = SYN_RETRY_BASE_US
            for _ in range(self.impair.syn_retries + 1):
                self.packets.append((t, cdir.frame(c_isn, 0, _SYN, ct.window, syn, b"", 0)))
                c_ts2 = self._tsval(CLIENT, t + backoff) if ct.timestamps else None
                syn = syn_options(ct.mss, ct.sack, c_ts2, 0, ct.wscale)
                t += backoff
                backoff *= 2
            self.now = t
            return False
        self.packets.append((t, cdir.frame(c_isn, 0, _SYN, ct.window, syn, b"", 0)))
        t += self.rt[SERVER]
        if outcome is ConnectOutcome.REFUSED:
            rst = self.dirs[SERVER].frame(0, c_isn + 1, _RST_ACK, 0, b"", b"", 0)
            self.packets.append((t, rst))
            self.now = t
            return False
        s_ts = self._tsval(SERVER, t) if self.use_ts else None
        ws = st.wscale if ct.wscale is not None else None
        synack = syn_options(st.mss, st.sack and ct.sack, s_ts, c_ts or 0, ws)
        self.packets.append(
            (t, self.dirs[SERVER].frame(s_isn, c_isn + 1, _SYN_ACK, st.window, synack, b"", 0)))
        t += self.rt[CLIENT]
        self.nxt = [c_isn + 1, s_isn + 1]
        self._emit(CLIENT, t, _ACK, self.nxt[CLIENT], self.nxt[SERVER])
        self.now = t
        return True

    def send(self, side: int, data: bytes, wait_us: int, respond: bool = True) -> None:
        """`side` sends `data` after `wait_us`, counted from when it saw the peer's last packet
        (`respond`) or from its own last packet; TLS-wrapped once `tls` is on."""
        if self.tls:
            data = self._tls_wrap(data)
        t = self.now + (self.rt[side] if respond else 0) + wait_us
        other = 1 - side
        self._ack_pending(side, t)
        mss = self.mss
        n = len(data)
        if n <= mss:
            psum = words_sum(data)
            self._emit(side, t, _PSH_ACK, self.nxt[side], self.nxt[other], data, psum)
            if self.impair.retransmit and self.rng.random() < self.impair.retransmit:
                t += max(MIN_RTO_US, 2 * (self.rt[0] + self.rt[1]))
                self._emit(side, t, _PSH_ACK, self.nxt[side], self.nxt[other], data, psum)
            self.nxt[side] += n
            self.unacked[side] = False
            self.unacked[other] = True
            self.last_rx[other] = t
            self.now = t
            return
        self._bulk(side, data, t)

    def _bulk(self, side: int, data: bytes, t: int) -> None:
        other = 1 - side
        rtt = self.rt[0] + self.rt[1]
        mss = self.mss
        seq0 = self.nxt[side]
        ack = self.nxt[other]
        starts = list(range(0, len(data), mss))
        if len(starts) > 1 and len(data) - starts[-1] < MIN_TAIL:
            starts[-1] = len(data) - MIN_TAIL  # keep an end-of-data marker in one segment
        ends = [*starts[1:], len(data)]
        segs = [data[s:e] for s, e in zip(starts, ends, strict=True)]
        cwnd = INITIAL_CWND
        i = 0
        flight_start = t
        last_t = t
        rng = self.rng
        reorder = self.impair.reorder
        while i < len(segs):
            chunk = range(i, min(i + cwnd, len(segs)))
            times = [flight_start + k * self.pace_us for k in range(len(chunk))]
            if reorder and len(chunk) >= 2 and rng.random() < reorder:
                j = 2 * rng.randrange(len(chunk) // 2)
                times[j], times[j + 1] = times[j + 1], times[j]
            for k, idx in enumerate(chunk):
                seg = segs[idx]
                flags = _PSH_ACK if idx == len(segs) - 1 else _ACK
                self._emit(side, times[k], flags, seq0 + starts[idx], ack, seg, words_sum(seg))
                if k & 1:  # the receiver acknowledges every second full segment
                    t_ack = max(times[k], times[k - 1]) + self.rt[other]
                    self._emit(other, t_ack, _ACK, ack, seq0 + ends[idx])
            last_t = max(last_t, max(times))
            i += len(chunk)
            odd = len(chunk) & 1
            if odd and i < len(segs):  # a lone last segment of a flight is acked when delayed
                t_ack = times[-1] + self.rt[other] + self.traits[other].delack_us // 4
                self._emit(other, t_ack, _ACK, ack, seq0 + ends[i - 1])
            flight_start = max(last_t + self.pace_us, flight_start + rtt)
            cwnd *= 2
        self.nxt[side] = seq0 + len(data)
        self.unacked[side] = False
        self.unacked[other] = len(segs) % 2 == 1
        self.last_rx[other] = last_t
        self.now = last_t

    def _tls_wrap(self, data: bytes) -> bytes:
        out = bytearray()
        rb = self.rng.randbytes
        for i in range(0, len(data), TLS_RECORD_MAX):
            n = min(TLS_RECORD_MAX, len(data) - i) + TLS_OVERHEAD
            out += b"\x17\x03\x03" + n.to_bytes(2, "big") + rb(n)
        return bytes(out)

    def close(self, first: int, wait_us: int, respond: bool = True) -> None:
        """Orderly release: `first` sends FIN, the peer answers FIN-ACK, `first` ACKs."""
        other = 1 - first
        t = self.now + (self.rt[first] if respond else 0) + wait_us
        self.unacked[first] = False
        self._emit(first, t, _FIN_ACK, self.nxt[first], self.nxt[other])
        self.nxt[first] += 1
        self._ack_pending(other, t)
        t += self.rt[other] + self.rng.randint(50, 2000)
        self._emit(other, t, _FIN_ACK, self.nxt[other], self.nxt[first])
        self.nxt[other] += 1
        t += self.rt[first]
        self._emit(first, t, _ACK, self.nxt[first], self.nxt[other])
        self.now = t

    def reset(self, side: int, wait_us: int, respond: bool = True) -> None:
        """Abortive release: `side` sends RST-ACK."""
        t = self.now + (self.rt[side] if respond else 0) + wait_us
        self._emit(side, t, _RST_ACK, self.nxt[side], self.nxt[1 - side])
        self.now = t
