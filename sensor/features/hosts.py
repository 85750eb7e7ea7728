"""The bounded per-host table: updates windows once per record and snapshots HostFeatures."""

from __future__ import annotations

import struct
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from sensor.config import Config
from sensor.features.extract import SiteView, conn_event, session_events, spoke, unattributable
from sensor.features.schema import AUTH_STATE_BIT, LOSS_HIDDEN, SUM_INDEX
from sensor.features.window import ONE, Adds, HostWindows, Keys
from sensor.records import ConnRecord, HostFeatures, SmtpSession

MAX_USER_FAILURES: Final = 64  # AUTH failure times remembered per user name


class HostState(HostWindows):
    """Long-lived state of one host: its windows (inherited, one object per host) and scalars."""

    __slots__ = ("burst_rcpts_after", "fails_before", "first_seen", "in_home_net", "ip",
                 "last_start", "mail_server", "msgs_after", "now", "own_fails_before",
                 "rcpts_after", "sessions", "success_ts")

    def __init__(self, ip: str, lengths: tuple[float, ...], max_events: int, in_home_net: bool,
                 mail_server: bool, now: float) -> None:
        HostWindows.__init__(self, lengths, max_events)
        self.ip = ip
        self.in_home_net = in_home_net
        self.mail_server = mail_server
        self.first_seen = now
        self.now = now
        self.sessions: tuple[str, ...] = ()  # the newest session uids (bounds.sample_sessions)
        self.last_start = 0.0  # start of the host's previous session, for inter-arrival times
        self.success_ts = 0.0  # last AUTH success that followed failures
        self.fails_before = 0.0
        self.rcpts_after = 0.0
        self.msgs_after = 0.0
        self.own_fails_before = 0.0  # of fails_before, those by this client itself
        self.burst_rcpts_after = 0.0  # of rcpts_after, those within the medium window


@dataclass(slots=True)
class TableStats:
    """Counters of the feature stage."""

    hosts: int = 0
    evicted: int = 0
    events_dropped: int = 0
    users_evicted: int = 0
    expired: int = 0  # hosts idle for bounds.host_idle_s of packet time, dropped
    records: int = 0
    ignored_sessions: int = 0  # sessions without any SMTP byte (their ConnRecord counts)
    loss_failed_conns: int = 0  # failed connections that showed capture loss: the model's view
    # leaves them out (sensor.features.extract.loss_failed)
    unattributed_conns: int = 0  # no payload, no SYN, SYN-ACK or RST: not counted
    # (sensor.features.extract.unattributable)


@dataclass(slots=True)
class _Users:
    """AUTH failure times per user name, across clients (LRU-bounded)."""

    max_users: int
    times: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    evicted: int = 0

    def fail(self, user: str, ts: float) -> None:
        q = self.times.get(user)
        if q is None:
            if len(self.times) >= self.max_users:
                self.times.popitem(last=False)
                self.evicted += 1
            q = self.times[user] = deque(maxlen=MAX_USER_FAILURES)
        else:
            self.times.move_to_end(user)
        q.append(ts)

    def failures_since(self, user: str, since: float) -> int:
        q = self.times.get(user)
        return sum(1 for t in q if t >= since) if q else 0


_BIT: Final = tuple(1 << i for i in range(len(SUM_INDEX)))
_IA_N: Final = SUM_INDEX["ia_n"]
_IA_SUM: Final = SUM_INDEX["ia_sum"]
_IA_SUMSQ: Final = SUM_INDEX["ia_sumsq"]
_LOSS_BITS: Final = sum(1 << SUM_INDEX[name] for name in LOSS_HIDDEN.values())
_SCALARS: Final = struct.Struct("<7d")  # the HOST_SCALARS of a batch row, as float64


def _mask(adds: Adds) -> int:
    mask = 0
    for idx, _ in adds:
        mask |= _BIT[idx]
    return mask


HOST_SWEEP_S: Final = 60.0
"""Packet time between two sweeps of the host table for idle hosts."""


