"""Ledger-level benchmarks: each figure measured beside the raw primitive it is built on, in one run.

Shared, noisy machines make absolute rates meaningless from one run to the next; the ratio of kwhledger's
rate to the raw primitive's rate, both measured now, is what the targets are about.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ledger.block import decode_block, mine
from ledger.chain import Chain, inline_verifier
from ledger.genesis import Genesis, GenesisMeter
from ledger.keys import AccountKey, MeterKey, verify_ed25519
from ledger.store import LevelKV
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, make_net, next_block
from ledger.tx import COIN, Transfer, decode_tx, encode_tx, sign_tx

BLOCK_TXS = 1000


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_rate(count: int, fn: Callable[[], Any], repeats: int) -> float:
    """count / best time of `repeats` runs: the least-disturbed run is the truest on a shared machine."""
    return count / min(timed(fn) for _ in range(repeats))


# ------------------------------------------------------------------------------------------- raw


def raw_ed25519(n: int, repeats: int) -> float:
    key = AccountKey.generate()
    msgs = [os.urandom(120) for _ in range(n)]
    items = [(key.public, key.sign(m), m) for m in msgs]
    return best_rate(n, lambda: [verify_ed25519(p, s, m) for p, s, m in items], repeats)


def raw_p256(n: int, repeats: int) -> float:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    priv = ec.generate_private_key(ec.SECP256R1())
    pub = priv.public_key()
    msgs = [os.urandom(120) for _ in range(n)]
    items = [(priv.sign(m, ec.ECDSA(hashes.SHA256())), m) for m in msgs]
    algo = ec.ECDSA(hashes.SHA256())
    return best_rate(n, lambda: [pub.verify(s, m, algo) for s, m in items], repeats)


def raw_sha256_loop(n: int, repeats: int) -> float:
    """The plainest loop hashing 40-byte inputs, the shape the miner hashes (32-byte prefix + nonce)."""
    prefix = os.urandom(32)

    def loop() -> None:
        sha = hashlib.sha256
        for nonce in range(n):
            sha(prefix + nonce.to_bytes(8, "big")).digest()
    return best_rate(n, loop, repeats)


def pow_hash(n: int, repeats: int) -> float:
    """The miner's own search loop at a difficulty it will not meet within n tries."""
    from ledger.block import search_nonce
    prefix = os.urandom(32)
    return best_rate(n, lambda: search_nonce(prefix, 1 << 62, 0, n), repeats)


# ------------------------------------------------------------------------------------- transfers


class TransferWorkload:
    """Blocks of BLOCK_TXS signed coin transfers between many funded accounts, pre-signed."""

    def __init__(self, accounts: int = 500, authorities: int = 1) -> None:
        self.net = make_net(authorities=authorities, accounts=accounts, coin=10**6 * COIN)
        self.nonces = {a.address: 0 for a in self.net.accounts}
        self.round = 0

    def batch(self, n: int = BLOCK_TXS) -> list[bytes]:
        accts = self.net.accounts
        out = []
        for i in range(n):
            a = accts[(self.round * n + i) % len(accts)]
            b = accts[(self.round * n + i * 7 + 3) % len(accts)]
            out.append(encode_tx(sign_tx(a, CHAIN_ID, self.nonces[a.address], 1000, Transfer(b.address, 1 + i))))
            self.nonces[a.address] += 1
        self.round += 1
        return out


def _fresh_chain(net: Any, verifier: Any = inline_verifier) -> tuple[Chain, str]:
    path = tempfile.mkdtemp(prefix="kwh-bench-")
    return Chain(LevelKV(path), net.genesis, verifier=verifier), path


