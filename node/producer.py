"""Block production for an authority: wait for its time slot, build, mine, seal, import, gossip.

Timing follows Clique: the in-turn authority builds one interval after the parent; an out-of-turn one
only two intervals after it plus a random wiggle (so several out-of-turn authorities rarely collide). It
never signs when `Chain.recent_signers` forbids it, never twice at one height (that would be
equivocation), and not while catching up with a peer. The difficulty comes from the grid policy; a new
head (from a peer) cancels the search at once and production starts again on the new head.
"""
from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import TYPE_CHECKING

from ledger import errors as E
from ledger.block import seal_block
from ledger.errors import Rejected
from ledger.tx import Vote

from .service import now_ms

if TYPE_CHECKING:
    from .service import Node


# A transaction left out for these reasons becomes valid by itself as blocks go on: it stays pending.
WAIT_REASONS = frozenset({E.INTERVAL_IN_FUTURE})


async def _wait(event: asyncio.Event, seconds: float | None) -> bool:
    """True if the event was set within `seconds` (forever if None)."""
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
        return True
    except asyncio.TimeoutError:
        return False


class Producer:
    def __init__(self, node: "Node") -> None:
        self.node = node
        assert node.key is not None and node.miner is not None
        self.key = node.key
        self.interval_ms = node.chain.params.block_interval_ms
        self.last_height = 0  # highest height this process proposed at

    @property
    def wiggle_ms(self) -> float:
        return self.interval_ms * (len(self.node.chain.authorities) // 2 + 1) / 2

    def _proposed_at(self, height: int) -> bool:
        """Did this key already propose a block at `height` (seen by the chain, ours or a replay)?"""
        if height <= self.last_height:
            return True
        return self.node.chain.kv.get(b"P" + self.key.public + height.to_bytes(8, "big")) is not None

    async def run(self) -> None:
        node, log = self.node, self.node.log
        try:  # catch up first: a node that restarts behind should not sign stale heights
            await asyncio.wait_for(node.peers.initial_done.wait(), timeout=max(3.0, 3 * self.interval_ms / 1000))
        except asyncio.TimeoutError:
            pass
        while not node.stopping.is_set():
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. mining workers that keep dying: say so, go on
                log.error("production_failed", error=repr(exc))
                await _wait(node.stopping, max(1.0, self.interval_ms / 1000))

    async def _step(self) -> None:
        """One round: wait for this node's slot on the current head, then build, mine, seal and import."""
        node, chain, log = self.node, self.node.chain, self.node.log
        head_event = node.head_event
        if not node.authority:  # not (or no longer, or not yet) in the head's authority set
            await _wait(head_event, None)
            return
        if node.peers.syncing:
            await _wait(head_event, 0.2)
            return
        parent, parent_hash = chain.head, chain.head_hash
        height = parent.height + 1
        if self.key.public in chain.recent_signers(parent_hash) or self._proposed_at(height):
            await _wait(head_event, None)
            return
        in_turn = chain.in_turn(height, self.key.public)
        earliest = chain.earliest_timestamp(parent, height, self.key.public)
        wake = earliest + (0 if in_turn else random.uniform(0, self.wiggle_ms))
        delay = (wake - now_ms()) / 1000
        if delay > 0 and await _wait(head_event, delay):
            return  # a new head arrived while waiting
        async with node.lock:
            if chain.head_hash != parent_hash:
                return
            timestamp = max(earliest, now_ms())
            difficulty = node.grid.difficulty(node.miner.hash_rate())
            candidates = itertools.chain(node.votes.select(), node.mempool.select())  # votes first: finality
            with node.energy.section("transition"):  # executing the candidates to know the state root
                header, included, rejected = chain.build_block(candidates, timestamp, self.key, difficulty)
            for tx, exc in rejected:
                if isinstance(tx, Vote):
                    node.votes.drop(tx.txid)
                elif exc.reason not in WAIT_REASONS:
                    node.mempool.drop(tx.txid, exc.reason, exc.detail)
        node.metrics.difficulty.set(difficulty)
        started = time.perf_counter()
        result = await node.miner.mine(header, head_event)
        if result is None or head_event.is_set() or chain.head_hash != parent_hash:
            log.debug("mining_cancelled", height=height)
            return
        block = seal_block(self.key, header, result.nonce, included, result.hashes, result.energy_mj,
                           result.estimated)
        self.last_height = height
        try:
            await node.import_block(block, quiet=True)
        except Rejected as exc:  # a bug, or the rules changed under us: say so and try again later
            log.error("own_block_rejected", height=height, reason=exc.reason, detail=exc.detail)
            await _wait(node.stopping, self.interval_ms / 1000)
            return
        m = node.metrics
        m.blocks_produced.inc()
        m.hashes.inc(result.hashes)
        m.energy_joules.inc(result.energy_mj / 1000)
        m.hash_rate.set(node.miner.hash_rate())
        log.info("block_produced", height=height, hash=block.hash.hex(), txs=len(included),
                 in_turn=in_turn, difficulty=difficulty, hashes=result.hashes, energy_mj=result.energy_mj,
                 estimated=result.estimated, mine_s=round(time.perf_counter() - started, 3),
                 rejected=len(rejected))
