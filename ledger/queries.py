"""Paged read-only queries over the committed state and the indexes: every answer is bounded.

A page is at most `limit` items and reads at most `MAX_SCAN` index entries (a filter that matches little
ends a page early, with a cursor to go on from). A cursor is the position of the last entry read, as
bytes; the API shows it as hex and clients treat it as opaque. Walking a set page by page from no cursor
to `next is None` visits every item once, in a stable order, even while blocks are added (new items of
a newest-first listing appear at its start, behind the walk).

Index of an account's offers, trades and orders (written with the block, reverted with it):
    j<addr20><kind1><height8><seq4> -> id     kind: b"f" offers it posted, b"t" trades it is party to,
                                              b"o" orders it placed
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

from .state import (BOOK_BUY, BOOK_SELL, P_BOOK, Meter, Offer, Order, Trade, _unpack, book_price, k_offer,
                    k_order, k_trade)
from .store import KV

MAX_SCAN = 10_000
LIST_OFFERS, LIST_TRADES, LIST_ORDERS = b"f", b"t", b"o"

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: list[T]
    next: bytes | None  # where the next page starts; None at the end


def listing_key(addr: bytes, kind: bytes, position: bytes) -> bytes:
    """Index key of one offer, trade or order of an account (position: height8 + seq4)."""
    return b"j" + addr + kind + position


def walk(kv: KV, prefix: bytes, cursor: bytes | None, limit: int,
         make: Callable[[bytes, bytes], T | None], reverse: bool = False, scan: int = MAX_SCAN) -> Page[T]:
    """Up to `limit` items made from the entries under `prefix` after `cursor` (a key suffix), in key order
    or reversed; `make(key suffix, value)` returns None to skip an entry. Reads at most `scan` entries."""
    if cursor is None:
        entries = kv.iterate(prefix, reverse=reverse)
    elif reverse:
        entries = kv.iterate(prefix, reverse=True, stop=prefix + cursor)
    else:
        entries = kv.iterate(prefix, start=prefix + cursor + b"\x00")
    items: list[T] = []
    last: bytes | None = None
    read = 0
    for key, value in entries:
        suffix = key[len(prefix):]
        if len(items) >= limit:
            return Page(items, last)  # one more entry exists (it may be filtered out: a page may come empty)
        read += 1
        item = make(suffix, value)
        last = suffix
        if item is not None:
            items.append(item)
        if read >= scan and len(items) < limit:
            return Page(items, last)
    return Page(items, None)


def _record(kv: KV, key: bytes, cls: Any) -> Any:
    raw = kv.get(key)
    return cls.unpack(raw) if raw is not None else None


# ------------------------------------------------------------------------------------------ pages

def history(kv: KV, addr: bytes, cursor: bytes | None, limit: int) -> Page[tuple[int, bytes, str]]:
    """(height, txid, kind) of an account's history, newest first."""
    def make(suffix: bytes, raw: bytes) -> tuple[int, bytes, str]:
        txid, kind = _unpack(raw)
        return int.from_bytes(suffix[:8], "big"), txid, kind
    return walk(kv, b"i" + addr, cursor, limit, make, reverse=True)


def lot_movements(kv: KV, lot_id: bytes, cursor: bytes | None, limit: int) -> Page[list[Any]]:
    """[txid, from, to, wh, kind] of a lot's movements, oldest first."""
    return walk(kv, b"k" + lot_id, cursor, limit, lambda _s, raw: _unpack(raw))


def meters(kv: KV, cursor: bytes | None, limit: int) -> Page[tuple[bytes, Meter]]:
    return walk(kv, b"sm", cursor, limit, lambda s, raw: (s, Meter.unpack(raw)))


def _by_id(kv: KV, prefix: bytes, cls: Any, cursor: bytes | None, limit: int,
           keep: Callable[[Any], bool]) -> Page[tuple[bytes, Any]]:
    def make(item_id: bytes, raw: bytes) -> tuple[bytes, Any] | None:
        rec = cls.unpack(raw)
        return (item_id, rec) if keep(rec) else None
    return walk(kv, prefix, cursor, limit, make)


def _of_account(kv: KV, addr: bytes, kind: bytes, key_of: Callable[[bytes], bytes], cls: Any,
                cursor: bytes | None, limit: int, keep: Callable[[Any], bool]) -> Page[tuple[bytes, Any]]:
    def make(_position: bytes, item_id: bytes) -> tuple[bytes, Any] | None:
        rec = _record(kv, key_of(item_id), cls)
        return (item_id, rec) if rec is not None and keep(rec) else None
    return walk(kv, b"j" + addr + kind, cursor, limit, make, reverse=True)


