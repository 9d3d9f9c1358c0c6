"""Blocks: header rules, invalid blocks, fork choice by total work, reorgs that restore state exactly."""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ledger import errors as E
from ledger.block import Block, BlockHeader, meets_difficulty, mine, pow_hash, seal_block, tx_root_of
from ledger.chain import MAX_FUTURE_DRIFT_MS, ST_INVALID, Chain, tie_rank
from ledger.errors import Rejected
from ledger.keys import P256_ORDER, AccountKey
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, Net, extend, make_net, make_tx, next_block
from ledger.tx import COIN, BUY, SELL, PlaceOrder, PostOffer, Redeem, Transfer, TransferWh, Tx, sign_tx

GENESIS_S = GENESIS_MS // 1000
START = 1_000 * COIN
INTERVAL = 2000


@pytest.fixture
def net() -> Net:
    return make_net(authorities=3, accounts=3, meters=1, meter_kind="both")


@pytest.fixture
def chain(net: Net) -> Chain:
    return net.chain()


def reason_of(chain: Chain, block: Block, now_ms: int | None = None) -> str:
    with pytest.raises(Rejected) as info:
        chain.import_block(block, now_ms=now_ms)
    return info.value.reason


def craft(chain: Chain, proposer: AccountKey, txs: list[Tx] = (), ts: int | None = None, difficulty: int = 1,
          block_txs: list[Tx] | None = None, **header_changes: Any) -> Block:
    """A block on the head, built honestly from `txs`, then altered (header fields, or the tx list with a
    matching tx root) and mined, so that only the alteration can be wrong."""
    if ts is None:
        ts = chain.earliest_timestamp(chain.head, chain.height + 1, proposer.public)
    header, included, rejected = chain.build_block(list(txs), ts, proposer, difficulty)
    assert not rejected
    if block_txs is not None:
        included = block_txs
        header = dataclasses.replace(header, tx_root=tx_root_of(block_txs))
    return mine(proposer, dataclasses.replace(header, **header_changes), included)


def auth(net: Net, i: int) -> AccountKey:
    return net.authorities[i]


def snapshot(chain: Chain, prefixes: tuple[bytes, ...] = (b"s",)) -> dict[bytes, bytes]:
    return {k: v for p in prefixes for k, v in chain.kv.iterate(p)}


# ------------------------------------------------------------------------------------- happy path

def test_in_turn_blocks_extend_the_head(chain: Chain, net: Net) -> None:
    b1 = next_block(chain, net)
    assert b1.header.proposer == auth(net, 1).public  # height 1 % 3
    result = chain.import_block(b1)
    assert (result.status, result.height, result.applied, result.reverted) == ("head", 1, [b1], [])
    assert chain.head_hash == b1.hash and chain.height == 1
    assert chain.head.total_work == 2  # difficulty 1, counted twice in turn
    assert chain.import_block(b1).status == "known"
    assert chain.canonical_hash(1) == b1.hash and chain.block_at(1) == b1
    assert chain.verify_state_root()
    b2 = extend(chain, net)
    assert b2.header.proposer == auth(net, 2).public and b2.header.timestamp_ms == GENESIS_MS + 2 * INTERVAL
    assert chain.head.total_work == 4


def test_out_of_turn_block_is_accepted_later_and_counts_once(chain: Chain, net: Net) -> None:
    early = next_block(chain, net, proposer=auth(net, 0), gap_ms=-INTERVAL)  # at the in-turn time
    assert early.header.timestamp_ms == GENESIS_MS + INTERVAL
    assert reason_of(chain, early) == E.BAD_TIMESTAMP
    block = next_block(chain, net, proposer=auth(net, 0))
    assert block.header.timestamp_ms == GENESIS_MS + 2 * INTERVAL
    assert chain.import_block(block).status == "head"
    assert chain.head.total_work == 1


# ------------------------------------------------------------------------------------ header rules

def test_not_proposer(chain: Chain, net: Net) -> None:
    outsider = AccountKey(bytes([3]) * 32)
    block = next_block(chain, net, proposer=outsider)
    assert reason_of(chain, block) == E.NOT_PROPOSER
    assert chain.meta(block.hash) is None and chain.height == 0  # nothing stored


