"""FlowKey (sensor/decode/_batch.c), the flow table's key: a value of four fields, and the C
loop's cache of them."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pcap_batches import pack
from test_batch_feed import SAMPLES, _varied, run_keyed

from sensor.decode._batch import FlowKey

addrs = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16),
                  st.binary(max_size=16))  # fmt: skip
ports = st.integers(0, 65535)
tuples = st.tuples(addrs, ports, addrs, ports)


@given(tuples, tuples)
def test_equal_exactly_when_the_fields_are(a: tuple, b: tuple) -> None:
    ka, kb = FlowKey(*a), FlowKey(*b)
    assert (ka == kb) == (a == b) and (ka != kb) == (a != b)
    assert tuple(ka) == a and tuple(kb) == b
    if a == b:
        assert hash(ka) == hash(kb)


@given(tuples)
def test_a_key_is_a_value(t: tuple) -> None:
    k = FlowKey(*t)
    assert len(k) == 4 and list(k) == list(t) and k[0] == t[0] and k[3] == t[3]
    assert pickle.loads(pickle.dumps(k)) == k
    assert repr(k) == f"FlowKey{t!r}"
    assert k != t and (k == t) is False  # never equal to the tuple key of a pure-Python install
    assert {k: 1}[FlowKey(*t)] == 1


def test_the_fields_each_count() -> None:
    base = (b"\x01\x02\x03\x04", 1025, b"\x05\x06\x07\x08", 25)
    k = FlowKey(*base)
    for i, other in enumerate((b"\x01\x02\x03\x05", 1026, b"\x05\x06\x07\x09", 26)):
        changed = list(base)
        changed[i] = other
        assert FlowKey(*changed) != k
    assert FlowKey(b"\x01\x02\x03\x04" + bytes(12), 1025, b"\x05\x06\x07\x08", 25) != k
    assert FlowKey(b"\x05\x06\x07\x08", 25, b"\x01\x02\x03\x04", 1025) != k  # the reverse


@pytest.mark.parametrize(("args", "error"), [
    ((b"a", 1, b"b"), TypeError),
    (("a", 1, b"b", 2), TypeError),
    ((b"a", 1.0, b"b", 2), TypeError),
    ((b"a", -1, b"b", 2), ValueError),
    ((b"a", 1, b"b", 65536), ValueError),
    ((b"a" * 17, 1, b"b", 2), ValueError),
])  # fmt: skip
def test_what_no_header_carries_is_refused(args: tuple, error: type[Exception]) -> None:
    with pytest.raises(error):
        FlowKey(*args)


def test_a_flow_seen_lately_gets_the_same_key_object() -> None:
    """The C loop's cache: packets of one 4-tuple are fed one key object, which the table's
    lookup finds by identity."""
    out, got, keys = run_keyed(*pack([(1_700_000_000, i, SAMPLES[0]) for i in range(50)]), 1)
    assert out[0] == 50 and len({id(k) for k in keys}) == 1
    src, dst, sport, dport = got[0][1][:4]
    assert keys[0] == FlowKey(src, sport, dst, dport)


def test_flows_colliding_in_the_cache_are_never_mixed_up() -> None:
    """20,000 distinct 4-tuples, many sharing a cache slot, each get their own key, twice over
    (the second time partly from the cache)."""
    frames = _varied(20_000)
    for _ in range(2):
        out, got, keys = run_keyed(*pack(frames), 1)
        assert out[0] == len(frames)
        assert keys == [FlowKey(seg[0], seg[2], seg[1], seg[3]) for _, seg in got]
        assert len(set(keys)) == len(frames)


def test_ipv6_keys() -> None:
    out, got, keys = run_keyed(*pack([(1_700_000_000, 0, SAMPLES[2]), (1_700_000_000, 1,
                                                                      SAMPLES[2])]), 1)  # fmt: skip
    assert out[0] == 2 and keys[0] is keys[1]
    assert len(got[0][1][0]) == 16 and keys[0] == FlowKey(*(got[0][1][i] for i in (0, 2, 1, 3)))
    assert keys[0][3] == 25


def test_flow_key_reads_the_same_cache() -> None:
    """flow_key (what the reassembler calls for segments of the Python decoder) gives the key
    object the batch loop made, and makes one itself for 4-tuples the cache cannot hold."""
    from sensor.decode._batch import flow_key

    _, got, keys = run_keyed(*pack([(1_700_000_000, 0, SAMPLES[0])]), 1)
    src, dst, sport, dport = got[0][1][:4]
    assert flow_key(bytes(src), sport, bytes(dst), dport) is keys[0]
    assert flow_key(b"\x01\x02\x03\x04", 9, b"\x05" * 16, 10) == FlowKey(
        b"\x01\x02\x03\x04", 9, b"\x05" * 16, 10)  # fmt: skip
    for bad, error in (((b"a", 1, b"b"), TypeError), ((b"a", 1, "b", 2), TypeError),
                       ((b"a", 70000, b"b", 2), ValueError),
                       ((b"a" * 17, 1, b"b", 2), ValueError)):  # fmt: skip
        with pytest.raises(error):
            flow_key(*bad)
