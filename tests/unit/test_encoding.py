"""Canonical encoding: one byte string per value, and hostile bytes only ever end in Rejected."""
from __future__ import annotations

import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import errors as E
from ledger.block import Block, BlockHeader, decode_block, decode_header, seal_block, tx_root_of
from ledger.encoding import MAX_MESSAGE_BYTES, U64_MAX, decode, decode_obj, encode, encode_obj, to_wire
from ledger.errors import DecodeError, Rejected
from ledger.keys import AccountKey, MeterKey
from ledger.testing import CHAIN_ID, GENESIS_MS, flip_bits
from ledger.tx import (MAX_TX_BYTES, AcceptOffer, CancelOffer, CancelOrder, Deliver, EnrollMeter, MeterReading,
                       PlaceOrder, PostOffer, ReadingFields, Redeem, RevokeMeter, SignedTx, Transfer, TransferWh,
                       decode_tx, encode_tx, sign_reading, sign_tx)

KEY = AccountKey(bytes(range(32)))
OTHER = AccountKey(bytes(range(1, 33)))
METER = MeterKey(ec.derive_private_key(0xC0FFEE, ec.SECP256R1()))

BODIES = [
    Transfer(OTHER.address, 5 * 10**9),
    TransferWh(OTHER.address, 1234),
    EnrollMeter(METER.public, OTHER.address, "generation", 5000, 900, "solar", 7, 0),
    RevokeMeter(METER.meter_id),
    Redeem(99),
    PostOffer(1000, 250, 1_767_225_600, 1_767_229_200, "wind"),
    AcceptOffer(bytes(range(32)), 10),
    Deliver(bytes(range(32, 64)), 3),
    CancelOffer(bytes(32)),
    PlaceOrder("buy", 500, 3),
    CancelOrder(b"\xff" * 32),
]
SIGNED = [sign_tx(KEY, CHAIN_ID, i, 1000 + i, body) for i, body in enumerate(BODIES)]
READING = sign_reading(METER, CHAIN_ID, ReadingFields(METER.meter_id, 1_767_225_600, 900, 700, 0, 700, 0, 1))
TXS: list[SignedTx | MeterReading] = [*SIGNED, READING]


def _block(txs: list[Any]) -> Block:
    header = BlockHeader(CHAIN_ID, 7, bytes(range(32)), GENESIS_MS + 14_000, KEY.public,
                         tx_root_of(txs), bytes(range(64, 96)), 1, 0)
    return seal_block(KEY, header, 42, txs, hashes=43, energy_mj=1234, estimated=True)


BLOCK = _block(TXS[:5] + [READING])


def reencoded(value: Any) -> bytes:
    return encode(value)


# ----------------------------------------------------------------------------------- round trips

plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(1 << 63), max_value=U64_MAX) | st.binary(max_size=300)
    | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=6), max_leaves=25)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (True == 1 in Python, not on the wire)."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@settings(max_examples=200, deadline=None)
@given(plain_values)
def test_plain_values_round_trip(value: Any) -> None:
    data = encode(value)
    back = decode(data)
    assert _same(back, value)
    assert encode(back) == data


@pytest.mark.parametrize("tx", TXS, ids=lambda t: t.kind)
def test_every_tx_kind_round_trips_byte_exact(tx: SignedTx | MeterReading) -> None:
    data = encode_tx(tx)
    back = decode_tx(data, CHAIN_ID)
    assert back == tx
    assert encode_tx(back) == data
    assert back.txid == tx.txid
    assert back.verify() if isinstance(back, SignedTx) else back.verify(METER.public)


def test_block_round_trips_byte_exact() -> None:
    data = BLOCK.encode()
    back = decode_block(data, CHAIN_ID, max_txs=100)
    assert back == BLOCK
    assert back.encode() == data and encode(back.to_wire()) == data  # the cached bytes and a fresh encoding
    assert back.hash == BLOCK.hash
    assert decode_header(encode_obj(BLOCK.header)) == BLOCK.header


def test_txid_ignores_signature_bytes_but_covers_chain_id() -> None:
    tx = SIGNED[0]
    resigned = sign_tx(KEY, CHAIN_ID, tx.nonce, tx.fee, tx.body)
    assert resigned.txid == tx.txid  # Ed25519 is deterministic, but the id would not change even if not
    assert decode_tx(encode_tx(tx), "another-chain").txid != tx.txid


