"""`sensor analyze --parquet DIR`: sessions, connections and alerts read back as the JSON logs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from sensor.output.parquet import ParquetSink, schemas

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"
TABLES = {"sessions": "sessions", "conns": "conns", "alerts": "alerts"}


def sensor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated capture analysed with --parquet and the three JSON logs, in one directory."""
    tmp = tmp_path_factory.mktemp("pq")
    done = sensor("simulate", "benign", "spambot-burst", "--seed", "3", "--duration", "10m",
                  "-o", str(tmp / "sim.pcap"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = sensor("analyze", "-q", "--parquet", str(tmp / "parquet"),
                  *[f"--{n}={tmp / n}" for n in TABLES], str(tmp / "sim.pcap"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return tmp


def rows(directory: Path) -> list[dict[str, Any]]:
    return ds.dataset(directory, format="parquet", partitioning="hive").to_table().to_pylist()


def logged(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("table", list(TABLES))
def test_tables_hold_the_records_of_the_json_logs(table: str, run: Path) -> None:
    want = logged(run / table)
    got = rows(run / "parquet" / table)
    assert want, "the capture must give records for the comparison to mean much"
    assert len(got) == len(want)
    _schema, as_json = schemas()[table]
    for row, rec in zip(sorted(got, key=_order), sorted(want, key=_order), strict=True):
        assert row.pop("day") == _day(rec["ts"])
        for name in as_json:
            row[name] = json.loads(row[name]) if row[name] is not None else None
        assert {k: v for k, v in row.items() if k in rec} == rec
        assert set(rec) <= set(row)


def _order(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["ts"], r.get("uid", ""), r.get("kind", ""), r.get("host", ""))


def _day(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def test_partitioned_by_day_in_hive_folders(run: Path) -> None:
    for table in TABLES:
        folders = [p.name for p in (run / "parquet" / table).iterdir()]
        assert folders and all(re.fullmatch(r"day=\d{4}-\d{2}-\d{2}", f) for f in folders)


def _readme_block(after: str) -> str:
    text = README.read_text()
    start = text.index(after)
    block = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert block is not None
    return block.group(1)


@pytest.mark.parametrize("reader", ["With pandas:", "With DuckDB:"])
def test_readme_examples_run(
    reader: str, run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(run)  # the examples read parquet/
    exec(compile(_readme_block(reader), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.strip()
    if reader == "With DuckDB:":
        assert "spambot" in out


def test_each_day_its_folder_and_batches_files(tmp_path: Path) -> None:
    sink = ParquetSink(str(tmp_path), batch_rows=2)
    day1, day2 = 1_796_000_000.0, 1_796_000_000.0 + 86400
    for k in range(5):
        sink.conn({"uid": f"C{k}", "ts": day1 if k < 3 else day2, "client_port": k})
    sink.close()
    assert sorted(p.name for p in (tmp_path / "conns").iterdir()) == [
        "day=2026-11-30", "day=2026-12-01"]  # fmt: skip
    assert len(list((tmp_path / "conns" / "day=2026-11-30").iterdir())) == 2  # 2 rows, then 1
    got = rows(tmp_path / "conns")
    assert sorted(r["uid"] for r in got) == [f"C{k}" for k in range(5)]
    assert sink.counts["conns"] == 5


def test_hostile_values_do_not_stop_the_output(tmp_path: Path) -> None:
    sink = ParquetSink(str(tmp_path))
    sink.session({"uid": "C1", "ts": 1_796_000_000.0, "helo": "bad\udcff",
                  "bytes_from_client": 1 << 70, "extensions": ["PIPELINING", "x\ud800"],
                  "transactions": [{"size": 1 << 70}]})
    sink.close()
    (row,) = rows(tmp_path / "sessions")
    assert row["helo"] == "bad\\udcff"
    assert row["bytes_from_client"] is None
    assert row["extensions"] == ["PIPELINING", "x\\ud800"]
    assert json.loads(row["transactions"]) == [{"size": 1 << 70}]


def test_an_unwritable_directory_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = sensor("analyze", "-q", "--parquet", str(blocker / "sub"), str(tmp_path / "x.pcap"))
    assert done.returncode == 2
    assert "--parquet" in done.stderr and "cannot create" in done.stderr
    assert "Traceback" not in done.stderr
