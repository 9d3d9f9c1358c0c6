"""Benchmarks through real node processes over HTTP on 127.0.0.1: http_submit and sync.

http_submit: pre-signed transfers from many accounts posted concurrently to `POST /tx` of one authority
node over keep-alive connections; accepted per second, and submit-to-inclusion latency (p50, p99) seen
by a watcher that follows new blocks.
sync: a chain of blocks built offline into one node's data dir; a fresh observer syncs it from that
node, in blocks and transactions per second (compared with transfer_apply on the same mix).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from ledger.block import mine
from ledger.chain import Chain
from ledger.genesis import Genesis
from ledger.keys import AccountKey
from ledger.store import LevelKV
from ledger.tx import COIN, Transfer, encode_tx, sign_tx
from devnet.nodes import stop_process
from node.keyfile import save_key

MSGPACK = {"Content-Type": "application/msgpack"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeProcess:
    """One `python -m node` on 127.0.0.1 with its own data dir."""

    def __init__(self, root: Path, name: str, genesis: Path, key: AccountKey, peers: list[str],
                 extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = root / name
        self.data.mkdir(parents=True, exist_ok=True)
        key_path = root / f"{name}.key.json"
        save_key(key_path, key)
        self.args = [sys.executable, "-m", "node", "--genesis", str(genesis), "--data-dir", str(self.data / "db"),
                     "--listen", f"127.0.0.1:{self.port}", "--key", str(key_path), "--log-level", "warning"]
        if peers:
            self.args += ["--peers", ",".join(peers)]
        self.args += list(extra)
        self.log = open(root / f"{name}.log", "wb")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


async def wait_status(session: aiohttp.ClientSession, url: str, predicate: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            async with session.get(url + "/status") as resp:
                if resp.status == 200:
                    last = await resp.json()
                    if predicate(last):
                        return last
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{url}: condition not met within {timeout}s (last status {last})")


# ------------------------------------------------------------------------------------- http_submit


async def _submit(url: str, txs: list[bytes], ids: list[bytes], concurrency: int,
                  block_interval_ms: int) -> dict[str, Any]:
    submitted: dict[bytes, float] = {}
    included: dict[bytes, float] = {}
    accepted = 0
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        status = await wait_status(session, url, lambda s: s["height"] >= 1, 60)
        start_height = status["height"]
        queue = list(zip(txs, ids))
        queue.reverse()
        stop_watch = asyncio.Event()

        async def watch() -> None:
            height = start_height
            while not stop_watch.is_set() or len(included) < accepted:
                async with session.get(url + "/status") as resp:
                    h = (await resp.json())["height"]
                while height < h:
                    height += 1
                    async with session.get(f"{url}/blocks/{height}") as resp:
                        block = await resp.json()
                    now = time.perf_counter()
                    for tx in block["txs"]:
                        included.setdefault(bytes.fromhex(tx["txid"]), now)
                if stop_watch.is_set() and time.perf_counter() > deadline:
                    return
                await asyncio.sleep(0.02)

        async def client() -> None:
            nonlocal accepted
            while queue:
                raw, txid = queue.pop()
                submitted[txid] = time.perf_counter()
                async with session.post(url + "/tx", data=raw, headers=MSGPACK) as resp:
                    if resp.status == 200:
                        accepted += 1
                    else:
                        reason = (await resp.json()).get("error", str(resp.status))
                        errors[reason] = errors.get(reason, 0) + 1

        deadline = float("inf")
        watcher = asyncio.create_task(watch())
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        deadline = time.perf_counter() + 30 * block_interval_ms / 1000
        stop_watch.set()
        await watcher
    latencies = sorted((included[t] - submitted[t]) * 1000 for t in included if t in submitted)
    return {"http_submit_per_s": accepted / elapsed, "http_accepted": accepted, "http_errors": errors,
            "http_included": len(latencies),
            "http_p50_ms": latencies[len(latencies) // 2] if latencies else float("nan"),
            "http_p99_ms": latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")}


def http_submit(quick: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="kwh-bench-http-"))
    block_interval_ms = 1000
    auth = AccountKey.generate()
    senders = [AccountKey.generate() for _ in range(200)]
    per_sender = 10 if quick else 30
    genesis = Genesis("kwh-bench", int(time.time() * 1000) - 5000, (auth.public,),
                      allocations=tuple(sorted((a.address, 10**6 * COIN) for a in senders)),
                      min_difficulty=16, block_interval_ms=block_interval_ms, max_block_txs=5000)
    gpath = root / "genesis.json"
    genesis.save(gpath)
    txs, ids = [], []
    for n in range(per_sender):  # round by round, so every sender's nonces arrive in order
        for i, s in enumerate(senders):
            tx = sign_tx(s, genesis.chain_id, n, 1000, Transfer(senders[(i + 1) % len(senders)].address, 1 + n))
            txs.append(encode_tx(tx))
            ids.append(tx.txid)
    node = NodeProcess(root, "node0", gpath, auth, [])
    node.start()
    try:
        result = asyncio.run(_submit(node.url, txs, ids, 32, block_interval_ms))
    finally:
        node.stop()
        shutil.rmtree(root, ignore_errors=True)
    result["block_interval_ms"] = block_interval_ms
    return result


# -------------------------------------------------------------------------------------------- sync


def _build_chain(db: Path, genesis: Genesis, auth: AccountKey, senders: list[AccountKey], blocks: int,
                 per_block: int) -> int:
    chain = Chain(LevelKV(db), genesis)
    nonces = [0] * len(senders)
    txcount = 0
    for b in range(blocks):
        txs = []
        for j in range(per_block):
            i = (b * per_block + j) % len(senders)
            txs.append(sign_tx(senders[i], genesis.chain_id, nonces[i], 1000,
                               Transfer(senders[(i + 7) % len(senders)].address, 1 + j)))
            nonces[i] += 1
        ts = chain.earliest_timestamp(chain.head, chain.height + 1, auth.public)
        header, included, rejected = chain.build_block(txs, ts, auth, genesis.min_difficulty)
        assert not rejected
        chain.import_block(mine(auth, header, included))
        txcount += len(included)
    chain.kv.close()
    return txcount


def sync(quick: bool, transfer_apply_per_s: float, parallel_per_s: float) -> dict[str, Any]:
    """A fresh observer syncs the chain from scratch, once as configured by default (signatures checked
    in the node process) and once with `--verify-workers 1` (compared with transfer_apply on all cores)."""
    root = Path(tempfile.mkdtemp(prefix="kwh-bench-sync-"))
    blocks = 400 if quick else 2000
    per_block = 50 if quick else 100  # the per-block costs (seal, header, fsync) weigh as in real blocks
    interval = 1000
    auth, observer = AccountKey.generate(), AccountKey.generate()
    senders = [AccountKey.generate() for _ in range(100)]
    genesis = Genesis("kwh-bench-sync", int(time.time() * 1000) - (blocks + 10) * interval, (auth.public,),
                      observers=(observer.public,),
                      allocations=tuple(sorted((a.address, 10**6 * COIN) for a in senders)),
                      min_difficulty=1, block_interval_ms=interval)
    gpath = root / "genesis.json"
    genesis.save(gpath)
    source = NodeProcess(root, "source", gpath, auth, [])
    txcount = _build_chain(source.data / "db", genesis, auth, senders, blocks, per_block)
    source.start()

    async def measure(fresh: NodeProcess) -> float:
        async with aiohttp.ClientSession() as session:
            await wait_status(session, source.url, lambda s: s["height"] >= blocks, 60)
            fresh.start()
            await wait_status(session, fresh.url, lambda s: True, 60)  # process is serving
            t0 = time.perf_counter()
            await wait_status(session, fresh.url, lambda s: s["height"] >= blocks, 600)
            return time.perf_counter() - t0
    elapsed: list[float] = []
    try:
        for name, extra in (("fresh", ()), ("fresh-pool", ("--verify-workers", "1"))):
            fresh = NodeProcess(root, name, gpath, observer, [source.url], extra)
            try:
                elapsed.append(asyncio.run(measure(fresh)))
            finally:
                fresh.stop()
    finally:
        source.stop()
        shutil.rmtree(root, ignore_errors=True)
    serial_s, pool_s = elapsed
    return {"sync_blocks": blocks, "sync_blocks_per_s": blocks / serial_s, "sync_tx_per_s": txcount / serial_s,
            "sync_ratio": txcount / serial_s / transfer_apply_per_s,
            "sync_verify_workers_blocks_per_s": blocks / pool_s,
            "sync_verify_workers_ratio": txcount / pool_s / parallel_per_s}


def run(quick: bool, transfer_apply_per_s: float, parallel_per_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out.update(http_submit(quick))
    out.update(sync(quick, transfer_apply_per_s, parallel_per_s))
    return out
