"""TLS 1.3 handshake-shaped bytes sent after STARTTLS: well-formed records, random key material."""

from __future__ import annotations

import random
import struct
from enum import IntEnum


class ContentType(IntEnum):
    """TLS record content types (RFC 8446 section 5.1)."""

    CHANGE_CIPHER_SPEC = 20
    HANDSHAKE = 22
    APPLICATION_DATA = 23


class HandshakeType(IntEnum):
    """TLS handshake message types (RFC 8446 section 4)."""

    CLIENT_HELLO = 1
    SERVER_HELLO = 2


class Ext(IntEnum):
    """TLS extension numbers (RFC 8446 section 4.2, RFC 6066 section 3)."""

    SERVER_NAME = 0
    SUPPORTED_GROUPS = 10
    EC_POINT_FORMATS = 11
    SIGNATURE_ALGORITHMS = 13
    SUPPORTED_VERSIONS = 43
    PSK_KEY_EXCHANGE_MODES = 45
    KEY_SHARE = 51


LEGACY_RECORD_VERSION_HELLO = 0x0301  # RFC 8446 section 5.1: ClientHello record may say TLS 1.0
LEGACY_VERSION = 0x0303  # RFC 8446 section 4.1.2 legacy_version
TLS13 = 0x0304
GROUP_X25519 = 0x001D  # RFC 8446 section 4.2.7
GROUP_SECP256R1 = 0x0017
_CIPHERS = (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8)
_SIGALGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)


def _ext(num: int, body: bytes) -> bytes:
    return struct.pack("!HH", num, len(body)) + body


def _u16list(values: tuple[int, ...]) -> bytes:
    return struct.pack(f"!H{len(values)}H", 2 * len(values), *values)


def _record(ctype: int, version: int, body: bytes) -> bytes:
    return struct.pack("!BHH", ctype, version, len(body)) + body


def _handshake(htype: int, body: bytes) -> bytes:
    return bytes([htype]) + len(body).to_bytes(3, "big") + body


def client_hello(rng: random.Random, server_name: str) -> bytes:
    """A ClientHello record (0x16 0x03 0x01 ...) offering TLS 1.3 and 1.2."""
    name = server_name.encode("ascii", "replace")[:255]
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    exts = b"".join((
        _ext(Ext.SERVER_NAME, sni),
        _ext(Ext.SUPPORTED_GROUPS, _u16list((GROUP_X25519, GROUP_SECP256R1))),
        _ext(Ext.EC_POINT_FORMATS, b"\x01\x00"),
        _ext(Ext.SIGNATURE_ALGORITHMS, _u16list(_SIGALGS)),
        _ext(Ext.SUPPORTED_VERSIONS, b"\x04" + struct.pack("!HH", TLS13, LEGACY_VERSION)),
        _ext(Ext.PSK_KEY_EXCHANGE_MODES, b"\x01\x01"),
        _ext(Ext.KEY_SHARE, struct.pack("!HHH", 36, GROUP_X25519, 32) + rng.randbytes(32)),
    ))
    body = (
        struct.pack("!H", LEGACY_VERSION) + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
        + _u16list(_CIPHERS) + b"\x01\x00" + struct.pack("!H", len(exts)) + exts
    )
    return _record(ContentType.HANDSHAKE, LEGACY_RECORD_VERSION_HELLO,
                   _handshake(HandshakeType.CLIENT_HELLO, body))


def server_flight(rng: random.Random, cert_bytes: int) -> bytes:
    """ServerHello, ChangeCipherSpec and the encrypted rest of the server's first flight."""
    exts = _ext(Ext.SUPPORTED_VERSIONS, struct.pack("!H", TLS13)) + _ext(
        Ext.KEY_SHARE, struct.pack("!HH", GROUP_X25519, 32) + rng.randbytes(32))
    body = (
        struct.pack("!H", LEGACY_VERSION) + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
        + struct.pack("!HB", 0x1301, 0) + struct.pack("!H", len(exts)) + exts
    )
    hello = _record(ContentType.HANDSHAKE, LEGACY_VERSION,
                    _handshake(HandshakeType.SERVER_HELLO, body))
    ccs = _record(ContentType.CHANGE_CIPHER_SPEC, LEGACY_VERSION, b"\x01")
    encrypted = _record(ContentType.APPLICATION_DATA, LEGACY_VERSION, rng.randbytes(cert_bytes))
    return hello + ccs + encrypted


def client_finish(rng: random.Random) -> bytes:
    """The client's ChangeCipherSpec and encrypted Finished."""
    ccs = _record(ContentType.CHANGE_CIPHER_SPEC, LEGACY_VERSION, b"\x01")
    return ccs + _record(ContentType.APPLICATION_DATA, LEGACY_VERSION, rng.randbytes(53))
