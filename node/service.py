"""The node: one chain, its mempool, grid policy, miner, peers and producer, wired together.

All chain access happens on the event loop thread. Writes (block import, block building) take
`Node.lock`, so the producer's build-then-import and the sync loop's imports never interleave; reads
(API queries) never await in the middle, so each answer comes from one consistent head.
Every new head sets `head_event` (and replaces it): the producer mines with that event as its cancel
signal, so a block from a peer stops work on a stale parent at once.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

from ledger.block import Block
from ledger.chain import Chain, ImportResult, inline_verifier
from ledger.errors import Rejected
from ledger.genesis import Genesis
from ledger.keys import AccountKey
from ledger.store import LevelKV
from ledger.tx import Tx, Vote

from .accounting import NodeEnergy
from .config import Config
from .finality import VotePool, Voter
from .grid import GridPolicy, GridSignalFile
from .keyfile import load_key
from .log import EventLog
from .mempool import Mempool
from .metrics import Metrics


class StartupError(Exception):
    """The node cannot start (bad genesis, key, data dir); the message is one readable line."""


class LRU:
    """A bounded set of recently seen ids (gossip dedup)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def add(self, key: bytes) -> None:
        self._d[key] = None
        self._d.move_to_end(key)
        if len(self._d) > self.size:
            self._d.popitem(last=False)


PRUNE_EVERY = 64  # finalized blocks between two prunings of undo data


def now_ms() -> int:
    return int(time.time() * 1000)


