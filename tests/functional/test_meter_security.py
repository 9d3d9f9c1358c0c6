"""Meter security with real nodes: what a stolen meter key can and cannot do, and exactly-once minting.

A meter key extracted from its hardware can sign plausible readings (SECURITY.md: the ledger bounds them by
rated power, it cannot tell them from true ones) until an authority revokes the meter; from the block that
revokes it on, nothing it signs mints, on any node, whatever the interval. The same reading handed to
several nodes at the same moment (gateways do that for availability) is minted exactly once.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from framework import NodeNet, get, height, post_tx, sync_blocks, wait_until
from ledger.testing import MeterState
from ledger.tx import COIN, MeterReading, RevokeMeter, sign_tx

pytestmark = pytest.mark.functional

INTERVAL_MS = 500
RATED_W = 4000  # 1000 Wh per 15-minute interval at most


@pytest.fixture(scope="module")
def net(module_node_net: Any) -> NodeNet:
    n: NodeNet = module_node_net(authorities=3, observers=0, accounts=3, meters=2, meter_kind="both",
                                 rated_w=RATED_W, authority_coin=10 * COIN, block_interval_ms=INTERVAL_MS)
    wait_until(lambda: min(height(x) for x in n.authorities) >= 1, 30, message="the net produces blocks")
    return n


def _included_everywhere(net: NodeNet, txs: list[Any]) -> None:
    wait_until(lambda: all(get(n, f"/tx/{t.txid.hex()}")["status"] == "included" for n in net.authorities
                           for t in txs), 30, 0.1, "included on every node")


def _minted(net: NodeNet, owner: str, meter_id: str) -> list[tuple[int, int, int]]:
    """(owner's Wh, the meter's minted Wh, the chain's minted Wh) on each node, at one agreed height."""
    sync_blocks(net.authorities, timeout=20)
    return [(get(n, f"/accounts/{owner}")["wh"], get(n, f"/meters/{meter_id}")["minted_wh"],
             get(n, "/energy")["minted_wh"]) for n in net.authorities]


def test_a_revoked_meter_mints_nothing_more(net: NodeNet) -> None:
    key = net.net.meters[0]
    meter_id = key.meter_id.hex()
    owner = net.net.accounts[0].address_text  # make_net gives meter i to account i
    attacker = MeterState(key, (int(time.time()) // 900 - 8) * 900)
    # with the stolen key: readings at the meter's rated power, which the ledger cannot refute
    lies = [attacker.read(net.chain_id, 1000, 0) for _ in range(2)]
    for r in lies:
        code, answer = post_tx(net.authorities[0], r)
        assert code == 200, answer
    _included_everywhere(net, lies)
    assert get(net.authorities[1], f"/meters/{meter_id}")["minted_wh"] == 2000
    # too much for the rating is refused even before revocation: the damage is bounded
    code, answer = post_tx(net.authorities[0], _over_rating(attacker, net.chain_id))
    assert (code, answer["error"]) == (400, "energy_exceeds_rating"), answer

    # an account cannot revoke; an authority can
    outsider = net.net.accounts[1]
    code, answer = post_tx(net.authorities[1], sign_tx(outsider, net.chain_id, _next_nonce(net, outsider),
                                                       net.net.genesis.min_fee, RevokeMeter(key.meter_id)))
    assert (code, answer["error"]) == (403, "not_authority"), answer
    authority = net.net.authorities[0]
    revoke = sign_tx(authority, net.chain_id, _next_nonce(net, authority), net.net.genesis.min_fee,
                     RevokeMeter(key.meter_id))
    code, answer = post_tx(net.authorities[1], revoke)
    assert code == 200, answer
    _included_everywhere(net, [revoke])
    before = _minted(net, owner, meter_id)
    assert len(set(before)) == 1 and before[0][1] == 2000
    for n in net.authorities:
        assert get(n, f"/meters/{meter_id}")["active"] is False

    # after revocation: the next reading in sequence, one for an old gap, one far ahead: all refused
    later = [attacker.read(net.chain_id, 900, 0) for _ in range(2)]
    backdated = MeterState(key, attacker.next_start - 40 * 900)
    backdated.counter = attacker.counter
    refused = later + [backdated.read(net.chain_id, 500, 0)]
    for n in net.authorities:
        for r in refused:
            code, answer = post_tx(n, r)
            assert (code, answer["error"]) == (400, "meter_revoked"), answer
            assert get(n, f"/tx/{r.txid.hex()}")["reason"] == "meter_revoked"
    code, answer = post_tx(net.authorities[2], sign_tx(authority, net.chain_id, _next_nonce(net, authority),
                                                       net.net.genesis.min_fee, RevokeMeter(key.meter_id)))
    assert (code, answer["error"]) == (400, "meter_revoked"), answer  # revoked once, for good
    start = height(net.authorities[0])
    wait_until(lambda: min(height(n) for n in net.authorities) >= start + 3, 20, message="three more blocks")
    assert _minted(net, owner, meter_id) == before


def test_one_reading_sent_to_every_node_at_once_mints_once(net: NodeNet) -> None:
    key = net.net.meters[1]
    meter_id = key.meter_id.hex()
    owner = net.net.accounts[1].address_text
    meter = MeterState(key, (int(time.time()) // 900 - 6) * 900)
    before = _minted(net, owner, meter_id)[0]
    readings: list[MeterReading] = []
    for export in (300, 450, 600, 750):
        reading = meter.read(net.chain_id, export, 20)
        answers = _post_at_once(net, reading)
        assert all(a in ((200, None), (409, "duplicate")) for a in answers), answers
        assert (200, None) in answers, answers
        print(f"reading {reading.fields.counter} sent to {len(answers)} nodes at once: {answers}")
        readings.append(reading)
        _included_everywhere(net, [reading])
    total = sum(r.fields.export_wh for r in readings)
    after = _minted(net, owner, meter_id)
    assert set(after) == {(before[0] + total, before[1] + total, before[2] + total)}, (before, after)
    for n in net.authorities:
        lots = [lot for lot in get(n, f"/accounts/{owner}/lots")["lots"] if lot["meter_id"] == meter_id]
        assert sorted(lot["reading_id"] for lot in lots) == sorted(r.txid.hex() for r in readings)
        assert [lot["wh"] for lot in lots] == [300, 450, 600, 750]
        m = get(n, f"/meters/{meter_id}")
        assert (m["counter"], m["export_register"], m["import_register"]) == (4, total, 80)


def _post_at_once(net: NodeNet, reading: MeterReading) -> list[tuple[int, str | None]]:
    """POST one reading to every node at the same moment (threads released together)."""
    barrier = threading.Barrier(len(net.authorities))
    answers: list[tuple[int, str | None]] = [(0, None)] * len(net.authorities)

    def send(i: int) -> None:
        barrier.wait(timeout=10)
        code, answer = post_tx(net.authorities[i], reading)
        answers[i] = (code, None if code == 200 else answer.get("error"))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(net.authorities))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    return answers


def _over_rating(meter: MeterState, chain_id: str) -> MeterReading:
    """The meter's next reading claiming one Wh more than its rated power allows (not kept as sent)."""
    probe = MeterState(meter.key, meter.next_start)
    probe.counter, probe.export_register, probe.import_register = meter.counter, meter.export_register, \
        meter.import_register
    return probe.read(chain_id, RATED_W * 900 // 3600 + 1, 0)


def _next_nonce(net: NodeNet, key: Any) -> int:
    return get(net.authorities[0], f"/accounts/{key.address_text}")["next_nonce"]