def test_account_is_not_a_proposer(chain: Chain, net: Net) -> None:
    block = next_block(chain, net, proposer=net.accounts[0])
    assert reason_of(chain, block) == E.NOT_PROPOSER


def test_signed_recently(chain: Chain, net: Net) -> None:
    extend(chain, net)  # auth 1 at height 1
    again = next_block(chain, net, proposer=auth(net, 1))  # out of turn and too soon for auth 1
    assert reason_of(chain, again) == E.SIGNED_RECENTLY
    other = next_block(chain, net, proposer=auth(net, 0))  # out of turn but allowed
    assert chain.import_block(other).status == "head"
    back = next_block(chain, net, proposer=auth(net, 1))  # height 3: auth 1 last signed 2 blocks ago
    assert chain.import_block(back).status == "head"


def test_signed_recently_with_five_authorities() -> None:
    net = make_net(authorities=5, accounts=1)
    chain = net.chain()
    extend(chain, net)  # auth 1
    extend(chain, net)  # auth 2
    for i in (1, 2):
        assert reason_of(chain, next_block(chain, net, proposer=auth(net, i))) == E.SIGNED_RECENTLY
    assert chain.import_block(next_block(chain, net, proposer=auth(net, 4))).status == "head"
    assert reason_of(chain, next_block(chain, net, proposer=auth(net, 2))) == E.SIGNED_RECENTLY
    assert chain.import_block(next_block(chain, net, proposer=auth(net, 1))).status == "head"


def test_bad_timestamp_too_early(chain: Chain, net: Net) -> None:
    assert reason_of(chain, next_block(chain, net, gap_ms=-1)) == E.BAD_TIMESTAMP
    assert reason_of(chain, craft(chain, auth(net, 1), ts=GENESIS_MS)) == E.BAD_TIMESTAMP
    assert chain.import_block(next_block(chain, net)).status == "head"


def test_bad_timestamp_from_the_future(chain: Chain, net: Net) -> None:
    block = next_block(chain, net, gap_ms=60_000)
    ts = block.header.timestamp_ms
    assert reason_of(chain, block, now_ms=ts - MAX_FUTURE_DRIFT_MS - 1) == E.BAD_TIMESTAMP
    assert chain.meta(block.hash) is None
    assert chain.import_block(block, now_ms=ts - MAX_FUTURE_DRIFT_MS).status == "head"


def test_insufficient_work() -> None:
    net = make_net(accounts=1, min_difficulty=4)
    chain = net.chain()
    assert reason_of(chain, next_block(chain, net, difficulty=3)) == E.INSUFFICIENT_WORK
    assert reason_of(chain, next_block(chain, net, difficulty=1)) == E.INSUFFICIENT_WORK
    block = next_block(chain, net)
    assert block.header.difficulty == 4 and meets_difficulty(block.hash, 4)
    assert chain.import_block(block).status == "head"
    assert chain.head.total_work == 2  # weight: in turn 2, whatever the difficulty


def test_bad_pow(chain: Chain, net: Net) -> None:
    difficulty = 1 << 12
    good = next_block(chain, net, difficulty=difficulty)
    prefix = good.header.pow_prefix()
    bad_nonce = next(n for n in itertools.count() if not meets_difficulty(pow_hash(prefix, n), difficulty))
    tampered = seal_block(auth(net, 1), good.header, bad_nonce, good.txs, hashes=1)  # validly sealed
    assert reason_of(chain, tampered) == E.BAD_POW
    assert chain.import_block(good).status == "head"
    assert chain.head.total_work == 2  # the work checks the block; it buys no weight


def test_bad_seal_signature(chain: Chain, net: Net) -> None:
    good = next_block(chain, net)
    forged = Block(good.header, dataclasses.replace(good.seal, signature=auth(net, 0).sign(b"x")), good.txs)
    assert reason_of(chain, forged) == E.BAD_SIGNATURE
    inflated = Block(good.header, dataclasses.replace(good.seal, energy_mj=good.seal.energy_mj + 1), good.txs)
    assert reason_of(chain, inflated) == E.BAD_SIGNATURE
    assert chain.import_block(good).status == "head"


