"""`--publish`: records reach a real Redis stream in the pipeline's order, with their sensor;
a server that is away or restarts costs counted drops, never the run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sensor.capture.writer import PcapWriter
from sensor.stream.publisher import Publisher
from sensor.stream.redis_streams import RedisTransport
from sensor.stream.urls import parse_stream_url

from .conftest import Site, sensor
from .redis_util import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent.parent
DEMO = ROOT / "pcaps" / "demo.pcap"


def entries(server: RedisServer, stream: str) -> list[dict[bytes, bytes]]:
    got: Any = server.client().xrange(stream)
    return [fields for _, fields in got]


def test_records_go_in_pipeline_order_with_sensor_name(redis_server: RedisServer,
                                                       tmp_path: Path) -> None:
    config = tmp_path / "sensor.toml"
    config.write_text('[site]\nsensor = "tap-eth1"\n')
    done = sensor("analyze", "-q", "--config", str(config), "--conns", str(tmp_path / "c"),
                  "--sessions", str(tmp_path / "s"), "--stats", str(tmp_path / "stats"),
                  "--publish", f"{redis_server.url}?stream=p25&maxlen=100000", str(DEMO))
    assert done.returncode == 0, done.stderr
    got = entries(redis_server, "p25")
    assert [f[b"type"] for f in got[-1:]] == [b"end"]
    assert [int(f[b"seq"]) for f in got] == list(range(1, len(got) + 1))
    keys = [float(f[b"t"]) for f in got]
    assert keys == sorted(keys)  # the merge key never decreases within a source
    assert {f[b"sensor"] for f in got} == {b"tap-eth1"}
    assert len({f[b"src"] for f in got}) == 1
    conns = [f[b"rec"] + b"\n" for f in got if f[b"type"] == b"conn"]
    sessions = [f[b"rec"] + b"\n" for f in got if f[b"type"] == b"session"]
    assert b"".join(conns) == (tmp_path / "c").read_bytes()  # the --conns log's lines, in order
    assert b"".join(sessions) == (tmp_path / "s").read_bytes()
    for f in got[:-1]:
        rec = json.loads(f[b"rec"])
        assert (f[b"client"].decode(), f[b"server"].decode()) == (rec["client_ip"],
                                                                  rec["server_ip"])
    pub = json.loads((tmp_path / "stats").read_text())["sinks"]
    assert next(iter(pub.values()))["sent"] == len(conns) + len(sessions)


def test_redis_restart_in_the_middle_counts_drops(site: Site, tmp_path: Path) -> None:
    """The capture comes through stdin in three parts: before, during and after an outage of
    the server, so that records are made while it is down however fast the sensor reads."""
    data = site.whole.read_bytes()
    thirds = [data[: len(data) // 3], data[len(data) // 3 : 2 * len(data) // 3],
              data[2 * len(data) // 3 :]]  # fmt: skip
    server = RedisServer(tmp_path / "redis").start()
    try:
        stats = tmp_path / "stats.json"
        # a small queue, so that the outage overflows it
        proc = subprocess.Popen(
            [sys.executable, "-m", "sensor", "analyze", "-q", "--stats", str(stats),
             "--publish", f"{server.url}?stream=p25&queue=200", "-"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(thirds[0])
        proc.stdin.flush()
        deadline = time.monotonic() + 120
        while not server.client().xlen("p25"):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        server.stop()  # every entry so far is gone with it (no persistence)
        proc.stdin.write(thirds[1])
        proc.stdin.flush()
        time.sleep(1.5)
        assert proc.poll() is None, "the run ended before the server came back"
        server.start()
        proc.stdin.write(thirds[2])
        proc.stdin.close()
        proc.wait(timeout=300)
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert "cannot publish" in err
        counters = json.loads(stats.read_text())
        (pub,) = counters["sinks"].values()
        assert pub["dropped_queue_full"] > 0
        assert pub["connect_failures"] > 0 and pub["reconnects"] > 0
        records = counters["totals"]["connections"] + counters["totals"]["sessions"]
        assert pub["sent"] + pub["dropped_queue_full"] + pub["dropped_undeliverable"] == records
        after = entries(server, "p25")
        assert after and after[-1][b"type"] == b"end"  # what came after the restart, then its end
        seqs = [int(f[b"seq"]) for f in after]
        assert seqs == sorted(seqs)
    finally:
        server.stop()


def test_unreachable_server_is_a_warning_and_counted_drops(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    done = sensor("analyze", "-q", "--stats", str(stats), "--publish",
                  f"redis://127.0.0.1:{free_port()}/0?stream=p25", str(DEMO))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "cannot publish" in line]
    assert len(warnings) == 1, done.stderr
    counters = json.loads(stats.read_text())
    (pub,) = counters["sinks"].values()
    records = counters["totals"]["connections"] + counters["totals"]["sessions"]
    assert pub["sent"] == 0
    assert pub["dropped_undeliverable"] + pub["dropped_queue_full"] == records


def test_bad_publish_url_is_one_line_exit_2(tmp_path: Path) -> None:
    for url, what in (("http://h/0?stream=x", "redis://"), ("redis://h:6379/0", "?stream=NAME"),
                      ("redis://h/0?stream=x&maxlen=-1", "maxlen"),
                      ("redis://h/x?stream=s", "database number")):
        done = sensor("analyze", "-q", "--publish", url, str(DEMO))
        assert done.returncode == 2, (url, done.stderr)
        assert what in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_quiet_live_publisher_ticks_then_ends(redis_server: RedisServer) -> None:
    """The publisher on its own: with a clock and nothing to say, ticks carry the clock."""
    url = parse_stream_url(f"{redis_server.url}?stream=api", "--publish")
    pub = Publisher(RedisTransport(url), "s1", url.name, 100, clock=lambda: 1000.0)
    pub.start()
    deadline = time.monotonic() + 10
    while not redis_server.client().xlen("api"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pub.close()
    got = entries(redis_server, "api")
    assert [f[b"type"] for f in got][:1] == [b"tick"] and got[-1][b"type"] == b"end"
    assert float(got[0][b"t"]) == 1000.0
    assert pub.stats.as_dict()["sent"] == 0  # ticks and ends are not records


def test_empty_capture_publishes_only_the_end(redis_server: RedisServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    PcapWriter(str(empty)).close()
    done = sensor("analyze", "-q", "--publish", f"{redis_server.url}?stream=e", str(empty))
    assert done.returncode == 0, done.stderr
    assert [f[b"type"] for f in entries(redis_server, "e")] == [b"end"]


def test_a_quiet_capture_publisher_ticks_without_moving_its_key(
        redis_server: RedisServer) -> None:
    """Without a clock (analyze), a tick says the source is alive, its key unmoved."""
    url = parse_stream_url(f"{redis_server.url}?stream=quiet", "--publish")
    pub = Publisher(RedisTransport(url), "s1", url.name, 100)
    pub.start()
    deadline = time.monotonic() + 10
    while not redis_server.client().xlen("quiet"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pub.close()
    got = entries(redis_server, "quiet")
    assert [f[b"type"] for f in got][-1] == b"end"
    assert {f[b"type"] for f in got[:-1]} == {b"tick"}
    assert {float(f[b"t"]) for f in got} == {0.0}  # nothing known yet of its packet time


def test_packed_entries_read_back_as_their_fields(redis_server: RedisServer) -> None:
    """The transport's packer (a format made once per run) gives the entries `publish` gives
    for the same maps, whatever the bytes of the fixed fields (a `%`, non-ASCII, CR LF) and
    however many named fields follow (six, the publisher's, or any other number)."""
    transport = RedisTransport(parse_stream_url(f"{redis_server.url}?stream=p", "--publish"))
    common = {b"v": b"1", b"sensor": "tap%d%s%%-é".encode(), b"src": b"a\r\nb"}
    try:
        for names in ((b"seq", b"type", b"t", b"client", b"server", b"rec"), (b"a%s", b"b"),
                      (b"only",)):
            rows = [tuple(b"%d%%s\r\n" % i + bytes([i]) * i for i in range(j, j + len(names)))
                    for j in range(3)]
            pack = transport.packer(common, names)
            transport.publish_packed([pack(row) for row in rows])
            transport.publish([{**common, **dict(zip(names, row, strict=True))}
                               for row in rows])
            got = entries(redis_server, "p")
            assert got[:3] == got[3:] == [{**common, **dict(zip(names, row, strict=True))}
                                          for row in rows]
            redis_server.client().delete("p")
    finally:
        transport.close()


def _probe(url: str, check: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`sensor analyze -q --publish URL demo.pcap` in a fresh interpreter that runs `check`
    (Python, a function body printing its finding) at exit."""
    body = "".join(f"    {line}\n" for line in check.splitlines())
    probe = (
        "import atexit, gc, sys\n"
        f"def check():\n{body}"
        "atexit.register(check)\n"
        "from sensor.cli import main\n"
        f"sys.argv = ['sensor', 'analyze', '-q', '--publish', {url!r}, {str(DEMO)!r}]\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_publishing_does_not_import_redis_py(redis_server: RedisServer, tmp_path: Path) -> None:
    """A plain redis:// URL is served by sensor.stream.resp: redis-py (80-150 ms of imports,
    asyncio among them) stays out of the sensor's process, and the entries still arrive."""
    done = _probe(f"{redis_server.url}?stream=r", "print('redis' in sys.modules)", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]
    got = entries(redis_server, "r")
    assert got and got[-1][b"type"] == b"end"


def test_database_number_of_the_url_is_used(redis_server: RedisServer) -> None:
    done = sensor("analyze", "-q", "--publish", f"redis://127.0.0.1:{redis_server.port}/3?stream=d",
                  str(DEMO))
    assert done.returncode == 0, done.stderr
    assert not redis_server.client().xlen("d")
    got: Any = redis_server.client(db=3).xrange("d")
    assert got and got[-1][1][b"type"] == b"end"


def test_redis_py_is_frozen_with_the_start_up_objects(redis_server: RedisServer,
                                                      tmp_path: Path) -> None:
    """A URL with a client option publishes through redis-py, which is then imported before
    the collector's view is frozen: its objects (some 30,000) are never walked by a young
    collection, nor counted towards one. (Imported after the freeze, they pushed a run over
    the young threshold: one collection of every live object, a 0.45 s pause on the SMTP-only
    benchmark.)"""
    check = "import redis\nprint('young' if any(o is redis.Redis for o in gc.get_objects()) " \
            "else 'frozen')"
    done = _probe(f"{redis_server.url}?stream=g&client_name=probe", check, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["frozen"]
    assert entries(redis_server, "g")[-1][b"type"] == b"end"


def test_password_and_unix_socket_urls(redis_server: RedisServer, tmp_path: Path) -> None:
    """The publisher's own connection authenticates (AUTH) and reaches a unix socket; a wrong
    password is a warning and counted drops, not a failed run."""
    done = sensor("analyze", "-q", "--publish", f"unix://{redis_server.socket}?stream=u",
                  str(DEMO))
    assert done.returncode == 0, done.stderr
    assert entries(redis_server, "u")[-1][b"type"] == b"end"
    server = RedisServer(tmp_path / "locked", password="s3cr%t").start()
    try:
        done = sensor("analyze", "-q", "--publish",
                      f"redis://:s3cr%25t@127.0.0.1:{server.port}/0?stream=p", str(DEMO))
        assert done.returncode == 0, done.stderr
        assert entries(server, "p")[-1][b"type"] == b"end"
        stats = tmp_path / "stats.json"
        done = sensor("analyze", "-q", "--stats", str(stats), "--publish",
                      f"redis://:wrong@127.0.0.1:{server.port}/0?stream=w", str(DEMO))
        assert done.returncode == 0, done.stderr
        assert "publish" in done.stderr and "WRONGPASS" in done.stderr, done.stderr
        (pub,) = json.loads(stats.read_text())["sinks"].values()
        assert pub["sent"] == 0 and pub["dropped_undeliverable"] > 0
        assert not server.client().exists("w")
    finally:
        server.stop()
