"""Misbehaving peers and replayed signatures against real nodes (what tests/functional/test_node.py does not
already cover: there, a block with bad proof of work bans its sender, garbage bans, an unknown key is refused).

Here: a block signed by a key outside the authority list is refused and its relayer banned; a member key can
not be claimed without its private key; an authority that signs two blocks at one height is caught on every
node (GET /evidence) while the relayer of the two valid blocks is not punished; signatures made for another
chain id do not verify here (transactions, readings, peer handshakes); replays of included transactions and
readings are refused with their reasons.
"""
from __future__ import annotations

import re
import secrets
import time
from typing import Any

import pytest

from framework import (NodeNet, PeerClient, get, height, post_tx, replica, request, sync_blocks, transfer,
                       wait_until)
from ledger.block import mine
from ledger.keys import DOMAIN_PEER, AccountKey, signing_bytes
from ledger.testing import MeterState
from ledger.tx import COIN, Transfer, sign_reading, sign_tx

pytestmark = pytest.mark.functional

INTERVAL_MS = 500


@pytest.fixture(scope="module")
def net(module_node_net: Any) -> NodeNet:
    n: NodeNet = module_node_net(authorities=3, observers=0, accounts=4, meters=1, meter_kind="both",
                                 spare_observers=3, block_interval_ms=INTERVAL_MS)
    wait_until(lambda: min(height(x) for x in n.authorities) >= 2, 30, message="the net produces blocks")
    return n


def _error(code: int, data: Any, expect_code: int, expect_error: str) -> None:
    assert isinstance(data, dict) and (code, data.get("error")) == (expect_code, expect_error), (code, data)


