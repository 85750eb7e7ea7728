"""The capture-loss estimate from the reassembler's ACK counters (Zeek's capture_loss)."""

from __future__ import annotations

from typing import Any


def loss_percent(acks: int, acks_unseen: int) -> float:
    """Percent of forward-moving ACKs that acknowledged data the capture never saw (0 without
    ACKs): loss anywhere before the sensor, the span port or tap included."""
    return 100.0 * acks_unseen / acks if acks > 0 else 0.0


def tcp_loss_percent(tcp: Any) -> float:
    """The estimate for a TcpStats, or its dict form as in the stats dict."""
    if isinstance(tcp, dict):
        return loss_percent(int(tcp.get("acks", 0)), int(tcp.get("acks_unseen", 0)))
    return loss_percent(tcp.acks, tcp.acks_unseen)
