"""The ledger state: records, their key layout, and a write-back overlay for one block.

Key layout (all state keys start with b"s", so the state root covers exactly them):
    sp            params (from genesis)            sG        global totals
    sa<addr20>    Account                          sL<lot_id24>  Lot provenance
    sm<id16>      Meter                            so<id32>  Offer
    st<id32>      Trade                            sO<id32>  Order
    sh<addr20><src1><lot_id24>  wh of one lot an account holds (src1: index of the lot's source)
    sw<addr20><src1>            wh an account holds of one source (sum of its sh entries of that source)
    sk<order_id32><lot_id24>    [wh, source] of one lot locked in a sell order
    sb<side1><price8><seq8>     order id of a resting order; side b"b" buys (price stored as 2**64-1-price,
                                so both sides iterate best first) or b"s" sells
    ss<end8><kind1><id32>       b"": an offer (kind 0) or trade (kind 1) that expires at window end `end`
A lot id is interval_start (8 bytes, big endian) + meter id, so within one holder and source key order
is age order; a holder spends its oldest energy first (across sources by merging the per-source ranges).
Every growing collection is one entry per item, so a transaction reads and writes only the entries it
changes, and its undo data is as small as its change (schema version 2; version 1 kept whole lists).

The state root is a homomorphic multiset hash (AdHash over a 2048-bit modulus, the construction behind
Solana's accounts lattice hash): the sum of H(key, value) over all state entries. A block updates it in
O(changed keys), and anyone can recompute it from the stored state to check the head header.
"""
from __future__ import annotations

import bisect
import dataclasses
import hashlib
import heapq
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, TypeVar

import msgpack

from .encoding import encode
from .store import KV
from .tx import BUY, SOURCES

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
    open_offers: int = 0  # offers of this seller still open (capped: ledger/fees.py)
    open_orders: int = 0  # orders of this owner resting on the book (capped)


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
def k_lot(lot_id: bytes) -> bytes: return b"sL" + lot_id
def k_meter(meter_id: bytes) -> bytes: return b"sm" + meter_id
def k_offer(offer_id: bytes) -> bytes: return b"so" + offer_id
def k_trade(trade_id: bytes) -> bytes: return b"st" + trade_id
def k_order(order_id: bytes) -> bytes: return b"sO" + order_id


K_PARAMS, K_GLOBALS = b"sp", b"sG"
P_HOLDING, P_SOURCE_WH, P_ORDER_LOT, P_BOOK, P_DUE = b"sh", b"sw", b"sk", b"sb", b"ss"
BOOK_BUY, BOOK_SELL = b"b", b"s"
DUE_OFFER, DUE_TRADE = 0, 1
PRICE_MAX = (1 << 64) - 1
_SOURCE_BYTE = {source: bytes([i]) for i, source in enumerate(SOURCES)}


def source_byte(source: str) -> bytes:
    return _SOURCE_BYTE[source]


def k_holding(addr: bytes, source: str, lot_id: bytes) -> bytes:
    return P_HOLDING + addr + _SOURCE_BYTE[source] + lot_id


def k_source_wh(addr: bytes, source: str) -> bytes:
    return P_SOURCE_WH + addr + _SOURCE_BYTE[source]


def k_order_lot(order_id: bytes, lot_id: bytes) -> bytes:
    return P_ORDER_LOT + order_id + lot_id


def k_book(side: str, price_per_wh: int, seq: int) -> bytes:
    """Resting order key: iterating b"sb" + side gives that side best price first, then oldest first."""
    if side == BUY:
        return P_BOOK + BOOK_BUY + (PRICE_MAX - price_per_wh).to_bytes(8, "big") + seq.to_bytes(8, "big")
    return P_BOOK + BOOK_SELL + price_per_wh.to_bytes(8, "big") + seq.to_bytes(8, "big")


def k_due(window_end: int, kind: int, item_id: bytes) -> bytes:
    return P_DUE + window_end.to_bytes(8, "big") + bytes([kind]) + item_id


def book_price(key: bytes) -> int:
    """The price of a resting order from its book key."""
    raw = int.from_bytes(key[3:11], "big")
    return PRICE_MAX - raw if key[2:3] == BOOK_BUY else raw


def _range_group(key: bytes) -> bytes:
    """The group of ranged keys an overlay keeps one sorted list of written keys for."""
    head = key[:2]
    if head == P_HOLDING or head == P_SOURCE_WH:
        return key[:22]
    if head == P_ORDER_LOT:
        return key[:34]
    return head


