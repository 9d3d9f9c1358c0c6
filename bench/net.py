"""Benchmarks through real node processes over HTTP on 127.0.0.1: http_submit and sync.

http_submit: pre-signed transfers from many accounts posted concurrently to `POST /tx` of one authority
node over keep-alive connections; accepted per second, and submit-to-inclusion latency (p50, p99) seen
by a watcher that follows new blocks.
sync: a chain of blocks built offline into one node's data dir; a fresh observer syncs it from that
node, in blocks and transactions per second (compared with transfer_apply on the same mix).
http_submit_tls and sync_tls: the same over TLS (`--tls-listen`, node-key certificates pinned against
genesis, ADR 012), as ratios to the plain-HTTP figures of the same run.
finality: four authority nodes vote; one transfer a block interval, each followed from inclusion to
finality (blocks and seconds, p50 and p90), and the share of block space the votes take.
"""
from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
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
from node.access import credential
from node.keyfile import save_key
from node.tls import client_context

MSGPACK = {"Content-Type": "application/msgpack"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeProcess:
    """One `python -m node` on 127.0.0.1 with its own data dir."""

    def __init__(self, root: Path, name: str, genesis: Path, key: AccountKey, peers: list[str],
                 extra: tuple[str, ...] = (), tls: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tls_port = free_port() if tls else None
        self.tls_url = f"https://127.0.0.1:{self.tls_port}" if tls else None
        self.data = root / name
        self.data.mkdir(parents=True, exist_ok=True)
        key_path = root / f"{name}.key.json"
        save_key(key_path, key)
        self.args = [sys.executable, "-m", "node", "--genesis", str(genesis), "--data-dir", str(self.data / "db"),
                     "--listen", f"127.0.0.1:{self.port}", "--key", str(key_path), "--log-level", "warning"]
        if peers:
            self.args += ["--peers", ",".join(peers)]
        if self.tls_port is not None:
            self.args += ["--tls-listen", f"127.0.0.1:{self.tls_port}"]
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
                  block_interval_ms: int, reader: AccountKey, chain_id: str) -> dict[str, Any]:
    submitted: dict[bytes, float] = {}
    included: dict[bytes, float] = {}
    accepted = 0
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=client_context() if url.startswith("https") else None)

    def signed(path: str) -> dict[str, str]:  # block bodies are for authorities (ADR 012): the watcher is one
        return {"Authorization": credential(reader, chain_id, reader.public, "GET", path, int(time.time() * 1000))}

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
                    async with session.get(f"{url}/blocks/{height}", headers=signed(f"/blocks/{height}")) as resp:
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


def http_submit(quick: bool, tls: bool = False) -> dict[str, Any]:
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
    node = NodeProcess(root, "node0", gpath, auth, [], tls=tls)
    node.start()
    try:
        result = asyncio.run(_submit(node.tls_url or node.url, txs, ids, 32, block_interval_ms, auth,
                                     genesis.chain_id))
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


def sync(quick: bool, transfer_apply_per_s: float, parallel_per_s: float, tls: bool = False,
         serial_only: bool = False) -> dict[str, Any]:
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
    source = NodeProcess(root, "source", gpath, auth, [], tls=tls)
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
        runs = [("fresh", ())] if tls or serial_only else [("fresh", ()), ("fresh-pool", ("--verify-workers", "1"))]
        for name, extra in runs:
            fresh = NodeProcess(root, name, gpath, observer, [source.tls_url or source.url], extra)
            try:
                elapsed.append(asyncio.run(measure(fresh)))
            finally:
                fresh.stop()
    finally:
        source.stop()
        shutil.rmtree(root, ignore_errors=True)
    if tls:
        return {"sync_tls_blocks_per_s": blocks / elapsed[0], "sync_tls_tx_per_s": txcount / elapsed[0]}
    if serial_only:
        return {"sync_blocks_per_s": blocks / elapsed[0]}
    serial_s, pool_s = elapsed
    return {"sync_blocks": blocks, "sync_blocks_per_s": blocks / serial_s, "sync_tx_per_s": txcount / serial_s,
            "sync_ratio": txcount / serial_s / transfer_apply_per_s,
            "sync_verify_workers_blocks_per_s": blocks / pool_s,
            "sync_verify_workers_ratio": txcount / pool_s / parallel_per_s}


# ---------------------------------------------------------------------------------------- finality


