"""Pure-Python pcapng reader: sections of either byte order, per-interface link type and clock."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from enum import IntEnum

from sensor.capture.common import (
    DEFAULT_MAX_BLOCK_BYTES,
    DEFAULT_MAX_CAPLEN,
    PCAPNG_BYTE_ORDER_MAGIC,
    PCAPNG_SHB_TYPE,
    READ_CHUNK_BYTES,
    Cut,
    Frame,
    Readable,
    count_truncated_tail,
    mark_truncated,
    refill,
    remaining_bytes,
)
from sensor.records import CaptureStats


class BlockType(IntEnum):
    """pcapng block types (draft-ietf-opsawg-pcapng section 10.1) the reader acts on."""

    INTERFACE_DESCRIPTION = 0x00000001
    """IDB: one per interface, gives link type, snap length and options (section 4.2)."""
    PACKET = 0x00000002
    """Obsolete Packet Block (appendix A)."""
    SIMPLE_PACKET = 0x00000003
    """SPB: packet of interface 0 without timestamp (section 4.4)."""
    ENHANCED_PACKET = 0x00000006
    """EPB: packet with interface id and timestamp (section 4.3)."""
    SECTION_HEADER = PCAPNG_SHB_TYPE
    """SHB: starts a section and fixes its byte order (section 4.1)."""


OPT_ENDOFOPT = 0  # section 3.5
OPT_IF_TSRESOL = 9  # section 4.2: if_tsresol, 1 byte
DEFAULT_TSRESOL_DIVISOR = 1_000_000  # section 4.2: microseconds when if_tsresol is absent
_BLOCK_HDR = 8
_MIN_BLOCK = 12


def tsresol_divisor(value: int) -> int:
    """Units per second for an if_tsresol byte: MSB clear = 10**n, MSB set = 2**n."""
    exp = value & 0x7F
    return 1 << exp if value & 0x80 else 10**exp


def _idb_divisor(order: str, body: bytes) -> int:
    """Walk an IDB's options (after its 8 fixed bytes) for if_tsresol; never raises."""
    pos = 8
    end = len(body)
    while pos + 4 <= end:
        code, length = struct.unpack_from(order + "HH", body, pos)
        pos += 4
        if code == OPT_ENDOFOPT:
            break
        if code == OPT_IF_TSRESOL and length >= 1 and pos < end:
            return tsresol_divisor(body[pos])
        pos += (length + 3) & ~3
    return DEFAULT_TSRESOL_DIVISOR


class _Interface:
    """What the reader remembers of one IDB."""

    __slots__ = ("divisor", "linktype", "scale", "snaplen")

    def __init__(self, linktype: int, snaplen: int, divisor: int) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.divisor = divisor
        self.scale = 1.0 / divisor

    def ts(self, units: int) -> float:
        """Seconds since the epoch for a timestamp in this interface's units."""
        sec, frac = divmod(units, self.divisor)
        return sec + frac * self.scale


class _Section:
    """Reader state: byte order and interfaces of the current section, last packet time."""

    __slots__ = ("ifaces", "last_ts", "order")

    def __init__(self) -> None:
        self.order = "<"
        self.ifaces: list[_Interface] = []
        self.last_ts = 0.0


