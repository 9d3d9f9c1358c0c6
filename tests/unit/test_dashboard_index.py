"""The dashboard's digest of the recent chain (node/dashboard_index.py): its hourly series add up to the
ledger's global counters, a new head extends it without counting twice, a reorg is followed, and every
part of it stays within its bounds."""
from __future__ import annotations

import asyncio

from ledger.chain import Chain
from ledger.testing import GENESIS_MS, MeterState, Net, extend, make_net, make_tx
from ledger.tx import COIN, Redeem
from node.dashboard_index import HOUR_S, DashboardIndex

GENESIS_S = GENESIS_MS // 1000


def refresh(index: DashboardIndex) -> None:
    asyncio.run(index.refresh())


def sums(index: DashboardIndex) -> tuple[list[int], list[int]]:
    by_block = [sum(r[i] for r in index.by_block_hour.values()) for i in range(5)]
    by_interval = [sum(r[i] for r in index.by_interval_hour.values()) for i in range(2)]
    return by_block, by_interval


def assert_matches_chain(index: DashboardIndex, chain: Chain) -> None:
    g = chain.globals()
    by_block, by_interval = sums(index)
    assert by_block == [g.minted_wh, g.consumed_wh, g.redeemed_wh, g.settled_wh, chain.head.cum_energy_mj]
    assert by_interval == [g.minted_wh, g.consumed_wh]
    assert (index.top_height, index.top_hash) == (chain.height, chain.head_hash)


def day(net: Net, chain: Chain, meters: list[MeterState], blocks: int, export_wh: int = 300) -> None:
    """`blocks` blocks, each with one reading of every meter (export, and import of half as much)."""
    for _ in range(blocks):
        extend(chain, net, [m.read(chain.chain_id, export_wh, export_wh // 2) for m in meters])


def setup(readings_before_genesis: int = 24) -> tuple[Net, Chain, list[MeterState]]:
    net = make_net(accounts=2, meters=2, meter_kind="both", authority_coin=10 * COIN)
    start = GENESIS_S - readings_before_genesis * 900
    return net, net.chain(), [MeterState(k, start=start) for k in net.meters]


def test_series_add_up_to_the_global_counters_and_extend_without_double_counting() -> None:
    net, chain, meters = setup()
    day(net, chain, meters, 6)
    owner = net.accounts[0]
    extend(chain, net, [make_tx(chain, owner, Redeem(wh=100))])
    index = DashboardIndex(chain)
    refresh(index)
    assert_matches_chain(index, chain)
    assert chain.globals().redeemed_wh == 100
    # readings are filed under the hour their interval started: 6 intervals of 15 min from GENESIS_S - 6 h
    assert sorted(index.by_interval_hour) == [GENESIS_S - 6 * HOUR_S, GENESIS_S - 5 * HOUR_S]
    assert index.by_interval_hour[GENESIS_S - 6 * HOUR_S] == [2 * 4 * 300, 2 * 4 * 150]
    assert [p.height for p in index.recent_blocks(100)] == list(range(1, chain.height + 1))

    day(net, chain, meters, 3)
    refresh(index)
    refresh(index)  # nothing new: nothing changes
    assert_matches_chain(index, chain)
    readings = index.meter_readings(net.meters[0].meter_id, 100)
    assert [r.interval_start for r in readings] == [GENESIS_S - 24 * 900 + i * 900 for i in range(9)]
    assert index.meter_readings(net.meters[0].meter_id, 2) == readings[-2:]


def test_a_reorg_is_followed() -> None:
    net, chain, meters = setup()
    day(net, chain, meters, 3)
    # a second branch from block 3: two blocks here, three heavier ones with other readings there
    other = net.chain()
    for height in range(1, 4):
        other.import_block(chain.block_at(height))  # type: ignore[arg-type]
    other_meters = [MeterState(m.key, start=m.next_start) for m in meters]
    for m, o in zip(meters, other_meters):
        o.counter, o.export_register, o.import_register = m.counter, m.export_register, m.import_register
    day(net, chain, meters, 2, export_wh=100)
    index = DashboardIndex(chain)
    refresh(index)
    assert_matches_chain(index, chain)
    day(net, other, other_meters, 3, export_wh=700)
    for height in range(4, other.height + 1):
        chain.import_block(other.block_at(height))  # type: ignore[arg-type]
    assert chain.head_hash == other.head_hash
    refresh(index)
    assert_matches_chain(index, chain)


def test_bounds_hold() -> None:
    net, chain, meters = setup(readings_before_genesis=40)
    day(net, chain, meters, 10)
    index = DashboardIndex(chain, max_blocks=4, block_points=3, readings_per_meter=2, max_meters=1, max_hours=1)
    refresh(index)
    assert index.low_height == chain.height - 3
    assert [p.height for p in index.recent_blocks(100)] == [chain.height - 2, chain.height - 1, chain.height]
    assert len(index.readings) == 1 and all(len(d) == 2 for d in index.readings.values())
    assert len(index.by_interval_hour) == 1 and len(index.by_block_hour) == 1
    for height in range(chain.height - 3, chain.height + 1):
        index.note_surplus(height, 500)
    assert sorted(index.surplus) == [chain.height - 2, chain.height - 1, chain.height]
    # far behind (more than max_blocks new blocks): the digest starts again from the last max_blocks
    day(net, chain, meters, 6)
    refresh(index)
    assert index.low_height == chain.height - 3 and index.top_height == chain.height


def test_a_request_does_not_wait_for_a_long_walk() -> None:
    net, chain, meters = setup()
    day(net, chain, meters, 6)
    index = DashboardIndex(chain)
    asyncio.run(index.current(wait_blocks=5))
    assert index.top_hash is None  # six new blocks: left to the follower, the request goes on
    asyncio.run(index.current(wait_blocks=6))
    assert_matches_chain(index, chain)
