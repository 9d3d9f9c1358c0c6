"""Canonical msgpack encoding and the schema of protocol objects.

Protocol objects are frozen dataclasses whose fields are annotated with a `Spec`. On the wire an object
is a msgpack array of its fields in declaration order (no maps: key order would be a second encoding of
the same value). Decoding accepts exactly one byte string per value: it re-encodes what it decoded and
rejects any difference, so non-minimal integers, str/bin confusion, floats, maps and trailing bytes all
fail with a precise error.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import msgpack

from .errors import DecodeError

MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # a block with 10k txs fits with room; anything larger is hostile
MAX_CONTAINER_LEN = 100_000  # items in one msgpack array; a block's tx list is the longest protocol list
MAX_DEPTH = 16  # lists inside lists; protocol objects nest at most 6 deep (block > txs > tx > fields > body)
# Items one message may build: at most one per ITEM_BYTES bytes of input, plus a little. Each list entry is
# one item and each list two more (a list object weighs about a scalar and a pointer array). Protocol
# messages hold one item per 6-8 bytes (a block of transfers and readings: 7.6), but an empty list is one
# byte of msgpack and ~60 bytes of Python: without this bound 8 MiB of nested empty lists built 582 MiB.
# Counted as lists complete, so decoding stops as soon as the budget is passed; what it builds stays
# within a small multiple of the input (tests/unit/test_decoder_and_mempool_limits.py measures it).
ITEM_BYTES = 4
ITEM_SLACK = 1024
U64_MAX = (1 << 64) - 1

T = TypeVar("T")


def encode(value: Any) -> bytes:
    """The canonical bytes of a plain value (ints, bytes, str, bool, None, lists)."""
    return msgpack.packb(value, use_bin_type=True)


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Decode canonical msgpack to plain values; anything else raises DecodeError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes")
    if len(data) > max_bytes:
        raise DecodeError(f"message of {len(data)} bytes exceeds {max_bytes}")
    budget = len(data) // ITEM_BYTES + ITEM_SLACK
    built = 0

    def count_items(items: list[Any]) -> list[Any]:
        nonlocal built
        built += len(items) + 2
        if built > budget:
            raise _TooManyItems
        return items

    try:
        value = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, list_hook=count_items,
            max_str_len=max_bytes, max_bin_len=max_bytes, max_array_len=MAX_CONTAINER_LEN, max_map_len=0,
            max_ext_len=0,
        )
    except _TooManyItems:
        raise DecodeError(f"more than {budget} items in {len(data)} bytes (one per {ITEM_BYTES} bytes "
                          f"is the most a protocol message has)") from None
    except msgpack.ExtraData:
        raise DecodeError("trailing bytes after the value") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise DecodeError(f"not msgpack: {str(exc) or type(exc).__name__}") from None
    _check_plain(value)
    try:
        canonical = encode(value)
    except (TypeError, ValueError, OverflowError) as exc:  # pragma: no cover - unpackb output always packs
        raise DecodeError(f"unencodable value: {exc}") from None
    if canonical != bytes(data):
        raise DecodeError("non-canonical encoding (non-minimal form, float, map or wrong string type)")
    return value


class _TooManyItems(Exception):
    """Raised inside the unpacker to stop it building a message past its item budget."""


_PLAIN_TYPES = frozenset((int, bytes, str, bool, type(None)))


_NOT_PLAIN = "floats, maps and extension types are not part of the canonical encoding"


def _check_plain(value: Any) -> None:
    """Raise DecodeError unless value holds only protocol types, with lists at most MAX_DEPTH deep.

    A float64, an empty map or an empty ext re-encodes to itself, so the byte comparison in `decode`
    cannot catch them. The depth bound is far below msgpack's own (1024): no protocol object needs more,
    and every later walk over a decoded value stays cheap and far from Python's recursion limit."""
    if type(value) is not list:
        if type(value) not in _PLAIN_TYPES:
            raise DecodeError(_NOT_PLAIN)
        return
    stack: list[tuple[list[Any], int]] = [(value, 1)]
    while stack:
        items, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DecodeError(f"lists nested more than {MAX_DEPTH} deep")
        for item in items:
            t = type(item)
            if t is list:
                stack.append((item, depth + 1))
            elif t not in _PLAIN_TYPES:
                raise DecodeError(_NOT_PLAIN)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --------------------------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Spec:
    """How one field looks on the wire and which values it admits."""

    kind: str  # "uint", "bytes", "str", "bool", "obj", "list"
    size: int | None = None  # exact byte length for bytes
    max_len: int | None = None  # max length for bytes, str and list
    of: Any = None  # nested class for obj/list
    optional: bool = False


