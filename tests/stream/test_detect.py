"""`sensor detect`: two sensors' records through a real Redis give the alerts of one run over
the whole capture, also across a kill -9 and restart of the detector, and when sharded."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .conftest import Site, sensor
from .redis_util import RedisServer


def alert_keys(path: Path) -> list[tuple[str, str, int]]:
    """(host, kind, window) of every alert line, sorted (duplicates kept)."""
    return sorted((a["host"], a["kind"], a["window_s"])
                  for a in map(json.loads, path.read_text().splitlines()))


def publish_halves(site: Site, url: str) -> int:
    """Two `analyze --publish` runs, one per half; the records they published."""
    sent = 0
    for half in site.halves:
        stats = half.with_suffix(".stats.json")
        done = sensor("analyze", "-q", "--publish", url, "--stats", str(stats), str(half))
        assert done.returncode == 0, done.stderr
        counters = json.loads(stats.read_text())["sinks"]
        (pub,) = counters.values()
        assert pub["dropped_queue_full"] == pub["dropped_undeliverable"] == 0
        sent += pub["sent"]
    return sent


def detect_args(url: str, out: Path, *extra: str) -> list[str]:
    return ["detect", "--from", f"{url}&group=central", "--alerts", str(out / "alerts.jsonl"),
            "--stats", str(out / "stats.json"), "--until-idle", "1", *extra]


def test_two_sensors_give_the_alerts_of_one_run(site: Site, redis_server: RedisServer,
                                                tmp_path: Path) -> None:
    url = f"{redis_server.url}?stream=port25"
    sent = publish_halves(site, url)
    done = sensor(*detect_args(url, tmp_path))
    assert done.returncode == 0, done.stderr
    expected = alert_keys(site.alerts)
    assert len(expected) > 50 and len({k for _, k, _ in expected}) >= 5  # a test that means much
    assert alert_keys(tmp_path / "alerts.jsonl") == expected
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["stream"]["records"] == sent
    assert stats["stream"]["sources"] == 2
    whole = json.loads(site.stats.read_text())["detect"]
    assert stats["detect"]["records"] == whole["records"]
    assert stats["detect"]["alerts_by_kind"] == whole["alerts_by_kind"]
    # every entry acknowledged: nothing pending in the group
    pending: Any = redis_server.client().xpending("port25", "central")
    assert pending["pending"] == 0


def checkpoint(server: RedisServer, key: str) -> dict[str, Any] | None:
    raw: Any = server.client().get(key)
    return None if raw is None else dict(json.loads(raw))


def test_kill_9_and_restart_lose_nothing_and_double_nothing(
        site: Site, redis_server: RedisServer, tmp_path: Path) -> None:
    url = f"{redis_server.url}?stream=port25"
    sent = publish_halves(site, url)
    args = [sys.executable, "-m", "sensor", *detect_args(url, tmp_path, "--commit-every", "300")]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:  # kill it once a third of the records are applied and committed
        ck = checkpoint(redis_server, "port25:checkpoint:central")
        if ck is not None and ck["records"] >= sent // 3:
            break
        assert first.poll() is None, "the detector ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert ck["records"] < sent, "killed too late to test anything"
    written = (tmp_path / "alerts.jsonl").read_bytes()
    done = sensor(*detect_args(url, tmp_path, "--commit-every", "300"))
    assert done.returncode == 0, done.stderr
    assert alert_keys(tmp_path / "alerts.jsonl") == alert_keys(site.alerts)
    assert (tmp_path / "alerts.jsonl").read_bytes().startswith(written[:ck["alerts_offset"]])
    stats = json.loads((tmp_path / "stats.json").read_text())["stream"]
    assert stats["records"] == sent  # each record applied once to the state that counts
    assert stats["replayed"] >= ck["records"]  # the state was rebuilt from the stream
    assert stats["muted"] == ck["alerts"]


def test_shards_share_the_hosts(site: Site, redis_server: RedisServer, tmp_path: Path) -> None:
    url = f"{redis_server.url}?stream=port25"
    publish_halves(site, url)
    procs = []
    for i in range(2):
        out = tmp_path / f"shard{i}"
        out.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "sensor", *detect_args(url, out, "--shard", f"{i}/2")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    keys = [alert_keys(tmp_path / f"shard{i}" / "alerts.jsonl") for i in range(2)]
    assert all(keys), "each shard must raise some alerts for the test to mean much"
    assert not {h for h, _, _ in keys[0]} & {h for h, _, _ in keys[1]}  # each host in one shard
    assert sorted(keys[0] + keys[1]) == alert_keys(site.alerts)


def test_sigterm_commits_and_a_restart_goes_on(site: Site, redis_server: RedisServer,
                                              tmp_path: Path) -> None:
    url = f"{redis_server.url}?stream=port25"
    sent = publish_halves(site, url)
    args = [sys.executable, "-m", "sensor", *detect_args(url, tmp_path)[:-2]]  # no --until-idle
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (ck := checkpoint(redis_server, "port25:checkpoint:central")) is None \
            or ck["records"] < sent:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    # nothing new: a restart replays (muted) and writes nothing more until the final flush
    done = sensor(*detect_args(url, tmp_path))
    assert done.returncode == 0, done.stderr
    assert alert_keys(tmp_path / "alerts.jsonl") == alert_keys(site.alerts)


def test_detector_rides_out_a_redis_restart(site: Site, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        url = f"{server.url}?stream=port25"
        first = publish_halves_one(site, url, 0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "sensor", *detect_args(url, tmp_path)[:-1], "6"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while (ck := checkpoint(server, "port25:checkpoint:central")) is None \
                or ck["records"] < first:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        server.stop()  # the stream, the group and the checkpoint are gone with it
        time.sleep(2)
        server.start()
        second = publish_halves_one(site, url, 1)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "retrying" in err
        stats = json.loads((tmp_path / "stats.json").read_text())["stream"]
        assert stats["read_failures"] > 0
        assert stats["records"] == first + second  # the state went on in memory
    finally:
        server.stop()


def publish_halves_one(site: Site, url: str, which: int) -> int:
    """One `analyze --publish` run over one half; the records it published."""
    stats = site.halves[which].with_suffix(f".{which}.stats.json")
    done = sensor("analyze", "-q", "--publish", url, "--stats", str(stats),
                  str(site.halves[which]))
    assert done.returncode == 0, done.stderr
    (pub,) = json.loads(stats.read_text())["sinks"].values()
    sent: int = pub["sent"]
    return sent


def test_ended_sources_are_forgotten_once_trimmed(redis_server: RedisServer,
                                                  tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parent.parent.parent / "pcaps" / "demo.pcap"
    url = f"{redis_server.url}?stream=short&maxlen=100"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensor", *detect_args(url, tmp_path, "--commit-every", "1",
                                                      "--until-idle", "5")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not redis_server.client().exists("short"):  # the detector made its group
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    for _ in range(3):  # each run's entries trim the previous run's away
        done = sensor("analyze", "-q", "--publish", url, str(demo))
        assert done.returncode == 0, done.stderr
        time.sleep(1)  # the detector keeps up (else it reads what is left)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    stats = json.loads((tmp_path / "stats.json").read_text())["stream"]
    assert stats["sources"] == 3 and stats["pruned"] >= 1
    ck = checkpoint(redis_server, "short:checkpoint:central")
    assert ck is not None and len(ck["applied"]) == 3 - stats["pruned"]