_RANGED = (P_HOLDING, P_ORDER_LOT, P_BOOK, P_DUE)


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
        self._written: dict[bytes, list[bytes]] = {}  # range group -> sorted keys put in that group

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
        """Store a new record, raw bytes (ranged entries) or None to delete."""
        if key not in self._original:
            self._original[key] = self.kv.get(key)
        if key[:2] in _RANGED:
            written = self._written.setdefault(_range_group(key), [])
            i = bisect.bisect_left(written, key)
            if i == len(written) or written[i] != key:
                written.insert(i, key)
        self._cache[key] = value

    def raw(self, key: bytes) -> bytes | None:
        """The current bytes of a ranged entry (None if absent)."""
        return self._load(key, _identity)

    def iterate(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, bytes) of the current ranged entries under `prefix` in key order, from `start`: the stored
        ones merged with this block's writes. Reads only as far as the caller iterates, so taking the
        oldest lot or the best order costs one seek, not a scan. Writes made while iterating are seen."""
        group = _range_group(prefix)
        stored = self.kv.iterate(prefix, start)
        low = max(prefix, start) if start is not None else prefix
        nxt = next(stored, None)
        last: bytes | None = None
        while True:
            written = self._written.get(group, ())
            i = bisect.bisect_left(written, low) if last is None else bisect.bisect_right(written, last)
            mine = written[i] if i < len(written) and written[i].startswith(prefix) else None
            while nxt is not None and last is not None and nxt[0] <= last:
                nxt = next(stored, None)
            if mine is None and nxt is None:
                return
            if nxt is None or (mine is not None and mine <= nxt[0]):
                key, value = mine, self._cache[mine]
            else:
                key = nxt[0]
                value = self._cache[key] if key in self._cache else nxt[1]
            last = key
            if value is not None:
                yield key, value  # type: ignore[misc]

    # typed access -------------------------------------------------------------------------------
    def account(self, addr: bytes) -> Account:
        acc = self._load(k_account(addr), Account.unpack)
        if acc is None:
            acc = Account()
            self._cache[k_account(addr)] = acc
        return acc

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


def _identity(raw: bytes) -> bytes:
    return raw


def _encode_value(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, Record):
        return value.pack()
    return encode(value)


# ------------------------------------------------------------------------------------ lots held

def _int(raw: bytes) -> int:
    return int(_unpack(raw))


def source_wh(st: StateOverlay, addr: bytes, source: str) -> int:
    raw = st.raw(k_source_wh(addr, source))
    return _int(raw) if raw is not None else 0


def _add_source_wh(st: StateOverlay, addr: bytes, source: str, delta: int) -> None:
    total = source_wh(st, addr, source) + delta
    st.put(k_source_wh(addr, source), encode(total) if total else None)


def holding_add(st: StateOverlay, addr: bytes, lot_id: bytes, wh: int, source: str) -> bool:
    """Add wh of a lot to an account; the same lot adds up, different lots never merge.
    True if this created a new entry (the account did not hold that lot)."""
    key = k_holding(addr, source, lot_id)
    raw = st.raw(key)
    st.put(key, encode((_int(raw) if raw is not None else 0) + wh))
    _add_source_wh(st, addr, source, wh)
    return raw is None


def _account_lots(st: StateOverlay, addr: bytes, source: str) -> Iterator[tuple[bytes, bytes, int, str]]:
    """(key, lot_id, wh, source) of an account's lots, oldest first; all sources merged if source is ''."""
    if source:
        for key, raw in st.iterate(P_HOLDING + addr + _SOURCE_BYTE[source]):
            yield key, key[23:], _int(raw), source
        return
    held = [s for s in SOURCES if source_wh(st, addr, s)]
    if len(held) == 1:
        yield from _account_lots(st, addr, held[0])
        return
    yield from heapq.merge(*(_account_lots(st, addr, s) for s in held), key=lambda e: e[1])


def holdings_take(st: StateOverlay, addr: bytes, wh: int, source: str = "") -> list[list[Any]]:
    """Remove wh from an account oldest-first (only lots of `source` if given); the caller checked that
    it holds enough. Reads and writes only the lots it takes. Returns [[lot_id, wh, source], ...]."""
    taken = _take(_account_lots(st, addr, source), wh)
    for key, lot_id, part, left, src in taken:
        st.put(key, encode(left) if left else None)
    by_source: dict[str, int] = {}
    for _key, _lot, part, _left, src in taken:
        by_source[src] = by_source.get(src, 0) + part
    for src, part in by_source.items():
        _add_source_wh(st, addr, src, -part)
    return [[lot_id, part, src] for _key, lot_id, part, _left, src in taken]


def _take(lots: Iterator[tuple[bytes, bytes, int, str]], wh: int) -> list[tuple[bytes, bytes, int, int, str]]:
    """(key, lot_id, part taken, wh left, source) for the oldest lots that cover wh; reads no further."""
    taken = []
    for key, lot_id, have, source in lots:
        if wh <= 0:
            break
        part = min(wh, have)
        taken.append((key, lot_id, part, have - part, source))
        wh -= part
    assert wh <= 0, "the caller checks availability first"
    return taken


def order_lot_add(st: StateOverlay, order_id: bytes, lot_id: bytes, wh: int, source: str) -> None:
    key = k_order_lot(order_id, lot_id)
    raw = st.raw(key)
    st.put(key, encode([(_unpack(raw)[0] if raw is not None else 0) + wh, source]))


