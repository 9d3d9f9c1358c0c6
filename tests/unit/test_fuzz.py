"""Property tests on every decoder: hostile bytes end in the ledger's own `Rejected`, with a reason and a
detail, or in an object whose canonical encoding is exactly those bytes; never another exception, never a
hang (the module's timeout). test_encoding.py fuzzes whole txs and blocks with random bytes, truncations
and bit flips; this module adds block headers, seals, bodies and reading fields on their own,
structure-aware mutations (well-formed msgpack with a wrong value anywhere), huge declared lengths, deep
nesting of every container form, and signature checks on whatever still decodes. The decoder's exact
limits (container length, nesting depth) are pinned in test_decoder_and_mempool_limits.py."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import errors as E
from ledger.block import Block, BlockHeader, Seal, decode_block, decode_header, seal_block, seal_valid, tx_root_of
from ledger.encoding import MAX_DEPTH, U64_MAX, decode, decode_obj, encode, encode_obj
from ledger.errors import DecodeError, Rejected
from ledger.keys import P256_ORDER, AccountKey, MeterKey
from ledger.testing import CHAIN_ID, GENESIS_MS, flip_bits
from ledger.tx import (BODY_TYPES, AcceptOffer, EnrollMeter, MeterReading, PlaceOrder, PostOffer, ReadingFields,
                       SignedTx, Transfer, TransferWh, Tx, decode_tx, encode_tx, sign_reading, sign_tx)

pytestmark = pytest.mark.timeout(120)  # a decoder that hangs fails here instead of stalling the suite

KEY = AccountKey(bytes(range(7, 39)))
OTHER = AccountKey(bytes(range(9, 41)))
METER = MeterKey(ec.derive_private_key(0xFEED, ec.SECP256R1()))
SIGNED = [sign_tx(KEY, CHAIN_ID, n, 1000 + n, body) for n, body in enumerate([
    Transfer(OTHER.address, 7), TransferWh(OTHER.address, 5), PlaceOrder("sell", 10, 3),
    PostOffer(100, 2, 1_767_225_600, 1_767_229_200, "solar"), AcceptOffer(bytes(range(32)), 4),
    EnrollMeter(METER.public, OTHER.address, "both", 5000, 900, "wind", 0, 0)])]
READING = sign_reading(METER, CHAIN_ID, ReadingFields(METER.meter_id, 1_767_225_600, 900, 500, 20, 500, 20, 1))
TXS: list[Tx] = [*SIGNED, READING]
HEADER = BlockHeader(CHAIN_ID, 3, bytes(range(32)), GENESIS_MS + 6000, KEY.public, tx_root_of(TXS),
                     bytes(range(1, 33)), 1, 0)
BLOCK = seal_block(KEY, HEADER, 11, TXS, hashes=12, energy_mj=345, estimated=False)
REASONS = frozenset(v for k, v in vars(E).items() if k.isupper() and isinstance(v, str))
FUZZ = settings(max_examples=400, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Every decoder of wire input, with how to re-encode what it returns.
DECODERS: dict[str, tuple[Callable[[bytes], Any], Callable[[Any], bytes]]] = {
    "plain": (decode, encode),
    "tx": (lambda d: decode_tx(d, CHAIN_ID), encode_tx),
    "block": (lambda d: decode_block(d, CHAIN_ID, 100), lambda b: encode(b.to_wire())),
    "header": (decode_header, encode_obj),
    "seal": (lambda d: decode_obj(Seal, d), encode_obj),
    "reading_fields": (lambda d: decode_obj(ReadingFields, d), encode_obj),
    **{f"body_{cls.__name__}": ((lambda d, c=cls: decode_obj(c, d)), encode_obj) for cls in BODY_TYPES.values()},
}


def ends_well(name: str, data: bytes) -> Any:
    """Decode with decoder `name`: the object (whose encoding must be `data` exactly) or None after a
    Rejected with a known reason and a detail. Any other exception fails the test."""
    decode_fn, encode_fn = DECODERS[name]
    try:
        value = decode_fn(data)
    except Rejected as exc:
        assert exc.reason in REASONS, f"unknown reason {exc.reason!r}"
        assert exc.detail, f"{exc.reason} without a detail"
        return None
    assert encode_fn(value) == data, "decoded, but the bytes are not its one canonical encoding"
    return value


def is_valid_tx(tx: Tx) -> bool:
    return tx.verify(METER.public) if isinstance(tx, MeterReading) else tx.verify()


def is_valid_block(block: Block) -> bool:
    """Everything a node checks about a block's bytes without state: seal, tx root and every signature."""
    return seal_valid(block.header, block.seal) and tx_root_of(block.txs) == block.header.tx_root \
        and all(is_valid_tx(tx) for tx in block.txs)