def offers(kv: KV, cursor: bytes | None, limit: int, status: str | None = None,
           seller: bytes | None = None) -> Page[tuple[bytes, Offer]]:
    """Offers by id, or a seller's newest first; with a status filter."""
    def keep(o: Offer) -> bool:
        return status is None or o.status == status
    if seller is not None:
        return _of_account(kv, seller, LIST_OFFERS, k_offer, Offer, cursor, limit, keep)
    return _by_id(kv, b"so", Offer, cursor, limit, keep)


def trades(kv: KV, cursor: bytes | None, limit: int, status: str | None = None,
           party: bytes | None = None) -> Page[tuple[bytes, Trade]]:
    """Trades by id, or those a party (buyer or seller) is in, newest first; with a status filter."""
    def keep(t: Trade) -> bool:
        return status is None or t.status == status
    if party is not None:
        return _of_account(kv, party, LIST_TRADES, k_trade, Trade, cursor, limit, keep)
    return _by_id(kv, b"st", Trade, cursor, limit, keep)


def orders(kv: KV, cursor: bytes | None, limit: int, status: str | None = None,
           owner: bytes | None = None) -> Page[tuple[bytes, Order]]:
    """Orders by id, or an owner's newest first; with a status filter."""
    def keep(o: Order) -> bool:
        return status is None or o.status == status
    if owner is not None:
        return _of_account(kv, owner, LIST_ORDERS, k_order, Order, cursor, limit, keep)
    return _by_id(kv, b"sO", Order, cursor, limit, keep)


def book_levels(kv: KV, side: str, depth: int, scan: int = MAX_SCAN) -> tuple[list[dict[str, int]], bool]:
    """The best `depth` price levels of one side: [{price_per_wh, wh, orders}], and whether the walk stopped
    at its scan bound inside a level (then the last level's totals count only the orders read)."""
    levels: list[dict[str, int]] = []
    read = 0
    for key, order_id in kv.iterate(P_BOOK + (BOOK_BUY if side == "buy" else BOOK_SELL)):
        price = book_price(key)
        if not levels or levels[-1]["price_per_wh"] != price:
            if len(levels) >= depth:
                return levels, False
            levels.append({"price_per_wh": price, "wh": 0, "orders": 0})
        order = _record(kv, k_order(order_id), Order)
        levels[-1]["wh"] += order.remaining
        levels[-1]["orders"] += 1
        read += 1
        if read >= scan:
            return levels, True
    return levels, False


def iterate_pages(fetch: Callable[[bytes | None], Page[T]]) -> Iterator[T]:
    """Every item of a paged listing (tests and tools)."""
    cursor: bytes | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if page.next is None:
            return
        cursor = page.next


def _block_evidence(suffix: bytes, raw: bytes) -> dict[str, Any]:
    first, second = _unpack(raw)
    return {"proposer": suffix[:32], "height": int.from_bytes(suffix[32:40], "big"), "blocks": [first, second]}


def _vote_evidence(suffix: bytes, raw: bytes) -> dict[str, Any]:
    kind, first, second = _unpack(raw)
    return {"voter": suffix[:32], "target_height": int.from_bytes(suffix[32:40], "big"), "kind": kind,
            "votes": [first, second]}


def evidence(kv: KV, cursor: bytes | None, limit: int) -> Page[dict[str, Any]]:
    """Equivocation evidence, paged: double-signed blocks (E entries, ledger/chain.py) first, then
    conflicting finality votes (e entries). An authority that misbehaves at every height adds an entry at
    every height, so no answer holds them all. The cursor's first byte names the list it is in."""
    if cursor is not None and cursor[:1] not in (b"E", b"e"):
        raise ValueError("not a cursor of /evidence")
    items: list[dict[str, Any]] = []
    if cursor is None or cursor[:1] == b"E":
        page = walk(kv, b"E", cursor[1:] if cursor else None, limit, _block_evidence)
        if page.next is not None:
            return Page(page.items, b"E" + page.next)
        items, limit, cursor = page.items, limit - len(page.items), None
        if limit == 0:  # full of block evidence: vote evidence, if any, starts the next page
            return Page(items, b"e" if next(iter(kv.iterate(b"e")), None) is not None else None)
    page = walk(kv, b"e", cursor[1:] if cursor else None, limit, _vote_evidence)
    return Page(items + page.items, b"e" + page.next if page.next is not None else None)

