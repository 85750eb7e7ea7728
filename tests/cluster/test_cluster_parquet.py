"""`--cluster` with `--parquet`: the same tables as one process over the unsplit capture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
from cluster_helpers import read_records, sensor, write_parts


def table(directory: Path) -> list[dict[str, Any]]:
    rows = ds.dataset(directory, format="parquet", partitioning="hive").to_table().to_pylist()
    return sorted(rows, key=lambda r: (r["ts"], r.get("uid", ""), r.get("kind", "")))


def test_cluster_parquet_equals_one_process(sim_capture: Path, scheduler: str,
                                            tmp_path: Path) -> None:  # fmt: skip
    head, recs = read_records(sim_capture)
    parts = write_parts(head, recs, list(range(40, len(recs), 40)), tmp_path / "parts")
    done = sensor("analyze", "-q", "--parquet", str(tmp_path / "one"), str(sim_capture))
    assert done.returncode == 0, done.stderr
    done = sensor("analyze", "-q", "--cluster", scheduler, "--parquet", str(tmp_path / "two"),
                  *parts)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ("sessions", "conns", "alerts"):
        want = table(tmp_path / "one" / name)
        assert want, name
        assert table(tmp_path / "two" / name) == want, name