def test_fixtures_are_valid() -> None:
    """The originals pass every check, so the 'mutants never verify' properties below can fail."""
    assert all(is_valid_tx(tx) for tx in TXS)
    assert is_valid_block(BLOCK)
    for name, data in (("tx", encode_tx(READING)), ("block", BLOCK.encode()), ("header", encode_obj(HEADER))):
        assert ends_well(name, data) is not None


# ---------------------------------------------------------------------------------- random bytes

@FUZZ
@given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=400))
def test_random_bytes_end_in_rejected(name: str, data: bytes) -> None:
    ends_well(name, data)


@FUZZ
@given(st.sampled_from(sorted(DECODERS)), st.sampled_from(range(0x80, 0x100)), st.binary(max_size=60))
def test_random_bytes_after_every_type_byte(name: str, first: int, rest: bytes) -> None:
    """Random tails start with a random type byte: every container, str, bin and ext form gets its turn."""
    ends_well(name, bytes([first]) + rest)


# ------------------------------------------------------------------------- truncation and bit flips

VALID = {"header": encode_obj(HEADER), "seal": encode_obj(BLOCK.seal), "reading_fields": encode_obj(READING.fields),
         "tx": encode_tx(READING)}


@FUZZ
@given(st.sampled_from(sorted(VALID)), st.data())
def test_truncated_encodings_never_decode(name: str, data: st.DataObject) -> None:
    valid = VALID[name]
    cut = data.draw(st.integers(min_value=0, max_value=len(valid) - 1))
    with pytest.raises(DecodeError) as info:
        DECODERS[name][0](valid[:cut])
    assert info.value.reason == E.MALFORMED and info.value.detail


@FUZZ
@given(st.lists(st.integers(min_value=0, max_value=1 << 16), min_size=1, max_size=4))
def test_bit_flipped_header_decodes_only_to_another_block(bits: list[int]) -> None:
    """A header that still decodes after flips is another header: another hash, so the seal fails."""
    original = encode_obj(HEADER)
    data = flip_bits(original, bits)
    header = ends_well("header", data)
    if header is not None and data != original:
        assert header != HEADER and not seal_valid(header, BLOCK.seal)


@FUZZ
@given(st.lists(st.integers(min_value=0, max_value=1 << 20), min_size=1, max_size=3))
def test_bit_flipped_block_never_verifies(bits: list[int]) -> None:
    """Flips anywhere (header, seal, any tx, any signature) fail decoding, the seal, the tx root or a tx
    signature: a relayer cannot alter a block and keep it valid."""
    original = BLOCK.encode()
    data = flip_bits(original, bits)
    block = ends_well("block", data)
    if block is not None and data != original:
        assert not is_valid_block(block)


# ---------------------------------------------------------------- structure-aware mutations