def uint() -> Spec:
    return Spec("uint")


def fixed(n: int) -> Spec:
    return Spec("bytes", size=n)


def blob(max_len: int) -> Spec:
    return Spec("bytes", max_len=max_len)


def text(max_len: int) -> Spec:
    return Spec("str", max_len=max_len)


def boolean() -> Spec:
    return Spec("bool")


def obj(cls: type) -> Spec:
    return Spec("obj", of=cls)


def listof(spec: Spec, max_len: int) -> Spec:
    return Spec("list", of=spec, max_len=max_len)


def _checker(name: str, spec: Spec) -> Callable[[Any], Any]:
    """Build a function that validates one wire value and returns the Python value for the field."""
    kind = spec.kind
    if kind == "uint":
        def check_uint(v: Any) -> int:
            if type(v) is not int or v < 0 or v > U64_MAX:
                raise DecodeError(f"{name}: expected unsigned 64-bit integer")
            return v
        return check_uint
    if kind == "bytes":
        size, max_len = spec.size, spec.max_len

        def check_bytes(v: Any) -> bytes:
            if type(v) is not bytes:
                raise DecodeError(f"{name}: expected bytes")
            if size is not None and len(v) != size:
                raise DecodeError(f"{name}: expected {size} bytes, got {len(v)}")
            if max_len is not None and len(v) > max_len:
                raise DecodeError(f"{name}: longer than {max_len} bytes")
            return v
        return check_bytes
    if kind == "str":
        max_len = spec.max_len or 0

        def check_str(v: Any) -> str:
            if type(v) is not str:
                raise DecodeError(f"{name}: expected string")
            if len(v) > max_len:
                raise DecodeError(f"{name}: longer than {max_len} characters")
            return v
        return check_str
    if kind == "bool":
        def check_bool(v: Any) -> bool:
            if type(v) is not bool:
                raise DecodeError(f"{name}: expected boolean")
            return v
        return check_bool
    if kind == "obj":
        cls = spec.of

        def check_obj(v: Any) -> Any:
            return from_wire(cls, v)
        return check_obj
    if kind == "list":
        inner = _checker(f"{name}[]", spec.of)
        max_len = spec.max_len or 0

        def check_list(v: Any) -> tuple[Any, ...]:
            if type(v) is not list:
                raise DecodeError(f"{name}: expected list")
            if len(v) > max_len:
                raise DecodeError(f"{name}: more than {max_len} items")
            return tuple(inner(x) for x in v)
        return check_list
    raise TypeError(f"unknown spec kind {kind}")


def _to_plain(spec: Spec) -> Callable[[Any], Any]:
    if spec.kind == "obj":
        return to_wire
    if spec.kind == "list":
        inner = _to_plain(spec.of)
        return lambda v: [inner(x) for x in v]
    return lambda v: v


def wire(cls: type[T]) -> type[T]:
    """Class decorator: record the wire schema of a frozen dataclass from its field metadata."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    specs = []
    for f in fields:
        spec = f.metadata.get("spec")
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name} has no wire spec")
        specs.append((f.name, spec))
    cls._wire_names = tuple(n for n, _ in specs)  # type: ignore[attr-defined]
    cls._wire_check = tuple(_checker(f"{cls.__name__}.{n}", s) for n, s in specs)  # type: ignore[attr-defined]
    cls._wire_plain = tuple(_to_plain(s) for _, s in specs)  # type: ignore[attr-defined]
    return cls


def field(spec: Spec, **kwargs: Any) -> Any:
    """A dataclass field carrying its wire spec."""
    return dataclasses.field(metadata={"spec": spec}, **kwargs)


def to_wire(value: Any) -> list[Any]:
    """The plain-list form of a protocol object (what gets msgpack-encoded)."""
    cls = type(value)
    return [plain(getattr(value, n)) for n, plain in zip(cls._wire_names, cls._wire_plain)]


def from_wire(cls: type[T], value: Any) -> T:
    """Build a protocol object from its plain-list form, checking every field."""
    checks = cls._wire_check  # type: ignore[attr-defined]
    if type(value) is not list or len(value) != len(checks):
        raise DecodeError(f"{cls.__name__}: expected a list of {len(checks)} fields")
    return cls(*[check(v) for check, v in zip(checks, value)])


def encode_obj(value: Any) -> bytes:
    return encode(to_wire(value))


def decode_obj(cls: type[T], data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> T:
    return from_wire(cls, decode(data, max_bytes))

