"""Upgrading a stopped node's database from schema 1 (whole-list state records) to schema 2 (per entry).

Schema 1 kept an account's holdings (`sl<addr>`), the order book (`sB`) and the expiry schedule (`sS`) as
one record each, and a sell order's lots inside the order. Schema 2 keeps one entry per lot held, per
resting order and per scheduled expiry (ledger/state.py), counts each account's open offers and orders,
and indexes each account's offers, trades and orders (ledger/queries.py).

The state root commits to the layout, so the upgrade is a checkpoint: the converted state is the state
after the head block, under a new root; blocks up to that head keep their schema-1 roots and are never
executed or reverted again (their undo data is dropped, and a reorg below the checkpoint is refused).
Every node of a network must therefore upgrade at the same block: `to_height` first reverts the head to
that height with the schema-1 undo data (the lowest head among the nodes), then converts. A node that
joins later starts from a copy of an upgraded data dir, since blocks before the checkpoint cannot be
replayed under schema-2 roots.

Checkpoint record: `M` -> [height, block hash, schema-2 root]. Runs in one atomic batch after the revert:
a crash leaves the database either at schema 1 (run it again) or fully at schema 2.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from .encoding import decode, encode
from .queries import LIST_OFFERS, LIST_ORDERS, LIST_TRADES, listing_key
from .state import (STATE_PREFIX, Account, Offer, Order, Trade, _unpack, k_account, k_book, k_due, k_holding,
                    k_order, k_order_lot, k_source_wh, recompute_accumulator, root_of)
from .store import KV, MemoryKV

K_CHECKPOINT = b"M"


class UpgradeError(Exception):
    """The database cannot be upgraded as asked (the message says why)."""


def schema_version(kv: KV) -> int:
    raw = kv.get(b"V")
    return decode(raw) if raw is not None else 0


def upgrade_v1_to_v2(kv: KV, to_height: int | None = None) -> dict[str, Any]:
    """Convert a schema-1 database to schema 2 at its head (or at `to_height`, reverting down to it first);
    returns what it did. Raises UpgradeError if the database is not schema 1 or cannot get there."""
    version = schema_version(kv)
    if version != 1:
        raise UpgradeError(f"database schema version is {version}; this upgrade converts version 1")
    if kv.get(b"R") is not None:
        raise UpgradeError("a head move was interrupted: start the old build once to finish it, then upgrade")
    reverted = _revert_to(kv, to_height) if to_height is not None else 0
    head = kv.get(b"H")
    meta = _unpack(kv.get(b"m" + head))  # type: ignore[arg-type,operator]
    height = meta[0]
    writes, counts = _convert_state(kv)
    # the new accumulator: apply the writes to a scratch copy of the state and hash it from scratch
    scratch = MemoryKV()
    scratch.write(dict(kv.iterate(STATE_PREFIX)))
    scratch.write({k: v for k, v in writes.items() if k.startswith(STATE_PREFIX)})
    acc = recompute_accumulator(scratch)
    meta[4] = acc.to_bytes(256, "big")
    writes[b"m" + head] = encode(meta)
    for key, _raw in kv.iterate(b"u"):  # schema-1 undo data: the checkpoint is never reverted
        writes[key] = None
    writes[b"V"] = encode(2)
    writes[K_CHECKPOINT] = encode([height, head, root_of(acc)])
    kv.write(writes)
    return {"height": height, "head": head.hex(), "reverted": reverted, "root": root_of(acc).hex(), **counts}


def upgrade_together(kvs: list[KV]) -> int | None:
    """Upgrade the schema-1 databases of one network's stopped nodes at their last common block: the highest
    height every one of them has, with the same block there (a node that upgraded already fixes it at its
    checkpoint). Returns that height, or None if none of them is at schema 1."""
    old = [kv for kv in kvs if schema_version(kv) == 1]
    if not old:
        return None
    checkpoints = {tuple(_unpack(raw)[:2]) for kv in kvs if (raw := kv.get(K_CHECKPOINT)) is not None}
    if len(checkpoints) > 1:
        raise UpgradeError("the upgraded nodes have different checkpoints")
    if checkpoints:
        height, block_hash = next(iter(checkpoints))
        if any(kv.get(b"n" + height.to_bytes(8, "big")) != block_hash for kv in old):
            raise UpgradeError(f"a node does not have the checkpoint block {block_hash.hex()} at {height}")
    else:
        height = min(_unpack(kv.get(b"m" + kv.get(b"H")))[0] for kv in old)  # type: ignore[operator]
        while height > 0 and len({kv.get(b"n" + height.to_bytes(8, "big")) for kv in old}) != 1:
            height -= 1
    for kv in old:
        upgrade_v1_to_v2(kv, to_height=height)
    return height


def _revert_to(kv: KV, height: int) -> int:
    """Revert schema-1 head blocks down to `height` with their undo data (a batch per block)."""
    n = 0
    while True:
        head = kv.get(b"H")
        meta = _unpack(kv.get(b"m" + head))  # type: ignore[arg-type,operator]
        if meta[0] <= height:
            if meta[0] < height:
                raise UpgradeError(f"the head is at {meta[0]}, below the height {height} asked for")
            return n
        undo = kv.get(b"u" + head)  # type: ignore[operator]
        if undo is None:
            raise UpgradeError(f"no undo data for block {head.hex()} at {meta[0]}")
        writes: dict[bytes, bytes | None] = {key: old for key, old in reversed(_unpack(undo))}
        writes[b"u" + head] = None
        writes[b"n" + meta[0].to_bytes(8, "big")] = None
        writes[b"H"] = meta[2]
        kv.write(writes)
        n += 1


def _convert_state(kv: KV) -> tuple[dict[bytes, bytes | None], dict[str, int]]:
    writes: dict[bytes, bytes | None] = {}
    lots = 0
    for key, raw in kv.iterate(b"sl"):
        addr = key[2:]
        totals: Counter[str] = Counter()
        for lot_id, wh, source in _unpack(raw):
            writes[k_holding(addr, source, lot_id)] = encode(wh)
            totals[source] += wh
            lots += 1
        for source, wh in totals.items():
            writes[k_source_wh(addr, source)] = encode(wh)
        writes[key] = None
    open_orders: Counter[bytes] = Counter()
    open_offers: Counter[bytes] = Counter()
    listings: list[tuple[int, bytes, bytes, bytes]] = []  # (height, addr, kind, id)
    orders = 0
    for key, raw in kv.iterate(b"sO"):
        order_id, order = key[2:], Order.unpack(raw)
        for lot_id, wh, source in order.lots:
            writes[k_order_lot(order_id, lot_id)] = encode([wh, source])
        if order.lots:
            order.lots = []
            writes[key] = order.pack()
        listings.append((order.height, order.owner, LIST_ORDERS, order_id))
        orders += 1
    book = kv.get(b"sB")
    resting = 0
    if book is not None:
        buys, sells = _unpack(book)
        for side, entries in (("buy", buys), ("sell", sells)):
            for price_key, seq, order_id in entries:
                writes[k_book(side, abs(price_key), seq)] = order_id
                owner = Order.unpack(kv.get(k_order(order_id))).owner  # type: ignore[arg-type]
                open_orders[owner] += 1
                resting += 1
        writes[b"sB"] = None
    schedule = kv.get(b"sS")
    due = 0
    if schedule is not None:
        for end, kind, item_id in _unpack(schedule):
            writes[k_due(end, kind, item_id)] = b""
            due += 1
        writes[b"sS"] = None
    for key, raw in kv.iterate(b"so"):
        offer = Offer.unpack(raw)
        if offer.status == "open":
            open_offers[offer.seller] += 1
        listings.append((offer.height, offer.seller, LIST_OFFERS, key[2:]))
    for key, raw in kv.iterate(b"st"):
        trade = Trade.unpack(raw)
        listings.append((trade.height, trade.buyer, LIST_TRADES, key[2:]))
        listings.append((trade.height, trade.seller, LIST_TRADES, key[2:]))
    for key, raw in kv.iterate(b"sa"):
        addr = key[2:]
        acct = Account.unpack(raw)
        acct.open_offers, acct.open_orders = open_offers[addr], open_orders[addr]
        writes[key] = acct.pack()
    for addr in (set(open_offers) | set(open_orders)) - {k[2:] for k, _v in kv.iterate(b"sa")}:
        acct = Account(open_offers=open_offers[addr], open_orders=open_orders[addr])
        writes[k_account(addr)] = acct.pack()
    for seq, (height, addr, kind, item_id) in enumerate(sorted(listings)):
        writes[listing_key(addr, kind, height.to_bytes(8, "big") + seq.to_bytes(4, "big"))] = item_id
    return writes, {"lots": lots, "orders": orders, "resting_orders": resting, "scheduled": due,
                    "listings": len(listings)}
