"""The ledger state: records, their key layout, and a write-back overlay for one block.

Key layout (all state keys start with b"s", so the state root covers exactly them):
    sp            params (from genesis)            sG        global totals
    sa<addr20>    Account                          sl<addr20> holdings: [[lot_id, wh, source], ...]
    sL<lot_id24>  Lot provenance                   sm<id16>   Meter
    so<id32>      Offer                            st<id32>   Trade
    sO<id32>      Order                            sB         order book (price-time sorted ids)
    sS            expiry schedule of offers and trades: [[window_end, kind, id], ...]
A lot id is interval_start (8 bytes, big endian) + meter id, so key order is age order and a holder
always spends its oldest energy first.

The state root is a homomorphic multiset hash (AdHash over a 2048-bit modulus, the construction behind
Solana's accounts lattice hash): the sum of H(key, value) over all state entries. A block updates it in
O(changed keys), and anyone can recompute it from the stored state to check the head header.
"""
from __future__ import annotations

import bisect
import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, TypeVar

import msgpack

from .encoding import encode
from .store import KV

STATE_PREFIX = b"s"
ACC_MODULUS = 1 << 2048
ACC_BYTES = 256

R = TypeVar("R", bound="Record")


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, use_list=True, strict_map_key=False)


class Record:
    """A mutable state record stored as a msgpack list of its fields."""
    _names: ClassVar[tuple[str, ...]] = ()

    def pack(self) -> bytes:
        return encode([getattr(self, n) for n in self._names])

    @classmethod
    def unpack(cls: type[R], raw: bytes) -> R:
        return cls(*_unpack(raw))

    def as_dict(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._names}


def record(cls: type[R]) -> type[R]:
    cls = dataclass(slots=True)(cls)
    cls._names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    return cls


@record
class Account(Record):
    coin: int = 0
    nonce: int = 0
    wh: int = 0  # spendable Wh (sum of holdings)
    locked_coin: int = 0  # in buy orders and trade escrow
    locked_wh: int = 0  # in sell orders
    consumed_wh: int = 0  # imported by meters this account owns
    redeemed_wh: int = 0  # burned against that consumption


@record
class Lot(Record):
    meter_id: bytes
    producer: bytes
    interval_start: int
    interval_s: int
    source: str
    minted_wh: int
    height: int
    reading_id: bytes


@record
class Meter(Record):
    public: bytes
    owner: bytes
    kind: str
    rated_w: int
    interval_s: int
    source: str
    active: bool
    counter: int  # last accepted counter
    next_start: int  # end of the last accepted interval; the next reading may not start before it
    export_register: int
    import_register: int
    enrolled_height: int
    minted_wh: int = 0
    consumed_wh: int = 0


@record
class Offer(Record):
    seller: bytes
    wh: int
    remaining: int  # not yet accepted
    price_per_wh: int
    window_start: int
    window_end: int
    source: str
    status: str  # open | filled | cancelled | expired
    height: int


@record
class Trade(Record):
    offer_id: bytes
    seller: bytes
    buyer: bytes
    wh: int
    price_per_wh: int
    escrow: int  # wh * price, locked from the buyer at acceptance
    delivered: int
    released: int  # paid to the seller so far
    refunded: int  # returned to the buyer at window end
    window_start: int
    window_end: int
    source: str
    status: str  # open | delivered | settled
    height: int
    updated: int = 0  # height of the last block that changed it (delivery, settlement): its finality


@record
class Order(Record):
    owner: bytes
    side: str
    price_per_wh: int
    wh: int
    remaining: int
    locked_coin: int  # buy: remaining * price
    lots: list  # sell: [[lot_id, wh, source], ...] locked from the owner's holdings
    seq: int
    status: str  # open | filled | cancelled
    height: int
    filled_wh: int = 0
    paid_coin: int = 0  # buy: coin paid for fills; sell: coin received
    updated: int = 0  # height of the last block that changed it (a fill, a cancel): its finality