def read_pcapng(
    fh: Readable,
    stats: CaptureStats,
    max_caplen: int = DEFAULT_MAX_CAPLEN,
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
    chunk_bytes: int = READ_CHUNK_BYTES,
    cut: Cut | None = None,
) -> Iterator[Frame]:
    """Yield every packet of an open pcapng file; unknown blocks skipped, corruption counted.

    Packets are read whole whatever their interface's snap length says (as tshark does), up to
    `max_caplen`: a packet block claiming more is skipped and counted in
    stats.oversized_records. A block whose framing is corrupt ends the file, which is then
    counted as truncated, with what was skipped in `cut`.
    """
    sect = _Section()
    buf = b""
    pos = 0
    eof = False
    base = 0  # file offset of buf[0]
    index = 0  # blocks read so far
    while True:
        end = len(buf)
        while pos + _BLOCK_HDR <= end:
            problem = ""
            if struct.unpack_from("<I", buf, pos)[0] == PCAPNG_SHB_TYPE:  # palindromic type
                if pos + 12 > end:
                    break
                bom = buf[pos + 8 : pos + 12]
                if bom == _BOM_LE:
                    sect.order = "<"
                elif bom == _BOM_BE:
                    sect.order = ">"
                else:
                    problem = f"a section header with byte-order magic 0x{bom.hex()}"
                sect.ifaces = []
            btype, blen = struct.unpack_from(sect.order + "II", buf, pos)
            if problem:
                pass
            elif blen > max_block_bytes:
                stats.oversized_records += 1
                problem = f"a block claiming {blen} bytes (more than {max_block_bytes})"
            elif blen < _MIN_BLOCK or blen % 4:
                problem = f"a block length of {blen}"
            elif pos + blen > end:
                break
            elif struct.unpack_from(sect.order + "I", buf, pos + blen - 4)[0] != blen:
                problem = f"a block of {blen} bytes whose trailing length differs"
            if problem:
                if not problem.startswith("a block claiming"):
                    stats.malformed += 1
                _stop(stats, cut, fh, chunk_bytes, index, base + pos, end - pos, problem)
                return
            body = buf[pos + _BLOCK_HDR : pos + blen - 4]
            at = base + pos
            pos += blen
            index += 1
            frame = _packet(sect, btype, body, max_caplen, stats)
            if frame is _STOP:
                _stop(stats, cut, fh, chunk_bytes, index - 1, at, end - at + base,
                      "an interface or packet block too short for its fixed fields")  # fmt: skip
                return
            if frame is not None:
                sect.last_ts = frame[0]
                yield frame
        if eof:
            count_truncated_tail(stats, end - pos, cut, index + 1, "block")
            return
        need = chunk_bytes
        if pos + _BLOCK_HDR <= end:
            blen = struct.unpack_from(sect.order + "I", buf, pos + 4)[0]
            if _MIN_BLOCK <= blen <= max_block_bytes:
                need = max(chunk_bytes, blen - (end - pos))
        base += pos
        buf, eof = refill(fh, buf, pos, need)
        pos = 0


def _stop(
    stats: CaptureStats,
    cut: Cut | None,
    fh: Readable,
    chunk_bytes: int,
    index: int,
    at: int,
    buffered: int,
    problem: str,
) -> None:
    """Count a file whose corrupt block ends it; say what was skipped."""
    rest = buffered + remaining_bytes(fh, chunk_bytes)
    mark_truncated(
        stats,
        cut,
        f"block {index + 1} at byte {at} is corrupt ({problem}): "
        f"the {rest} bytes from there to the end were skipped",
    )


_STOP: Frame = (0.0, -1, b"")  # sentinel: the file is corrupt, stop reading it
_BOM_LE = struct.pack("<I", PCAPNG_BYTE_ORDER_MAGIC)
_BOM_BE = struct.pack(">I", PCAPNG_BYTE_ORDER_MAGIC)


def _packet(
    sect: _Section, btype: int, body: bytes, max_caplen: int, stats: CaptureStats
) -> Frame | None:
    """Interpret one block body: a frame, None for non-packet blocks, _STOP when corrupt."""
    order = sect.order
    ifaces = sect.ifaces
    if btype == BlockType.ENHANCED_PACKET or btype == BlockType.PACKET:
        if len(body) < 20:
            stats.malformed += 1
            return _STOP
        if btype == BlockType.ENHANCED_PACKET:
            ifid, hi, lo, caplen, _orig = struct.unpack_from(order + "IIIII", body, 0)
        else:
            ifid, _drops, hi, lo, caplen, _orig = struct.unpack_from(order + "HHIIII", body, 0)
        if caplen > max_caplen:  # the block's framing is sound: skip only this block
            stats.oversized_records += 1
            return None
        if 20 + caplen > len(body):
            stats.malformed += 1
            return None
        if ifid >= len(ifaces):
            stats.malformed += 1
            return None
        iface = ifaces[ifid]
        return (iface.ts((hi << 32) | lo), iface.linktype, body[20 : 20 + caplen])
    if btype == BlockType.SIMPLE_PACKET:
        # Section 4.4: no timestamp; the packet is given the time of the one before it.
        if len(body) < 4 or not ifaces:
            stats.malformed += 1
            return None
        (orig,) = struct.unpack_from(order + "I", body, 0)
        iface = ifaces[0]
        caplen = min(orig, len(body) - 4, iface.snaplen or max_caplen, max_caplen)
        return (sect.last_ts, iface.linktype, body[4 : 4 + caplen])
    if btype == BlockType.INTERFACE_DESCRIPTION:
        if len(body) < 8:
            stats.malformed += 1
            return _STOP
        linktype, _res, snaplen = struct.unpack_from(order + "HHI", body, 0)
        ifaces.append(_Interface(linktype, snaplen, _idb_divisor(order, body)))
    return None