class HostTable:
    """Per-host sliding-window features, bounded by an LRU of hosts (evictions counted)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.view = SiteView.of(config.site)
        w = config.windows
        self._lengths = (float(w.short_s), float(w.medium_s), float(w.long_s))
        self._bounds = config.bounds
        self._hosts: OrderedDict[str, HostState] = OrderedDict()
        self._users = _Users(config.bounds.max_users)
        self.stats = TableStats()
        self.owns: Callable[[str], bool] | None = None
        """Sharded detection (`sensor detect --shard`): the hosts this table keeps; a session
        then adds to its client and its server only where they are ours (None: every host)."""
        self._next_sweep = float("-inf")

    def _expire_idle(self, now: float) -> None:
        """Drop the hosts idle for bounds.host_idle_s of packet time (their windows are empty
        long before: the longest window is shorter), least recently seen first."""
        self._next_sweep = now + HOST_SWEEP_S
        cutoff = now - self._bounds.host_idle_s
        hosts = self._hosts
        while hosts:
            ip, st = next(iter(hosts.items()))
            if st.now > cutoff:
                break
            del hosts[ip]
            self.stats.expired += 1
            self.stats.events_dropped += st.dropped

    def _host(self, ip: str, now: float) -> HostState:
        if now >= self._next_sweep:
            self._expire_idle(now)
        st = self._hosts.get(ip)
        if st is not None:
            self._hosts.move_to_end(ip)
            if now > st.now:
                st.now = now
            return st
        if len(self._hosts) >= self._bounds.max_hosts:
            _, old = self._hosts.popitem(last=False)
            self.stats.evicted += 1
            self.stats.events_dropped += old.dropped
        home, mta = self.view.roles(ip)
        st = HostState(ip, self._lengths, self._bounds.max_events_per_host, home, mta, now)
        self._hosts[ip] = st
        self.stats.hosts += 1
        return st

    def _add(self, st: HostState, event: tuple[Adds, Keys]) -> int:
        st.advance(st.now)
        st.add(st.now, event[0], event[1])
        return _mask(event[0])

    def on_conn(self, rec: ConnRecord) -> list[tuple[HostState, int]]:
        """Account one connection; returns (host, change mask) of the hosts it changed."""
        self.stats.records += 1
        if unattributable(rec):
            self.stats.unattributed_conns += 1
            return []
        now = rec.ts + rec.duration_s
        st = self._host(rec.client_ip, now)
        adds, keys = conn_event(rec, self.view.roles(rec.server_ip)[0])
        st.advance(st.now)
        st.add(st.now, adds, keys)
        mask = _mask(adds)
        if mask & _LOSS_BITS:
            self.stats.loss_failed_conns += 1
        return [(st, mask)]

    def on_session(self, s: SmtpSession) -> list[tuple[HostState, int]]:
        """Account one SMTP session; returns (host, change mask) of the hosts it changed.

        A bit of the mask is set for every running sum the session added to
        (sensor.features.schema.change_mask), and AUTH_STATE_BIT when the
        failures-then-success state moved: rules re-run only when their inputs grew."""
        self.stats.records += 1
        if not spoke(s):
            self.stats.ignored_sessions += 1
            return []
        now = s.ts + s.duration_s
        ev = session_events(s, self.view)
        owns = self.owns
        if owns is not None and not owns(s.client_ip):  # only its server is ours
            if ev.server is None or not owns(s.server_ip):
                return []
            srv = self._host(s.server_ip, now)
            changed = [(srv, self._add(srv, ev.server))]
            self._sample(srv, s.uid)
            return changed
        st = self._host(s.client_ip, now)
        st.advance(st.now)
        adds = ev.client[0]
        if st.last_start and s.ts > st.last_start:
            gap = s.ts - st.last_start
            adds += (ONE[_IA_N], (_IA_SUM, gap), (_IA_SUMSQ, gap * gap))
        st.last_start = max(st.last_start, s.ts)
        moved = self._auth_state(st, s, ev.authenticated)
        st.add(st.now, adds, ev.client[1])
        self._sample(st, s.uid)
        changed = [(st, _mask(adds) | (AUTH_STATE_BIT if moved else 0))]
        if ev.server is not None and (owns is None or owns(s.server_ip)):
            srv = self._host(s.server_ip, now)
            changed.append((srv, self._add(srv, ev.server)))
            self._sample(srv, s.uid)
        return changed

    def _sample(self, st: HostState, uid: str) -> None:
        keep, kept = self._bounds.sample_sessions, st.sessions
        if len(kept) < keep:  # one tuple per session until the sample is full
            st.sessions = (*kept, uid)
        elif keep > 0:
            st.sessions = (*kept[len(kept) - keep + 1:], uid)

    def _auth_state(self, st: HostState, s: SmtpSession, authed: bool) -> bool:
        """Failures (by this client or for the user) then a success, then what was sent after.

        The client's own failures are kept apart from those for the user by other clients: a
        benign client logging in as a user someone else was guessing is not the guesser."""
        long_s, burst_s = self._lengths[-1], self._lengths[1]
        if st.success_ts and st.now - st.success_ts > long_s:
            st.success_ts = st.fails_before = st.rcpts_after = st.msgs_after = 0.0
            st.own_fails_before = st.burst_rcpts_after = 0.0
        if not s.auth and not st.success_ts:
            return False
        fails = st.total(2, "auth_failures")
        for att in s.auth:
            if att.outcome == "failure":
                fails += 1
                if att.user:
                    self._users.fail(att.user.lower(), att.ts)
            elif att.outcome == "success":
                before = fails
                if att.user:
                    before = max(before, self._users.failures_since(att.user.lower(),
                                                                    att.ts - long_s))
                if before > 0:
                    st.success_ts, st.fails_before = att.ts, float(before)
                    st.own_fails_before = float(fails)
                    st.rcpts_after = st.msgs_after = st.burst_rcpts_after = 0.0
        moved = False
        if authed and st.success_ts:
            for tx in s.transactions:
                if tx.ts >= st.success_ts:
                    st.rcpts_after += len(tx.rcpt_to)
                    st.msgs_after += tx.data_mode is not None
                    if tx.ts - st.success_ts <= burst_s:
                        st.burst_rcpts_after += len(tx.rcpt_to)
                    moved = True
        self.stats.users_evicted = self._users.evicted
        return moved

    def features(self, ip: str) -> HostFeatures | None:
        """A snapshot of a host's features, or None when it is not (or no longer) in the table."""
        st = self._hosts.get(ip)
        return None if st is None else self.snapshot(st)

    @staticmethod
    def snapshot(st: HostState) -> HostFeatures:
        """A snapshot of one host's features."""
        w, now = st, st.now
        return HostFeatures(
            st.ip, now, st.in_home_net, st.mail_server, st.first_seen,
            w.snapshot(0), w.snapshot(1), w.snapshot(2),
            w.start(0, now), w.start(1, now), w.start(2, now),
            st.fails_before, st.rcpts_after, st.msgs_after, st.success_ts, st.sessions,
            st.own_fails_before, st.burst_rcpts_after)

    @staticmethod
    def vector(st: HostState) -> list[float]:
        """The host's features as the model sees them, floats in FEATURE_NAMES order: as
        sensor.features.schema.vector(snapshot(st)) gives them but without building the snapshot
        (the model scores every host a record changes), and without the failed connections that
        show capture loss (sensor.features.window.loss_view; the rules count them)."""
        out = [1.0 if st.in_home_net else 0.0, 1.0 if st.mail_server else 0.0, st.fails_before,
               st.rcpts_after, st.msgs_after, st.own_fails_before, st.burst_rcpts_after]
        out.extend(st.values(0, True))
        out.extend(st.values(1, True))
        out.extend(st.values(2, True))
        return out

    @staticmethod
    def raw(st: HostState, floats: bytearray, ints: bytearray) -> None:
        """Append the host's scalars and window state to the buffers of a batch of rows, from
        which sensor.features.batch.vectors computes what `vector` gives for each host."""
        floats += _SCALARS.pack(1.0 if st.in_home_net else 0.0, 1.0 if st.mail_server else 0.0,
                                st.fails_before, st.rcpts_after, st.msgs_after,
                                st.own_fails_before, st.burst_rcpts_after)
        st.raw_into(floats, ints)

    def release(self) -> None:
        """Forget every host and user at once (end of input); the counters stay."""
        self.stats.events_dropped = self.dropped_events()
        self._hosts = OrderedDict()
        self._users = _Users(self._bounds.max_users, evicted=self._users.evicted)
        self.view = SiteView.of(self.config.site)

    def __len__(self) -> int:
        return len(self._hosts)

    def dropped_events(self) -> int:
        """Window events dropped by max_events_per_host, evicted hosts included."""
        return self.stats.events_dropped + sum(h.dropped for h in self._hosts.values())
