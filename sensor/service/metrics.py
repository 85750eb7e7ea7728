"""The Prometheus endpoint of a live run: a collector that reads the status snapshot at scrape."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from sensor.errors import ConfigError
from sensor.service.stats import Snapshot
from sensor.tcp.loss import loss_percent

PREFIX: Final = "port25_"
_SINK_DROPS: Final = (("dropped_queue_full", "queue_full"),
                      ("dropped_undeliverable", "undeliverable"))


def parse_listen(text: str, option: str = "--metrics") -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) as (host, port); ConfigError naming `option` otherwise."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    try:
        addr = ipaddress.ip_address(host)
        number = int(port) if addr.version == 4 or bracketed else -1
    except ValueError:
        number = -1
    if not sep or not 0 < number < 65536:
        raise ConfigError(f"{option}: expected HOST:PORT with an IP address, like "
                          f"127.0.0.1:9425 or [::1]:9425, got {text!r}")
    return host, number


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key, 0)
    return int(v) if isinstance(v, (int, float)) else 0


class SensorCollector(Collector):
    """Every scrape reads `snapshot()` once and turns it into port25_* metrics."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def describe(self) -> list[Metric]:
        """Nothing up front: the metrics come from the snapshot at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metrics of one snapshot."""
        snap = self._snapshot()
        cap, tcp = snap.get("capture", {}), snap.get("tcp", {})
        totals, detect = snap.get("totals", {}), snap.get("detect") or {}

        def counter(name: str, doc: str, value: int) -> CounterMetricFamily:
            return CounterMetricFamily(PREFIX + name, doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(PREFIX + name, doc, value=value)

        iface = snap.get("interfaces", {})
        for name, key, doc in (
            ("packets_received", "received", "Packets the kernel filter passed, per interface."),
            ("kernel_drops", "dropped", "Packets the kernel dropped (ring buffer full)."),
            ("interface_drops", "if_dropped", "Packets the interface dropped (NIC)."),
        ):
            fam = CounterMetricFamily(PREFIX + name, doc, labels=["interface"])
            for ifname, counts in sorted(iface.items()):
                fam.add_metric([ifname], _int(counts, key))
            yield fam
        yield counter("packets_processed", "Packets read by the sensor.", _int(cap, "packets"))
        yield counter("bytes_processed", "Bytes of the packets read.", _int(cap, "bytes"))
        yield gauge("connections_open", "TCP connections in the reassembly table.",
                    _int(snap.get("state", {}), "connections_open"))
        yield counter("connections", "TCP connections ended (records written).",
                      _int(totals, "connections"))
        yield counter("sessions", "SMTP sessions parsed.", _int(totals, "sessions"))
        yield counter("transactions", "Mail transactions parsed.", _int(totals, "transactions"))
        for name, key, doc in (
            ("tcp_gaps", "gaps", "Reassembly gaps (bytes never captured, skipped)."),
            ("tcp_gap_bytes", "gap_bytes", "Bytes skipped in reassembly gaps."),
            ("tcp_acks", "acks", "ACKs that moved an endpoint's acknowledgment forward."),
            ("tcp_acks_unseen", "acks_unseen", "ACKs for data the capture never saw."),
            ("tcp_ack_unseen_bytes", "ack_unseen_bytes", "Bytes acknowledged, never captured."),
            ("tcp_retransmissions", "retransmissions", "Retransmitted segments."),
            ("tcp_evicted", "evicted_lru", "Connections evicted by the connection cap."),
            ("tcp_evicted_memcap", "evicted_memcap", "Connections evicted by the memcap."),
            ("tcp_linger_cut", "linger_cut",
             "Closed connections emitted before their linger ended, to make room."),
        ):
            yield counter(name, doc, _int(tcp, key))
        yield gauge("capture_loss_ratio",
                    "Share of ACKs for data never captured since start (rate() the *_acks* "
                    "counters for a window).",
                    loss_percent(_int(tcp, "acks"), _int(tcp, "acks_unseen")) / 100.0)
        alerts = CounterMetricFamily(PREFIX + "alerts", "Alerts raised, by kind.",
                                     labels=["kind"])
        for kind, n in sorted((detect.get("alerts_by_kind") or {}).items()):
            alerts.add_metric([kind], int(n))
        yield alerts
        yield counter("model_rows_scored", "Host windows scored by the model.",
                      _int(detect, "model_scored"))
        yield counter("model_waits", "Times the packet loop waited for the model's process "
                      "([model] max_pending_rows rows unanswered).", _int(detect, "model_waits"))
        yield gauge("hosts_tracked", "Hosts in the detector's table.",
                    _int(detect, "hosts_active"))
        depth = GaugeMetricFamily(PREFIX + "sink_queue_depth",
                                  "Messages waiting in each syslog sink's queue.", labels=["sink"])
        sent = CounterMetricFamily(PREFIX + "sink_sent", "Messages delivered per syslog sink.",
                                   labels=["sink"])
        drops = CounterMetricFamily(PREFIX + "sink_dropped",
                                    "Messages lost per syslog sink, by reason.",
                                    labels=["sink", "reason"])
        for sink, counts in sorted((snap.get("sinks") or {}).items()):
            depth.add_metric([sink], _int(counts, "queued"))
            sent.add_metric([sink], _int(counts, "sent"))
            for key, reason in _SINK_DROPS:
                drops.add_metric([sink, reason], _int(counts, key))
        yield depth
        yield sent
        yield drops
        workers = snap.get("workers", {})
        yield gauge("workers_running", "Capture workers running.", _int(workers, "running"))
        yield counter("worker_restarts", "Capture workers restarted.", _int(workers, "restarts"))
        yield counter("worker_lost_packets", "Packets lost while a worker was down.",
                      _int(workers, "lost_packets"))
        yield gauge("resident_memory_bytes", "Resident memory of the sensor process.",
                    _int(snap.get("process", {}), "rss_bytes"))
        yield counter("heap_released_bytes", "Resident bytes given back to the kernel by the "
                      "periodic heap trim of the sensor's process ([live] heap_trim_s).",
                      _int(snap.get("process", {}), "heap_released_bytes"))


def start_metrics_server(listen: str, snapshot: Snapshot) -> tuple[Any, Any]:
    """Serve /metrics on HOST:PORT from a daemon thread; returns (server, thread) to shut down.

    The registry holds only the sensor's collector (no default process/platform collectors).
    """
    from prometheus_client.exposition import start_http_server

    host, port = parse_listen(listen)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SensorCollector(snapshot))
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"--metrics {listen}: cannot listen: {exc.strerror or exc}") from exc