def _paths(value: Any, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Every position in a plain value tree (the root too)."""
    out = [prefix]
    if type(value) is list:
        for i, item in enumerate(value):
            out += _paths(item, prefix + (i,))
    return out


def _replace(value: Any, path: tuple[int, ...], new: Any) -> Any:
    if not path:
        return new
    out = list(value)
    out[path[0]] = _replace(value[path[0]], path[1:], new)
    return out


hostile_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(1 << 63), max_value=U64_MAX)
    | st.sampled_from([0, 1, U64_MAX, -1, 1 << 63]) | st.binary(max_size=80) | st.text(max_size=40)
    | st.sampled_from([b"", "", b"\x00" * 20, b"\x00" * 32, b"\x00" * 33, b"\x00" * 64, "buy", "solar"]),
    lambda inner: st.lists(inner, max_size=6), max_leaves=12)

WIRES = {"tx": [decode(encode_tx(tx)) for tx in TXS], "block": [decode(BLOCK.encode())],
         "header": [decode(encode_obj(BLOCK.header))], "reading_fields": [decode(encode_obj(READING.fields))]}


@settings(FUZZ, max_examples=800)
@given(st.sampled_from(sorted(WIRES)), st.data(), hostile_values)
def test_one_wrong_value_anywhere_ends_in_rejected(name: str, data: st.DataObject, new: Any) -> None:
    """Well-formed canonical msgpack with one value replaced (a field, a list, the whole thing) reaches the
    shape checkers; what they let through is an object that no longer verifies."""
    original = data.draw(st.sampled_from(WIRES[name]))
    path = data.draw(st.sampled_from(_paths(original)))
    mutated = _replace(original, path, new)
    raw = encode(mutated)
    obj = ends_well(name, raw)
    if obj is not None and mutated != original:
        assert_no_longer_valid(name, obj, f"{path} -> {new!r}")


def assert_no_longer_valid(name: str, obj: Any, change: str) -> None:
    """A changed tx, block or header that still decodes must fail its signature, seal or tx root."""
    if name == "tx":
        assert not is_valid_tx(obj), f"a changed tx still verifies: {change}"
    elif name == "block":
        assert not is_valid_block(obj), f"a changed block still verifies: {change}"
    elif name == "header":
        assert not seal_valid(obj, BLOCK.seal), f"a changed header's seal still verifies: {change}"


def _same_type(value: Any) -> st.SearchStrategy[Any]:
    """Another value of the same wire type and size, so the result usually still decodes."""
    if type(value) is bool:
        return st.just(not value)
    if type(value) is int:
        return st.integers(min_value=0, max_value=U64_MAX)
    if type(value) is bytes:
        return st.binary(min_size=len(value), max_size=len(value))
    return st.text(min_size=len(value), max_size=len(value))


@settings(FUZZ, max_examples=800)
@given(st.sampled_from(sorted(WIRES)), st.data())
def test_same_typed_change_anywhere_never_verifies(name: str, data: st.DataObject) -> None:
    """Change one leaf (amount, key, nonce, register, signature, timestamp...) to another value of its type:
    the result mostly decodes, and then its signature, seal or tx root no longer holds."""
    original = data.draw(st.sampled_from(WIRES[name]))
    leaves = [p for p in _paths(original) if type(_get(original, p)) is not list]
    path = data.draw(st.sampled_from(leaves))
    new = data.draw(_same_type(_get(original, path)))
    mutated = _replace(original, path, new)
    obj = ends_well(name, encode(mutated))
    if obj is not None and mutated != original:
        assert_no_longer_valid(name, obj, f"{path} -> {new!r}")


@FUZZ
@given(st.sampled_from(sorted(WIRES)), st.data())
def test_dropped_or_added_item_ends_in_rejected(name: str, data: st.DataObject) -> None:
    original = data.draw(st.sampled_from(WIRES[name]))
    lists = [p for p in _paths(original) if type(_get(original, p)) is list]
    path = data.draw(st.sampled_from(lists))
    items = list(_get(original, path))
    if items and data.draw(st.booleans()):
        del items[data.draw(st.integers(min_value=0, max_value=len(items) - 1))]
    else:
        items.insert(data.draw(st.integers(min_value=0, max_value=len(items))), data.draw(hostile_values))
    obj = ends_well(name, encode(_replace(original, path, items)))
    if obj is not None and name == "tx":
        assert not is_valid_tx(obj)


def _get(value: Any, path: tuple[int, ...]) -> Any:
    for i in path:
        value = value[i]
    return value


# ------------------------------------------------------------------------ huge declared lengths

# (type byte, width of its length field) of every form that declares a length
LENGTH_FORMS = [(0xD9, 1), (0xDA, 2), (0xDB, 4), (0xC4, 1), (0xC5, 2), (0xC6, 4), (0xDC, 2), (0xDD, 4),
                (0xDE, 2), (0xDF, 4), (0xC7, 1), (0xC8, 2), (0xC9, 4)]


@FUZZ
@given(st.sampled_from(sorted(DECODERS)), st.sampled_from(LENGTH_FORMS), st.data(),
       st.sampled_from([b"", b"\x91", b"\x92\x01", b"\x93\x01\xc0"]), st.binary(max_size=16))
def test_huge_declared_lengths_are_refused_without_allocating(name: str, form: tuple[int, int],
                                                              data: st.DataObject, outer: bytes,
                                                              tail: bytes) -> None:
    """A header claiming up to 4 GiB of string, bytes, array, map or ext, at the top or inside a list,
    followed by almost nothing: refused at once (msgpack's length caps, then the truncation check)."""
    code, width = form
    big = data.draw(st.integers(min_value=(1 << (8 * width)) // 2, max_value=(1 << (8 * width)) - 1))
    raw = outer + bytes([code]) + big.to_bytes(width, "big") + tail
    assert ends_well(name, raw) is None


# --------------------------------------------------------------------------------- deep nesting

# one-element container openers; each needs one value after it
OPENERS = {"fixarray": b"\x91", "array16": b"\xdc\x00\x01", "array32": b"\xdd\x00\x00\x00\x01",
           "fixmap": b"\x81\x00", "map16": b"\xde\x00\x01\x00"}


@FUZZ
@given(st.sampled_from(sorted(DECODERS)), st.lists(st.sampled_from(sorted(OPENERS)), min_size=1, max_size=3),
       st.integers(min_value=1, max_value=3000))
def test_deep_nesting_of_any_container_ends_in_rejected(name: str, kinds: list[str], depth: int) -> None:
    used = [kinds[i % len(kinds)] for i in range(depth)]
    value = ends_well(name, b"".join(OPENERS[k] for k in used) + b"\x00")
    if name == "plain":  # the plain decoder accepts exactly canonical lists up to MAX_DEPTH
        assert (value is not None) == (set(used) == {"fixarray"} and depth <= MAX_DEPTH)


# ------------------------------------------------------------------------- signature decoders

@FUZZ
@given(st.one_of(st.binary(min_size=8, max_size=72),
                 st.builds(lambda r, s: encode_dss_signature(r, s),
                           st.integers(min_value=0, max_value=(1 << 256) - 1),
                           st.integers(min_value=0, max_value=(1 << 256) - 1))))
def test_reading_signature_of_any_shape_just_fails_to_verify(sig: bytes) -> None:
    """Readings carry DER chosen by whoever relays them; any bytes are a False, never an exception."""
    forged = dataclasses.replace(READING, signature=sig)
    assert forged.verify(METER.public) is False or sig == READING.signature


@FUZZ
@given(st.binary(min_size=33, max_size=33) | st.binary(max_size=70))
def test_reading_against_any_meter_key_just_fails_to_verify(public: bytes) -> None:
    """Meter keys come from enrollment txs: a malformed point is a False too."""
    assert READING.verify(public) is False or public == METER.public


def test_high_s_reading_signature_is_refused() -> None:
    """ECDSA's (r, n - s) twin verifies mathematically; the strict rule refuses it (one encoding per reading)."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    r, s = decode_dss_signature(READING.signature)
    twin = dataclasses.replace(READING, signature=encode_dss_signature(r, P256_ORDER - s))
    assert READING.verify(METER.public) and not twin.verify(METER.public)
