"""Whole-node energy accounting (node/accounting.py) driven on a real chain, the way node/service.py drives it."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from ledger.chain import Chain, inline_verifier
from ledger.errors import Rejected
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, Net, make_net, make_tx, next_block
from ledger.tx import COIN, Transfer, Tx
from node.accounting import CATEGORIES, CpuTimeline, NodeEnergy, wh_moved

GENESIS_S = GENESIS_MS // 1000


def admit(energy: NodeEnergy, chain: Chain, tx: Tx) -> None:
    """What Node.submit_tx does around the mempool: judge the tx on the head state, metered."""
    started = energy.admission_started()
    accepted = False
    try:
        chain.check_tx(tx, GENESIS_MS + 10**9)
        accepted = True
    except Rejected:
        pass
    finally:
        energy.admission_ended(started, tx, accepted)


def import_metered(energy: NodeEnergy, chain: Chain, net: Net, txs: list[Tx]) -> None:
    """What Node.import_block does: build (transition) and import with the chain's phase callback."""
    with energy.section("transition"):
        block = next_block(chain, net, txs)
    started = energy.import_started()
    result = chain.import_block(block)
    energy.import_ended(started, result.applied, chain.verifier is inline_verifier)
    energy.block_recorded(result.height, result.block_hash, len(block.txs))


@pytest.fixture
def net() -> Net:
    return make_net(accounts=4, meters=1, meter_kind="both")


@pytest.fixture
def energy(tmp_path: Path) -> NodeEnergy:
    return NodeEnergy(watts_per_core=10.0, rapl_root=tmp_path / "no-rapl")


def run_workload(energy: NodeEnergy, net: Net) -> Chain:
    chain = net.chain()
    chain.on_phase = energy.phase
    a, b = net.accounts[:2]
    meter = MeterState(net.meters[0], start=GENESIS_S - 3 * 900)
    for round_ in range(3):
        transfers = [make_tx(chain, a, Transfer(b.address, COIN), nonce=chain.account(a.address).nonce + i)
                     for i in range(20)]
        readings = [meter.read(CHAIN_ID, 100 + round_)]
        for tx in transfers[:1] + readings:
            admit(energy, chain, tx)
        import_metered(energy, chain, net, transfers + readings)
    energy.timeline.request_started("api")
    sum(i * i for i in range(20_000))  # an API request's own work
    energy.timeline.request_ended("api")
    return chain


def test_the_breakdown_adds_up_to_the_whole(energy: NodeEnergy, net: Net) -> None:
    cpu0 = time.process_time()
    run_workload(energy, net)
    spent = time.process_time() - cpu0
    report = energy.report(validators=4)
    seconds = report["breakdown_cpu_s"]
    assert set(seconds) == set(CATEGORIES)
    assert sum(seconds.values()) == pytest.approx(report["cpu_s"], rel=1e-9)
    assert sum(report["breakdown_j"].values()) == pytest.approx(report["energy_j"], rel=1e-9)
    # the whole is the process's CPU time since the accounting started (no worker processes here), which
    # covers what was spent in the workload, within the clock's resolution
    assert report["cpu_s"] >= spent - 0.02
    for category in ("signatures", "transition", "storage", "api"):
        assert seconds[category] > 0, category
    assert seconds["hashing"] == 0.0 and seconds["peer"] == 0.0
    # per block: the node's energy since the previous head, with its breakdown adding up
    assert [b["height"] for b in report["blocks"]] == [3, 2, 1]
    for block in report["blocks"]:
        assert sum(block["breakdown_j"].values()) == pytest.approx(block["energy_j"], rel=1e-9)
    # per kind: admitted and applied, with the energy they move
    per_type = report["per_type"]
    assert per_type["transfer"]["applied"] == 60 and per_type["transfer"]["admitted"] == 3
    assert per_type["reading"]["applied"] == 3 and per_type["reading"]["avg_wh"] == pytest.approx(101)
    assert per_type["transfer"]["node_j"] > 0 and per_type["reading"]["node_j"] > 0
    assert per_type["transfer"]["network_j"] == pytest.approx(4 * per_type["transfer"]["node_j"])
    assert report["txs_applied"] == 63 and report["blocks_applied"] == 3


def test_flags_say_estimated_without_rapl(energy: NodeEnergy, net: Net) -> None:
    run_workload(energy, net)
    report = energy.report(validators=1)
    assert report["estimated"] is True and report["source"] == "cpu-time-estimate"
    assert report["j_per_cpu_s"] == 10.0  # watts per core
    assert report["energy_j"] == pytest.approx(report["cpu_s"] * 10.0)
    assert energy.quote("transfer", 1)["estimated"] is True