class Node:
    def __init__(self, config: Config, log: EventLog) -> None:
        self.config = config
        self.log = log
        try:
            self.genesis = Genesis.load(config.genesis)
        except OSError as exc:
            raise StartupError(f"cannot read genesis {config.genesis}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise StartupError(f"genesis {config.genesis}: {exc}") from None
        self.key: AccountKey | None = None
        if config.key is not None:
            try:
                self.key = load_key(config.key)
            except ValueError as exc:
                raise StartupError(str(exc)) from None
        self.read_key: AccountKey | None = None  # signs a follower's block fetches (an auditor's key, ADR 012)
        if config.read_key is not None:
            try:
                self.read_key = load_key(config.read_key)
            except ValueError as exc:
                raise StartupError(str(exc)) from None
        self.verifier: Any = inline_verifier
        if config.verify_workers > 0:
            from .verify import PoolVerifier
            self.verifier = PoolVerifier(workers=config.verify_workers)
        try:
            self.kv = LevelKV(config.data_dir)
        except Exception as exc:  # plyvel raises IOError/plyvel.Error for a locked or corrupt database
            self._close_verifier()
            raise StartupError(f"cannot open data dir {config.data_dir}: {exc}") from None
        checked = time.perf_counter()
        try:  # opening finishes a head move a crash interrupted; then the state must match the head
            self.chain = Chain(self.kv, self.genesis, self.verifier)
            problems = self.chain.check(full=False)
        except Exception as exc:  # noqa: BLE001 - ValueError (other genesis...) or a store too damaged to read
            self.kv.close()
            self._close_verifier()
            raise StartupError(f"data dir {config.data_dir}: {exc}") from None
        if problems:
            self.kv.close()
            self._close_verifier()
            raise StartupError(f"data dir {config.data_dir} is inconsistent: {problems[0]} (see kwh-node "
                               "--check-db); restore a backup or start with an empty data dir to resync")
        params = self.chain.params
        resumed = self.chain.resumed
        if resumed is not None:
            log.warning("head_move_resumed", status=resumed.status, height=resumed.height,
                        head=resumed.block_hash.hex(), reverted=len(resumed.reverted), applied=len(resumed.applied))
        log.info("chain_opened", data_dir=str(config.data_dir), height=self.chain.height,
                 head=self.chain.head_hash.hex(), state_checked_s=round(time.perf_counter() - checked, 3))
        self.mempool = Mempool(self.chain, config.mempool_size, config.mempool_per_sender)
        self.votes = VotePool(self.chain)
        self._pruned_to = self.chain.undo_floor()
        self.voter = Voter(self.chain, self.key) if self.key is not None else None
        self.metrics = Metrics()
        # the node's whole energy (node/accounting.py): every code path below reports what it spends
        self.energy = NodeEnergy(config.watts_per_core)
        self.energy.signature_pids = frozenset(getattr(self.verifier, "pids", lambda: ())())
        self.chain.on_phase = self.energy.phase
        self._update_members()
        self.grid = GridPolicy(params.min_difficulty, params.block_interval_ms, config.power_cap_w,
                               config.watts_per_core, cores=config.mine_workers)
        self.miner: Any = None  # made in start() (worker processes), authorities only
        self.lock = asyncio.Lock()
        self._head_event = asyncio.Event()
        self.seen_blocks = LRU(50_000)
        self.stopping = asyncio.Event()
        self.started_ms = now_ms()
        from .peers import PeerManager  # imported here: peers imports this module's helpers
        self.peers = PeerManager(self)
        self.producer: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._update_gauges()

    def _close_verifier(self) -> None:
        close = getattr(self.verifier, "close", None)
        if close is not None:
            close()

    # lifecycle ------------------------------------------------------------------------------------
    @property
    def may_propose(self) -> bool:
        """An authority now, or a key that is no genesis observer (it may be voted in later): such a node
        runs a producer, which waits while the key is not in the head's authority set."""
        return self.key is not None and (self.authority or self.key.public not in self.chain.params.observers)

    async def start(self) -> None:
        if self.may_propose:
            from .energy import EnergyMeter
            from .miner import Miner
            self.miner = Miner(EnergyMeter(self.config.watts_per_core), workers=self.config.mine_workers)
            try:
                rate = await asyncio.wait_for(self.miner.calibrate(), timeout=60)
                self.metrics.hash_rate.set(rate)
            except (asyncio.TimeoutError, RuntimeError) as exc:
                self.log.warning("miner_calibration_failed", error=repr(exc))
            from .producer import Producer
            self.producer = Producer(self)
        from .accounting import meter_tasks
        meter_tasks(asyncio.get_running_loop(), self.energy.timeline, {"PeerManager.": "peer"})
        await self.peers.start()
        if self.producer is not None:
            self._spawn(self.producer.run(), "producer")
        if self.config.grid_signal_file is not None:
            self._spawn(self._watch_grid_file(), "grid_file")
        head = self.chain.head
        self.log.info("node_started", chain_id=self.chain.chain_id, height=head.height,
                      head=self.chain.head_hash.hex(), node_key=self.key.public.hex() if self.key else None,
                      role="authority" if self.authority else "observer", url=self.config.advertised_url,
                      peers=len(self.config.peers), energy=self.miner.meter.source if self.miner else None)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(self._guard(coro, name), name=name)
        self._tasks.append(task)
        return task

    async def _guard(self, coro: Any, name: str) -> None:
        """A background task that fails is logged, never silently lost."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the node keeps serving; the log says what broke
            self.log.error("task_failed", task=name, error=repr(exc))

    async def stop(self) -> None:
        """Stop producing, stop the miner and peers; the caller closes the database after the web server."""
        self.stopping.set()
        self._head_event.set()  # wakes the producer and cancels a search in progress
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.peers.stop()
        if self.miner is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.miner.close)

    def close_database(self) -> None:
        self.kv.close()
        self._close_verifier()

    # heads ----------------------------------------------------------------------------------------
    @property
    def head_event(self) -> asyncio.Event:
        """Set when the head changes after this property was read."""
        return self._head_event

    def _head_changed(self) -> None:
        old, self._head_event = self._head_event, asyncio.Event()
        old.set()

    def _update_members(self) -> None:
        """Who may connect as a peer and whether this node proposes: genesis observers, every key that was
        ever an authority of this chain (the genesis set and the head's), so a node added by vote joins."""
        params = self.chain.params
        authorities = self.chain.authorities
        self.members = frozenset(params.authorities) | frozenset(authorities) | frozenset(params.observers)
        self.authority = self.key is not None and self.key.public in authorities
        self.member = self.key is not None and self.key.public in self.members

    def _update_gauges(self) -> None:
        head = self.chain.head
        self.metrics.height.set(head.height)
        self.metrics.finalized_height.set(head.finalized)
        self.metrics.finality_lag.set(head.height - head.finalized)
        self.metrics.total_work.set(head.total_work)
        self.metrics.chain_hashes.set(head.cum_hashes)
        self.metrics.chain_energy_joules.set(head.cum_energy_mj / 1000)
        self.metrics.mempool_size.set(len(self.mempool))
        g = self.chain.globals()
        self.metrics.minted_wh.set(g.minted_wh)
        self.metrics.consumed_wh.set(g.consumed_wh)
        self.metrics.redeemed_wh.set(g.redeemed_wh)
        self.metrics.settled_wh.set(g.settled_wh)

    def update_escrow_gauge(self) -> None:
        """Coin held in escrow: a walk over the unsettled trades only (the settlement schedule), when /metrics
        is scraped; it does not grow with the ledger's age."""
        self.metrics.escrow_coin.set(sum(t.escrow - t.released - t.refunded
                                         for _id, t in self.chain.unsettled_trades()))

    # blocks ---------------------------------------------------------------------------------------
    async def import_block(self, block: Block, origin: str | None = None, gossip: bool = True,
                           quiet: bool = False, durable: bool = True) -> ImportResult:
        """Import a block from anywhere; raises Rejected. New blocks are gossiped to the other peers.
        `durable=False` (catch-up sync, all but a batch's last block) skips the fsync: see Chain.import_block."""
        async with self.lock:
            metering = self.energy.import_started()
            inline = self.verifier is inline_verifier
            try:
                result = self.chain.import_block(block, now_ms(), durable=durable)
            except Rejected as exc:
                self.energy.import_ended(metering, (), inline)
                self.metrics.blocks_rejected.labels(exc.reason).inc()
                raise
            self.energy.import_ended(metering, result.applied if result.status != "known" else (), inline)
            self._after_import(block, result, quiet)
        self.seen_blocks.add(block.hash)
        if gossip and result.status != "known":
            self.peers.gossip_block(block, exclude=origin)
        return result

    def _after_import(self, block: Block, result: ImportResult, quiet: bool) -> None:
        if result.status == "known":
            return
        self.metrics.blocks_imported.labels(result.status).inc()
        if result.status == "side":
            self.log.debug("block_side", height=block.height, hash=block.hash.hex(),
                           proposer=block.header.proposer.hex()[:16])
            return
        back = self.mempool.on_new_head(result.applied, result.reverted, now_ms())
        for tx in back:  # txs of blocks a reorg took off the chain: every producer should see them again
            self.peers.gossip_tx(tx)
        self.votes.on_new_head()
        for vote in self.votes.retry_early(now_ms()):
            self.peers.gossip_tx(vote)
        self._prune()
        self._update_members()
        self._update_gauges()
        self.energy.block_recorded(result.height, result.block_hash, len(block.txs))
        self._head_changed()
        self._vote()
        if result.status == "reorg":
            self.metrics.reorgs.inc()
            self.log.info("reorg", depth=len(result.reverted), applied=len(result.applied),
                          height=result.height, head=result.block_hash.hex())
        log = self.log.debug if quiet else self.log.info
        log("block_imported", height=block.height, hash=block.hash.hex(), txs=len(block.txs),
            proposer=block.header.proposer.hex()[:16], difficulty=block.header.difficulty,
            hashes=block.seal.hashes, energy_mj=block.seal.energy_mj, status=result.status)

    def _prune(self) -> None:
        """Drop undo data below the finalized height, where nothing can be reverted any more (every
        PRUNE_EVERY finalized blocks, in batches); an archive node (--archive) keeps all of it."""
        if self.config.archive:
            return
        final = self.chain.finalized_height
        if final >= self._pruned_to + PRUNE_EVERY:
            self.chain.prune_undo(final)
            self.chain.prune_votes(final)
            self._pruned_to = final

    # finality votes -------------------------------------------------------------------------------
    def _vote(self) -> None:
        """An authority votes for its new head (node/finality.py decides whether it may)."""
        if self.voter is None:
            return
        vote = self.voter.vote()
        if vote is None:
            return
        try:
            self.submit_tx(vote)
        except Rejected as exc:  # e.g. its own block is not the head any more: the next head gets a vote
            self.log.debug("own_vote_refused", reason=exc.reason, detail=exc.detail)

    def _submit_vote(self, vote: Vote, origin: str | None) -> None:
        """A vote with a good signature by an authority is remembered (evidence) and passed on even when
        the head cannot count it; it waits in the vote pool if the next block can."""
        evidence = self.votes.check(vote)
        if evidence:
            self.metrics.vote_evidence.inc()
            self.log.warning("conflicting_votes", voter=vote.fields.voter.hex(), height=vote.fields.target_height)
        try:
            self.votes.add(vote, now_ms())
        except Rejected:
            if evidence:
                self.peers.gossip_tx(vote, exclude=origin)
            raise
        self.peers.gossip_tx(vote, exclude=origin)

    # transactions ---------------------------------------------------------------------------------
    def submit_tx(self, tx: Tx, origin: str | None = None) -> None:
        """Admit a tx to the mempool (a vote to the vote pool) and gossip it; raises Rejected (recorded for
        GET /tx). What admitting it cost is metered by kind (node/accounting.py)."""
        metering = self.energy.admission_started()
        accepted = False
        try:
            self._admit(tx, origin)
            accepted = True
        finally:
            self.energy.admission_ended(metering, tx, accepted)

    def validators(self) -> int:
        """Nodes that check every transaction: the authorities, the connected peers and this node."""
        peers = self.peers
        keys = [p.key for p in peers.peers.values() if p.token is not None and p.failures == 0]
        keys += [session.key for session in peers.sessions.values()]
        return self.energy.validators(self.chain.authorities, keys, self.key.public if self.key is not None else None)

    def _admit(self, tx: Tx, origin: str | None) -> None:
        if isinstance(tx, Vote):
            self._submit_vote(tx, origin)
            return
        try:
            self.mempool.add(tx, now_ms())
        except Rejected as exc:
            self.metrics.txs_rejected.labels(exc.reason).inc()
            if tx.txid not in self.mempool and exc.reason != "duplicate":
                self.mempool.remember(tx, exc.reason, exc.detail)
            raise
        self.metrics.txs_accepted.inc()
        self.metrics.mempool_size.set(len(self.mempool))
        self.peers.gossip_tx(tx, exclude=origin)

    # grid -----------------------------------------------------------------------------------------
    def set_grid_signal(self, surplus_w: int, source: str) -> dict[str, Any]:
        self.grid.set_signal(surplus_w)
        snapshot = self.grid_snapshot()
        self.metrics.surplus_w.set(surplus_w)
        self.metrics.difficulty.set(snapshot["difficulty"])
        self.log.info("grid_signal", surplus_w=surplus_w, source=source, difficulty=snapshot["difficulty"],
                      power_w=snapshot.get("power_w"))
        return snapshot

    def grid_snapshot(self) -> dict[str, Any]:
        if self.miner is not None:
            self.grid.difficulty(self.miner.hash_rate())
        return self.grid.snapshot()

    async def _watch_grid_file(self) -> None:
        watcher = GridSignalFile(self.config.grid_signal_file)  # type: ignore[arg-type]
        while not self.stopping.is_set():
            try:
                surplus = watcher.poll()
                if surplus is not None:
                    self.set_grid_signal(surplus, "file")
            except (ValueError, OSError) as exc:
                self.log.warning("grid_signal_file_error", error=str(exc))
            await asyncio.sleep(1.0)