def test_wrong_chain_and_bad_height(chain: Chain, net: Net) -> None:
    assert reason_of(chain, craft(chain, auth(net, 1), chain_id="kwh-other")) == E.WRONG_CHAIN
    assert reason_of(chain, craft(chain, auth(net, 1), height=2)) == E.BAD_HEIGHT


def test_unknown_parent(chain: Chain, net: Net) -> None:
    ahead = net.chain()
    extend(ahead, net)
    orphan = next_block(ahead, net)
    assert reason_of(chain, orphan) == E.UNKNOWN_PARENT
    assert reason_of(chain, craft(chain, auth(net, 1), prev_hash=b"\x01" * 32)) == E.UNKNOWN_PARENT
    chain.import_block(ahead.block_at(1))
    assert chain.import_block(orphan).status == "head"


def test_bad_tx_root(chain: Chain, net: Net) -> None:
    a, b = net.accounts[:2]
    txs = [make_tx(chain, a, Transfer(b.address, 1)), make_tx(chain, b, Transfer(a.address, 2))]
    assert reason_of(chain, craft(chain, auth(net, 1), txs, tx_root=bytes(32))) == E.BAD_TX_ROOT
    good = craft(chain, auth(net, 1), txs)
    swapped = Block(good.header, good.seal, good.txs[::-1])  # same txs, another order
    assert reason_of(chain, swapped) == E.BAD_TX_ROOT
    dropped = Block(good.header, good.seal, good.txs[:1])
    assert reason_of(chain, dropped) == E.BAD_TX_ROOT
    assert chain.import_block(good).status == "head"


def test_duplicate_tx_in_block(chain: Chain, net: Net) -> None:
    tx = make_tx(chain, net.accounts[0], Transfer(net.accounts[1].address, 1))
    assert reason_of(chain, craft(chain, auth(net, 1), [tx], block_txs=[tx, tx])) == E.DUPLICATE


def test_relayer_cannot_get_a_block_refused_by_swapping_a_signature(chain: Chain, net: Net) -> None:
    """Txids leave signatures out; the tx root must not, or a garbled copy would poison the block's hash."""
    meter = MeterState(net.meters[0], start=GENESIS_S - 900)
    tx = make_tx(chain, net.accounts[0], Transfer(net.accounts[1].address, 5))
    reading = meter.read(CHAIN_ID, 10)
    good = next_block(chain, net, [tx, reading])
    r, s = decode_dss_signature(reading.signature)
    for garbled in [(dataclasses.replace(tx, signature=bytes(64)), reading),
                    (tx, dataclasses.replace(reading, signature=encode_dss_signature(r, P256_ORDER - s)))]:
        evil = Block(good.header, good.seal, garbled)
        assert [t.txid for t in evil.txs] == [t.txid for t in good.txs] and evil.hash == good.hash
        assert reason_of(chain, evil) == E.BAD_TX_ROOT
        assert chain.meta(good.hash) is None  # nothing stored under the genuine hash
    assert chain.import_block(good).status == "head"
    assert chain.account(net.accounts[1].address).coin == START + 5


def test_relayer_cannot_poison_a_side_block(chain: Chain, net: Net) -> None:
    side = net.chain()
    tx = make_tx(side, net.accounts[0], Transfer(net.accounts[1].address, 5))
    extend(chain, net)  # in turn: the side block below (out of turn) stays lighter
    out_of_turn = next_block(side, net, [tx], proposer=auth(net, 0))
    evil = Block(out_of_turn.header, out_of_turn.seal, (dataclasses.replace(tx, signature=bytes(64)),))
    assert reason_of(chain, evil) == E.BAD_TX_ROOT
    assert chain.import_block(out_of_turn).status == "side"
    assert chain.block(out_of_turn.hash) == out_of_turn


