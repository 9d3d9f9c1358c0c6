"""Proof of work off the event loop, with the hashes and energy it cost.

The hashing runs in worker processes (a GIL-bound SHA-256 loop would stall the HTTP API and gossip),
in chunks of `chunk` nonces, so a new head cancels a search within about one chunk. Each chunk
reports the hashes it tried and the worker's own CPU time (`time.process_time` in the worker), which is
what `EnergyMeter` attributes energy by. Workers are started with "spawn": forking a process that
runs aiohttp's threads is unsafe.

With one worker (the default) the search is sequential from nonce 0, so `hashes == nonce + 1` exactly.
With several, they search disjoint chunks and the count includes every hash any worker tried until
the nonce was found (the other workers' chunks in flight are awaited and counted).
"""
from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from ledger.block import BlockHeader, search_nonce

from .energy import EnergyMeter
from .workers import exit_with_parent

DEFAULT_CHUNK = 32_768
UNREACHABLE_DIFFICULTY = 1 << 62  # for timing a full chunk: no nonce meets it in practice
_MAX_POOL_RESTARTS = 3


@dataclass(frozen=True)
class MineResult:
    nonce: int
    hashes: int  # hashes tried, for the seal
    energy_mj: int  # what they cost, for the seal
    estimated: bool  # True: CPU time x watts per core; False: measured with RAPL
    seconds: float  # wall time from start to nonce found
    cpu_seconds: float  # worker CPU time spent on this search


@dataclass(frozen=True)
class MinerStats:
    """Totals since the miner was made, for /metrics (cancelled searches included: their energy was spent)."""
    hashes: int
    cpu_seconds: float
    chunks: int
    blocks_mined: int
    searches_cancelled: int
    hash_rate: float


def _search_chunk(prefix: bytes, difficulty: int, start: int, count: int) -> tuple[int | None, int, float]:
    """In the worker: search one chunk; returns (nonce or None, hashes tried, CPU seconds this took)."""
    cpu0 = time.process_time()
    nonce, tried = search_nonce(prefix, difficulty, start, count)
    return nonce, tried, time.process_time() - cpu0


def _warm_up() -> int:
    """Run once in each new worker so its start-up (spawn + imports) is not charged to the first block."""
    return os.getpid()


