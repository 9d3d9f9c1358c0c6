"""Per-entry state (schema 2): one entry per lot held, resting order and scheduled expiry, so a transaction
reads and writes only what it changes, whatever the size of the holder, the book or the schedule."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest

from ledger.chain import Chain
from ledger.encoding import decode, encode
from ledger.state import P_HOLDING, StateOverlay
from ledger.store import KV, LevelKV, MemoryKV
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, Net, extend, make_net, make_tx
from ledger.tx import Transfer, TransferWh

GENESIS_S = GENESIS_MS // 1000


@pytest.fixture(params=["memory", "leveldb"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KV]:
    store: KV = MemoryKV() if request.param == "memory" else LevelKV(tmp_path / "db")
    yield store
    store.close()


def test_overlay_iterate_merges_stored_entries_with_the_blocks_writes(kv: KV) -> None:
    prefix = P_HOLDING + bytes(20) + b"\x00"
    stored = {prefix + bytes([i]) * 24: encode(i) for i in (1, 3, 5, 7)}
    kv.write(stored)
    st = StateOverlay(kv, 0)
    st.put(prefix + bytes([3]) * 24, None)  # delete a stored one
    st.put(prefix + bytes([4]) * 24, encode(40))  # add one between
    st.put(prefix + bytes([7]) * 24, encode(70))  # overwrite one
    st.put(prefix + bytes([9]) * 24, encode(90))  # add one after the last stored
    st.put(P_HOLDING + bytes(19) + b"\x01\x00" + bytes(24), encode(1))  # another holder: not in range
    seen = [(k[-1], decode(v)) for k, v in st.iterate(prefix)]
    assert seen == [(1, 1), (4, 40), (5, 5), (7, 70), (9, 90)]
    assert [k[-1] for k, _v in st.iterate(prefix, start=prefix + bytes([5]) * 24)] == [5, 7, 9]
    # writes made while a walk is under way are seen by it (or skipped if behind it), never twice
    walk = st.iterate(prefix)
    assert next(walk)[0][-1] == 1
    st.put(prefix + bytes([2]) * 24, encode(2))
    st.put(prefix + bytes([0]) * 24, encode(0))
    st.put(prefix + bytes([5]) * 24, None)
    assert [k[-1] for k, _v in walk] == [2, 4, 7, 9]


def producer_net() -> Net:
    return make_net(accounts=3, meters=1, meter_kind="both", rated_w=100_000, meter_history_s=30 * 86400)


def mint(chain: Chain, net: Net, meter: MeterState, readings: list[int]) -> None:
    for i in range(0, len(readings), 500):
        extend(chain, net, [meter.read(CHAIN_ID, wh) for wh in readings[i:i + 500]])


def undo_bytes(chain: Chain) -> int:
    return len(chain.kv.get(b"u" + chain.head_hash))


def test_dust_on_a_victim_costs_the_victim_nothing_per_later_transfer() -> None:
    """An attacker moves many one-Wh lots onto a victim in one transfer. Afterwards a transfer to the
    victim, and the victim's own spending, write as much as they would with two lots held."""
    sizes = {}
    for dust in (2, 600):
        net = producer_net()
        chain = net.chain()
        attacker, victim, friend = net.accounts
        meter = MeterState(net.meters[0], GENESIS_S - 2 * dust * 900)
        mint(chain, net, meter, [1] * dust + [5000])
        extend(chain, net, [make_tx(chain, attacker, TransferWh(victim.address, dust))])
        assert len(chain.holdings(victim.address)) == dust
        extend(chain, net, [make_tx(chain, attacker, TransferWh(victim.address, 1))])
        incoming = undo_bytes(chain)
        extend(chain, net, [make_tx(chain, victim, TransferWh(friend.address, 1))])
        spending = undo_bytes(chain)
        sizes[dust] = (incoming, spending)
        assert chain.verify_state_root()
    for big, small in zip(sizes[600], sizes[2]):  # equal but for the width of larger heights and nonces
        assert big <= small + 16, sizes


def test_a_transfer_adds_at_most_one_lot_entry_so_every_dust_lot_costs_its_maker_a_fee() -> None:
    """Lots are split, never merged, and a split keeps its lot id: one TransferWh moves whole lots and
    splits at most one, so it adds at most one lot entry; N dust entries take N fee-paying transactions,
    and sending the same lot to the same holder again adds up instead of growing the state."""
    net = producer_net()
    chain = net.chain()
    attacker, victim, _friend = net.accounts
    mint(chain, net, MeterState(net.meters[0], GENESIS_S - 10 * 900), [5000, 7000])
    targets = [victim.address] * 3 + [bytes([i]) * 20 for i in range(1, 4)]
    for to in targets:
        before = sum(1 for _kv in chain.kv.iterate(P_HOLDING))
        coin_before = chain.account(attacker.address).coin
        extend(chain, net, [make_tx(chain, attacker, TransferWh(to, 1))])
        assert sum(1 for _kv in chain.kv.iterate(P_HOLDING)) - before <= 1
        assert coin_before - chain.account(attacker.address).coin == chain.params.min_fee
    assert [wh for _lot, wh, _src in chain.holdings(victim.address)] == [3]  # the same lot adds up
    assert sum(1 for _kv in chain.kv.iterate(P_HOLDING)) == 2 + 4  # the attacker's two lots, four holders