def test_too_many_txs() -> None:
    net = make_net(accounts=3, max_block_txs=2)
    chain = net.chain()
    txs = [make_tx(chain, k, Transfer(k.address, 1)) for k in net.accounts]
    header, included, _rejected = chain.build_block(txs, GENESIS_MS + INTERVAL, auth(net, 1), 1)
    assert len(included) == 2  # the builder stops at the limit
    assert reason_of(chain, craft(chain, auth(net, 1), txs[:2], block_txs=txs)) == E.TOO_MANY_TXS


def test_bad_state_root_leaves_no_trace(chain: Chain, net: Net) -> None:
    extend(chain, net)
    before = snapshot(chain, (b"s", b"x", b"i", b"k", b"n", b"H"))
    tx = make_tx(chain, net.accounts[0], Transfer(net.accounts[1].address, COIN))
    bad = craft(chain, auth(net, 2), [tx], state_root=b"\x07" * 32)
    assert reason_of(chain, bad) == E.BAD_STATE_ROOT
    assert snapshot(chain, (b"s", b"x", b"i", b"k", b"n", b"H")) == before
    assert chain.height == 1 and chain.verify_state_root()
    assert reason_of(chain, bad) == E.KNOWN_INVALID
    child = Block(dataclasses.replace(bad.header, height=3, prev_hash=bad.hash), bad.seal, ())
    assert reason_of(chain, child) == E.KNOWN_INVALID  # nothing builds on an invalid block
    good = craft(chain, auth(net, 2), [tx])
    assert chain.import_block(good).status == "head"
    assert chain.account(net.accounts[1].address).coin == START + COIN


@pytest.mark.parametrize("kind", ["bad_nonce", "bad_signature", "insufficient_funds"])
def test_invalid_tx_inside_a_block(chain: Chain, net: Net, kind: str) -> None:
    a, b = net.accounts[:2]
    good_tx = make_tx(chain, a, Transfer(b.address, 5))
    bad_tx = {
        "bad_nonce": make_tx(chain, b, Transfer(a.address, 1), nonce=3),
        "bad_signature": dataclasses.replace(make_tx(chain, b, Transfer(a.address, 1)),
                                             signature=a.sign(b"not this")),
        "insufficient_funds": make_tx(chain, b, Transfer(a.address, START)),
    }[kind]
    before = snapshot(chain)
    block = craft(chain, auth(net, 1), [good_tx], block_txs=[good_tx, bad_tx])
    with pytest.raises(Rejected) as info:
        chain.import_block(block)
    assert info.value.reason == E.INVALID_TX
    assert f"tx 1 ({bad_tx.txid.hex()}): {kind}" in info.value.detail
    assert snapshot(chain) == before and chain.height == 0  # the valid first tx was not applied either
    assert chain.tx_location(good_tx.txid) is None
    assert reason_of(chain, block) == E.KNOWN_INVALID


# ------------------------------------------------------------------------------------- fork choice

def test_in_turn_block_beats_out_of_turn_block(net: Net) -> None:
    ref = net.chain()
    out_of_turn = next_block(ref, net, proposer=auth(net, 0))
    in_turn = next_block(ref, net)
    chain = net.chain()
    assert chain.import_block(out_of_turn).status == "head"
    result = chain.import_block(in_turn)
    assert (result.status, result.reverted, result.applied) == ("reorg", [out_of_turn], [in_turn])
    assert chain.head_hash == in_turn.hash and chain.head.total_work == 2
    other = net.chain()
    assert other.import_block(in_turn).status == "head"
    assert other.import_block(out_of_turn).status == "side"  # lighter, whatever its hash
    assert other.head_hash == in_turn.hash


def test_hashing_buys_no_weight(net: Net) -> None:
    """One authority's block of huge difficulty on an old parent does not revert blocks the others built
    (before, a block's weight was its difficulty, so 169 hashes undid 29 blocks and a payment)."""
    long_ = net.chain()
    extend(long_, net)
    extend(long_, net)  # two in-turn blocks: weight 4
    short = net.chain()
    heavy = next_block(short, net, difficulty=1 << 16)  # one in-turn block, 65536 times the work: weight 2
    chain = net.chain()
    for h in (1, 2):
        chain.import_block(long_.block_at(h))
    result = chain.import_block(heavy)
    assert result.status == "side" and chain.height == 2 and chain.head_hash == long_.head_hash
    assert chain.head.total_work == 4


