"""A crash at any write of a head move leaves a consistent database, and reopening finishes the move.

The node process is killed for real in tests/functional/test_crash.py, but a kill rarely lands between the
few batches of a reorg. Here the real LevelDB store is stopped at every one of those writes in turn (the
write that "crashes" is not applied, like a process killed before LevelDB got it), then reopened.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping

import pytest

from ledger.block import Block, mine
from ledger.chain import K_TARGET, ST_INVALID, Chain
from ledger.encoding import encode
from ledger.errors import Rejected
from ledger.store import LevelKV
from ledger.testing import Net, make_net, make_tx, next_block
from ledger.tx import COIN, Transfer


class Crash(Exception):
    """The process 'died' before this write reached LevelDB."""


class CrashingKV(LevelKV):
    """The real LevelDB store that dies at its `crash_at`-th write (counting from 0); None: never."""

    def __init__(self, path: Path, crash_at: int | None = None) -> None:
        super().__init__(path)
        self.crash_at = crash_at
        self.writes = 0

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        if self.crash_at is not None and self.writes == self.crash_at:
            raise Crash(f"write {self.writes}")
        self.writes += 1
        super().write(changes, sync)


def forks(net: Net, bad_tip: bool) -> tuple[list[Block], list[Block]]:
    """A common block, branch A (2 blocks, the second out of turn) and branch B (2 in-turn blocks; with
    bad_tip its state root is wrong). Both branches move coin, so reverting and applying change state."""
    a_chain, b_chain = net.chain(), net.chain()
    x, y, z = net.accounts[:3]
    common = next_block(a_chain, net, [make_tx(a_chain, x, Transfer(y.address, COIN))])
    a_chain.import_block(common)
    b_chain.import_block(common)
    a_blocks = []
    for amount in (2, 3):  # the second out of turn: A weighs less than B once B has two blocks
        proposer = None if amount == 2 else next(a for a in net.authorities if a.public == common.header.proposer)
        blk = next_block(a_chain, net, [make_tx(a_chain, y, Transfer(z.address, amount * COIN))],
                         proposer=proposer)
        a_chain.import_block(blk)
        a_blocks.append(blk)
    b2 = next_block(b_chain, net, [make_tx(b_chain, z, Transfer(x.address, 5 * COIN))])
    b_chain.import_block(b2)
    b3 = next_block(b_chain, net, [make_tx(b_chain, x, Transfer(z.address, 7 * COIN))])
    if bad_tip:
        import dataclasses
        b3 = mine(next(a for a in net.authorities if a.public == b3.header.proposer),
                  dataclasses.replace(b3.header, state_root=b"\x05" * 32, nonce=0), list(b3.txs))
    return [common] + a_blocks, [b2, b3]


def base_db(tmp_path: Path, net: Net, a_blocks: list[Block], b2: Block) -> tuple[Path, bytes]:
    """A LevelDB with branch A as the head and b2 stored as a lighter side block; closed."""
    path = tmp_path / "base"
    kv = LevelKV(path)
    chain = Chain(kv, net.genesis)
    for blk in a_blocks:
        assert chain.import_block(blk).status == "head"
    assert chain.import_block(b2).status == "side"
    head = chain.head_hash
    kv.close()
    return path, head


def crash_points(tmp_path: Path, net: Net, base: Path, block: Block) -> int:
    """How many writes importing `block` makes on a copy of the base database."""
    path = tmp_path / "count"
    shutil.copytree(base, path)
    kv = CrashingKV(path)
    try:
        Chain(kv, net.genesis).import_block(block)
    except Rejected:
        pass
    kv.close()
    return kv.writes


@pytest.mark.parametrize("bad_tip", [False, True], ids=["reorg", "failed-reorg"])
def test_a_crash_at_any_write_of_a_reorg_reopens_consistent_and_finishes(tmp_path: Path, bad_tip: bool) -> None:
    net = make_net(authorities=3, accounts=3, seed=11)
    a_blocks, (b2, b3) = forks(net, bad_tip)
    base, a_head = base_db(tmp_path, net, a_blocks, b2)
    total = crash_points(tmp_path, net, base, b3)
    # store+journal, 2 reverts, 2 applies; failed: the 2nd apply fails, mark, 1 revert and 2 re-applies
    assert total == (8 if bad_tip else 5)
    for k in range(total):
        path = tmp_path / f"crash{k}"
        shutil.copytree(base, path)
        kv = CrashingKV(path, crash_at=k)
        with pytest.raises(Crash):
            Chain(kv, net.genesis).import_block(b3)
        kv.close()
        kv = CrashingKV(path)
        as_left = Chain(kv, net.genesis, resume=False)  # what the crash left: consistent, maybe mid-move
        assert as_left.check() == [], f"crash at write {k}"
        assert kv.writes == 0
        kv.close()
        kv = CrashingKV(path)
        reopened = Chain(kv, net.genesis)
        expected = a_head if bad_tip or k == 0 else b3.hash
        assert reopened.head_hash == expected, f"crash at write {k}"
        assert kv.get(K_TARGET) is None and reopened.check() == [], f"crash at write {k}"
        if bad_tip and k > 0:  # stored, so found invalid before the crash or when resuming
            assert reopened.meta(b3.hash).status == ST_INVALID  # type: ignore[union-attr]
        kv.close()


def test_check_finds_what_a_torn_write_would_leave(tmp_path: Path) -> None:
    """check() is not vacuous: each kind of damage a non-atomic write could cause is reported."""
    net = make_net(authorities=3, accounts=3, seed=12)
    a_blocks, _ = forks(net, bad_tip=False)
    kv = LevelKV(tmp_path / "db")
    chain = Chain(kv, net.genesis)
    for blk in a_blocks:
        chain.import_block(blk)
    assert chain.check() == []
    head = chain.head_hash
    txid = a_blocks[-1].txs[0].txid
    damages: list[tuple[dict[bytes, bytes | None], str]] = [
        ({b"sa" + net.accounts[2].address: None}, "state recomputed"),  # state written without its block
        ({b"x" + txid: None}, "transaction index entries"),  # an index lost
        ({b"u" + head: None}, "no undo data"),
        ({b"n" + (9).to_bytes(8, "big"): head}, "above the head"),
    ]
    for change, fragment in damages:
        saved = {k: kv.get(k) for k in change}
        kv.write(change)
        problems = Chain(kv, net.genesis, resume=False).check()
        assert any(fragment in p for p in problems), (fragment, problems)
        kv.write(saved)
    assert Chain(kv, net.genesis, resume=False).check() == []
    kv.close()


def test_a_stale_journal_is_dropped_on_open(tmp_path: Path) -> None:
    """A journal naming a block that is not heavier (or unknown) changes nothing but is cleared."""
    net = make_net(authorities=3, accounts=3, seed=13)
    a_blocks, (b2, _b3) = forks(net, bad_tip=False)
    base, a_head = base_db(tmp_path, net, a_blocks, b2)
    kv = LevelKV(base)
    kv.write({K_TARGET: encode([b2.hash, a_head])})
    chain = Chain(kv, net.genesis)
    assert chain.head_hash == a_head and chain.resumed is None and kv.get(K_TARGET) is None
    assert chain.check() == []
    kv.close()
