"""Pending transactions and readings, checked against the head state, waiting for a block.

Invariants that keep it simple and bounded:
  * each sender's pending nonces form one contiguous run starting at its account nonce, so a block
    builder can always take them in order; what breaks the run (a dropped or stale tx) drops its
    successors too, and eviction only ever takes the last tx of a run;
  * each meter's pending readings follow each other (counter, interval, registers), checked by executing
    the earlier pending readings first;
  * size is bounded (signed txs and readings separately) and per sender/meter; when full, a tx that pays
    more than the cheapest evictable one replaces it, otherwise it is refused with `mempool_full`. The
    evictable txs (the last of each sender's run) are kept in a heap, so admission at capacity costs
    O(log n), not a scan of every sender.
Signed txs are admitted with `Chain.check_tx(pending_nonce=...)`; readings with the wall clock `now_ms`.
After every new head, included txs leave, txs of reverted blocks come back, and what the new state made
invalid is dropped (checked a bounded number per head, round robin, so a big pool costs little per block).
Dropped txs are remembered (bounded) with their reason for `GET /tx/{txid}`.
"""
from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator, NoReturn, Sequence

from ledger import errors as E
from ledger.block import Block
from ledger.chain import Chain
from ledger.errors import Rejected
from ledger.state import StateOverlay
from ledger.transition import Transition
from ledger.tx import MeterReading, OcmfReading, SignedTx, Tx, Vote

from .codes import MEMPOOL_FULL

REVALIDATE_BUDGET = 1000  # full re-checks (signature + rules) per new head


@dataclass
class Entry:
    tx: Tx
    seq: int  # arrival order: ties in fee go to the earlier tx
    received_ms: int


@dataclass
class Dropped:
    tx: Tx
    reason: str
    detail: str


def reading_slot(tx: Tx) -> tuple[bytes, int] | None:
    """(meter id, order within the meter) of a reading: a native reading's counter, an OCMF record's time
    (each meter's accepted records strictly increase in time); None for a signed tx."""
    if isinstance(tx, MeterReading):
        return tx.fields.meter_id, tx.fields.counter
    if isinstance(tx, OcmfReading):
        return tx.meter_id, tx.parsed.time_ms
    return None