def test_difficulty_and_seal_claims_are_bounded(chain: Chain, net: Net) -> None:
    """A proposer's claims cannot overflow the chain's totals or make a block unproducible."""
    from ledger.block import Seal
    from ledger.chain import MAX_DIFFICULTY
    header, _inc, _rej = chain.build_block([], chain.earliest_timestamp(chain.head, 1, auth(net, 1).public),
                                           auth(net, 1), MAX_DIFFICULTY + 1)
    too_hard = seal_block(auth(net, 1), header, 0, [], 1)  # refused before its proof of work is looked at
    assert reason_of(chain, too_hard) == E.DIFFICULTY_TOO_HIGH
    honest = next_block(chain, net)
    proposer = next(a for a in net.authorities if a.public == honest.header.proposer)
    for hashes, energy_mj in (((1 << 64) - 1, 0), (0, 0), (1, (1 << 64) - 1), (1, 10_000_000 * 2001)):
        sealed = seal_block(proposer, honest.header, honest.header.nonce, honest.txs, hashes, energy_mj)
        assert reason_of(chain, sealed) == E.SEAL_OUT_OF_BOUNDS, (hashes, energy_mj)
    assert chain.height == 0
    chain.import_block(honest)
    extend(chain, net)  # the chain goes on
    assert chain.height == 2 and chain.head.cum_hashes < 1 << 63


def _import_both_ways(net: Net, first: Block, second: Block) -> Iterator[tuple[Chain, str]]:
    """Each order of arrival: a chain that imported `first` then `second`, and the second's status."""
    for a, b in ((first, second), (second, first)):
        chain = net.chain()
        chain.import_block(a)
        yield chain, chain.import_block(b).status


def test_equal_weight_ties_go_to_the_tie_rank_which_hashing_cannot_buy(net: Net) -> None:
    ref = net.chain()
    x = next_block(ref, net, proposer=auth(net, 0))  # both out of turn at height 1: weight 1 each
    y = next_block(ref, net, proposer=auth(net, 2))
    winner, loser = sorted((x, y), key=lambda blk: tie_rank(1, blk.header.proposer))
    difficulty = 2
    while loser.hash >= winner.hash:  # the loser grinds a lower hash (under the old rule it would win)
        difficulty *= 2
        loser = next_block(ref, net, proposer=next(a for a in net.authorities
                                                   if a.public == loser.header.proposer), difficulty=difficulty)
    for chain, status in _import_both_ways(net, winner, loser):
        assert chain.head_hash == winner.hash
        assert status in ("side", "reorg")


def test_equal_weight_in_fewer_blocks_wins_and_a_double_signer_keeps_the_first_seen(net: Net) -> None:
    ref = net.chain()
    in_turn = next_block(ref, net)  # weight 2 at height 1
    ref.import_block(next_block(ref, net, proposer=auth(net, 0)))  # out of turn: weight 1 at height 1
    second = next_block(ref, net, proposer=auth(net, 1))  # out of turn again: 1 + 1 at height 2
    for chain, _status in _import_both_ways(net, in_turn, ref.block_at(1)):
        chain.import_block(second)
        assert chain.head_hash == in_turn.hash, "as much weight in fewer blocks: more came in turn"
    a = next_block(net.chain(), net, proposer=auth(net, 0))
    b = next_block(net.chain(), net, proposer=auth(net, 0), gap_ms=1)  # same proposer and height
    assert a.hash != b.hash
    for first, second in ((a, b), (b, a)):
        chain = net.chain()
        chain.import_block(first)
        assert chain.import_block(second).status == "side" and chain.head_hash == first.hash