def _metric(node: Any, pattern: str) -> float:
    text = get(node, "/metrics").decode()
    match = re.search(pattern + r" ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_block_signed_by_an_outsider_is_refused_and_its_relayer_banned(net: NodeNet) -> None:
    node = net.authorities[0]
    relayer = PeerClient(node, net.spare_keys[0], net.chain_id)
    assert relayer.handshake()[0] == 200
    chain = replica(node, net.net)
    outsider = AccountKey.generate()
    # everything right (parent, time, state root, proof of work, seal) except who signed it
    ts = chain.earliest_timestamp(chain.head, chain.height + 1, outsider.public)
    header, _txs, _rejected = chain.build_block([], ts, outsider, chain.params.min_difficulty)
    block = mine(outsider, header, [])
    _error(*relayer.post("/peer/block", block.encode()), 400, "not_proposer")
    _error(*relayer.post("/peer/block", block.encode()), 403, "unauthorized")  # its session is gone
    code, answer = PeerClient(node, net.spare_keys[0], net.chain_id).handshake()
    _error(code, answer, 403, "unauthorized")
    assert "banned" in answer["detail"]
    _error(*request(node, "GET", f"/blocks/{block.hash.hex()}")[:2], 404, "not_found")  # not even stored
    assert _metric(node, r'^kwh_blocks_rejected_total\{reason="not_proposer"\}') == 1
    before = height(node)
    wait_until(lambda: height(node) >= before + 2, 15, message="the node goes on producing")


def test_a_member_key_cannot_be_claimed_without_its_private_key(net: NodeNet) -> None:
    """An outsider that names an authority's public key gets a challenge but cannot answer it."""
    node = net.authorities[1]
    victim = net.net.authorities[2]
    mine_challenge = secrets.token_bytes(32)
    code, hello, _ = request(node, "POST", "/peer/hello", {"chain_id": net.chain_id, "key": victim.public.hex(),
                                                           "challenge": mine_challenge.hex()})
    assert code == 200, hello
    forger = AccountKey.generate()
    theirs = bytes.fromhex(hello["challenge"])
    forged = forger.sign(signing_bytes(DOMAIN_PEER, net.chain_id, ["hello", theirs, bytes.fromhex(hello["key"])]))
    code, answer, _ = request(node, "POST", "/peer/handshake", {"key": victim.public.hex(), "challenge": theirs.hex(),
                                                                "signature": forged.hex()})
    _error(code, answer, 400, "bad_signature")
    assert "token" not in answer
    # the challenge is used up: even the right signature cannot be replayed against it now
    right = victim.sign(signing_bytes(DOMAIN_PEER, net.chain_id, ["hello", theirs, bytes.fromhex(hello["key"])]))
    code, answer, _ = request(node, "POST", "/peer/handshake", {"key": victim.public.hex(), "challenge": theirs.hex(),
                                                                "signature": right.hex()})
    _error(code, answer, 403, "unauthorized")


def test_a_handshake_signed_for_another_chain_does_not_verify(net: NodeNet) -> None:
    node = net.authorities[1]
    member = net.spare_keys[1]
    code, answer = PeerClient(node, member, "kwh-other-chain").handshake()
    _error(code, answer, 400, "wrong_chain")  # says so in its hello
    # says the right chain id, but signs the challenge under another one
    challenge = secrets.token_bytes(32)
    code, hello, _ = request(node, "POST", "/peer/hello", {"chain_id": net.chain_id, "key": member.public.hex(),
                                                           "challenge": challenge.hex()})
    assert code == 200, hello
    theirs = bytes.fromhex(hello["challenge"])
    other = member.sign(signing_bytes(DOMAIN_PEER, "kwh-other-chain", ["hello", theirs, bytes.fromhex(hello["key"])]))
    code, answer, _ = request(node, "POST", "/peer/handshake", {"key": member.public.hex(), "challenge": theirs.hex(),
                                                                "signature": other.hex()})
    _error(code, answer, 400, "bad_signature")


def test_an_authority_signing_two_blocks_at_one_height_is_caught_everywhere(net: NodeNet) -> None:
    node = net.authorities[0]
    relayer = PeerClient(node, net.spare_keys[2], net.chain_id)
    assert relayer.handshake()[0] == 200
    chain = replica(node, net.net)
    height_ = chain.height + 1
    # the authority neither in turn nor the head's proposer: its own node would not sign this height soon
    head_proposer = chain.head.proposer
    cheat = next(k for k in net.net.authorities
                 if k.public != head_proposer and not chain.in_turn(height_, k.public))
    ts = chain.earliest_timestamp(chain.head, height_, cheat.public)
    blocks = []
    for extra_ms in (0, 1):  # same parent, same height, another timestamp: another block
        header, _txs, _rejected = chain.build_block([], ts + extra_ms, cheat, chain.params.min_difficulty)
        blocks.append(mine(cheat, header, []))
    assert blocks[0].hash != blocks[1].hash
    for block in blocks:
        code, answer = relayer.post("/peer/block", block.encode())
        assert code == 200 and answer["status"] in ("head", "side", "reorg"), answer
    ours = {b.hash.hex() for b in blocks}

    def caught(n: Any) -> list[dict[str, Any]]:
        return [e for e in get(n, "/evidence")["evidence"]
                if e["proposer"] == cheat.public.hex() and e["height"] == height_ and ours & set(e["blocks"])]

    for n in net.authorities:  # gossip carries both blocks (valid ones), so every node has the proof
        entries = wait_until(lambda: caught(n), 15, message=f"{n.name} records the double signing")
        assert len(entries) == 1 and len(set(entries[0]["blocks"])) == 2, entries
        for h in entries[0]["blocks"]:  # both signed headers are kept for anyone to check
            block = get(n, f"/blocks/{h}")
            assert (block["proposer"], block["height"]) == (cheat.public.hex(), height_)
    code, answer = relayer.post("/peer/block", blocks[0].encode())  # relaying valid blocks is no offence
    assert code == 200 and answer["status"] == "known", answer
    assert height(node) >= height_ - 1
    sync_blocks(net.authorities, timeout=20)


def test_signatures_for_another_chain_do_not_verify_here(net: NodeNet) -> None:
    node = net.authorities[2]
    a, b = net.net.accounts[0], net.net.accounts[1]
    other_chain = sign_tx(a, "kwh-other-chain", 0, net.net.genesis.min_fee, Transfer(b.address, COIN))
    _error(*post_tx(node, other_chain), 400, "bad_signature")
    start = (int(time.time()) // 900 - 8) * 900
    fields = MeterState(net.net.meters[0], start).peek(500, 0)
    _error(*post_tx(node, sign_reading(net.net.meters[0], "kwh-other-chain", fields)), 400, "bad_signature")


def test_replayed_transactions_and_readings_are_refused(net: NodeNet) -> None:
    first, second = net.authorities[1], net.authorities[2]
    a, b = net.net.accounts[2], net.net.accounts[3]
    nonce = get(first, f"/accounts/{a.address_text}")["next_nonce"]
    tx = transfer(net.net, 2, b.address, COIN, nonce)
    meter = MeterState(net.net.meters[0], (int(time.time()) // 900 - 4) * 900)
    reading = meter.read(net.chain_id, 800, 100)
    for t in (tx, reading):
        assert post_tx(first, t)[0] == 200
    wait_until(lambda: all(get(n, f"/tx/{t.txid.hex()}")["status"] == "included" for n in (first, second)
                           for t in (tx, reading)), 30, message="both included on both nodes")
    coin_before = get(second, f"/accounts/{b.address_text}")["coin"]
    for n in (first, second):  # the very same bytes again, at the node that saw them and at another one
        _error(*post_tx(n, tx), 409, "duplicate")
        _error(*post_tx(n, reading), 409, "duplicate")
    # the same intent signed again (another fee, so another txid): the nonce is spent
    _error(*post_tx(second, transfer(net.net, 2, b.address, COIN, nonce, fee=2 * net.net.genesis.min_fee)),
           409, "bad_nonce")
    # the same meter interval signed again with other numbers: the counter has moved on
    again = sign_reading(net.net.meters[0], net.chain_id,
                         MeterState(net.net.meters[0], meter.next_start - 900).peek(900, 100))
    _error(*post_tx(second, again), 409, "counter_not_increasing")
    time.sleep(2 * INTERVAL_MS / 1000)
    assert get(second, f"/accounts/{b.address_text}")["coin"] == coin_before
    owner = get(second, f"/meters/{net.net.meters[0].meter_id.hex()}")
    assert owner["counter"] == 1 and owner["minted_wh"] == 800
