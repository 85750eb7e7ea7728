"""TCP reassembly: in-order bytes and gaps per direction, and one ConnRecord per connection."""

from sensor.tcp.reassembler import HandlerFactory, Reassembler, StreamHandler, TcpLimits

__all__ = ["HandlerFactory", "Reassembler", "StreamHandler", "TcpLimits"]