def test_equivocation_is_recorded(chain: Chain, net: Net) -> None:
    first = next_block(chain, net)
    second = next_block(chain, net, gap_ms=1)  # same proposer, same height, another block
    chain.import_block(first)
    chain.import_block(second)
    assert chain.evidence() == [{"proposer": auth(net, 1).public, "height": 1, "blocks": [first.hash,
                                                                                          second.hash]}]


# ------------------------------------------------------------------------------------------ reorgs

def _branch_txs(chain: Chain, net: Net, variant: int, meter: MeterState) -> list[list[Tx]]:
    """Two blocks of varied activity; variant changes amounts and recipients so branches conflict."""
    a, b, c = net.accounts
    na, nb, nc = (chain.account(k.address).nonce for k in (a, b, c))
    to = b if variant == 0 else c
    buyer, buyer_nonce = (c, nc) if variant == 0 else (b, nb + 1)
    return [
        [make_tx(chain, a, Transfer(to.address, (variant + 1) * COIN), nonce=na),
         meter.read(CHAIN_ID, 300 + variant * 50, 100),
         make_tx(chain, b, PostOffer(100, 7 + variant, GENESIS_S, GENESIS_S + 7200, ""), nonce=nb)],
        [make_tx(chain, a, TransferWh(to.address, 120 + variant), nonce=na + 1),
         make_tx(chain, a, PlaceOrder(SELL, 50, 3 + variant), nonce=na + 2),
         make_tx(chain, buyer, PlaceOrder(BUY, 40, 5), nonce=buyer_nonce),
         make_tx(chain, a, Redeem(60 + variant), nonce=na + 3)],
    ]


def test_reorg_to_a_heavier_fork_and_back_restores_state_exactly(net: Net) -> None:
    main = net.chain()
    common = extend(main, net, [make_tx(main, net.accounts[2], Transfer(net.accounts[0].address, COIN))])
    branch_a, branch_b = net.chain(), net.chain()
    for c in (branch_a, branch_b):
        c.import_block(common)
    a_blocks = [extend(branch_a, net, txs) for txs in _branch_txs(
        branch_a, net, 0, MeterState(net.meters[0], start=GENESIS_S - 4 * 900))]
    b_meter = MeterState(net.meters[0], start=GENESIS_S - 3 * 900)  # other intervals, other amounts
    b_blocks = [extend(branch_b, net, txs) for txs in _branch_txs(branch_b, net, 1, b_meter)]
    b_blocks.append(extend(branch_b, net))  # one block more: B outweighs A

    for blk in a_blocks:
        assert main.import_block(blk).status == "head"
    state_a = snapshot(branch_a, (b"s", b"x", b"i", b"k", b"n", b"u", b"H"))
    assert snapshot(main, (b"s", b"x", b"i", b"k", b"n", b"u", b"H")) == state_a

    # B outweighs A at its third block (2 per in-turn block); at its second the two tie (the same proposer at the same height: the head stays)
    results = [main.import_block(blk) for blk in b_blocks]
    reorgs = [r for r in results if r.status == "reorg"]
    assert len(reorgs) == 1 and main.head_hash == b_blocks[-1].hash
    result = reorgs[0]
    assert [blk.hash for blk in result.reverted] == [a_blocks[1].hash, a_blocks[0].hash]
    reverted_txids = {t.txid for blk in result.reverted for t in blk.txs}
    assert reverted_txids == {t.txid for blk in a_blocks for t in blk.txs}
    assert dict(main.state_entries()) == dict(branch_b.state_entries())
    assert snapshot(main, (b"s", b"x", b"i", b"k", b"n", b"u", b"H")) == \
        snapshot(branch_b, (b"s", b"x", b"i", b"k", b"n", b"u", b"H"))
    assert main.verify_state_root()
    for txid in reverted_txids - {t.txid for blk in b_blocks for t in blk.txs}:
        assert main.tx_location(txid) is None
    assert main.account(net.accounts[2].address).coin == START - COIN - 1000 + 2 * COIN

    # A grows heavier again: back to exactly A's state
    a3 = extend(branch_a, net, [make_tx(branch_a, net.accounts[1], Transfer(net.accounts[2].address, 9))])
    a4 = extend(branch_a, net)
    results = [main.import_block(blk) for blk in (a3, a4)]
    reorgs = [r for r in results if r.status == "reorg"]
    assert len(reorgs) == 1 and main.head_hash == a4.hash
    result = reorgs[0]
    assert [blk.hash for blk in result.reverted] == [blk.hash for blk in reversed(b_blocks)]
    assert [blk.hash for blk in result.applied][:3] == [a_blocks[0].hash, a_blocks[1].hash, a3.hash]
    assert dict(main.state_entries()) == dict(branch_a.state_entries())
    assert snapshot(main, (b"s", b"x", b"i", b"k", b"n", b"u", b"H")) == \
        snapshot(branch_a, (b"s", b"x", b"i", b"k", b"n", b"u", b"H"))
    assert main.verify_state_root()
    assert main.head.total_work == branch_a.head.total_work == 2 * 5


