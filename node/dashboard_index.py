"""The dashboard's memory of the recent chain: hourly energy, per-block mining energy, meters' readings.

The charts need series that no stored index holds (Wh per hour, a meter's readings in order), and the
dashboard must never scan the whole chain per request. So the node keeps one bounded digest of the
last `max_blocks` canonical blocks in memory, from the dashboard's first visit on (node/dashboard.py),
brought up to date after every new head:

* per hour of **block time**: Wh minted, consumed, redeemed and settled, as the change of the ledger's
  global counters (`Globals`) over each block. The counters before a block are in its undo data, so the
  figures are exact and add up to the totals of `GET /energy`, order-book fills included; and the
  mining energy of those blocks (their seals' joules).
* per hour of **metering interval**: exported and imported Wh of the readings, by the hour their
  interval started (what the meters measured, whenever the block came); OCMF records by their block's hour.
* per block: time, hashes, joules, difficulty, and the grid surplus signal this node had when the block
  arrived (None for blocks it indexed later, e.g. after a restart: the signal is not on chain).
* per meter: its last `readings_per_meter` readings (at most `max_meters` meters).
* the ids of the last `market_ids` offers and trades (their txids), so the market page reads a page of
  records by id instead of iterating every offer and trade ever made.

The walk goes from the head back along `prev_hash`, so a reorg during the walk cannot mix two branches;
a reorg below the indexed top, or a gap larger than `max_blocks`, starts the digest again.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ledger.chain import Chain
from ledger.encoding import decode
from ledger.state import Globals
from ledger.tx import AcceptOffer, MeterReading, PostOffer, SignedTx

HOUR_S = 3600
YIELD_EVERY = 50  # blocks walked between yields to the event loop (~1,200 blocks/s: ~40 ms slices)


@dataclass(frozen=True)
class BlockPoint:
    height: int
    timestamp_ms: int
    hashes: int
    energy_mj: int
    estimated: bool
    difficulty: int
    txs: int


@dataclass(frozen=True)
class ReadingPoint:
    interval_start: int
    interval_s: int
    export_wh: int
    import_wh: int
    height: int
    txid: str


@dataclass
class _Walk:
    """What one walk down from a head found, merged into the digest only when the walk completed."""
    by_block_hour: dict[int, list[int]] = field(default_factory=dict)
    by_interval_hour: dict[int, list[int]] = field(default_factory=dict)
    blocks: list[BlockPoint] = field(default_factory=list)
    readings: dict[bytes, list[ReadingPoint]] = field(default_factory=dict)
    offers: list[bytes] = field(default_factory=list)  # newest first, like the walk
    trades: list[bytes] = field(default_factory=list)


def _globals_before(chain: Chain, block_hash: bytes, height: int, after: Globals) -> Globals | None:
    """The global counters before the block: the chain's record of them (`q<hash>`, kept for blocks that
    changed them, also after their undo data was pruned), or `after` if the block did not change them.
    None if the block is no longer canonical (a reorg took it away while the digest was walking)."""
    if chain.canonical_hash(height) != block_hash:
        return None
    raw = chain.kv.get(b"q" + block_hash)
    if raw is None:
        return after
    (old,) = decode(raw)
    return Globals.unpack(old) if old is not None else Globals()


class DashboardIndex:
    def __init__(self, chain: Chain, max_blocks: int = 100_000, max_hours: int = 24 * 90,
                 block_points: int = 2000, readings_per_meter: int = 96, max_meters: int = 10_000,
                 market_ids: int = 500) -> None:
        self.chain = chain
        self.max_blocks = max_blocks
        self.max_hours = max_hours
        self.readings_per_meter = readings_per_meter
        self.max_meters = max_meters
        self.market_ids = market_ids
        self.block_points: deque[BlockPoint] = deque(maxlen=block_points)
        self.surplus: dict[int, int] = {}  # height -> surplus W this node had when the block arrived
        self._surplus_order: deque[int] = deque()
        self._lock = asyncio.Lock()
        self.reset()

    def reset(self) -> None:
        self.top_height = 0
        self.top_hash: bytes | None = None
        self.low_height = 0  # the lowest block the digest covers
        # hour -> [minted, consumed, redeemed, settled (Wh), mining energy (mJ)]
        self.by_block_hour: dict[int, list[int]] = {}
        self.by_interval_hour: dict[int, list[int]] = {}  # hour -> [export, import]
        self.block_points.clear()
        self.readings: dict[bytes, deque[ReadingPoint]] = {}
        self.offers: deque[bytes] = deque(maxlen=self.market_ids)  # oldest first
        self.trades: deque[bytes] = deque(maxlen=self.market_ids)

    def note_surplus(self, height: int, surplus_w: int) -> None:
        """Record the grid signal at the arrival of the block at `height` (bounded like the block points)."""
        if height not in self.surplus:
            self._surplus_order.append(height)
        self.surplus[height] = surplus_w
        while len(self._surplus_order) > (self.block_points.maxlen or 0):
            self.surplus.pop(self._surplus_order.popleft(), None)

    async def refresh(self) -> None:
        """Bring the digest up to the current head; yields to the event loop every few hundred blocks."""
        async with self._lock:
            for _attempt in range(3):
                if await self._extend():
                    return

    async def current(self, wait_blocks: int = 2000) -> None:
        """Up to date for a request, unless that means a long walk (more than `wait_blocks` new blocks,
        about two seconds) or a walk is already running: the request then gets the digest as it is, with
        the range it covers, while the node's follower task walks on."""
        if not self._lock.locked() and self.chain.height - self.top_height <= wait_blocks:
            await self.refresh()

    async def _extend(self) -> bool:
        """One walk from the head down to our top (or `max_blocks` down); False if it must be tried again.
        Everything the walk keeps is bounded like the digest, so a first walk of a long chain stays small."""
        chain = self.chain
        target_height, target_hash, after = chain.height, chain.head_hash, chain.globals()
        if target_hash == self.top_hash:
            return True
        if self.top_hash is not None and (chain.canonical_hash(self.top_height) != self.top_hash
                                          or target_height - self.top_height > self.max_blocks):
            self.reset()  # a reorg took our top off the chain, or we fell too far behind: start again
        low = max(self.top_height + 1, target_height - self.max_blocks + 1, 1)
        walk = _Walk()
        block_hash = target_hash
        for n, height in enumerate(range(target_height, low - 1, -1)):
            block = chain.block(block_hash)
            before = _globals_before(chain, block_hash, height, after) if block is not None else None
            if block is None or before is None or block.height != height:
                self.reset()  # the chain moved under the walk
                return False
            self._take(walk, block, before, after)
            after, block_hash = before, block.header.prev_hash
            if n % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let the node serve and import between slices of a long walk
        if self.top_hash is not None and block_hash != self.top_hash:
            self.reset()  # a reorg during the walk: the new blocks do not continue our top
            return False
        self._merge(walk)
        if self.top_hash is None:
            self.low_height = low
        self.top_height, self.top_hash = target_height, target_hash
        return True

    def _take(self, walk: _Walk, block: Any, before: Globals, after: Globals) -> None:
        hour = block.header.timestamp_ms // 1000 // HOUR_S * HOUR_S
        delta = [after.minted_wh - before.minted_wh, after.consumed_wh - before.consumed_wh,
                 after.redeemed_wh - before.redeemed_wh, after.settled_wh - before.settled_wh,
                 block.seal.energy_mj]
        if any(delta):
            row = walk.by_block_hour.setdefault(hour, [0, 0, 0, 0, 0])
            for i, v in enumerate(delta):
                row[i] += v
        seal = block.seal
        # the walk goes newest first, so each list keeps its first (newest) items up to its bound
        if len(walk.blocks) < (self.block_points.maxlen or 0):
            walk.blocks.append(BlockPoint(block.height, block.header.timestamp_ms, seal.hashes, seal.energy_mj,
                                          seal.energy_estimated, block.header.difficulty, len(block.txs)))
        native_export = native_import = 0
        for tx in reversed(block.txs):  # newest first, like the walk
            if isinstance(tx, MeterReading):
                native_export += tx.fields.export_wh
                native_import += tx.fields.import_wh
                f = tx.fields
                ih = f.interval_start // HOUR_S * HOUR_S
                row = walk.by_interval_hour.setdefault(ih, [0, 0])
                row[0] += f.export_wh
                row[1] += f.import_wh
                points = walk.readings.get(f.meter_id)
                if points is None and len(walk.readings) < self.max_meters:
                    points = walk.readings[f.meter_id] = []
                if points is not None and len(points) < self.readings_per_meter:
                    points.append(ReadingPoint(f.interval_start, f.interval_s, f.export_wh, f.import_wh,
                                               block.height, tx.txid.hex()))
            elif isinstance(tx, SignedTx) and isinstance(tx.body, PostOffer) and len(walk.offers) < self.market_ids:
                walk.offers.append(tx.txid)
            elif isinstance(tx, SignedTx) and isinstance(tx.body, AcceptOffer) and len(walk.trades) < self.market_ids:
                walk.trades.append(tx.txid)
        # OCMF records mint the register difference since the meter's previous record, which the record alone
        # does not say: what the block minted and recorded beyond its native readings is theirs, counted at
        # the block's hour (their interval ends at most at the parent block's time)
        ocmf = (delta[0] - native_export, delta[1] - native_import)
        if any(ocmf):
            row = walk.by_interval_hour.setdefault(hour, [0, 0])
            row[0] += ocmf[0]
            row[1] += ocmf[1]

    def _merge(self, walk: _Walk) -> None:
        for src, dst in ((walk.by_block_hour, self.by_block_hour), (walk.by_interval_hour, self.by_interval_hour)):
            for hour, row in src.items():
                cur = dst.setdefault(hour, [0] * len(row))
                for i, v in enumerate(row):
                    cur[i] += v
            if len(dst) > self.max_hours:
                for hour in sorted(dst)[:len(dst) - self.max_hours]:
                    del dst[hour]
        for point in reversed(walk.blocks):
            self.block_points.append(point)
        self.offers.extend(reversed(walk.offers[:self.market_ids]))
        self.trades.extend(reversed(walk.trades[:self.market_ids]))
        for meter_id, points in walk.readings.items():
            dq = self.readings.get(meter_id)
            if dq is None:
                if len(self.readings) >= self.max_meters:
                    continue
                dq = self.readings[meter_id] = deque(maxlen=self.readings_per_meter)
            for p in sorted(points, key=lambda p: p.interval_start):
                dq.append(p)

    # views ----------------------------------------------------------------------------------------
    def hours(self, table: dict[int, list[int]], limit: int, before: int | None) -> tuple[list[tuple[int, list[int]]],
                                                                                          int | None]:
        """Up to `limit` hours (oldest first) that end before `before`, and the cursor to the page before."""
        keys = sorted(h for h in table if before is None or h < before)
        page = keys[-limit:]
        next_cursor = page[0] if len(keys) > len(page) else None
        return [(h, table[h]) for h in page], next_cursor

    def recent_blocks(self, limit: int) -> list[BlockPoint]:
        n = len(self.block_points)
        return [self.block_points[i] for i in range(max(0, n - limit), n)]

    def meter_readings(self, meter_id: bytes, limit: int) -> list[ReadingPoint]:
        dq = self.readings.get(meter_id)
        if dq is None:
            return []
        return list(dq)[-limit:]