def _order_lots(st: StateOverlay, order_id: bytes) -> Iterator[tuple[bytes, bytes, int, str]]:
    for key, raw in st.iterate(P_ORDER_LOT + order_id):
        wh, source = _unpack(raw)
        yield key, key[34:], wh, source


def order_lots_take(st: StateOverlay, order_id: bytes, wh: int) -> list[list[Any]]:
    """Remove wh oldest-first from the lots a sell order locked (a fill)."""
    taken = _take(_order_lots(st, order_id), wh)
    for key, _lot_id, _part, left, src in taken:
        st.put(key, encode([left, src]) if left else None)
    return [[lot_id, part, src] for _key, lot_id, part, _left, src in taken]


def order_lots_release(st: StateOverlay, order_id: bytes) -> list[list[Any]]:
    """Remove and return every lot a sell order still holds (cancel)."""
    lots = list(_order_lots(st, order_id))
    for key, _lot_id, _wh, _src in lots:
        st.put(key, None)
    return [[lot_id, wh, src] for _key, lot_id, wh, src in lots]


# ------------------------------------------------------------------------- order book and schedule

def book_add(st: StateOverlay, side: str, price_per_wh: int, seq: int, order_id: bytes) -> None:
    st.put(k_book(side, price_per_wh, seq), order_id)


def book_remove(st: StateOverlay, side: str, price_per_wh: int, seq: int) -> None:
    st.put(k_book(side, price_per_wh, seq), None)


def book_best(st: StateOverlay, side: str) -> Iterator[tuple[int, bytes]]:
    """(price, order id) of one side's resting orders, best price first, then oldest first."""
    for key, order_id in st.iterate(P_BOOK + (BOOK_BUY if side == BUY else BOOK_SELL)):
        yield book_price(key), order_id


def schedule_add(st: StateOverlay, window_end: int, kind: int, item_id: bytes) -> None:
    st.put(k_due(window_end, kind, item_id), b"")


def schedule_due(st: StateOverlay, now_s: int) -> list[tuple[int, bytes]]:
    """Take (kind, id) of everything due at or before now_s off the schedule, in (time, kind, id) order;
    reads only what is due (plus one entry past it)."""
    due: list[tuple[bytes, int, bytes]] = []
    for key, _raw in st.iterate(P_DUE):
        if int.from_bytes(key[2:10], "big") > now_s:
            break
        due.append((key, key[10], key[11:]))
    for key, _kind, _id in due:
        st.put(key, None)
    return [(kind, item_id) for _key, kind, item_id in due]


def iterate_records(kv: KV, prefix: bytes, cls: type[R]) -> Iterator[tuple[bytes, R]]:
    """(id, record) for every stored record under a key prefix (read-only queries)."""
    for key, raw in kv.iterate(prefix):
        yield key[len(prefix):], cls.unpack(raw)


def entry_problems(kv: KV) -> list[str]:
    """Where the per-entry state disagrees with itself (kwh-node --check-db): per-source totals against the
    lots held, accounts' Wh and open counts against their entries, the book against the open orders, and
    each sell order's locked lots against what it has left. Reads all of the state once."""
    problems: list[str] = []
    held: dict[bytes, int] = {}
    for key, raw in kv.iterate(P_HOLDING):
        held[key[2:23]] = held.get(key[2:23], 0) + _int(raw)
    totals = {key[2:]: _int(raw) for key, raw in kv.iterate(P_SOURCE_WH)}
    for group in held.keys() | totals.keys():
        if held.get(group, 0) != totals.get(group, 0):
            problems.append(f"account {group[:20].hex()} holds {held.get(group, 0)} Wh of source {group[20]} in "
                            f"lots but its total says {totals.get(group, 0)}")
    resting: dict[bytes, int] = {}
    for key, order_id in kv.iterate(P_BOOK):
        raw = kv.get(k_order(order_id))
        order = Order.unpack(raw) if raw is not None else None
        if order is None or order.status != "open" or k_book(order.side, order.price_per_wh, order.seq) != key:
            problems.append(f"book entry {key.hex()} names order {order_id.hex()}, which is not open there")
            continue
        resting[order.owner] = resting.get(order.owner, 0) + 1
    for key, raw in kv.iterate(b"sO"):
        order = Order.unpack(raw)
        locked = sum(_unpack(v)[0] for _k, v in kv.iterate(P_ORDER_LOT + key[2:]))
        if order.side != BUY and locked != (order.remaining if order.status == "open" else 0):
            problems.append(f"sell order {key[2:].hex()} locks {locked} Wh in lots, {order.remaining} remain")
    wh_of: dict[bytes, int] = {}
    for group, wh in totals.items():
        wh_of[group[:20]] = wh_of.get(group[:20], 0) + wh
    for key, raw in kv.iterate(b"sa"):
        addr, acct = key[2:], Account.unpack(raw)
        wh = wh_of.get(addr, 0)
        if acct.wh != wh or acct.open_orders != resting.get(addr, 0):
            problems.append(f"account {addr.hex()}: wh {acct.wh} / open orders {acct.open_orders}, its entries "
                            f"say {wh} / {resting.get(addr, 0)}")
    return problems
