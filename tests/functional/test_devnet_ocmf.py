"""The devnet's OCMF meters (devnet/ocmf.py) on real nodes: a secp384r1 DC meter and EV chargers on
secp256r1 and brainpoolP256r1 sign OCMF, the gateway feeds their records, every node mints what the
generator's accepted records grew, and the tamper round's four forgeries are each refused and mint nothing.
(`kwh-devnet up` runs the same fleet beside the native meters; its summary has an `ocmf` part.)"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from devnet.client import NodePool
from devnet.ocmf import TAMPERS, OcmfFleet
from framework import NodeNet, get, height, sync_blocks, wait_until
from ledger.tx import COIN

pytestmark = pytest.mark.functional


async def _run_fleet(net: NodeNet, key_dir: Path, seconds: float) -> tuple[dict[str, Any], OcmfFleet]:
    pool = NodePool([n.url for n in net.authorities], timeout_s=5.0, reader=net.net.authorities[0])
    fleet = OcmfFleet(pool, net.net.authorities[0], [a.address for a in net.net.accounts], net.net.genesis.min_fee,
                      key_dir, tamper=True, period_s=0.5, seed=7)
    try:
        await fleet.prepare()
        stop = asyncio.Event()
        task = asyncio.create_task(fleet.run(stop))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (fleet.tampered and fleet.gateways[0].accepted > 5):
            await asyncio.sleep(0.5)
        fleet.stop_emitting()
        drain = time.monotonic() + 30
        while not fleet.drained and time.monotonic() < drain:
            await asyncio.sleep(0.3)
        stop.set()
        await task
        return fleet.summary(await fleet.minted_on_chain()), fleet
    finally:
        await pool.close()


def test_devnet_ocmf_meters_mint_on_chain_and_tampering_mints_nothing(node_net: Any, tmp_path: Path) -> None:
    net: NodeNet = node_net(authorities=2, observers=1, accounts=3, authority_coin=10 * COIN, spare_observers=0,
                            block_interval_ms=400)
    wait_until(lambda: min(height(n) for n in net.nodes) >= 1, 30, message="the net produces blocks")
    summary, fleet = asyncio.run(_run_fleet(net, tmp_path / "ocmf", 90))
    assert summary["checks"] == {"minted_equals_sent": True, "tamper_each_own_reason": True}, summary
    assert set(summary["tamper"]) == set(TAMPERS)
    dc = summary["meters"][0]
    assert dc["curve"] == "secp384r1" and dc["minted_wh_sent"] > 0 and dc["refusals"] == {}
    assert {m["curve"] for m in summary["meters"]} == {"secp384r1", "secp256r1", "brainpoolP256r1"}
    assert all(m["accepted"] >= 2 and m["pending"] == 0 for m in summary["meters"]), summary
    # every node agrees: the generator minted exactly what its accepted records grew, the chargers consumed
    sync_blocks(net.nodes, timeout=20)
    owner = net.net.accounts[0].address_text
    assert {get(n, "/energy")["minted_wh"] for n in net.nodes} == {dc["minted_wh_sent"]}
    assert {get(n, f"/accounts/{owner}")["wh"] for n in net.nodes} == {dc["minted_wh_sent"]}
    consumed = sum(get(net.observers[0], f"/ocmf-meters/{m['meter_id']}")["consumed_wh"]
                   for m in summary["meters"][1:])
    assert consumed > 0
