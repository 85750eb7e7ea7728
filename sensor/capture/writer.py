"""Writers of classic pcap files, used by `sensor simulate` and by the tests' capture factories."""

from __future__ import annotations

import struct
from types import TracebackType
from typing import BinaryIO, Self

PCAP_MAGIC_US = 0xA1B2C3D4  # classic pcap, microsecond timestamps
PCAP_MAGIC_NS = 0xA1B23C4D  # classic pcap, nanosecond timestamps
LINKTYPE_ETHERNET = 1

_REC = struct.Struct("<IIII")


class _OutputFile:
    """A binary output opened from a path (and closed by us) or handed over open (left open)."""

    def __init__(self, out: str | BinaryIO) -> None:
        if isinstance(out, str):
            self._fh: BinaryIO = open(out, "wb")  # noqa: SIM115 - closed by close()
            self._owned = True
        else:
            self._fh = out
            self._owned = False

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
        self._fh.flush()
        if self._owned:
            self._fh.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PcapWriter(_OutputFile):
    """Append frames to a classic little-endian pcap file (µs or ns timestamps)."""

    def __init__(
        self,
        out: str | BinaryIO,
        linktype: int = LINKTYPE_ETHERNET,
        snaplen: int = 262144,
        nanosecond: bool = False,
    ) -> None:
        super().__init__(out)
        self._nano = nanosecond
        self._snaplen = snaplen
        magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
        self._fh.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write(self, ts: float, frame: bytes, orig_len: int | None = None) -> None:
        """Write one frame captured at packet time `ts` (seconds since the epoch)."""
        sec = int(ts)
        if self._nano:
            frac = round((ts - sec) * 1_000_000_000)
            if frac >= 1_000_000_000:
                sec, frac = sec + 1, frac - 1_000_000_000
        else:
            frac = round((ts - sec) * 1_000_000)
            if frac >= 1_000_000:
                sec, frac = sec + 1, frac - 1_000_000
        caplen = min(len(frame), self._snaplen)
        self._fh.write(
            _REC.pack(sec, frac, caplen, orig_len if orig_len is not None else len(frame))
        )
        self._fh.write(frame[:caplen])

    def write_raw(self, sec: int, frac: int, frame: bytes) -> None:
        """Write one frame with an already split timestamp (seconds, µs or ns)."""
        self._fh.write(_REC.pack(sec, frac, len(frame), len(frame)))
        self._fh.write(frame)


_PCAPNG_SHB = 0x0A0D0D0A  # draft-ietf-opsawg-pcapng section 4.1
_PCAPNG_BOM = 0x1A2B3C4D
_PCAPNG_IDB = 0x00000001  # section 4.2
_PCAPNG_SPB = 0x00000003  # section 4.4
_PCAPNG_EPB = 0x00000006  # section 4.3
_PCAPNG_OPT_IF_TSRESOL = 9


class PcapngWriter(_OutputFile):
    """Write pcapng: one section, one IDB per interface (own link type and resolution), EPBs."""

    def __init__(self, out: str | BinaryIO, big_endian: bool = False) -> None:
        super().__init__(out)
        self._order = ">" if big_endian else "<"
        self._divisors: list[int] = []
        self._snaplens: list[int] = []
        # SHB body: byte-order magic, version 1.0, section length unknown (-1).
        self.write_block(_PCAPNG_SHB, struct.pack(self._order + "IHHq", _PCAPNG_BOM, 1, 0, -1))

    def add_interface(
        self, linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144, tsresol: int | None = None
    ) -> int:
        """Describe one interface (IDB); `tsresol` is the raw if_tsresol byte. Returns its id."""
        body = struct.pack(self._order + "HHI", linktype, 0, snaplen)
        divisor = 1_000_000
        if tsresol is not None:
            body += struct.pack(self._order + "HHB3x", _PCAPNG_OPT_IF_TSRESOL, 1, tsresol)
            body += struct.pack(self._order + "HH", 0, 0)
            exp = tsresol & 0x7F
            divisor = 1 << exp if tsresol & 0x80 else 10**exp
        self.write_block(_PCAPNG_IDB, body)
        self._divisors.append(divisor)
        self._snaplens.append(snaplen)
        return len(self._divisors) - 1

    def write(self, ts: float, frame: bytes, interface: int = 0) -> None:
        """Write one frame as an Enhanced Packet Block of `interface` at packet time `ts`."""
        divisor = self._divisors[interface]
        sec = int(ts)
        units = sec * divisor + round((ts - sec) * divisor)
        caplen = min(len(frame), self._snaplens[interface])
        body = struct.pack(
            self._order + "IIIII", interface, units >> 32, units & 0xFFFFFFFF, caplen, len(frame)
        )
        self.write_block(_PCAPNG_EPB, body + frame[:caplen])

    def write_simple(self, frame: bytes) -> None:
        """Write one frame as a Simple Packet Block (interface 0, no timestamp)."""
        self.write_block(_PCAPNG_SPB, struct.pack(self._order + "I", len(frame)) + frame)

    def write_block(self, block_type: int, body: bytes) -> None:
        """Write any block: body padded to 32 bits, framed by its total length twice."""
        padded = body + b"\x00" * (-len(body) % 4)
        total = len(padded) + 12
        self._fh.write(struct.pack(self._order + "II", block_type, total))
        self._fh.write(padded)
        self._fh.write(struct.pack(self._order + "I", total))
