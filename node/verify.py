"""Signature checks for a block on several cores, overlapped with executing the block.

`Chain` asks its verifier which transactions of a block have valid signatures before it applies them.
`PoolVerifier` sends most of the block to worker processes and answers lazily: applying transaction i
waits only for the chunk that holds i, so the main process executes early transactions while the
workers still check later ones. The first `inline_share` of the block is not sent at all; the main
process checks those itself, which keeps every core busy (the main core also has the execution work).
The answer is the same set a serial check gives; only the schedule differs.

Workers are plain processes on a pipe each, not a concurrent.futures pool: the pool's feeder thread
needs the GIL, which the busy main thread holds, and that cost more than the checks it saved.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any, Callable, Sequence

from ledger.keys import verify_ed25519, verify_p256
from ledger.tx import MeterReading, SignedTx, Tx, Vote

from .workers import exit_with_parent

Item = tuple[bool, bytes, bytes, bytes]  # (is_reading, public key, signature, message)
READY = "ready"
SHARE_STEP, MIN_SHARE, MAX_SHARE = 0.02, 0.05, 0.6
WAIT_THRESHOLD_S = 0.001
START_TIMEOUT_S = 30.0


def verify_items(items: list[Item]) -> list[bool]:
    return [verify_p256(pub, sig, msg) if reading else verify_ed25519(pub, sig, msg)
            for reading, pub, sig, msg in items]


def _worker(conn: Connection, parent: int) -> None:
    """Receive a whole batch in one message (so the sender never blocks on a full pipe), answer per chunk."""
    exit_with_parent(parent)  # the pipe's EOF ends it too, but not while it is busy with a batch
    conn.send(READY)  # imports done: the first block does not wait for a process still starting
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        items, chunk = message
        for lo in range(0, len(items), chunk):
            conn.send(verify_items(items[lo:lo + chunk]))


class _Worker:
    """One verifying process; results come back in the order chunks were sent."""

    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, os.getpid()), daemon=True)
        self.process.start()
        child.close()
        self.pending: deque[_Chunk] = deque()
        self.waited_s = 0.0  # time the main process spent blocked on this worker's answers

    def wait_ready(self) -> None:
        if not self.conn.poll(START_TIMEOUT_S) or self.conn.recv() != READY:
            raise RuntimeError("signature worker did not start")

    def send(self, items: list[Item], chunk_size: int) -> list["_Chunk"]:
        self.conn.send((items, chunk_size))
        chunks = [_Chunk(self) for _ in range(0, len(items), chunk_size)]
        self.pending.extend(chunks)
        return chunks

    def receive_until(self, chunk: "_Chunk") -> None:
        t0 = time.perf_counter()
        while chunk.result is None:
            self.pending.popleft().result = self.conn.recv()
        self.waited_s += time.perf_counter() - t0

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft().result = self.conn.recv()


class _Chunk:
    __slots__ = ("worker", "result")

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.result: list[bool] | None = None


class LazyVerified:
    """`txid in verified` waits until the chunk holding that txid is checked."""

    def __init__(self) -> None:
        self._where: dict[bytes, tuple[_Chunk, int]] = {}

    def __contains__(self, txid: object) -> bool:
        entry = self._where.get(txid)  # type: ignore[arg-type]
        if entry is None:
            return False  # not sent: the caller checks it itself
        chunk, index = entry
        if chunk.result is None:
            chunk.worker.receive_until(chunk)
        return chunk.result[index]  # type: ignore[index]


class PoolVerifier:
    """A BatchVerifier (see ledger.chain) backed by worker processes."""

    def __init__(self, workers: int = 1, inline_share: float = 0.4, chunk: int = 100,
                 min_batch: int = 64) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._workers = [_Worker(ctx) for _ in range(workers)]
        for w in self._workers:
            w.wait_ready()
        self.inline_share, self.chunk, self.min_batch = inline_share, chunk, min_batch

    def _balance(self) -> None:
        """Move the inline share towards the point where neither side waits for the other: if the main
        process waited for workers in the last block it checks more itself, otherwise fewer. The best
        share depends on the machine and the block's mix, so it is learnt rather than fixed."""
        waited = sum(w.waited_s for w in self._workers)
        for w in self._workers:
            w.waited_s = 0.0
        step = SHARE_STEP if waited > WAIT_THRESHOLD_S else -SHARE_STEP
        self.inline_share = min(MAX_SHARE, max(MIN_SHARE, self.inline_share + step))

    def __call__(self, txs: Sequence[Tx], meter_key: Callable[[bytes], bytes | None]) -> LazyVerified:
        for w in self._workers:
            w.drain()  # answers a previous block never asked for (it failed early)
        if len(txs) >= self.min_batch:
            self._balance()
        verified = LazyVerified()
        if len(txs) < self.min_batch:
            return verified  # small blocks: shipping them costs more than checking them here
        start = int(len(txs) * self.inline_share)
        items: list[Item] = []
        ids: list[bytes] = []
        for tx in txs[start:]:
            if isinstance(tx, MeterReading):
                public = meter_key(tx.fields.meter_id)
                if public is None:
                    continue  # meter enrolled inside this block: checked inline
                items.append((True, public, tx.signature, tx.message()))
            elif isinstance(tx, SignedTx):
                items.append((False, tx.sender, tx.signature, tx.message()))
            elif isinstance(tx, Vote):
                items.append((False, tx.fields.voter, tx.signature, tx.message()))
            else:
                continue  # any other kind (an OCMF record: the curve of its enrolled key) is checked inline
            ids.append(tx.txid)
        share = -(-len(items) // len(self._workers))  # contiguous slices: results arrive in apply order
        for w, worker in enumerate(self._workers):
            lo = w * share
            chunks = worker.send(items[lo:lo + share], self.chunk)
            for i, txid in enumerate(ids[lo:lo + share]):
                verified._where[txid] = (chunks[i // self.chunk], i % self.chunk)
        return verified

    def pids(self) -> tuple[int, ...]:
        """The worker processes (their CPU time is signature checking, node/accounting.py)."""
        return tuple(w.process.pid for w in self._workers if w.process.pid is not None)

    def close(self) -> None:
        for w in self._workers:
            try:
                w.drain()
                w.conn.send(None)
            except (OSError, EOFError):
                pass
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