# ------------------------------------------------------------------------------ non-canonical forms

@pytest.mark.parametrize("data", [
    b"\xcd\x00\x05",  # uint16 holding 5
    b"\xce\x00\x00\x00\x05",  # uint32 holding 5
    b"\xcf\x00\x00\x00\x00\x00\x00\x00\x05",  # uint64 holding 5
    b"\xcc\x05",  # uint8 holding a fixint
    b"\xd0\x05",  # int8 holding a positive fixint
    b"\xd1\x00\x80",  # int16 holding 128
    b"\xd9\x01a",  # str8 holding a 1-char string (fixstr is canonical)
    b"\xdc\x00\x01\x00",  # array16 holding one element
    b"\xdd\x00\x00\x00\x00",  # empty array32
    b"\xc5\x00\x01a",  # bin16 holding 1 byte
], ids=lambda d: d.hex())
def test_non_minimal_forms_rejected(data: bytes) -> None:
    with pytest.raises(DecodeError, match="non-canonical") as info:
        decode(data)
    assert info.value.reason == E.MALFORMED


@pytest.mark.parametrize("data", [
    b"\xcb" + struct.pack(">d", 1.5),  # float64 re-encodes to itself: caught by type
    b"\xcb" + struct.pack(">d", 5.0),
    b"\xca" + struct.pack(">f", 1.5),
    b"\x92\x01\xcb" + struct.pack(">d", 0.0),
], ids=["f64", "f64-integral", "f32", "nested"])
def test_floats_rejected(data: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.reason == E.MALFORMED


@pytest.mark.parametrize("data", [b"\x80", b"\x81\x01\x02", b"\x92\x01\x80", b"\xde\x00\x00"],
                         ids=["empty", "one", "nested-empty", "map16"])
def test_maps_rejected(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


def test_extension_types_and_reserved_byte_rejected() -> None:
    for data in (b"\xd4\x01\x00", b"\xc7\x00\x05", b"\xc1"):
        with pytest.raises(DecodeError):
            decode(data)


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode(b"\x01\x02")
    with pytest.raises(DecodeError, match="trailing"):
        decode_tx(encode_tx(SIGNED[0]) + b"\x00", CHAIN_ID)
    with pytest.raises(DecodeError, match="trailing"):
        decode_block(BLOCK.encode() + b"\xc0", CHAIN_ID, 100)


def test_invalid_utf8_rejected() -> None:
    with pytest.raises(DecodeError):
        decode(b"\xa1\xff")


def test_not_bytes_rejected() -> None:
    with pytest.raises(DecodeError, match="expected bytes"):
        decode("\x01")  # type: ignore[arg-type]


def test_oversize_rejected() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        decode(encode(b"x" * 100), max_bytes=50)
    big = encode([1, [KEY.public, 0, 1000, [1, [OTHER.address, 1]], b"s" * 64, b"pad" * 2000]])
    with pytest.raises(Rejected) as info:
        decode_tx(big, CHAIN_ID)
    assert info.value.reason == E.TOO_LARGE
    with pytest.raises(DecodeError):
        decode(b"\xc6" + (MAX_MESSAGE_BYTES + 1).to_bytes(4, "big"))  # claims a huge bin, has nothing


def _tx_wire(tx: SignedTx) -> list[Any]:
    return decode(encode_tx(tx))


def _bad_tx(mutate: Any) -> bytes:
    wire = _tx_wire(SIGNED[0])
    mutate(wire)
    return reencoded(wire)


@pytest.mark.parametrize("name,mutate,match", [
    ("sender as str", lambda w: w[1].__setitem__(0, "k" * 32), "sender"),
    ("sender short", lambda w: w[1].__setitem__(0, b"k" * 31), "sender"),
    ("nonce negative", lambda w: w[1].__setitem__(1, -1), "nonce"),
    ("nonce as bool", lambda w: w[1].__setitem__(1, True), "nonce"),
    ("nonce as bytes", lambda w: w[1].__setitem__(1, b"\x01"), "nonce"),
    ("fee as str", lambda w: w[1].__setitem__(2, "1000"), "fee"),
    ("signature short", lambda w: w[1].__setitem__(4, b"s" * 63), "signature"),
    ("signature as str", lambda w: w[1].__setitem__(4, "s" * 64), "signature"),
    ("extra field", lambda w: w[1].append(0), "5 fields"),
    ("missing field", lambda w: w[1].pop(), "5 fields"),
    ("unknown tx type", lambda w: w.__setitem__(0, 99), "unknown type"),
    ("tx type as str", lambda w: w.__setitem__(0, "1"), "expected"),
    ("envelope too long", lambda w: w.append(None), "expected"),
    ("unknown body kind", lambda w: w[1][3].__setitem__(0, 99), "unknown kind"),
    ("body kind of another shape", lambda w: w[1][3].__setitem__(0, 5), "Redeem"),
    ("body address as str", lambda w: w[1][3][1].__setitem__(0, "a" * 20), "Transfer.to"),
    ("body address as 21 bytes", lambda w: w[1][3][1].__setitem__(0, b"a" * 21), "Transfer.to"),
    ("body amount negative", lambda w: w[1][3][1].__setitem__(1, -5), "Transfer.amount"),
    ("body amount as bool", lambda w: w[1][3][1].__setitem__(1, False), "Transfer.amount"),
    ("body amount as None", lambda w: w[1][3][1].__setitem__(1, None), "Transfer.amount"),
    ("body with extra field", lambda w: w[1][3][1].append(1), "Transfer"),
    ("body not a list", lambda w: w[1][3].__setitem__(1, b"x"), "Transfer"),
])
def test_wrong_shapes_and_types_rejected(name: str, mutate: Any, match: str) -> None:
    with pytest.raises(DecodeError, match=match) as info:
        decode_tx(_bad_tx(mutate), CHAIN_ID)
    assert info.value.reason == E.MALFORMED


def test_str_where_bytes_expected_and_bytes_where_str_expected() -> None:
    body = _tx_wire(SIGNED[9])  # PlaceOrder: side is a str
    body[1][3][1][0] = b"buy"
    with pytest.raises(DecodeError, match="PlaceOrder.side: expected string"):
        decode_tx(reencoded(body), CHAIN_ID)
    reading = decode(encode_tx(READING))
    reading[1][0][0] = READING.fields.meter_id.decode("latin-1")  # 16 chars of text instead of 16 bytes
    with pytest.raises(DecodeError, match="meter_id: expected bytes"):
        decode_tx(reencoded(reading), CHAIN_ID)


def test_string_length_limits() -> None:
    wire = _tx_wire(SIGNED[9])
    wire[1][3][1][0] = "buyer"  # side is text(4)
    with pytest.raises(DecodeError, match="longer than 4"):
        decode_tx(reencoded(wire), CHAIN_ID)


def test_reading_shapes_rejected() -> None:
    good = decode(encode_tx(READING))
    for mutate, match in [
        (lambda w: w[1].__setitem__(1, b"x" * 7), "8..72"),
        (lambda w: w[1].__setitem__(1, b"x" * 73), "8..72"),
        (lambda w: w[1].append(b""), "expected \\[fields, signature\\]"),
        (lambda w: w[1][0].pop(), "ReadingFields"),
        (lambda w: w[1][0].__setitem__(7, -1), "counter"),
    ]:
        wire = decode(encode_tx(READING))
        mutate(wire)
        with pytest.raises(DecodeError, match=match):
            decode_tx(reencoded(wire), CHAIN_ID)
    assert decode_tx(reencoded(good), CHAIN_ID) == READING


def test_block_shapes_rejected() -> None:
    def bad(mutate: Any) -> bytes:
        wire = decode(BLOCK.encode())
        mutate(wire)
        return reencoded(wire)

    cases = [
        (lambda w: w.append([]), "header, seal, txs"),
        (lambda w: w.__setitem__(2, b""), "header, seal, txs"),
        (lambda w: w[0].pop(), "BlockHeader"),
        (lambda w: w[0].__setitem__(1, -1), "height"),
        (lambda w: w[1].__setitem__(2, 1), "energy_estimated: expected boolean"),
        (lambda w: w[1].__setitem__(0, True), "hashes"),
        (lambda w: w[2].append([9, []]), "unknown type"),
    ]
    for mutate, match in cases:
        with pytest.raises(DecodeError, match=match):
            decode_block(bad(mutate), CHAIN_ID, 100)
    with pytest.raises(DecodeError, match="chain id"):
        decode_block(BLOCK.encode(), "another-chain", 100)
    with pytest.raises(DecodeError, match="more than 5 transactions"):
        decode_block(BLOCK.encode(), CHAIN_ID, 5)


def test_deep_nesting_ends_in_decode_error() -> None:
    for depth in (100, 1000, 1030, 100_000):
        data = b"\x91" * depth + b"\x00"
        with pytest.raises(DecodeError):
            decode_block(data, CHAIN_ID, 100)
        if len(data) <= MAX_TX_BYTES:
            with pytest.raises(DecodeError):
                decode_tx(data, CHAIN_ID)
    with pytest.raises(DecodeError):
        decode(b"\x91" * 2_000_000 + b"\x00")
    # the decoder's bounds (depth or item budget, whichever is met first), the field's
    for levels, match in ((500, "nested more than|items in"), (3, "Transfer.amount")):
        nested_in_field = [1, [KEY.public, 0, 1000, [1, [OTHER.address, []]], b"s" * 64]]
        deep: Any = 0
        for _ in range(levels):
            deep = [deep]
        nested_in_field[1][3][1][1] = deep
        with pytest.raises(DecodeError, match=match):
            decode_tx(encode(nested_in_field), CHAIN_ID)


def test_decode_obj_checks_exact_field_count() -> None:
    data = encode(to_wire(BODIES[0]) + [1])
    with pytest.raises(DecodeError, match="expected a list of 2 fields"):
        decode_obj(Transfer, data)
    assert decode_obj(Transfer, encode_obj(BODIES[0])) == BODIES[0]


# ------------------------------------------------------------------------------------------- fuzz

VALID_TX_BYTES = [encode_tx(t) for t in TXS]
VALID_BLOCK_BYTES = BLOCK.encode()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_any_tx(data: bytes) -> None:
    """Decode; if it works, the bytes must be the canonical encoding of what was decoded."""
    try:
        tx = decode_tx(data, CHAIN_ID)
    except Rejected:
        return
    assert encode_tx(tx) == data


def _decode_any_block(data: bytes) -> None:
    try:
        block = decode_block(data, CHAIN_ID, 100)
    except Rejected:
        return
    assert encode(block.to_wire()) == data  # re-encoded afresh (block.encode() answers the bytes it came from)


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_as_tx_and_block(data: bytes) -> None:
    _decode_any_tx(data)
    _decode_any_block(data)
    try:
        decode(data)
    except DecodeError:
        pass


@FUZZ
@given(st.sampled_from(VALID_TX_BYTES), st.data())
def test_fuzz_truncated_tx_never_decodes(valid: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(valid) - 1))
    with pytest.raises(DecodeError):
        decode_tx(valid[:cut], CHAIN_ID)


@FUZZ
@given(st.integers(min_value=0, max_value=len(VALID_BLOCK_BYTES) - 1))
def test_fuzz_truncated_block_never_decodes(cut: int) -> None:
    with pytest.raises(DecodeError):
        decode_block(VALID_BLOCK_BYTES[:cut], CHAIN_ID, 100)


@FUZZ
@given(st.sampled_from(range(len(TXS))), st.lists(st.integers(min_value=0, max_value=1 << 16), min_size=1,
                                                   max_size=3))
def test_fuzz_bit_flipped_tx(index: int, bits: list[int]) -> None:
    original = VALID_TX_BYTES[index]
    data = flip_bits(original, bits)
    try:
        tx = decode_tx(data, CHAIN_ID)
    except Rejected:
        return
    assert encode_tx(tx) == data
    if data != original:  # whatever still decodes no longer carries a valid signature
        assert not (tx.verify() if isinstance(tx, SignedTx) else tx.verify(METER.public))


@FUZZ
@given(st.lists(st.integers(min_value=0, max_value=1 << 20), min_size=1, max_size=3))
def test_fuzz_bit_flipped_block(bits: list[int]) -> None:
    _decode_any_block(flip_bits(VALID_BLOCK_BYTES, bits))


@FUZZ
@given(st.sampled_from(VALID_TX_BYTES), st.data())
def test_fuzz_spliced_tx(valid: bytes, data: st.DataObject) -> None:
    """Insert or delete a few bytes somewhere in a valid tx."""
    at = data.draw(st.integers(min_value=0, max_value=len(valid)))
    if data.draw(st.booleans()):
        mutated = valid[:at] + data.draw(st.binary(min_size=1, max_size=4)) + valid[at:]
    else:
        mutated = valid[:at] + valid[at + data.draw(st.integers(min_value=1, max_value=4)):]
    _decode_any_tx(mutated)