def test_flags_say_measured_with_rapl(tmp_path: Path, net: Net) -> None:
    zone = tmp_path / "rapl" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1000000\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 0 1000 0 0 0 0 0 0\n")
    energy = NodeEnergy(watts_per_core=10.0, rapl_root=tmp_path / "rapl", proc_stat=stat)
    run_workload(energy, net)
    cpu_s = energy.report(validators=1)["cpu_s"]
    # the package counted 50 J while the machine was busy 10 s: the node is charged its share of it
    (zone / "energy_uj").write_text("51000000\n")
    ticks = energy.meter.clock_ticks
    stat.write_text(f"cpu  {100 + 10 * ticks} 0 0 1000 0 0 0 0 0 0\n")
    report = energy.report(validators=1)
    assert report["estimated"] is False and report["source"] == "rapl"
    assert report["energy_j"] == pytest.approx(50 * min(1.0, report["cpu_s"] / 10), rel=0.01)
    assert report["cpu_s"] >= cpu_s
    assert energy.quote("transfer", 1)["estimated"] is False


def test_the_quote_grows_with_the_validating_nodes(energy: NodeEnergy, net: Net) -> None:
    run_workload(energy, net)
    one, four, ten = (energy.quote("transfer", n) for n in (1, 4, 10))
    assert 0 < one["network_wh"] < four["network_wh"] < ten["network_wh"]
    assert four["network_wh"] == pytest.approx(4 * one["network_wh"], rel=0.05)
    assert one["marginal_network_wh"] <= one["network_wh"]
    assert one["samples"] > 0 and one["validators"] == 1
    # a reading moves energy: the quote is a fraction of it; a coin transfer moves none
    reading = energy.quote("reading", 4)
    assert reading["wh_moved"] == pytest.approx(101) and reading["fraction"] == pytest.approx(
        reading["network_wh"] / 101)
    assert one["wh_moved"] is None and one["fraction"] is None
    assert energy.quote("transfer", 4, wh=500)["fraction"] == pytest.approx(four["network_wh"] / 500, rel=0.05)
    # aliases, and a kind never seen is priced as the average transaction
    assert energy.quote("accept", 4)["type"] == "accept_offer"
    assert energy.quote("accept_offer", 4)["samples"] == 0 and energy.quote("accept_offer", 4)["network_wh"] > 0


def test_validators_are_authorities_peers_and_this_node(energy: NodeEnergy) -> None:
    a, b, c, d = (bytes([i]) * 32 for i in range(4))
    assert energy.validators([a, b], [b, c, None], a) == 3
    assert energy.validators([a, b], [c], d) == 4
    assert energy.validators([a], [], None) == 2  # a node without a key validates too


def test_the_timeline_charges_one_category_at_a_time() -> None:
    now = [0.0]
    timeline = CpuTimeline(clock=lambda: now[0])
    now[0] = 1.0
    timeline.request_started("api")
    now[0] = 3.0
    with_section = timeline.switch("storage")
    now[0] = 4.5
    timeline.switch(with_section[0])
    now[0] = 5.0
    timeline.request_started("peer")  # a peer request in flight takes precedence
    now[0] = 6.0
    timeline.request_ended("peer")
    now[0] = 7.0
    timeline.request_ended("api")
    now[0] = 9.0
    timeline.flush()
    assert timeline.seconds == {"signatures": 0.0, "transition": 0.0, "storage": 1.5, "hashing": 0.0, "peer": 1.0,
                                "api": 3.5, "other": 3.0}
    assert timeline.move("storage", "signatures", 5.0) == 1.5  # never more than was charged


def test_wh_moved() -> None:
    net = make_net(accounts=2, meters=1)
    chain = net.chain()
    meter = MeterState(net.meters[0], start=GENESIS_S - 900)
    assert wh_moved(meter.read(CHAIN_ID, 7, 3)) == 10
    assert wh_moved(make_tx(chain, net.accounts[0], Transfer(net.accounts[1].address, 5))) == 0


def test_peer_tasks_are_metered_step_by_step() -> None:
    """Tasks of the named coroutines count as their category, each step; other tasks do not; the total holds."""
    import asyncio

    from node.accounting import meter_tasks

    timeline = CpuTimeline()

    class PeerManager:
        async def gossip(self) -> int:
            total = 0
            for _ in range(3):
                total += sum(i * i for i in range(30_000))
                await asyncio.sleep(0)
            return total

    async def bystander() -> int:
        return sum(i for i in range(30_000))

    async def main() -> tuple[int, int, bool]:
        installed = meter_tasks(asyncio.get_running_loop(), timeline, {"PeerManager.": "peer"})
        peer = asyncio.get_running_loop().create_task(PeerManager().gossip())
        other = asyncio.get_running_loop().create_task(bystander())
        return await peer, await other, installed

    cpu0 = time.thread_time()
    timeline._last = cpu0
    peer_result, _other, installed = asyncio.run(main())
    timeline.flush()
    assert installed and peer_result == 3 * sum(i * i for i in range(30_000))  # the coroutine ran as usual
    assert timeline.seconds["peer"] > 0 and timeline.seconds["other"] > 0
    assert timeline.current == "other"
    assert sum(timeline.seconds.values()) == pytest.approx(time.thread_time() - cpu0, abs=0.01)
