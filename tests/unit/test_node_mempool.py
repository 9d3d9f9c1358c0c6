"""Mempool: admission against the head state, pending nonces, ordering, bounds, new heads and reorgs.
Real Chain over the in-memory KV (same contract as LevelDB), real signatures."""
from __future__ import annotations

import time

import pytest

from ledger.block import mine
from ledger.errors import Rejected
from ledger.testing import GENESIS_MS, MeterState, Net, extend, make_net, next_block
from ledger.tx import COIN, Transfer, sign_tx
from node.mempool import Mempool

NOW = int(time.time() * 1000)


def tx(net: Net, sender: int, nonce: int, fee: int = 1000, amount: int = COIN, to: int | None = None):
    receiver = net.accounts[(sender + 1) % len(net.accounts) if to is None else to]
    return sign_tx(net.accounts[sender], net.genesis.chain_id, nonce, fee, Transfer(receiver.address, amount))


def reason(excinfo: pytest.ExceptionInfo[Rejected]) -> str:
    return excinfo.value.reason


def test_admits_pending_nonces_in_order_and_refuses_gaps_and_duplicates() -> None:
    net = make_net(accounts=2)
    pool = Mempool(net.chain())
    sender = net.accounts[0].address
    pool.add(tx(net, 0, 0), NOW)
    pool.add(tx(net, 0, 1), NOW)
    assert pool.next_nonce(sender) == 2 and len(pool) == 2
    with pytest.raises(Rejected) as e:
        pool.add(tx(net, 0, 0), NOW)
    assert reason(e) == "duplicate"
    with pytest.raises(Rejected) as e:
        pool.add(tx(net, 0, 5), NOW)
    assert reason(e) == "bad_nonce"
    with pytest.raises(Rejected) as e:
        pool.add(tx(net, 0, 2, fee=1), NOW)
    assert reason(e) == "fee_too_low"


def test_replacement_needs_a_higher_fee() -> None:
    net = make_net(accounts=2)
    pool = Mempool(net.chain())
    first = tx(net, 0, 0, fee=1000, amount=1)
    pool.add(first, NOW)
    with pytest.raises(Rejected) as e:
        pool.add(tx(net, 0, 0, fee=1000, amount=2), NOW)
    assert reason(e) == "duplicate"
    better = tx(net, 0, 0, fee=5000, amount=2)
    pool.add(better, NOW)
    assert first.txid not in pool and better.txid in pool
    assert pool.dropped[first.txid].reason == "duplicate"


def test_select_orders_by_fee_then_nonce_per_sender() -> None:
    net = make_net(accounts=3)
    pool = Mempool(net.chain())
    a0, a1 = tx(net, 0, 0, fee=1000), tx(net, 0, 1, fee=9000)  # a cheap tx before an expensive one
    b0 = tx(net, 1, 0, fee=5000)
    c0 = tx(net, 2, 0, fee=2000)
    for t in (a0, a1, b0, c0):
        pool.add(t, NOW)
    order = [t.txid for t in pool.select()]
    assert order == [b0.txid, c0.txid, a0.txid, a1.txid]


def test_bounded_per_sender_and_in_total_with_fee_eviction() -> None:
    net = make_net(accounts=5)
    pool = Mempool(net.chain(), max_size=3, per_sender=2)
    pool.add(tx(net, 0, 0), NOW)
    pool.add(tx(net, 0, 1), NOW)
    with pytest.raises(Rejected) as e:
        pool.add(tx(net, 0, 2), NOW)
    assert reason(e) == "mempool_full"
    cheap = tx(net, 1, 0, fee=1000)
    pool.add(cheap, NOW)
    with pytest.raises(Rejected) as e:
        pool.add(tx(net, 2, 0, fee=1000), NOW)  # not more than the cheapest
    assert reason(e) == "mempool_full"
    rich = tx(net, 2, 0, fee=3000)
    pool.add(rich, NOW)
    assert rich.txid in pool and len(pool) == 3
    evicted = [t for t in pool.dropped.values() if t.reason == "mempool_full"]
    assert len(evicted) == 1 and evicted[0].tx.txid in (cheap.txid, tx(net, 0, 1).txid)
    # what remains is still each sender's contiguous run
    for addr, pend in pool.by_sender.items():
        assert sorted(pend) == list(range(min(pend), min(pend) + len(pend)))