@record
class Globals(Record):
    minted_wh: int = 0
    redeemed_wh: int = 0
    consumed_wh: int = 0
    settled_wh: int = 0  # Wh that changed hands through trades and the order book
    readings: int = 0
    seq: int = 0  # order sequence for time priority
    fees: int = 0


# ------------------------------------------------------------------------------------------- keys

def k_account(addr: bytes) -> bytes: return b"sa" + addr
def k_holdings(addr: bytes) -> bytes: return b"sl" + addr
def k_lot(lot_id: bytes) -> bytes: return b"sL" + lot_id
def k_meter(meter_id: bytes) -> bytes: return b"sm" + meter_id
def k_offer(offer_id: bytes) -> bytes: return b"so" + offer_id
def k_trade(trade_id: bytes) -> bytes: return b"st" + trade_id
def k_order(order_id: bytes) -> bytes: return b"sO" + order_id


K_PARAMS, K_GLOBALS, K_BOOK, K_SCHEDULE = b"sp", b"sG", b"sB", b"sS"


def lot_id_of(interval_start: int, meter_id: bytes) -> bytes:
    return interval_start.to_bytes(8, "big") + meter_id


# --------------------------------------------------------------------------------------- state root


def entry_hash(key: bytes, value: bytes) -> int:
    h = hashlib.shake_256(len(key).to_bytes(2, "big") + key + value).digest(ACC_BYTES)
    return int.from_bytes(h, "big")


def root_of(acc: int) -> bytes:
    return hashlib.sha256(b"kwh/state/v1" + acc.to_bytes(ACC_BYTES, "big")).digest()


def recompute_accumulator(kv: KV) -> int:
    """The accumulator from scratch, by reading every stored state entry (consistency checks)."""
    acc = 0
    for key, value in kv.iterate(STATE_PREFIX):
        acc = (acc + entry_hash(key, value)) % ACC_MODULUS
    return acc


# ------------------------------------------------------------------------------------------ overlay


_EMPTY_ACCOUNT = Account().pack()


