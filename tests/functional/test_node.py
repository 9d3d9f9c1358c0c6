"""The node as a process: consensus among authorities, gossip, sync, restart, bans, grid signal, API errors.

One network of three authorities and one observer is shared by the tests of this module (starting nodes
is the slow part); each test uses its own accounts, so their order only matters where a test says so.
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any

import pytest

from framework import (ADMIN_TOKEN, NodeNet, NodeProcess, PeerClient, get, height, post_tx, request, status,
                       sync_blocks, transfer, wait_until)
from ledger.block import BlockHeader, merkle_root, meets_difficulty, seal_block
from ledger.testing import MeterState
from ledger.tx import COIN

pytestmark = pytest.mark.functional

INTERVAL_MS = 500
MIN_DIFFICULTY = 16


@pytest.fixture(scope="module")
def net(module_node_net: Any) -> NodeNet:
    n = module_node_net(authorities=3, observers=1, accounts=6, meters=1, meter_kind="both", spare_observers=2,
                        block_interval_ms=INTERVAL_MS, min_difficulty=MIN_DIFFICULTY, start=False)
    for node in n.authorities:  # the observer joins later, from scratch
        node.start(wait=False)
    for node in n.authorities:
        node.wait_ready()
    return n


def _error(code: int, data: Any, expect_code: int, expect_error: str) -> None:
    assert isinstance(data, dict) and set(data) == {"error", "detail"}, data
    assert (code, data["error"]) == (expect_code, expect_error), data
    assert isinstance(data["detail"], str)


def _log_field(node: NodeProcess, event: str, name: str) -> int:
    """The value of `name` in the last log line of `event`."""
    lines = [line for line in node.log_text().splitlines() if f"event={event} " in line]
    assert lines, f"no {event} line in {node.name}'s log"
    match = re.search(rf"\b{name}=(\d+)", lines[-1])
    assert match, lines[-1]
    return int(match.group(1))


def test_authorities_agree_on_one_head(net: NodeNet) -> None:
    wait_until(lambda: min(height(n) for n in net.authorities) >= 4, 30, message="three authorities reach height 4")
    h = sync_blocks(net.authorities)
    proposers = {get(net.authorities[0], f"/blocks/{i}")["proposer"] for i in range(1, h + 1)}
    assert len(proposers) >= 2, "Clique's recent-signer rule makes authorities take turns"
    for node in net.authorities:
        s = status(node)
        assert s["authority"] is True and s["chain_id"] == net.chain_id
        assert sum(1 for p in s["peers"] if p["connected"]) >= 2, s["peers"]


def test_tx_posted_to_one_node_is_included_on_all(net: NodeNet) -> None:
    a, b = net.net.accounts[0], net.net.accounts[1]
    before = get(net.authorities[0], f"/accounts/{b.address_text}")["coin"]
    tx1 = transfer(net.net, 0, b.address, 5 * COIN, nonce=0)
    code, answer = post_tx(net.authorities[0], tx1)
    assert (code, answer) == (200, {"txid": tx1.txid.hex(), "status": "pending"})
    tx2 = transfer(net.net, 0, b.address, 2 * COIN, nonce=1)  # follows the pending nonce, at another node
    wait_until(lambda: get(net.authorities[1], f"/tx/{tx1.txid.hex()}")["status"] in ("pending", "included"), 10,
               message="tx1 gossiped to auth1")
    code, answer = post_tx(net.authorities[1], tx2)
    assert code == 200, answer

    def included_everywhere() -> list[dict[str, Any]]:
        seen = [get(n, f"/tx/{t.txid.hex()}") for n in net.authorities for t in (tx1, tx2)]
        return seen if all(s["status"] == "included" for s in seen) else []

    seen = wait_until(included_everywhere, 30, message="both transfers included on every authority")
    assert len({(s["txid"], s["block"], s["height"]) for s in seen}) == 2
    assert seen[0]["tx"]["kind"] == "transfer" and seen[0]["tx"]["to"] == b.address_text
    sync_blocks(net.authorities, min_height=max(s["height"] for s in seen))
    views = [(get(n, f"/accounts/{a.address_text}"), get(n, f"/accounts/{b.address_text}")) for n in net.authorities]
    assert all(v == views[0] for v in views), views
    sender, receiver = views[0]
    assert receiver["coin"] == before + 7 * COIN
    assert sender["nonce"] == 2 and sender["next_nonce"] == 2
    history = get(net.authorities[2], f"/accounts/{b.address_text}/history")["history"]
    assert {h["txid"] for h in history} >= {tx1.txid.hex(), tx2.txid.hex()}


def test_a_burst_of_txs_to_two_nodes_reaches_every_node(net: NodeNet) -> None:
    """100 txs from each of two senders, each sender at its own node: gossip batches, pending nonces, blocks."""
    receiver = net.net.accounts[1].address
    txs: dict[int, list[Any]] = {4: [], 5: []}
    for sender, node in ((4, net.authorities[0]), (5, net.authorities[1])):
        for nonce in range(100):
            t = transfer(net.net, sender, receiver, 1000 + nonce, nonce)
            code, answer = post_tx(node, t)
            assert code == 200, answer
            txs[sender].append(t)
    last = [txs[4][-1], txs[5][-1]]

    def all_included() -> bool:
        return all(get(n, f"/tx/{t.txid.hex()}")["status"] == "included" for n in net.authorities for t in last)

    wait_until(all_included, 40, 0.2, "the last tx of each sender is included on every node")
    for n in net.authorities:
        for sender in (4, 5):
            account = get(n, f"/accounts/{net.net.accounts[sender].address_text}")
            assert account["nonce"] == 100 and account["next_nonce"] == 100, (n.name, account)
    for t in txs[4][::17] + txs[5][::13]:  # a sample: same block everywhere
        where = {get(n, f"/tx/{t.txid.hex()}")["block"] for n in net.authorities}
        assert len(where) == 1


def test_meter_readings_mint_wh_with_provenance(net: NodeNet) -> None:
    node = net.authorities[2]
    meter_key = net.net.meters[0]
    owner = net.net.accounts[0].address_text
    start = (int(time.time()) // 900 - 4) * 900  # intervals that ended an hour ago
    meter = MeterState(meter_key, start)
    readings = [meter.read(net.chain_id, 1500, 200), meter.read(net.chain_id, 700, 0)]
    for r in readings:  # the second one queues behind the first (same meter, pending)
        code, answer = post_tx(node, r)
        assert code == 200, answer
    replay = MeterState(meter_key, start).read(net.chain_id, 1500, 200)
    _error(*post_tx(node, replay), 409, "duplicate")
    wait_until(lambda: all(get(n, f"/tx/{readings[1].txid.hex()}")["status"] == "included"
                           for n in net.authorities), 30, message="readings included everywhere")
    m = get(node, f"/meters/{meter_key.meter_id.hex()}")
    assert (m["counter"], m["export_register"], m["import_register"], m["minted_wh"], m["owner"]) == \
        (2, 2200, 200, 2200, owner)
    lots = get(node, f"/accounts/{owner}/lots")["lots"]
    assert [lot["wh"] for lot in lots] == [1500, 700] and lots[0]["interval_start"] == start
    assert lots[0]["reading_id"] == readings[0].txid.hex() and lots[0]["meter_id"] == meter_key.meter_id.hex()
    lot = get(node, f"/lots/{lots[0]['lot_id']}")
    assert lot["movements"] == [{"txid": readings[0].txid.hex(), "from": None, "to": owner, "wh": 1500,
                                 "kind": "mint"}]
    account = get(node, f"/accounts/{owner}")
    assert account["wh"] == 2200 and account["consumed_wh"] == 200
    energy = get(node, "/energy")
    assert (energy["minted_wh"], energy["consumed_wh"]) == (2200, 200)
    included = get(node, f"/tx/{readings[0].txid.hex()}")
    assert included["tx"]["kind"] == "reading" and included["tx"]["counter"] == 1


def test_every_node_meters_its_whole_energy_and_quotes_verification(net: NodeNet) -> None:
    """After two transfers: each authority's /energy has its whole energy, a breakdown that adds up, per-block
    figures and per-kind costs (votes too); /energy/quote prices a transfer for the network of validating nodes."""
    sender = net.net.accounts[5]
    nonce = get(net.authorities[0], f"/accounts/{sender.address_text}")["next_nonce"]
    txs = [transfer(net.net, 5, net.net.accounts[4].address, COIN, nonce=nonce + i) for i in range(2)]
    for tx in txs:
        assert post_tx(net.authorities[0], tx)[0] == 200
    wait_until(lambda: all(get(n, f"/tx/{t.txid.hex()}")["status"] == "included" for n in net.authorities
                           for t in txs), 30, message="both transfers included on every authority")
    for node in net.authorities:
        energy = get(node, "/energy?limit=5")
        whole = energy["node"]
        assert whole["energy_j"] > 0 and whole["cpu_s"] > 0
        assert sum(whole["breakdown_j"].values()) == pytest.approx(whole["energy_j"], rel=1e-6)
        assert whole["estimated"] is (whole["source"] == "cpu-time-estimate")
        assert whole["breakdown_j"]["hashing"] > 0 and whole["breakdown_j"]["api"] > 0
        assert whole["breakdown_j"]["signatures"] > 0 and whole["breakdown_j"]["storage"] > 0
        assert 0 < len(whole["blocks"]) <= 5
        for block in whole["blocks"]:
            assert sum(block["breakdown_j"].values()) == pytest.approx(block["energy_j"], rel=1e-6)
        assert whole["per_type"]["transfer"]["applied"] >= 2 and whole["per_type"]["vote"]["applied"] > 0
        assert whole["validators"] >= 3
        quote = get(node, "/energy/quote?type=transfer")
        assert quote["validators"] == whole["validators"] and quote["samples"] > 0
        assert quote["network_wh"] > 0 and quote["fraction"] is None  # a coin transfer moves no energy
        priced = get(node, "/energy/quote?type=reading&wh=1000")
        assert priced["fraction"] == pytest.approx(priced["network_wh"] / 1000)
    metrics = get(net.authorities[0], "/metrics").decode()
    assert re.search(r'^kwh_node_energy_joules\{category="signatures"\} [0-9.e+-]+$', metrics, re.M)
    assert re.search(r"^kwh_node_energy_estimated [01]", metrics, re.M)
    code, data, _h = request(net.authorities[0], "GET", "/energy/quote?type=teleport")
    _error(code, data, 400, "bad_request")
    code, data, _h = request(net.authorities[0], "GET", "/energy/quote")
    _error(code, data, 400, "bad_request")


def test_observer_syncs_from_scratch(net: NodeNet) -> None:
    observer = net.observers[0]
    assert not observer.alive
    net.start(observer)
    target = max(height(n) for n in net.authorities)
    wait_until(lambda: height(observer) >= target, 30, message=f"observer reaches height {target}")
    sync_blocks(net.nodes, min_height=target)
    s = status(observer)
    assert s["authority"] is False and s["node_key"] == observer.key.public.hex()  # type: ignore[union-attr]
    b = net.net.accounts[1]
    assert get(observer, f"/accounts/{b.address_text}") == get(net.authorities[0], f"/accounts/{b.address_text}") \
        or height(observer) != height(net.authorities[0])
    assert "event=sync_" in observer.log_text()
    # the observer gets new blocks pushed too, not only by syncing
    later = height(observer) + 3
    wait_until(lambda: height(observer) >= later, 15, message="observer follows the head")


def test_sigterm_stops_cleanly_and_a_restart_catches_up(net: NodeNet) -> None:
    victim = net.authorities[2]
    others = net.authorities[:2]
    wait_until(lambda: height(victim) >= 2, 20)
    assert victim.stop() == 0, victim.log_text()[-2000:]
    stopped_at = _log_field(victim, "stopped", "height")
    assert "event=task_failed" not in victim.log_text() and "event=request_failed" not in victim.log_text()
    # two of three authorities keep the chain going (each may sign every other block)
    wait_until(lambda: min(height(n) for n in others) >= stopped_at + 4, 30, message="chain goes on without auth2")
    victim.start()
    assert _log_field(victim, "chain_opened", "height") == stopped_at  # continues from its data dir
    target = max(height(n) for n in others)
    wait_until(lambda: height(victim) >= target, 30, message=f"restarted node reaches {target}")
    sync_blocks(net.authorities, min_height=target)


def test_invalid_block_from_a_peer_is_rejected_and_the_peer_banned(net: NodeNet) -> None:
    node = net.authorities[0]
    client = PeerClient(node, net.spare_keys[0], net.chain_id)
    code, answer = client.handshake()
    assert code == 200 and answer["key"] == node.key.public.hex(), answer  # type: ignore[union-attr]
    head = get(node, f"/blocks/{height(node)}")
    proposer = next(k for k in net.net.authorities if k.public.hex() != head["proposer"])
    header = BlockHeader(net.chain_id, head["height"] + 1, bytes.fromhex(head["hash"]),
                         head["timestamp_ms"] + 2 * INTERVAL_MS, proposer.public, merkle_root([]), bytes(32),
                         MIN_DIFFICULTY, 0)
    nonce = next(n for n in range(1000) if not meets_difficulty(dataclasses.replace(header, nonce=n).hash,
                                                                 MIN_DIFFICULTY))
    bad = seal_block(proposer, header, nonce, [], hashes=1)
    before = height(node)
    code, answer = client.post("/peer/block", bad.encode())
    _error(code, answer, 400, "bad_pow")
    code, answer = client.post("/peer/block", bad.encode())
    _error(code, answer, 403, "unauthorized")  # disconnected
    code, answer = PeerClient(node, net.spare_keys[0], net.chain_id).handshake()
    _error(code, answer, 403, "unauthorized")  # and banned
    assert "banned" in answer["detail"]
    # garbage is treated the same way
    other = PeerClient(node, net.spare_keys[1], net.chain_id)
    assert other.handshake()[0] == 200
    code, answer = other.post("/peer/block", b"\x93\xc1garbage")
    _error(code, answer, 400, "malformed")
    assert other.post("/peer/txs", b"\x90")[0] == 403
    # a key outside genesis never gets a session
    from ledger.keys import AccountKey
    code, answer = PeerClient(node, AccountKey.generate(), net.chain_id).handshake()
    _error(code, answer, 403, "unauthorized")
    assert node.alive and "event=peer_banned" in node.log_text()
    wait_until(lambda: height(node) >= before + 2, 15, message="node keeps producing")
    metrics = get(node, "/metrics").decode()
    assert re.search(r"^kwh_peer_bans_total 2\.0$", metrics, re.M), metrics
    assert re.search(r'^kwh_blocks_rejected_total\{reason="bad_pow"\} 1\.0$', metrics, re.M)


def test_bad_input_gets_clear_errors(net: NodeNet) -> None:
    node = net.authorities[1]
    accounts = net.net.accounts
    _error(*post_tx(node, b"\xc1 not msgpack"), 400, "malformed")
    _error(*post_tx(node, b"\x92\x01\x90"), 400, "malformed")
    code, data, _ = request(node, "POST", "/tx", {"tx": "zz"})
    _error(code, data, 400, "bad_request")
    _error(*post_tx(node, b"\x00" * 100_000), 413, "too_large")
    _error(*post_tx(node, b"\x00" * 5000), 413, "too_large")
    _error(*(request(node, "GET", "/tx/" + "00" * 32)[:2]), 404, "not_found")
    _error(*(request(node, "GET", "/tx/xyz")[:2]), 400, "bad_request")
    good = transfer(net.net, 2, accounts[3].address, COIN, nonce=0)
    forged = dataclasses.replace(good, signature=bytes([good.signature[0] ^ 1]) + good.signature[1:])
    _error(*post_tx(node, forged), 400, "bad_signature")
    forged_late = dataclasses.replace(forged, nonce=7)
    _error(*post_tx(node, forged_late), 400, "bad_signature")
    _error(*post_tx(node, transfer(net.net, 2, accounts[3].address, COIN, nonce=5)), 409, "bad_nonce")
    _error(*post_tx(node, transfer(net.net, 2, accounts[3].address, COIN, nonce=0, fee=1)), 400, "fee_too_low")
    _error(*post_tx(node, transfer(net.net, 2, accounts[3].address, 10**6 * COIN, nonce=0)), 400,
           "insufficient_funds")
    assert post_tx(node, good)[0] == 200
    _error(*post_tx(node, good), 409, "duplicate")
    rejected = get(node, f"/tx/{transfer(net.net, 2, accounts[3].address, COIN, nonce=0, fee=1).txid.hex()}")
    assert rejected["status"] == "rejected" and rejected["reason"] == "fee_too_low"
    _error(*(request(node, "GET", "/accounts/kwh1234")[:2]), 400, "bad_request")
    good_addr = accounts[0].address_text
    typo = good_addr[:-1] + ("0" if good_addr[-1] != "0" else "1")
    _error(*(request(node, "GET", f"/accounts/{typo}")[:2]), 400, "bad_request")
    _error(*(request(node, "GET", "/meters/" + "00" * 16)[:2]), 404, "not_found")
    _error(*(request(node, "GET", "/blocks/99999999")[:2]), 404, "not_found")
    _error(*(request(node, "GET", "/blocks/notahash")[:2]), 400, "bad_request")
    _error(*(request(node, "GET", "/blocks?from=x")[:2]), 400, "bad_request")
    _error(*(request(node, "GET", "/no/such/route")[:2]), 404, "not_found")
    _error(*(request(node, "POST", "/status", b"")[:2]), 405, "bad_request")
    _error(*(request(node, "POST", "/admin/grid-signal", {"surplus_w": 5})[:2]), 403, "unauthorized")
    _error(*(request(node, "POST", "/admin/grid-signal", {"surplus_w": 5},
                     {"Authorization": "Bearer wrong-token"})[:2]), 403, "unauthorized")
    _error(*(request(node, "POST", "/admin/grid-signal", {"surplus_w": 1.5},
                     {"Authorization": f"Bearer {ADMIN_TOKEN}"})[:2]), 400, "bad_request")
    _error(*(request(node, "POST", "/peer/block", b"x")[:2]), 403, "unauthorized")
    _error(*(request(node, "POST", "/peer/hello", b"\xff" * 100_000)[:2]), 413, "too_large")
    assert node.alive
    assert "event=request_failed" not in node.log_text()


def test_every_route_is_served_and_described(net: NodeNet) -> None:
    from node.api import ROUTES
    node = net.authorities[0]
    doc = get(node, "/openapi.json")
    assert doc["openapi"].startswith("3.")
    for method, path, _name in ROUTES:
        assert method.lower() in doc["paths"].get(path, {}), f"{method} {path} missing from /openapi.json"
    a = net.net.accounts[3].address_text
    h = wait_until(lambda: height(node) if height(node) >= 3 else 0, 30, message="three blocks")
    assert get(node, "/genesis")["chain_id"] == net.chain_id
    block = get(node, f"/blocks/{h}")
    assert get(node, f"/blocks/{block['hash']}") == block
    code, raw, headers = request(node, "GET", f"/blocks/{h}?format=msgpack")
    assert code == 200 and headers["Content-Type"].startswith("application/msgpack") and isinstance(raw, bytes)
    page = get(node, "/blocks?from=1&limit=3")["blocks"]
    assert [b["height"] for b in page] == [1, 2, 3]
    assert len(get(node, "/blocks?from=1&limit=1000")["blocks"]) == min(100, h)
    assert get(node, f"/accounts/{a}/lots") == {"lots": [], "next": None}
    assert [m["meter_id"] for m in get(node, "/meters")["meters"]] == [net.net.meters[0].meter_id.hex()]
    assert get(node, "/market/offers?status=open") == {"offers": [], "next": None}
    assert get(node, "/market/orderbook") == {"buys": [], "sells": [],
                                              "levels": {"buys": [], "sells": [], "partial": False}}
    assert get(node, f"/market/orders?owner={a}") == {"orders": [], "next": None}
    assert get(node, f"/trades?party={a}") == {"trades": [], "next": None}
    assert get(node, "/evidence") == {"evidence": [], "votes": [], "next": None}
    energy = get(node, "/energy?limit=3")
    assert len(energy["blocks"]) == 3 and energy["total"]["blocks"] >= 3
    assert set(energy) >= {"minted_wh", "settled_wh", "redeemed_wh", "consumed_wh", "ledger_kwh_per_settled_kwh",
                           "grid"}
    metrics = get(node, "/metrics").decode()
    for name in ("kwh_height", "kwh_mempool_size", "kwh_blocks_produced_total", "kwh_blocks_imported_total",
                 "kwh_txs_accepted_total", "kwh_mining_hashes_total", "kwh_mining_energy_joules_total",
                 "kwh_peers", "kwh_energy_minted_wh", "kwh_energy_consumed_wh", "kwh_energy_redeemed_wh",
                 "kwh_energy_settled_wh", "kwh_escrow_coin_units"):
        assert re.search(rf"^{name}(\{{.*\}})? ", metrics, re.M), f"{name} missing from /metrics"
    # the ledger's totals in /metrics are those of /energy
    for name, field in (("minted", "minted_wh"), ("consumed", "consumed_wh"), ("redeemed", "redeemed_wh"),
                        ("settled", "settled_wh")):
        value = re.search(rf"^kwh_energy_{name}_wh (\S+)$", metrics, re.M)
        assert value is not None and float(value.group(1)) == get(node, "/energy")[field], name


def test_grid_signal_changes_the_work_per_block(net: NodeNet) -> None:
    """Runs last: it makes blocks cost real work (and turns that off again)."""
    producers = [n for n in net.authorities if n.alive]
    node = producers[0]
    before = get(node, "/energy?limit=5")
    assert all(b["difficulty"] == MIN_DIFFICULTY for b in before["blocks"])
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for n in producers:
        code, policy, _ = request(n, "POST", "/admin/grid-signal", {"surplus_w": 4}, auth)
        assert code == 200 and policy["surplus_w"] == 4 and policy["difficulty"] > 100 * MIN_DIFFICULTY, policy
    start = height(node)

    def worked_blocks() -> list[dict[str, Any]]:
        blocks = [b for b in get(node, "/energy?limit=20")["blocks"] if b["height"] > start]
        heavy = [b for b in blocks if b["difficulty"] > 100 * MIN_DIFFICULTY]
        return heavy if len(heavy) >= 3 else []

    heavy = wait_until(worked_blocks, 40, 0.2, "three blocks mined at the grid-signal difficulty")
    assert sum(b["hashes"] for b in heavy) > 3 * 10 * MIN_DIFFICULTY
    assert all(b["energy_j"] > 0 for b in heavy)
    after = get(node, "/energy?limit=5")
    assert after["total"]["hashes"] - before["total"]["hashes"] >= sum(b["hashes"] for b in heavy)
    assert after["total"]["energy_j"] > before["total"]["energy_j"]
    assert after["grid"]["surplus_w"] == 4
    # a signal file does the same without HTTP (a site controller writes it atomically)
    target = producers[1]
    tmp = target.grid_file.with_suffix(".tmp")
    tmp.write_text('{"surplus_w": -100}\n')
    os.replace(tmp, target.grid_file)
    wait_until(lambda: get(target, "/energy")["grid"]["surplus_w"] == -100, 10, message="grid file is read")
    assert get(target, "/energy")["grid"]["difficulty"] == MIN_DIFFICULTY  # shortage: the minimum work
    for n in producers:
        assert request(n, "POST", "/admin/grid-signal", {"surplus_w": 0}, auth)[0] == 200
    time.sleep(0.1)
    assert "event=grid_signal" in target.log_text()


def test_a_lonely_fork_is_reorganised_away_and_its_tx_included_again(node_net: Any) -> None:
    """auth0 runs alone and seals a block with a tx (then the recent-signer rule stops it); auth1 and auth2
    build a heavier chain without it; when auth0 comes back it switches chains and the tx is mined again."""
    net = node_net(authorities=3, observers=0, accounts=2, block_interval_ms=INTERVAL_MS,
                   min_difficulty=MIN_DIFFICULTY, start=False)
    lonely, others = net.authorities[0], net.authorities[1:]
    lonely.start()
    t = transfer(net.net, 0, net.net.accounts[1].address, COIN, nonce=0)
    assert post_tx(lonely, t)[0] == 200
    wait_until(lambda: get(lonely, f"/tx/{t.txid.hex()}")["status"] == "included", 20,
               message="the lonely authority seals the tx")
    fork_block = get(lonely, f"/tx/{t.txid.hex()}")["block"]
    assert lonely.stop() == 0
    for n in others:
        n.start(wait=False)
    for n in others:
        n.wait_ready()
    wait_until(lambda: min(height(n) for n in others) >= 4, 30, message="the other two build a chain")
    lonely.start()
    wait_until(lambda: "event=reorg" in lonely.log_text(), 30, message="auth0 reorganises onto the heavier chain")
    sync_blocks(net.authorities, timeout=30)

    def included_on_main() -> bool:
        states = [get(n, f"/tx/{t.txid.hex()}") for n in net.authorities]
        return all(s["status"] == "included" and s["block"] != fork_block for s in states) \
            and len({s["block"] for s in states}) == 1

    wait_until(included_on_main, 30, 0.2, "the tx of the reverted block is mined again on the main chain")
    assert get(lonely, "/evidence") == {"evidence": [], "votes": [], "next": None}
