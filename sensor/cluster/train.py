"""`sensor train --cluster`: the host-window rows of a rotated archive analysed on Dask."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

from sensor.capture.bpf import build_filter
from sensor.cluster.run import ClusterInput, run_cluster
from sensor.errors import CaptureError
from sensor.parallel import Outputs
from sensor.pipeline import limits_from_config

if TYPE_CHECKING:
    from sensor.config import Config
    from sensor.detect.train import Collected


def from_archive(address: str, paths: list[str], config: Config, ports: tuple[int, ...],
                 command: str, stop: threading.Event | None = None) -> Collected:
    """Host-window rows of capture files read as one rotated archive (their connections
    stitched across files), analysed on the Dask cluster at `address`: the rows of a single
    process reading the files one after the other as one stream."""
    from sensor.detect.train import Collected, _collector, _finish

    errors: list[str] = []

    def failed(path: str, reason: str) -> None:
        errors.append(f"{path}: {reason}")
        sys.stderr.write(f"sensor: error: {path}: {reason}\n")

    def note(line: str) -> None:
        sys.stderr.write(line + "\n")

    det, scorer, span, on_conn, on_session = _collector(config)
    src = ClusterInput(address, tuple(paths), failed, note, stop)
    result = run_cluster(src, build_filter(ports, config.decode.max_vlan_tags), ports,
                         Outputs(conn=on_conn, session=on_session, smtp_limits=config.smtp,
                                 decode_limits=config.decode),
                         limits_from_config(config))  # fmt: skip
    if errors and len(errors) >= len(paths):
        raise CaptureError("; ".join(errors))
    data = _finish(det, scorer, span, [str(p) for p in paths], command)
    records = result.totals.connections + result.totals.sessions
    return Collected(data, result.capture_stats.packets, records, errors)
