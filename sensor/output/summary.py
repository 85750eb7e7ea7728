"""The closing summary of a run: a table for the terminal and the same counters as a dict."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sensor.records import CaptureStats, TcpStats
from sensor.tcp.loss import loss_percent

_PIPE_WIDTH = 160  # columns used when the table goes to a file or pipe, not a terminal


def stats_dict(
    cap: CaptureStats, tcp: TcpStats, totals: Any, detect: Any | None = None,
    sinks: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """Every counter of the run, JSON-ready (`sinks`: each syslog destination's counters)."""
    out = {"capture": asdict(cap), "tcp": asdict(tcp), "totals": asdict(totals)}
    if detect is not None:
        out["detect"] = asdict(detect)
    if sinks is not None:
        out["sinks"] = sinks
    return out


_SINK_ROWS = (("sent", "sent"), ("dropped_queue_full", "dropped: queue full"),
              ("dropped_undeliverable", "lost or possibly lost"),
              ("truncated", "truncated (udp)"), ("reconnects", "reconnects"),
              ("connect_failures", "connection failures"), ("resent", "resent (relp)"))


def render_summary(
    cap: CaptureStats,
    tcp: TcpStats,
    totals: Any,
    errors: list[tuple[str, str]],
    to_stderr: bool = False,
    detect: Any | None = None,
    sinks: dict[str, dict[str, int]] | None = None,
    live: dict[str, Any] | None = None,
) -> None:
    """Print the closing summary table (to stderr when stdout carries records).

    `live`: a live run's "interfaces" (kernel counters per interface) and "workers" (restarts and
    what they lost), as in its --stats."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="port25-sensor run", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    rate = cap.packets / totals.wall_s if totals.wall_s > 0 else 0.0
    rows: list[tuple[str, object]] = [
        ("files read", cap.files),
        ("files failed", cap.files_failed),
        ("packets", cap.packets),
        ("tcp segments", cap.tcp_segments),
        ("connections", totals.connections),
        ("smtp sessions", totals.sessions),
        ("mail transactions", totals.transactions),
        ("messages", totals.messages),
        ("recipients", totals.recipients),
        ("auth attempts", totals.auth_attempts),
        ("wall time (s)", f"{totals.wall_s:.2f}"),
        ("packets/s", f"{rate:,.0f}"),
    ]
    skipped = {
        "skipped: filtered out": cap.filtered_out,
        "skipped: not IP": cap.non_ip,
        "skipped: not TCP": cap.non_tcp,
        "skipped: IP fragments": cap.ip_fragments,
        "skipped: truncated": cap.truncated,
        "skipped: malformed": cap.malformed,
        "skipped: unknown link type": cap.unknown_linktype,
        "skipped: too many VLAN tags": cap.vlan_too_deep,
        "skipped: IPv6 extension headers too many": cap.ip6_ext_too_long,
        "skipped: oversized file records": cap.oversized_records,
        "files truncated": cap.files_truncated,
        "tcp: retransmissions": tcp.retransmissions,
        "tcp: out of order": tcp.ooo_segments,
        "tcp: gaps": tcp.gaps,
        "tcp: conflicting overlaps": tcp.conflicting_overlaps,
        "tcp: evicted (connection cap)": tcp.evicted_lru,
        "tcp: evicted (memory cap)": tcp.evicted_memcap,
        "tcp: evicted before any payload": tcp.evicted_half_open,
        "tcp: closed, linger cut short": tcp.linger_cut,
        "tcp: out-of-order cap hits": tcp.ooo_cap_hits,
        "tcp: total buffer cap hits": tcp.total_cap_hits,
        "tcp: ACKs for data never captured": tcp.acks_unseen,
        "tcp: bytes acked but never captured": tcp.ack_unseen_bytes,
    }
    rows.extend((k, v) for k, v in skipped.items() if v)
    if tcp.acks_unseen:
        pct = loss_percent(tcp.acks, tcp.acks_unseen)
        rows.append(("capture loss estimate (% of ACKs)", f"{pct:.2f}"))
    if cap.files_filtered_by_libpcap:
        rows.append(("skipped: filtered out by libpcap", "not counted"))
    if detect is not None:
        rows.append(("hosts tracked", detect.hosts))
        if detect.model:
            rows.append(("model", detect.model))
            rows.append(("model: host windows scored", detect.model_scored))
        rows.append(("alerts", detect.alerts))
        rows.extend((f"alerts: {kind}", n) for kind, n in sorted(detect.alerts_by_kind.items()))
        if detect.updates:
            rows.append(("alert updates (escalations)", detect.updates))
        if detect.evicted:
            rows.append(("hosts evicted (host table cap)", detect.evicted))
        if getattr(detect, "hosts_expired", 0):
            rows.append(("hosts expired (idle)", detect.hosts_expired))
        if getattr(detect, "unattributed_conns", 0):
            rows.append(("connections without payload, SYN or RST left out",
                         detect.unattributed_conns))
        if detect.model and getattr(detect, "loss_failed_conns", 0):
            rows.append(("model: failed connections left out for capture loss",
                         detect.loss_failed_conns))
    for dest, counts in (sinks or {}).items():
        what = dest if dest.startswith("publish ") else f"syslog {dest}"  # --publish: as is
        rows.extend((f"{what}: {label}", counts[key]) for key, label in _SINK_ROWS
                    if counts[key] or key == "sent")
    interfaces: dict[str, dict[str, int]] = (live or {}).get("interfaces", {})
    for iface, row in interfaces.items():
        rows.append((f"{iface}: packets received", row["received"]))
        rows.append((f"{iface}: dropped by the kernel", row["dropped"]))
        rows.append((f"{iface}: dropped by the interface", row["if_dropped"]))
    if len(interfaces) > 1:
        for key, label in (("dropped", "kernel"), ("if_dropped", "interface")):
            rows.append((f"all interfaces: dropped by the {label}",
                         sum(r[key] for r in interfaces.values())))  # fmt: skip
    workers: dict[str, int] = (live or {}).get("workers", {})
    if workers:
        rows.append(("workers: restarts", workers["restarts"]))
        if workers["restarts"]:
            rows.append(("workers: packets lost to restarts", workers["lost_packets"]))
            rows.append(("workers: connections lost to restarts", workers["lost_connections"]))
    for name, n in sorted(totals.anomalies.items(), key=lambda kv: -kv[1]):
        rows.append((f"smtp anomaly: {name}", n))
    for k, v in rows:
        table.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    console = Console(stderr=to_stderr)
    console.print(table)
    for path, reason in errors:
        console.print(f"[red]failed[/red] {path}: {reason}", highlight=False)
    for path, what in cap.truncated_files.items():
        console.print(f"[yellow]truncated[/yellow] {path}: {what}", highlight=False)


def render_alerts(alerts: list[Any], to_stderr: bool = False) -> None:
    """Print one row per (host, kind): the newest alert's severity, time and summary."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="alerts (newest per host and kind)", show_header=True, header_style="bold")
    for col in ("host", "kind", "sev", "last seen (UTC)"):
        table.add_column(col, no_wrap=True)
    table.add_column("summary", overflow="fold", min_width=40)
    for a in sorted(alerts, key=lambda a: (-a.severity, a.first_seen)):
        table.add_row(a.host, a.kind, str(a.severity), a.time[:19].replace("T", " "), a.summary)
    console = Console(stderr=to_stderr)
    if not console.is_terminal:
        console.width = _PIPE_WIDTH
    console.print(table)