async def _follow_finality(urls: list[str], sender: AccountKey, chain_id: str, count: int,
                           interval_s: float, reader: AccountKey) -> dict[str, Any]:
    """Post one transfer an interval to the nodes in turn; note when each is included and when final.
    `reader` is the key of the node at urls[0]: it reads the block bodies (ADR 012) to count votes."""
    included: dict[bytes, tuple[float, int]] = {}
    final: dict[bytes, tuple[float, int]] = {}
    async with aiohttp.ClientSession() as session:
        for url in urls:
            await wait_status(session, url, lambda s: s["finalized_height"] >= 1, 120)
        pending: list[bytes] = []
        next_post = time.perf_counter()
        posted = 0
        deadline = time.perf_counter() + count * interval_s + 60
        while (posted < count or pending) and time.perf_counter() < deadline:
            now = time.perf_counter()
            if posted < count and now >= next_post:
                tx = sign_tx(sender, chain_id, posted, 1000, Transfer(sender.address, 1))
                async with session.post(urls[posted % len(urls)] + "/tx", data=encode_tx(tx), headers=MSGPACK) as r:
                    if r.status == 200:
                        pending.append(tx.txid)
                posted += 1
                next_post += interval_s
            url = urls[0]
            async with session.get(url + "/status") as resp:
                head = (await resp.json())["height"]
            for txid in list(pending):
                async with session.get(f"{url}/tx/{txid.hex()}") as resp:
                    answer = await resp.json()
                if answer.get("status") == "included":
                    included.setdefault(txid, (time.perf_counter(), answer["height"]))
                    if answer.get("final"):
                        final[txid] = (time.perf_counter(), head)
                        pending.remove(txid)
            await asyncio.sleep(0.05)
        votes = txs = 0
        async with session.get(urls[0] + "/status") as resp:
            top = (await resp.json())["height"]
        for h in range(max(1, top - 30), top + 1):
            path = f"/blocks/{h}"
            auth = credential(reader, chain_id, reader.public, "GET", path, int(time.time() * 1000))
            async with session.get(urls[0] + path, headers={"Authorization": auth}) as resp:
                block = await resp.json()
            txs += len(block["txs"])
            votes += sum(1 for t in block["txs"] if t["kind"] == "vote")
    seconds = sorted(final[t][0] - included[t][0] for t in final)
    blocks = sorted(final[t][1] - included[t][1] for t in final)
    n = len(seconds)
    return {"finality_txs": n, "finality_lag_p50_s": seconds[n // 2] if n else float("nan"),
            "finality_lag_p90_s": seconds[int(n * 0.9) - 1] if n else float("nan"),
            "finality_lag_p50_blocks": blocks[n // 2] if n else float("nan"),
            "finality_lag_p90_blocks": blocks[int(n * 0.9) - 1] if n else float("nan"),
            "finality_lag_p50_intervals": (seconds[n // 2] / interval_s) if n else float("nan"),
            "votes_per_block": votes / 31, "vote_share_of_txs": votes / txs if txs else float("nan")}


def finality(quick: bool) -> dict[str, Any]:
    """Four authorities, 1 s blocks: how long from inclusion to finality (goal: p50 within 3 intervals)."""
    root = Path(tempfile.mkdtemp(prefix="kwh-bench-finality-"))
    block_interval_ms = 1000
    auths = [AccountKey.generate() for _ in range(4)]
    sender = AccountKey.generate()
    genesis = Genesis("kwh-bench-finality", int(time.time() * 1000) - 5000, tuple(a.public for a in auths),
                      allocations=((sender.address, 10**6 * COIN),), min_difficulty=16,
                      block_interval_ms=block_interval_ms)
    gpath = root / "genesis.json"
    genesis.save(gpath)
    nodes = [NodeProcess(root, f"auth{i}", gpath, key, []) for i, key in enumerate(auths)]
    for node in nodes:
        node.args += ["--peers", ",".join(n.url for n in nodes if n is not node), "--mine-workers", "1"]
        node.start()
    try:
        result = asyncio.run(_follow_finality([n.url for n in nodes], sender, genesis.chain_id,
                                              15 if quick else 40, block_interval_ms / 1000, auths[0]))
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(root, ignore_errors=True)
    result["finality_block_interval_ms"] = block_interval_ms
    return result


TLS_ROUNDS = 3


def tls_figures(quick: bool, plain: dict[str, Any], transfer_apply_per_s: float,
                parallel_per_s: float) -> dict[str, Any]:
    """http_submit and sync over TLS, and their ratios to plain HTTP in this run. On a shared machine one
    run varies by a factor of two or more, so each TLS run is paired with a plain run next to it (the
    first with the plain figures of `plain`), and the ratio is the median of the pairs' ratios."""
    submit_plain, submit_tls = [plain["http_submit_per_s"]], []
    sync_plain, sync_tls = [plain["sync_blocks_per_s"]], []
    p99 = []
    for i in range(TLS_ROUNDS):
        submitted = http_submit(quick, tls=True)
        submit_tls.append(submitted["http_submit_per_s"])
        p99.append(submitted["http_p99_ms"])
        sync_tls.append(sync(quick, transfer_apply_per_s, parallel_per_s, tls=True)["sync_tls_blocks_per_s"])
        if i < TLS_ROUNDS - 1:
            submit_plain.append(http_submit(quick)["http_submit_per_s"])
            sync_plain.append(sync(quick, transfer_apply_per_s, parallel_per_s, serial_only=True)["sync_blocks_per_s"])

    def paired(tls: list[float], plain_runs: list[float]) -> float:
        return statistics.median(t / p for t, p in zip(tls, plain_runs))
    return {"http_submit_tls_per_s": statistics.median(submit_tls),
            "http_submit_tls_ratio": paired(submit_tls, submit_plain),
            "http_tls_p99_ms": statistics.median(p99), "sync_tls_blocks_per_s": statistics.median(sync_tls),
            "sync_tls_ratio": paired(sync_tls, sync_plain),
            "tls_rounds": {"http_submit_plain": submit_plain, "http_submit_tls": submit_tls,
                           "sync_plain": sync_plain, "sync_tls": sync_tls}}


def run(quick: bool, transfer_apply_per_s: float, parallel_per_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out.update(http_submit(quick))
    out.update(sync(quick, transfer_apply_per_s, parallel_per_s))
    out.update(tls_figures(quick, out, transfer_apply_per_s, parallel_per_s))
    out.update(finality(quick))
    return out