class Mempool:
    def __init__(self, chain: Chain, max_size: int = 20_000, per_sender: int = 128, max_readings: int | None = None,
                 remember_dropped: int = 10_000) -> None:
        self.chain = chain
        self.max_size = max_size
        self.max_readings = max_readings if max_readings is not None else max_size
        self.per_sender = per_sender
        self.entries: dict[bytes, Entry] = {}
        self.by_sender: dict[bytes, dict[int, bytes]] = {}  # address -> nonce -> txid
        self.by_meter: dict[bytes, dict[int, bytes]] = {}  # meter id -> counter -> txid
        self.signed_count = 0
        self.reading_count = 0
        self.dropped: OrderedDict[bytes, Dropped] = OrderedDict()
        self.remember_dropped = remember_dropped
        self._seq = itertools.count()
        self._cursor = 0  # round-robin position of revalidation
        # (fee, -seq, txid) of each sender's last pending tx, cheapest and then newest first; entries go
        # stale when a run changes and are skipped when met (rebuilt when stale ones outnumber live ones)
        self._evictable: list[tuple[int, int, bytes]] = []

    # reading ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, txid: object) -> bool:
        return txid in self.entries

    def get(self, txid: bytes) -> Tx | None:
        e = self.entries.get(txid)
        return e.tx if e is not None else None

    def next_nonce(self, addr: bytes) -> int:
        """The nonce the sender's next transaction needs: account nonce plus its pending run."""
        nonce = self.chain.account(addr).nonce
        pend = self.by_sender.get(addr)
        if pend:
            while nonce in pend:
                nonce += 1
        return nonce

    def pending_of(self, addr: bytes) -> list[Tx]:
        pend = self.by_sender.get(addr, {})
        return [self.entries[pend[n]].tx for n in sorted(pend)]

    # admission --------------------------------------------------------------------------------------
    def add(self, tx: Tx, now_ms: int) -> None:
        """Admit a transaction or raise Rejected with the reason."""
        if tx.txid in self.entries:
            raise Rejected(E.DUPLICATE, "already pending")
        if isinstance(tx, MeterReading):
            self._add_reading(tx, now_ms)
        elif isinstance(tx, OcmfReading):
            self._add_ocmf(tx, now_ms)
        elif isinstance(tx, SignedTx):
            self._add_signed(tx, now_ms)
        else:  # a finality vote: the node's vote pool holds those (node/finality.py)
            raise Rejected(E.MALFORMED, f"a {tx.kind} does not go to the mempool")

    def _add_signed(self, tx: SignedTx, now_ms: int) -> None:
        sender = tx.sender_address
        pend = self.by_sender.get(sender, {})
        account_nonce = self.chain.account(sender).nonce
        if tx.nonce in pend:  # replacement of a pending tx: only for a higher fee
            old = self.entries[pend[tx.nonce]]
            assert isinstance(old.tx, SignedTx)
            if tx.fee <= old.tx.fee:
                self._refuse(tx, E.DUPLICATE, f"nonce {tx.nonce} is already pending with fee {old.tx.fee}; "
                                              "a replacement must pay a higher fee")
            self.chain.check_tx(tx, now_ms, pending_nonce=tx.nonce if tx.nonce > account_nonce else None)
            self._remove(old.tx.txid)
            self.remember(old.tx, E.DUPLICATE, f"replaced by {tx.txid.hex()} with a higher fee")
            self._insert(tx, now_ms)
            return
        expected = account_nonce
        while expected in pend:
            expected += 1
        if tx.nonce > expected:
            self._refuse(tx, E.BAD_NONCE, f"expected nonce {expected} (account {account_nonce}, "
                                          f"{expected - account_nonce} pending), got {tx.nonce}")
        if len(pend) >= self.per_sender:
            self._refuse(tx, MEMPOOL_FULL, f"sender has {len(pend)} pending transactions (limit {self.per_sender})")
        self.chain.check_tx(tx, now_ms, pending_nonce=expected if expected != account_nonce else None)
        if self.signed_count >= self.max_size:
            self._evict_for(tx)
        self._insert(tx, now_ms)

    @staticmethod
    def _refuse(tx: SignedTx, reason: str, detail: str) -> NoReturn:
        """Raise `reason`, unless the signature is forged: that is said first, whatever else is wrong."""
        if not tx.verify():
            raise Rejected(E.BAD_SIGNATURE, "account signature does not verify")
        raise Rejected(reason, detail)

    def _evict_for(self, tx: SignedTx) -> None:
        """Make room by dropping the cheapest last-of-run tx of another sender, if it pays less: the top of
        the evictable heap, past stale entries and the sender's own last tx (O(log n) amortized)."""
        victim: Entry | None = None
        own: list[tuple[int, int, bytes]] = []
        heap = self._evictable
        while heap:
            _fee, neg_seq, txid = heap[0]
            entry = self.entries.get(txid)
            if entry is None or entry.seq != -neg_seq or not self._is_last(entry):
                heapq.heappop(heap)
                continue
            if entry.tx.sender_address == tx.sender_address:  # type: ignore[union-attr]
                own.append(heapq.heappop(heap))
                continue
            victim = entry
            break
        for item in own:
            heapq.heappush(heap, item)
        if victim is None or victim.tx.fee >= tx.fee:  # type: ignore[union-attr]
            raise Rejected(MEMPOOL_FULL, f"mempool holds {self.signed_count} transactions; pay a higher fee "
                                         f"than {victim.tx.fee if victim else 0} to replace one")  # type: ignore
        self._remove(victim.tx.txid)
        self.remember(victim.tx, MEMPOOL_FULL, "evicted by a transaction paying a higher fee")

    def _add_reading(self, tx: MeterReading, now_ms: int) -> None:
        self._add_metered(tx, tx.fields.meter_id, tx.fields.counter, E.COUNTER_NOT_INCREASING,
                          "counter {slot} <= pending reading's counter {last}", now_ms)

    def _add_ocmf(self, tx: OcmfReading, now_ms: int) -> None:
        """Like a native reading: a meter's pending records follow each other (in time, hence paging)."""
        self._add_metered(tx, tx.meter_id, tx.parsed.time_ms, E.INTERVAL_OVERLAP,
                          "a pending record of this meter is not older than this one", now_ms)

    def _add_metered(self, tx: Tx, meter: bytes, slot: int, stale: str, stale_detail: str, now_ms: int) -> None:
        """A meter's readings queue in order of `slot` (counter, or record time), each judged after the
        pending ones before it; at most `per_sender` per meter and `max_readings` in all."""
        pend = self.by_meter.get(meter, {})
        if pend:
            last = max(pend)
            if slot <= last:
                raise Rejected(stale, stale_detail.format(slot=slot, last=last))
            if len(pend) >= self.per_sender:
                raise Rejected(MEMPOOL_FULL, f"meter has {len(pend)} pending readings (limit {self.per_sender})")
            self._check_after([self.entries[pend[c]].tx for c in sorted(pend)], tx, now_ms)
        else:
            self.chain.check_tx(tx, now_ms)
        if self.reading_count >= self.max_readings:
            raise Rejected(MEMPOOL_FULL, f"mempool holds {self.reading_count} readings")
        self._insert(tx, now_ms)

    def _check_after(self, predecessors: Sequence[Tx], tx: Tx, now_ms: int) -> None:
        """Would `tx` apply on the head state after its pending predecessors? (Chain.check_tx, extended.)"""
        chain = self.chain
        if chain.tx_location(tx.txid) is not None:
            raise Rejected(E.DUPLICATE, "already in the chain")
        st = StateOverlay(chain.kv, chain.head.accumulator)
        tr = Transition(st, chain.admission_context(now_ms))
        for p in predecessors:
            try:
                tr.apply(p, verified=True)
            except Rejected as exc:
                raise Rejected(exc.reason, f"a pending predecessor no longer applies: {exc.detail}") from None
        tr.apply(tx)

    def _is_last(self, entry: Entry) -> bool:
        """Is this signed tx the last of its sender's pending run (the only kind eviction may take)?"""
        tx = entry.tx
        pend = self.by_sender.get(tx.sender_address)  # type: ignore[union-attr]
        return bool(pend) and max(pend) == tx.nonce and pend[tx.nonce] == tx.txid  # type: ignore[union-attr,index]

    def _push_last(self, sender: bytes) -> None:
        """Put the sender's current last pending tx on the evictable heap (rebuilding it if mostly stale)."""
        pend = self.by_sender.get(sender)
        if not pend:
            return
        entry = self.entries[pend[max(pend)]]
        heapq.heappush(self._evictable, (entry.tx.fee, -entry.seq, entry.tx.txid))  # type: ignore[union-attr]
        if len(self._evictable) > 2 * len(self.by_sender) + 64:
            lasts = (self.entries[p[max(p)]] for p in self.by_sender.values())
            self._evictable = [(e.tx.fee, -e.seq, e.tx.txid) for e in lasts]  # type: ignore[union-attr]
            heapq.heapify(self._evictable)

    def _insert(self, tx: Tx, now_ms: int) -> None:
        self.entries[tx.txid] = Entry(tx, next(self._seq), now_ms)
        self.dropped.pop(tx.txid, None)
        slot = reading_slot(tx)
        if slot is not None:
            self.by_meter.setdefault(slot[0], {})[slot[1]] = tx.txid
            self.reading_count += 1
        else:
            self.by_sender.setdefault(tx.sender_address, {})[tx.nonce] = tx.txid
            self.signed_count += 1
            self._push_last(tx.sender_address)

    def _remove(self, txid: bytes) -> Tx | None:
        entry = self.entries.pop(txid, None)
        if entry is None:
            return None
        tx = entry.tx
        meter_slot = reading_slot(tx)
        if meter_slot is not None:
            index, self.reading_count = self.by_meter, self.reading_count - 1
            key, slot = meter_slot
        else:
            index, key, self.signed_count = self.by_sender, tx.sender_address, self.signed_count - 1
            slot = tx.nonce
        pend = index.get(key)
        if pend is not None:
            if pend.get(slot) == txid:
                del pend[slot]
            if not pend:
                del index[key]
            elif index is self.by_sender:
                self._push_last(key)
        return tx

    def remember(self, tx: Tx, reason: str, detail: str) -> None:
        """Keep why a tx left or was refused, for GET /tx/{txid} (bounded, oldest forgotten first)."""
        self.dropped[tx.txid] = Dropped(tx, reason, detail)
        self.dropped.move_to_end(tx.txid)
        while len(self.dropped) > self.remember_dropped:
            self.dropped.popitem(last=False)

    def drop(self, txid: bytes, reason: str, detail: str) -> list[bytes]:
        """Remove a tx that no longer applies, and its sender's (meter's) later ones, which depend on it."""
        entry = self.entries.get(txid)
        if entry is None:
            return []
        tx = entry.tx
        meter_slot = reading_slot(tx)
        if meter_slot is not None:
            pend = self.by_meter.get(meter_slot[0], {})
            later = [pend[c] for c in sorted(pend) if c > meter_slot[1]]
        else:
            pend = self.by_sender.get(tx.sender_address, {})
            later = [pend[n] for n in sorted(pend) if n > tx.nonce]
        self._remove(txid)
        self.remember(tx, reason, detail)
        gone = [txid]
        for t in later:
            dep = self._remove(t)
            if dep is not None:
                self.remember(dep, reason, f"an earlier pending transaction was dropped ({detail})")
                gone.append(t)
        return gone

    # block building ---------------------------------------------------------------------------------
    def select(self) -> Iterator[Tx]:
        """Candidates for the next block, best first: readings (per meter in counter order), then signed txs
        by fee (earlier arrival breaks ties) with each sender's txs in nonce order."""
        readings = sorted(self.by_meter.values(), key=lambda p: min(self.entries[t].seq for t in p.values()))
        runs = [[self.entries[p[n]] for n in sorted(p)] for p in self.by_sender.values()]
        for pend in readings:
            for c in sorted(pend):
                yield self.entries[pend[c]].tx
        heap = [(-run[0].tx.fee, run[0].seq, i, 0) for i, run in enumerate(runs)]  # type: ignore[union-attr]
        heapq.heapify(heap)
        while heap:
            _, _, i, j = heapq.heappop(heap)
            run = runs[i]
            yield run[j].tx
            if j + 1 < len(run):
                nxt = run[j + 1]
                heapq.heappush(heap, (-nxt.tx.fee, nxt.seq, i, j + 1))  # type: ignore[union-attr]

    # new head ---------------------------------------------------------------------------------------
    def on_new_head(self, applied: Sequence[Block], reverted: Sequence[Block], now_ms: int) -> list[Tx]:
        """Included txs leave; txs of reverted blocks come back (oldest first); invalid ones go.
        Returns the txs that came back (the node gossips them again)."""
        back: list[Tx] = []
        included: set[bytes] = set()
        for block in applied:
            for tx in block.txs:
                included.add(tx.txid)
                self._remove(tx.txid)
        for block in reversed(reverted):
            for tx in block.txs:
                if tx.txid in included or tx.txid in self.entries or isinstance(tx, Vote):
                    continue  # (a reverted block's votes are for checkpoints of the losing branch)
                try:
                    self.add(tx, now_ms)
                    back.append(tx)
                except Rejected as exc:  # e.g. the winning chain spent its nonce: say so at GET /tx
                    if exc.reason != E.DUPLICATE:
                        self.remember(tx, exc.reason, f"its block left the chain in a reorg: {exc.detail}")
        self.revalidate(now_ms)
        return [tx for tx in back if tx.txid in self.entries]

    def revalidate(self, now_ms: int, budget: int = REVALIDATE_BUDGET) -> None:
        """Drop stale txs (nonce or counter already used on chain) everywhere, and fully re-check the first
        pending tx of up to `budget` senders and meters (round robin), dropping a run that no longer applies."""
        firsts: list[Tx] = []
        for addr in list(self.by_sender):
            nonce = self.chain.account(addr).nonce
            pend = self.by_sender.get(addr, {})
            for n in sorted(pend):
                if n < nonce:
                    self._remove_and_remember(pend[n], E.BAD_NONCE, f"nonce {n} was used by another transaction")
            pend = self.by_sender.get(addr, {})
            if pend:
                first = min(pend)
                if first != nonce:
                    self.drop(pend[first], E.BAD_NONCE, f"expected nonce {nonce}, the pending run starts at {first}")
                else:
                    firsts.append(self.entries[pend[first]].tx)
        for meter_id in list(self.by_meter):
            meter = self.chain.meter(meter_id)
            pend = self.by_meter.get(meter_id, {})
            for c in sorted(pend):
                if meter is not None and c <= meter.counter:
                    self._remove_and_remember(pend[c], E.COUNTER_NOT_INCREASING,
                                              f"counter {c} <= last on chain {meter.counter}")
            pend = self.by_meter.get(meter_id, {})
            if pend:
                firsts.append(self.entries[pend[min(pend)]].tx)
        if not firsts:
            return
        start = self._cursor % len(firsts)
        chosen = (firsts[start:] + firsts[:start])[:budget]
        self._cursor = start + len(chosen)
        for tx in chosen:
            if tx.txid not in self.entries:
                continue
            try:
                self.chain.check_tx(tx, now_ms)
            except Rejected as exc:
                self.drop(tx.txid, exc.reason, exc.detail)

    def _remove_and_remember(self, txid: bytes, reason: str, detail: str) -> None:
        tx = self._remove(txid)
        if tx is not None:
            self.remember(tx, reason, detail)
