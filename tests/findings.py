"""Comparing what a live run raised with what `sensor analyze` raised on the packets it saw.

tcpdump beside the sensor records the same packets with its own arrival times, some
microseconds apart, and live and offline runs batch the model's scoring at other moments. Rule
findings match exactly; the model's may differ only for a host whose score sits at its
threshold, where such small differences can tip it either way.
"""

from __future__ import annotations

from typing import Any

MODEL_MARGIN = 0.05
"""How far over its threshold an anomalous_host finding raised on one side only may score."""


def findings(alerts: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """(host, kind) of every alert, with its highest model score over the model's threshold
    (-1.0 when no alert of it carries the model's verdict)."""
    out: dict[tuple[str, str], float] = {}
    for a in alerts:
        model = a.get("evidence", {}).get("model") or {}
        over = model["score"] - model["threshold"] if "score" in model else -1.0
        key = (a["host"], a["kind"])
        out[key] = max(out.get(key, -1.0), over)
    return out


def assert_same_findings(live: list[dict[str, Any]], offline: list[dict[str, Any]]) -> None:
    """The same (host, kind) on both sides, but for anomalous_host findings raised on one side
    only by a score within MODEL_MARGIN of the threshold."""
    ours, theirs = findings(live), findings(offline)
    for key in ours.keys() ^ theirs.keys():
        over = ours.get(key, theirs.get(key, -1.0))
        side = "live" if key in ours else "offline"
        assert key[1] == "anomalous_host" and 0.0 <= over < MODEL_MARGIN, (
            f"{key} raised {side} only (model score {over:+.3f} over its threshold)")