class Miner:
    """Mines headers in a process pool; `await mine(header, cancel)` -> MineResult, or None if cancelled."""

    def __init__(self, meter: EnergyMeter | None = None, workers: int = 1, chunk: int = DEFAULT_CHUNK,
                 rate_window: int = 64) -> None:
        if workers < 1 or chunk < 1 or rate_window < 1:
            raise ValueError("workers, chunk and rate_window must be at least 1")
        self.meter = meter if meter is not None else EnergyMeter()
        self.workers = workers
        self.chunk = chunk
        self._ctx = multiprocessing.get_context("spawn")
        self._pool: ProcessPoolExecutor | None = self._new_pool()
        self._lock = threading.Lock()  # chunk results are recorded from the pool's result thread
        self._recent: deque[tuple[int, float]] = deque(maxlen=rate_window)
        self._hashes = 0
        self._cpu_seconds = 0.0
        self._chunks = 0
        self._blocks = 0
        self._cancelled = 0

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=self._ctx,
                                   initializer=exit_with_parent, initargs=(os.getpid(),))
        for _ in range(self.workers):
            pool.submit(_warm_up)
        return pool

    async def mine(self, header: BlockHeader, cancel: asyncio.Event | None = None) -> MineResult | None:
        """Find a nonce for `header` (its own nonce is ignored). Returns None as soon as `cancel` is set;
        chunks still running then finish in the worker and count in `stats()`, not in any block."""
        if self._pool is None:
            raise RuntimeError("miner is closed")
        prefix = header.pow_prefix()
        difficulty = header.difficulty
        token = self.meter.start()
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        next_start = 0
        hashes = 0
        cpu_seconds = 0.0
        found: int | None = None
        restarts = 0
        in_flight: dict[asyncio.Future[tuple[int | None, int, float]], int] = {}
        cancel_wait = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        try:
            while found is None:
                if cancel is not None and cancel.is_set():
                    self._count_cancelled()
                    return None
                while len(in_flight) < self.workers:
                    in_flight[self._submit(loop, prefix, difficulty, next_start)] = next_start
                    next_start += self.chunk
                waiting: set[asyncio.Future] = set(in_flight)
                if cancel_wait is not None:
                    waiting.add(cancel_wait)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    if fut is cancel_wait:
                        continue
                    chunk_start = in_flight.pop(fut)
                    try:
                        nonce, tried, cpu = fut.result()
                    except BrokenProcessPool:
                        restarts = self._restart_pool(restarts)
                        in_flight.clear()  # every chunk in flight died with the pool
                        next_start = chunk_start  # search on from here; the lost work is not counted
                        break
                    restarts = 0
                    hashes += tried
                    cpu_seconds += cpu
                    if nonce is not None and found is None:
                        found = nonce
            # Found: other workers' chunks in flight are part of the work that found it; count them.
            for fut in in_flight:
                try:
                    _, tried, cpu = await fut
                except BrokenProcessPool:
                    continue
                hashes += tried
                cpu_seconds += cpu
            in_flight.clear()
            seconds = time.perf_counter() - started
            energy_mj, estimated = self.meter.stop(token, cpu_seconds)
            with self._lock:
                self._blocks += 1
            return MineResult(found, hashes, energy_mj, estimated, seconds, cpu_seconds)
        finally:
            if cancel_wait is not None:
                cancel_wait.cancel()
            for fut in in_flight:
                fut.cancel()  # drops chunks not yet started; a running chunk finishes and is recorded

    def _submit(self, loop: asyncio.AbstractEventLoop, prefix: bytes, difficulty: int,
                start: int) -> asyncio.Future[tuple[int | None, int, float]]:
        assert self._pool is not None
        cf = self._pool.submit(_search_chunk, prefix, difficulty, start, self.chunk)
        cf.add_done_callback(self._record)
        return asyncio.wrap_future(cf, loop=loop)

    def _record(self, cf: Future) -> None:
        """Every finished chunk counts in the rate and totals, whether its search was cancelled or not."""
        if cf.cancelled() or cf.exception() is not None:
            return
        _, tried, cpu = cf.result()
        with self._lock:
            self._hashes += tried
            self._cpu_seconds += cpu
            self._chunks += 1
            self._recent.append((tried, cpu))

    def _count_cancelled(self) -> None:
        with self._lock:
            self._cancelled += 1

    def _restart_pool(self, restarts: int) -> int:
        """A worker died (OOM killer, signal): start a new pool and go on, a few times in a row at most."""
        if restarts >= _MAX_POOL_RESTARTS:
            raise RuntimeError(f"mining worker died {restarts + 1} times in a row")
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()
        return restarts + 1

    async def calibrate(self) -> float:
        """Hash one chunk per worker at an unreachable difficulty so `hash_rate()` is known before the
        first block (the grid policy needs it to size a difficulty). Returns the hash rate."""
        if self._pool is None:
            raise RuntimeError("miner is closed")
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(self._submit(loop, bytes(32), UNREACHABLE_DIFFICULTY, i * self.chunk)
                               for i in range(self.workers)))
        return self.hash_rate()

    def hash_rate(self) -> float:
        """Hashes per CPU-second of one worker over the recent chunks (0.0 before any chunk).
        Per core, because that is the unit of `watts_per_core`; the pool's rate is this x workers."""
        with self._lock:
            tried = sum(t for t, _ in self._recent)
            cpu = sum(c for _, c in self._recent)
        return tried / cpu if cpu > 0 else 0.0

    def stats(self) -> MinerStats:
        rate = self.hash_rate()
        with self._lock:
            return MinerStats(self._hashes, self._cpu_seconds, self._chunks, self._blocks, self._cancelled, rate)

    def close(self) -> None:
        """Stop the workers: queued chunks are dropped, a running chunk (one chunk's time) is awaited."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def raw_hash_rate(seconds: float) -> float:
    """Plain hashlib.sha256 over 40-byte inputs (32-byte prefix + 8-byte nonce), the miner's shape, for
    `seconds`: the ceiling the miner's rate is compared with in benchmarks. Runs in the caller."""
    prefix = os.urandom(32)
    sha = hashlib.sha256
    batch = 10_000
    done = 0
    begin = time.perf_counter()
    deadline = begin + max(0.0, seconds)
    while True:
        for nonce in range(done, done + batch):
            sha(prefix + nonce.to_bytes(8, "big")).digest()
        done += batch
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - begin)
