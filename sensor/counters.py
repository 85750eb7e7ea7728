"""The long-lived, mutable counters of the capture, decode and reassembly stages.

A module of its own so that it is compiled with the stages that count (setup.py's
NATIVE_MODULES): compiled code then updates a counter as a field of a native class, where an
interpreted dataclass costs it a generic attribute read and write (for TcpStats.acks, counted on
most packets: 5.8% of the live path's instructions). Native classes pickle, compare and answer
dataclasses.fields() as the dataclasses did; sensor.records re-exports both.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class CaptureStats:
    """What the capture and decode stages saw and why they skipped what they skipped."""

    files: int = 0
    files_failed: int = 0
    files_truncated: int = 0
    packets: int = 0
    bytes: int = 0
    filtered_out: int = 0
    files_filtered_by_libpcap: int = 0
    """Files whose BPF filter ran inside libpcap, which reports nothing of what it rejected:
    their frames are not in filtered_out."""
    non_ip: int = 0
    non_tcp: int = 0
    ip_fragments: int = 0
    truncated: int = 0
    malformed: int = 0
    unknown_linktype: int = 0
    vlan_too_deep: int = 0
    """Frames with more stacked VLAN tags than the decoder follows (MAX_VLAN_TAGS)."""
    ip6_ext_too_long: int = 0
    """IPv6 packets with more extension headers than the decoder walks (MAX_IPV6_EXT_HEADERS)."""
    oversized_records: int = 0
    """File records claiming more captured bytes than DEFAULT_MAX_CAPLEN (corrupt, or beyond
    any real snap length): skipped where the format says where the next record starts (pcapng),
    else the rest of the file is, which is then truncated."""
    truncated_files: dict[str, str] = field(default_factory=dict)
    """Path of each file whose end was not read as records, and what was skipped."""
    tcp_segments: int = 0


@dataclass(slots=True)
class TcpStats:
    """Counters of the reassembly stage, including every cap that was hit."""

    connections: int = 0
    active_peak: int = 0
    evicted_lru: int = 0
    evicted_memcap: int = 0
    evicted_half_open: int = 0
    linger_cut: int = 0
    """Closed connections emitted before their linger ended (closed_linger_s), to make room
    under the connection cap or the memcap; cut first, before any open connection is evicted."""
    timed_out: int = 0
    flushed_at_end: int = 0
    ooo_segments: int = 0
    retransmissions: int = 0
    conflicting_overlaps: int = 0
    gaps: int = 0
    gap_bytes: int = 0
    ooo_cap_hits: int = 0
    total_cap_hits: int = 0
    acks: int = 0
    """ACKs that moved an endpoint's acknowledgment forward (the capture-loss denominator)."""
    ack_bytes: int = 0
    """Bytes those ACKs acknowledged."""
    acks_unseen: int = 0
    """ACKs for data never captured (Zeek capture_loss's "gap events"): the endpoint received
    it, the sensor did not see it. Loss upstream of the kernel shows here."""
    ack_unseen_bytes: int = 0
    """Bytes acknowledged but never captured, each counted once."""
