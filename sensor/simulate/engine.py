"""Runs a scenario: allocates hosts, plays every session in time order and writes pcap, labels
and ground truth."""

from __future__ import annotations

import csv
import heapq
import ipaddress
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sensor.capture.writer import PcapWriter
from sensor.errors import OutputError
from sensor.simulate.actors import ActorRuntime, Server, allocate_hosts, site_servers
from sensor.simulate.dialogue import Player
from sensor.simulate.frames import OS_TRAITS
from sensor.simulate.scenario import merge
from sensor.simulate.spec import LABEL_KINDS, MALICIOUS_KINDS, ActorKind, Scenario, Target
from sensor.simulate.tcpflow import TcpFlow
from sensor.simulate.timing import session_times

LABEL_COLUMNS = ("ip", "label", "kind", "attack_start", "attack_end", "role")
_US = 1_000_000


@dataclass(slots=True)
class HostLabel:
    """Ground truth about one address, accumulated while its sessions are generated."""

    ip: str
    kind: str
    malicious: bool
    role: str
    first_us: int | None = None
    last_us: int | None = None

    def seen(self, t_us: int) -> None:
        """Extend the host's active period to include `t_us`."""
        if self.first_us is None or t_us < self.first_us:
            self.first_us = t_us
        if self.last_us is None or t_us > self.last_us:
            self.last_us = t_us


@dataclass(slots=True)
class SimulationResult:
    """What was written, with the generator's own counts per actor kind."""

    pcap: str
    labels: str
    truth: str
    packets: int
    sessions: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def simulate(scenarios: list[Scenario], out: str, seed: int = 0,
             duration_s: float | None = None, start_epoch: float | None = None) -> SimulationResult:
    """Generate `out` (pcap), `out`.labels.csv and `out`.truth.json from merged scenarios."""
    sc = merge(scenarios)
    if duration_s is not None:
        sc = replace(sc, duration_s=duration_s)
    if start_epoch is not None:
        sc = replace(sc, start_epoch=start_epoch)
    site = sc.site
    ours = site_servers(site)
    used: set[str] = {s.ip for group in ours.values() for s in group}
    labels: dict[str, HostLabel] = {}
    for s in ours[Target.MX] + ours[Target.RELAY] + ours[Target.OPEN_RELAY]:
        labels.setdefault(s.ip, HostLabel(s.ip, "mx", False, "server"))
    alloc_rng = random.Random(f"{seed}/hosts")
    runtimes: list[ActorRuntime] = []
    schedule: list[tuple[int, int, int, int]] = []
    for ai, actor in enumerate(sc.actors):
        hosts = allocate_hosts(actor, site, used, alloc_rng)
        rt = ActorRuntime(actor, site, hosts, seed, ours)
        runtimes.append(rt)
        malicious = actor.kind in MALICIOUS_KINDS
        for hi, ip in enumerate(hosts):
            labels[ip] = HostLabel(ip, LABEL_KINDS.get(actor.kind, actor.kind.value), malicious,
                                   "attacker" if malicious else "client")
            trng = random.Random(f"{seed}/timing/{actor.name}/{hi}")
            for si, t in enumerate(session_times(trng, actor.timing, sc.duration_s,
                                                 sc.start_epoch)):
                schedule.append((t, ai, hi, si))
    schedule.sort()
    counts: dict[str, Counter[str]] = {}
    t0 = round(sc.start_epoch * _US)
    base = Path(out)
    stem = str(base.with_suffix("")) if base.suffix == ".pcap" else str(base)
    labels_path, truth_path = stem + ".labels.csv", stem + ".truth.json"
    heap: list[tuple[int, int, bytes]] = []
    order = 0
    packets = 0
    try:
        writer = PcapWriter(out)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write: {exc}") from None
    with writer:
        for t, ai, hi, si in schedule:
            start = t0 + t
            while heap and heap[0][0] < start:
                ts, _, frame = heapq.heappop(heap)
                writer.write_raw(ts // _US, ts % _US, frame)
                packets += 1
            rt = runtimes[ai]
            rng = random.Random(f"{seed}/s/{rt.actor.name}/{hi}/{si}")
            plan, server = rt.plan(hi, si, start / _US, rng)
            flow = _flow(rt, hi, server, start, rng)
            Player(flow, plan, rng, counts.setdefault(rt.actor.kind.value, Counter())).play()
            flow.packets.sort(key=lambda p: p[0])
            end = flow.packets[-1][0] if flow.packets else start
            label = labels[rt.hosts[hi]]
            label.seen(start)
            label.seen(end)
            if rt.actor.kind is ActorKind.RELAY_ABUSE and plan.txns:
                victim = labels[server.ip]
                victim.kind, victim.malicious, victim.role = "open_relay", True, "victim"
                victim.seen(start)
                victim.seen(end)
            for ts, frame in flow.packets:
                heapq.heappush(heap, (ts, order, frame))
                order += 1
        while heap:
            ts, _, frame = heapq.heappop(heap)
            writer.write_raw(ts // _US, ts % _US, frame)
            packets += 1
    _write_labels(labels_path, labels)
    totals: Counter[str] = Counter()
    for c in counts.values():
        totals.update(c)
    truth = {
        "scenario": sc.name, "seed": seed, "start_epoch": sc.start_epoch,
        "duration_s": sc.duration_s, "packets": packets,
        "site": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(site).items()},
        "authorised_senders": sorted({ip for rt in runtimes for ip in rt.hosts
                                      if rt.actor.kind in (ActorKind.OUTBOUND_MTA,)}),
        "counts": {k: dict(sorted(v.items())) for k, v in sorted(counts.items())},
        "totals": dict(sorted(totals.items())),
    }
    try:
        Path(truth_path).write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{truth_path}: cannot write: {exc}") from None
    return SimulationResult(out, labels_path, truth_path, packets, len(schedule),
                            {k: dict(v) for k, v in counts.items()})


def _flow(rt: ActorRuntime, hi: int, server: Server, start_us: int,
          rng: random.Random) -> TcpFlow:
    a = rt.actor
    lo, hi_ms = a.rtt_ms
    rtt_client = int(rng.uniform(lo, hi_ms) * 1000)
    if server.internal:
        rtt_server, server_hops = rng.randint(80, 900), 1
    else:
        rtt_server, server_hops = rng.randint(12_000, 160_000), rng.randint(8, 20)
    return TcpFlow(rng, start_us, rt.hosts[hi], server.ip, a.os, server.os, rtt_client,
                   rtt_server, min(rt.hops[hi], OS_TRAITS[a.os].ttl - 1),
                   min(server_hops, OS_TRAITS[server.os].ttl - 1), a.vlan, rt.impair,
                   server.port)


def _iso(t_us: int | None) -> str:
    if t_us is None:
        return ""
    return f"{t_us / _US:.6f}"


def _write_labels(path: str, labels: dict[str, HostLabel]) -> None:
    def key(lab: HostLabel) -> tuple[int, int]:
        addr = ipaddress.ip_address(lab.ip)
        return (addr.version, int(addr))

    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(LABEL_COLUMNS)
            for lab in sorted(labels.values(), key=key):
                attack = lab.malicious
                w.writerow((lab.ip, "malicious" if attack else "benign", lab.kind,
                            _iso(lab.first_us) if attack else "",
                            _iso(lab.last_us) if attack else "", lab.role))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc}") from None
