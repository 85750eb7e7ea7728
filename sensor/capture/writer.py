"""Writers of classic pcap files, used by `sensor simulate` and by the tests' capture factories."""

from __future__ import annotations

import struct
from types import TracebackType
from typing import BinaryIO

PCAP_MAGIC_US = 0xA1B2C3D4  # classic pcap, microsecond timestamps
PCAP_MAGIC_NS = 0xA1B23C4D  # classic pcap, nanosecond timestamps
LINKTYPE_ETHERNET = 1

_REC = struct.Struct("<IIII")


class PcapWriter:
    """Append frames to a classic little-endian pcap file (µs or ns timestamps)."""

    def __init__(
        self,
        out: str | BinaryIO,
        linktype: int = LINKTYPE_ETHERNET,
        snaplen: int = 262144,
        nanosecond: bool = False,
    ) -> None:
        if isinstance(out, str):
            self._fh: BinaryIO = open(out, "wb")  # noqa: SIM115 - closed by close()
            self._owned = True
        else:
            self._fh = out
            self._owned = False
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
        self._fh.write(_REC.pack(sec, frac, caplen, orig_len if orig_len is not None else len(frame)))
        self._fh.write(frame[:caplen])

    def write_raw(self, sec: int, frac: int, frame: bytes) -> None:
        """Write one frame with an already split timestamp (seconds, µs or ns)."""
        self._fh.write(_REC.pack(sec, frac, len(frame), len(frame)))
        self._fh.write(frame)

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
        self._fh.flush()
        if self._owned:
            self._fh.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