def test_new_block_removes_included_and_stale_and_invalid() -> None:
    net = make_net(accounts=3, coin=10 * COIN)
    chain = net.chain()
    pool = Mempool(chain)
    included = tx(net, 0, 0)
    pool.add(included, NOW)
    stale = tx(net, 1, 0, amount=1)
    pool.add(stale, NOW)
    broke = tx(net, 2, 0, amount=9 * COIN)
    pool.add(broke, NOW)
    # another node's block: sender 0's tx, a different tx with sender 1's nonce 0, and sender 2 spends it all
    other_1 = tx(net, 1, 0, amount=2)
    drain = tx(net, 2, 0, amount=10 * COIN - 1000, fee=1000, to=0)
    block = extend(chain, net, [included, other_1, drain])
    pool.on_new_head([block], [], NOW)
    assert len(pool) == 0
    assert stale.txid in pool.dropped and pool.dropped[stale.txid].reason == "bad_nonce"
    assert broke.txid in pool.dropped


def test_dropping_a_tx_drops_its_successors() -> None:
    net = make_net(accounts=2)
    pool = Mempool(net.chain())
    txs = [tx(net, 0, n) for n in range(3)]
    for t in txs:
        pool.add(t, NOW)
    gone = pool.drop(txs[1].txid, "insufficient_funds", "test")
    assert gone == [txs[1].txid, txs[2].txid] and list(pool.entries) == [txs[0].txid]


def test_reorg_brings_back_txs_of_reverted_blocks() -> None:
    net = make_net(authorities=3, accounts=2)
    main, fork = net.chain(), net.chain()
    pool = Mempool(main)
    t = tx(net, 0, 0)
    block = next_block(main, net, [t])  # in turn at height 1, with the tx
    main.import_block(block)
    pool.on_new_head([block], [], NOW)
    assert t.txid not in pool
    # a heavier branch without it: out of turn at height 1 (work 1), in turn at height 2 (work 2)
    a0, a2 = net.authorities[0], net.authorities[2]
    assert not fork.in_turn(1, a0.public) and fork.in_turn(2, a2.public)
    f1 = next_block(fork, net, [], proposer=a0)
    fork.import_block(f1)
    f2 = next_block(fork, net, [], proposer=a2)
    fork.import_block(f2)
    assert main.import_block(f1).status == "side"
    result = main.import_block(f2)
    assert result.status == "reorg" and [b.hash for b in result.reverted] == [block.hash]
    pool.on_new_head(result.applied, result.reverted, NOW)
    assert t.txid in pool


def test_readings_of_one_meter_queue_in_counter_order() -> None:
    net = make_net(accounts=1, meters=1, meter_kind="generation", interval_s=900)
    chain = net.chain()
    pool = Mempool(chain)
    start = ((GENESIS_MS // 1000) // 900 - 4) * 900  # intervals that ended before the first block
    meter = MeterState(net.meters[0], start)
    r1 = meter.read(net.genesis.chain_id, 100)
    r2 = meter.read(net.genesis.chain_id, 200)
    pool.add(r1, NOW)
    pool.add(r2, NOW)  # checked after r1, so its registers add up
    assert [t.txid for t in pool.select()] == [r1.txid, r2.txid]
    with pytest.raises(Rejected) as e:
        pool.add(MeterState(net.meters[0], start).read(net.genesis.chain_id, 50), NOW)
    assert reason(e) == "counter_not_increasing"
    header, included, rejected = chain.build_block(pool.select(), chain.earliest_timestamp(
        chain.head, 1, net.authorities[1].public), net.authorities[1], 1)
    assert not rejected and len(included) == 2
    block = mine(net.authorities[1], header, included)
    chain.import_block(block)
    pool.on_new_head([block], [], NOW)
    assert len(pool) == 0 and chain.account(net.accounts[0].address).wh == 300


def test_a_reorg_puts_no_finality_vote_back_into_the_mempool() -> None:
    """The reverted blocks' votes are for the losing branch: they do not go back (before, a reorg of a
    block holding votes raised AttributeError in the mempool and broke the peer handler)."""
    from ledger.testing import extend, make_net
    from ledger.tx import sign_vote
    from node.mempool import Mempool
    net = make_net(authorities=4, accounts=1)
    chain = net.chain()
    extend(chain, net)
    vote = sign_vote(net.authorities[0], chain.chain_id, (0, chain.canonical_hash(0)), (1, chain.head_hash))
    block = extend(chain, net, [vote])
    pool = Mempool(chain)
    assert pool.on_new_head([], [block], GENESIS_MS) == [] and len(pool) == 0