def test_a_transfer_spends_the_oldest_lots_across_sources(tmp_path: Path) -> None:
    net = make_net(accounts=2, meters=2, meter_kind="both", rated_w=100_000, meter_history_s=30 * 86400)
    g = net.genesis  # one owner, a solar and a wind meter
    wind = replace(g.meters[1], owner=g.meters[0].owner, source="wind")
    net = Net(replace(g, meters=(g.meters[0], wind)), net.authorities, net.accounts, net.meters)
    chain = Chain(LevelKV(tmp_path / "db"), net.genesis)
    solar = MeterState(net.meters[0], GENESIS_S - 100 * 900)
    wind_m = MeterState(net.meters[1], GENESIS_S - 100 * 900)
    readings = []
    for i in range(6):  # interleaved ages: solar, wind, solar, wind, ... (older first)
        m = solar if i % 2 == 0 else wind_m
        m.next_start = GENESIS_S - (100 - i) * 900
        readings.append(m.read(CHAIN_ID, 10 * (i + 1)))
    extend(chain, net, readings)
    owner, other = net.accounts
    held = chain.holdings(owner.address)
    assert [src for _l, _w, src in held] == ["solar", "wind"] * 3
    assert [lot for lot, _w, _s in held] == sorted(lot for lot, _w, _s in held)  # age order across sources
    extend(chain, net, [make_tx(chain, owner, TransferWh(other.address, 10 + 20 + 5))])
    assert chain.holdings(other.address) == [(held[0][0], 10, "solar"), (held[1][0], 20, "wind"),
                                             (held[2][0], 5, "solar")]
    assert chain.holdings(owner.address, after=held[2][0], limit=2) == [held[3], held[4]]
    chain.kv.close()


def test_prune_undo_drops_what_can_no_longer_be_reverted_and_refuses_reorgs_below_it() -> None:
    from ledger import errors as E
    from ledger.block import mine
    from ledger.errors import Rejected
    from ledger.testing import in_turn_slot

    def fork_from_genesis(chain: Chain, net: Net) -> list[Any]:
        """Empty in-turn blocks from genesis, one more than the chain has: heavier (ADR 004)."""
        ref = net.chain()
        return [extend(ref, net) for _ in range(chain.head.total_work // 2 + 1)]

    results = {}
    for prune in (False, True):
        net = producer_net()
        chain = net.chain()
        a, b, _c = net.accounts
        for i in range(6):
            extend(chain, net, [make_tx(chain, a, Transfer(b.address, 1 + i))])
        if prune:
            assert chain.prune_undo(4, batch=2) == 3 and chain.undo_floor() == 4
            assert [chain.kv.get(b"u" + chain.canonical_hash(h)) is None for h in range(1, 7)] == \
                [True] * 3 + [False] * 3
            assert chain.check(full=True) == []
            assert chain.prune_undo(2) == 0  # the floor only rises
        head = chain.head_hash
        try:
            for block in fork_from_genesis(chain, net):
                chain.import_block(block)
            results[prune] = chain.head_hash != head
        except Rejected as exc:
            assert exc.reason == E.KNOWN_INVALID and "can no longer be reverted" in exc.detail
            results[prune] = chain.head_hash != head
        assert chain.check(full=True) == []
    assert results == {False: True, True: False}  # the same heavier fork reorgs only while undo data is kept


def test_check_db_finds_per_entry_state_that_disagrees_with_itself() -> None:
    from ledger.encoding import encode as enc
    from ledger.state import P_BOOK, P_SOURCE_WH, entry_problems
    from ledger.tx import BUY, PlaceOrder
    net = producer_net()
    chain = net.chain()
    attacker, victim, _friend = net.accounts
    mint(chain, net, MeterState(net.meters[0], GENESIS_S - 10 * 900), [5000])
    extend(chain, net, [make_tx(chain, victim, PlaceOrder(BUY, 10, 2))])
    assert entry_problems(chain.kv) == [] and chain.check(full=True) == []
    total_key = next(k for k, _v in chain.kv.iterate(P_SOURCE_WH + attacker.address))
    book_key = next(k for k, _v in chain.kv.iterate(P_BOOK))
    chain.kv.write({total_key: enc(4999), book_key: None})
    found = entry_problems(chain.kv)
    assert any("its total says 4999" in p for p in found) and any("open orders 1" in p for p in found)
    assert any("its total says 4999" in p for p in chain.check(full=True))