def test_reorg_into_an_invalid_branch_is_rolled_back(net: Net) -> None:
    main = net.chain()
    extend(main, net)
    side = net.chain()
    side.import_block(main.block_at(1))
    a, b = net.accounts[:2]
    extend(main, net, [make_tx(main, a, Transfer(b.address, 3 * COIN))])
    extend(main, net, [make_tx(main, a, Transfer(b.address, 4 * COIN))])
    before = snapshot(main, (b"s", b"x", b"i", b"k", b"n", b"u", b"H"))
    s2 = next_block(side, net, [make_tx(side, a, Transfer(net.accounts[2].address, COIN))])  # valid
    side.import_block(s2)
    assert main.import_block(s2).status == "side"  # lighter so far: stored, not executed
    s3 = craft(side, auth(net, 0), [make_tx(side, b, Transfer(a.address, 1))],
               state_root=b"\x09" * 32)  # ties with main, and its state root is wrong
    s3 = _lose_ties(s3, auth(net, 0), main)
    assert main.import_block(s3).status == "side"  # stored beside the head (a tie it loses): not executed
    s4 = _child(main, s3, auth(net, 1))  # now the side branch is heavier: the move executes s3 and fails
    with pytest.raises(Rejected) as info:
        main.import_block(s4)
    assert info.value.reason == E.BAD_STATE_ROOT
    assert snapshot(main, (b"s", b"x", b"i", b"k", b"n", b"u", b"H")) == before
    assert main.height == 3 and main.verify_state_root()
    assert reason_of(main, s4) == E.KNOWN_INVALID and main.meta(s3.hash).status == ST_INVALID
    assert main.account(b.address).coin == START + 7 * COIN


def _child(chain: Chain, parent: Block, proposer: AccountKey, lose_ties_to: Chain | None = None) -> Block:
    """An empty block on any stored parent (its state root is not checked until it is executed); with
    `lose_ties_to`, timed so that its hash is above that chain's head hash (a tie in weight keeps the head)."""
    meta = chain.meta(parent.hash)
    assert meta is not None
    ts = chain.earliest_timestamp(meta, meta.height + 1, proposer.public)
    header = BlockHeader(chain.chain_id, meta.height + 1, parent.hash, ts, proposer.public, tx_root_of([]),
                         bytes(32), 1, 0)
    block = mine(proposer, header, [])
    return _lose_ties(block, proposer, lose_ties_to) if lose_ties_to is not None else block


def _lose_ties(block: Block, proposer: AccountKey, chain: Chain) -> Block:
    """The same block re-timed (a millisecond at a time) until its hash is above `chain`'s head hash."""
    while block.hash < chain.head_hash:
        block = mine(proposer, dataclasses.replace(block.header, timestamp_ms=block.header.timestamp_ms + 1),
                     list(block.txs))
    return block


