"""The Prometheus collector over a real pipeline's status, and the --metrics address."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from sensor.capture.source import open_files
from sensor.config import load_config
from sensor.detect.detector import Detector
from sensor.errors import ConfigError
from sensor.pipeline import Pipeline
from sensor.service.metrics import SensorCollector, parse_listen
from sensor.service.stats import LiveStatus

DEMO = Path(__file__).resolve().parents[2] / "pcaps" / "demo.pcap"


def scrape(status: LiveStatus) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample values by metric name and label set, as a Prometheus server would read them."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SensorCollector(status.snapshot))
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_follow_the_naming_conventions_and_the_run() -> None:
    status = LiveStatus()
    alerts: list[object] = []
    status.detector = Detector(load_config(None), alerts.append)
    pipe = status.pipeline = Pipeline(ports=(25, 587), on_conn=status.detector.on_conn,
                                      on_session=status.detector.on_session)  # fmt: skip
    cap = pipe.capture_stats
    pipe.run(open_files([str(DEMO)], "", cap, lambda p, r: None))
    m = scrape(status)
    assert all(name.startswith("port25_") for name in m)
    counters = [n for n in m if n.endswith("_total")]
    assert {"port25_packets_processed_total", "port25_sessions_total",
            "port25_tcp_acks_total", "port25_tcp_acks_unseen_total",
            "port25_model_rows_scored_total",
            "port25_model_waits_total"} <= set(counters)  # fmt: skip
    assert m["port25_packets_processed_total"][()] == cap.packets == 7040
    assert m["port25_sessions_total"][()] == pipe.totals.sessions > 0
    assert m["port25_connections_open"][()] == pipe.open_connections()
    assert m["port25_capture_loss_ratio"][()] == 0.0
    assert m["port25_resident_memory_bytes"][()] > 10 << 20
    by_kind = m["port25_alerts_total"]
    assert sum(by_kind.values()) == len(alerts) > 0
    assert all(labels[0][0] == "kind" for labels in by_kind)


def test_metrics_before_the_capture_starts() -> None:
    m = scrape(LiveStatus())
    assert m["port25_packets_processed_total"][()] == 0
    assert "port25_alerts_total" not in m  # no detector: a family without samples


@pytest.mark.parametrize(("text", "want"), [("127.0.0.1:9425", ("127.0.0.1", 9425)),
                                            ("[::1]:9425", ("::1", 9425))])
def test_listen_address(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["9425", "localhost:9425", "127.0.0.1:0", "127.0.0.1:x",
                                  "::1:9425"])
def test_bad_listen_address_is_one_clear_error(text: str) -> None:
    with pytest.raises(ConfigError, match=r"--metrics: expected HOST:PORT"):
        parse_listen(text)