def transfer_apply(blocks: int, verifier: Any = inline_verifier, votes: bool = False) -> dict[str, float]:
    """Transfers decoded, verified and applied into LevelDB, in blocks of 1,000, per second of apply.

    Blocks are built and mined beforehand on a twin chain, so the timed part is exactly what a node does
    with a block: decode the transactions, check signatures, execute, commit one write batch. With
    `votes`, four authorities and each block also carries a quorum's finality votes for its parent (what
    a live network's blocks hold): the rate still counts transfers only, so the votes' cost shows.
    """
    from ledger.consensus import quorum
    from ledger.tx import sign_vote
    work = TransferWorkload(authorities=4 if votes else 1)
    builder, bpath = _fresh_chain(work.net)
    target, tpath = _fresh_chain(work.net, verifier)
    encoded_blocks = []
    for _ in range(blocks):
        txs = [decode_tx(raw, CHAIN_ID) for raw in work.batch()]
        if votes and builder.height > 0:
            fin = builder.finality()
            txs = [sign_vote(a, CHAIN_ID, (fin["justified_height"], fin["justified_hash"]),
                             (builder.height, builder.head_hash))
                   for a in work.net.authorities[:quorum(4)]] + txs
        block = next_block(builder, work.net, txs)
        builder.import_block(block)
        encoded_blocks.append(block.encode())
    # transfer_apply: decoded blocks; block_import: the same blocks from a peer's bytes, on a third chain
    importer, ipath = _fresh_chain(work.net, verifier)
    apply_s = import_s = 0.0
    for raw in encoded_blocks:
        block = decode_block(raw, CHAIN_ID, 10_000)
        t0 = time.perf_counter()
        target.import_block(block)
        t1 = time.perf_counter()
        importer.import_block(decode_block(raw, CHAIN_ID, 10_000))
        t2 = time.perf_counter()
        apply_s += t1 - t0
        import_s += t2 - t1
    disk = _dir_bytes(tpath)
    ok = target.verify_state_root() and target.head_hash == builder.head_hash == importer.head_hash
    for c, p in ((builder, bpath), (target, tpath), (importer, ipath)):
        c.kv.close()
        shutil.rmtree(p, ignore_errors=True)
    if not ok:
        raise RuntimeError("benchmark chain diverged")
    n = blocks * BLOCK_TXS
    return {"per_s": n / apply_s, "import_per_s": n / import_s, "bytes_per_tx": disk / n}


def reading_ingest(blocks: int, meters: int = 200) -> float:
    """Signed meter readings verified and minted per second (blocks of 1,000 readings)."""
    mkeys = [MeterKey.generate() for _ in range(meters)]
    owners = [AccountKey.generate() for _ in range(50)]
    auth = AccountKey.generate()
    first = GENESIS_MS // 1000 + 399 * 86400  # a day before genesis: installed before enrolled
    genesis = Genesis(CHAIN_ID, GENESIS_MS + 400 * 86400 * 1000, (auth.public,), min_difficulty=1,
                      meters=tuple(GenesisMeter(m.public, owners[i % 50].address, "both", 20_000, 900, "solar",
                                                first_start=first) for i, m in enumerate(mkeys)))
    states = [MeterState(m, first) for m in mkeys]

    builder, bpath = _fresh_chain(type("N", (), {"genesis": genesis})())
    target, tpath = _fresh_chain(type("N", (), {"genesis": genesis})())
    encoded = []
    per_block = BLOCK_TXS // meters
    for _ in range(blocks):
        txs = [s.read(CHAIN_ID, 1000 + (i % 500), 200) for i in range(per_block) for s in states]
        header, included, rejected = builder.build_block(txs, builder.earliest_timestamp(builder.head, builder.height + 1, auth.public), auth, 1)
        assert not rejected, rejected[:1]
        block = mine(auth, header, included)
        builder.import_block(block)
        encoded.append(block.encode())
    elapsed = 0.0
    for raw in encoded:
        t0 = time.perf_counter()
        target.import_block(decode_block(raw, CHAIN_ID, 10_000))
        elapsed += time.perf_counter() - t0
    for c, p in ((builder, bpath), (target, tpath)):
        c.kv.close()
        shutil.rmtree(p, ignore_errors=True)
    return blocks * per_block * meters / elapsed


def rss_100k_accounts() -> float:
    """Resident memory (MB) of a process holding a chain whose state has 100,000 funded accounts."""
    import subprocess
    import sys
    code = (
        "import resource,tempfile,shutil\n"
        "from ledger.genesis import Genesis\nfrom ledger.keys import AccountKey\n"
        "from ledger.chain import Chain\nfrom ledger.store import LevelKV\nimport os,hashlib\n"
        "auth=AccountKey.generate()\n"
        "alloc=tuple(sorted((hashlib.sha256(i.to_bytes(4,'big')).digest()[:20], 10**12) for i in range(100000)))\n"
        "g=Genesis('kwh-bench',0,(auth.public,),allocations=alloc)\n"
        "p=tempfile.mkdtemp()\nc=Chain(LevelKV(p),g)\n"
        "del alloc,g\nimport gc;gc.collect()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)\nshutil.rmtree(p)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