def test_blocks_built_on_an_invalid_block_are_invalid_and_never_executed_again(net: Net) -> None:
    """A failed reorg marks the whole branch above the bad block, and a branch that only meets the bad
    block further down (a sibling stored before) is refused without reverting anything. Before, such
    blocks stayed candidates and every descendant a peer sent cost a full revert and re-apply."""
    main = net.chain()
    extend(main, net)
    a, b = net.accounts[:2]
    for amount in (3, 4):
        extend(main, net, [make_tx(main, a, Transfer(b.address, amount * COIN))])
    bad = craft(main, auth(net, 0), [], state_root=b"\x09" * 32, prev_hash=main.canonical_hash(1), height=2)
    assert main.import_block(bad).status == "side"  # lighter (out of turn): stored, not executed
    sibling = _child(main, bad, auth(net, 1))  # a second branch on the bad block, also light
    assert main.import_block(sibling).status == "side"
    c3 = _child(main, bad, auth(net, 2))
    assert main.import_block(c3).status == "side"
    c4 = _child(main, c3, auth(net, 1), lose_ties_to=main)  # in turn: ties with main and loses the tie
    assert main.import_block(c4).status == "side"
    writes: list[set[bytes]] = []
    real_write = main.kv.write
    main.kv.write = lambda changes, sync=True: (writes.append(set(changes)), real_write(changes, sync))  # type: ignore
    before = snapshot(main, (b"s", b"x", b"n", b"u", b"H"))

    heavy = _child(main, c4, auth(net, 2))  # in turn: heavier than main, tries the reorg, fails
    assert reason_of(main, heavy) == E.BAD_STATE_ROOT
    for blk in (bad, c3, c4, heavy):
        assert main.meta(blk.hash).status == ST_INVALID  # type: ignore[union-attr]
    assert snapshot(main, (b"s", b"x", b"n", b"u", b"H")) == before
    writes.clear()
    assert reason_of(main, _child(main, heavy, auth(net, 0))) == E.KNOWN_INVALID
    assert writes == []  # refused outright: its parent is marked
    light = _child(main, sibling, auth(net, 0))  # out of turn: lighter, stored
    assert main.import_block(light).status == "side"
    on_sibling = _child(main, light, auth(net, 2))  # in turn: heavier, meets the bad block on the way down
    assert reason_of(main, on_sibling) == E.KNOWN_INVALID
    assert not any(b"H" in w for w in writes), "no revert or apply was attempted"
    assert main.meta(sibling.hash).status == main.meta(on_sibling.hash).status == ST_INVALID  # type: ignore
    assert snapshot(main, (b"s", b"x", b"n", b"u", b"H")) == before and main.verify_state_root()
    assert main.check() == []


def test_check_tx_for_the_mempool(chain: Chain, net: Net) -> None:
    a, b = net.accounts[:2]
    t0 = make_tx(chain, a, Transfer(b.address, 1))
    t1 = make_tx(chain, a, Transfer(b.address, 1), nonce=1)
    chain.check_tx(t0, GENESIS_MS)
    with pytest.raises(Rejected) as info:
        chain.check_tx(t1, GENESIS_MS)
    assert info.value.reason == E.BAD_NONCE
    chain.check_tx(t1, GENESIS_MS, pending_nonce=1)
    extend(chain, net, [t0])
    with pytest.raises(Rejected) as info:
        chain.check_tx(t0, GENESIS_MS)
    assert info.value.reason == E.DUPLICATE
    foreign = sign_tx(a, "kwh-other", 1, 1000, Transfer(b.address, 1))
    with pytest.raises(Rejected) as info:
        chain.check_tx(dataclasses.replace(foreign, chain_id=CHAIN_ID), GENESIS_MS)
    assert info.value.reason == E.BAD_SIGNATURE


def test_header_fields_are_covered_by_the_hash(chain: Chain, net: Net) -> None:
    block = next_block(chain, net)
    h = block.header
    for name, value in [("timestamp_ms", h.timestamp_ms + 1), ("state_root", bytes(32)), ("tx_root", bytes(32)),
                        ("difficulty", 2), ("proposer", bytes(32)), ("height", 9), ("prev_hash", bytes(32)),
                        ("chain_id", "x"), ("nonce", 1)]:
        assert dataclasses.replace(h, **{name: value}).hash != h.hash, name
    assert isinstance(h, BlockHeader)
