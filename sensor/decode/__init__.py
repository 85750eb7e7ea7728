"""Decode stage: link layer -> IPv4/IPv6 -> TCP, as plain tuples; everything else counted."""

from sensor.decode.packet import Decoder, Segment, ip_str, tcp_options

__all__ = ["Decoder", "Segment", "ip_str", "tcp_options"]