class StateOverlay:
    """Read-through, write-back view of the state for one block.

    Records are decoded once and cached; rules mutate them in place after all their checks passed.
    `commit()` encodes what changed, updates the root accumulator and returns the writes with undo
    data. Nothing touches the database until the caller writes that batch.
    """

    def __init__(self, kv: KV, accumulator: int) -> None:
        self.kv = kv
        self.accumulator = accumulator
        self._cache: dict[bytes, Any] = {}
        self._original: dict[bytes, bytes | None] = {}

    def _load(self, key: bytes, decode: Any, default: Any = None) -> Any:
        try:
            return self._cache[key]
        except KeyError:
            pass
        raw = self.kv.get(key)
        self._original[key] = raw
        value = decode(raw) if raw is not None else default
        self._cache[key] = value
        return value

    def put(self, key: bytes, value: Any) -> None:
        """Store a new record (or None to delete)."""
        if key not in self._original:
            self._original[key] = self.kv.get(key)
        self._cache[key] = value

    # typed access -------------------------------------------------------------------------------
    def account(self, addr: bytes) -> Account:
        acc = self._load(k_account(addr), Account.unpack)
        if acc is None:
            acc = Account()
            self._cache[k_account(addr)] = acc
        return acc

    def holdings(self, addr: bytes) -> list[list[Any]]:
        key = k_holdings(addr)
        h = self._load(key, _unpack)
        if h is None:
            h = []
            self._cache[key] = h
        return h

    def lot(self, lot_id: bytes) -> Lot | None:
        return self._load(k_lot(lot_id), Lot.unpack)

    def meter(self, meter_id: bytes) -> Meter | None:
        return self._load(k_meter(meter_id), Meter.unpack)

    def offer(self, offer_id: bytes) -> Offer | None:
        return self._load(k_offer(offer_id), Offer.unpack)

    def trade(self, trade_id: bytes) -> Trade | None:
        return self._load(k_trade(trade_id), Trade.unpack)

    def order(self, order_id: bytes) -> Order | None:
        return self._load(k_order(order_id), Order.unpack)

    def globals(self) -> Globals:
        g = self._load(K_GLOBALS, Globals.unpack)
        if g is None:
            g = Globals()
            self._cache[K_GLOBALS] = g
        return g

    def book(self) -> list[list[list[Any]]]:
        """[buys, sells]; each [[price, seq, order_id], ...] best first."""
        b = self._load(K_BOOK, _unpack)
        if b is None:
            b = [[], []]
            self._cache[K_BOOK] = b
        return b

    def schedule(self) -> list[list[Any]]:
        s = self._load(K_SCHEDULE, _unpack)
        if s is None:
            s = []
            self._cache[K_SCHEDULE] = s
        return s

    def params(self) -> list[Any]:
        return self._load(K_PARAMS, _unpack)

    def record(self, key: bytes, cls: type[R]) -> R | None:
        """A record of any type under `key` (None if absent); mutate it in place to change it."""
        return self._load(key, cls.unpack)

    def value(self, key: bytes) -> Any:
        """A plain msgpack value under `key` (None if absent). A key is read either as a record or as a
        plain value, never both: the overlay caches one decoded form per key."""
        return self._load(key, _unpack)

    # commit ---------------------------------------------------------------------------------------
    def commit(self) -> tuple[dict[bytes, bytes | None], list[list[Any]]]:
        """Encode what changed: (writes, undo entries [key, old bytes or None]); updates the root."""
        writes: dict[bytes, bytes | None] = {}
        undo: list[list[Any]] = []
        acc = self.accumulator
        for key in sorted(self._cache):
            value = self._cache[key]
            new = _encode_value(value)
            if new is not None and new == _EMPTY_ACCOUNT and key.startswith(b"sa"):
                new = None  # an untouched default account is not stored
            old = self._original.get(key)
            if new == old:
                continue
            if old is not None:
                acc -= entry_hash(key, old)
            if new is not None:
                acc += entry_hash(key, new)
            writes[key] = new
            undo.append([key, old])
        self.accumulator = acc % ACC_MODULUS
        return writes, undo

    @property
    def root(self) -> bytes:
        return root_of(self.accumulator)


def _encode_value(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, Record):
        return value.pack()
    if isinstance(value, list) and not value:
        return None  # empty holdings / schedule are not stored
    return encode(value)


# -------------------------------------------------------------------------------------- holdings


def holdings_insert(holdings: list[list[Any]], lot_id: bytes, wh: int, source: str) -> None:
    """Add wh of a lot, keeping lot-id (age) order; the same lot adds up, different lots never merge."""
    i = bisect.bisect_left(holdings, lot_id, key=lambda e: e[0])
    if i < len(holdings) and holdings[i][0] == lot_id:
        holdings[i][1] += wh
    else:
        holdings.insert(i, [lot_id, wh, source])


def holdings_available(holdings: list[list[Any]], source: str = "") -> int:
    return sum(e[1] for e in holdings if not source or e[2] == source)


def holdings_take(holdings: list[list[Any]], wh: int, source: str = "") -> list[list[Any]]:
    """Remove wh oldest-first (only lots of `source` if given); the caller has checked availability."""
    taken: list[list[Any]] = []
    i = 0
    while wh > 0:
        entry = holdings[i]
        if source and entry[2] != source:
            i += 1
            continue
        part = min(wh, entry[1])
        taken.append([entry[0], part, entry[2]])
        entry[1] -= part
        wh -= part
        if entry[1] == 0:
            del holdings[i]
        else:
            i += 1
    return taken


def iterate_records(kv: KV, prefix: bytes, cls: type[R]) -> Iterator[tuple[bytes, R]]:
    """(id, record) for every stored record under a key prefix (read-only queries)."""
    for key, raw in kv.iterate(prefix):
        yield key[len(prefix):], cls.unpack(raw)
