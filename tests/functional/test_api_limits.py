"""A running node's bounds: request bodies, request rates per client and per peer session, the mempool's
size and each sender's share. Each refusal is JSON `{"error", "detail"}` with the contract's status, and
the node keeps running and loses nothing it had accepted. (Consensus limits on blocks and the decoder's
limits are unit-tested in tests/unit/test_decoder_and_mempool_limits.py and test_fuzz.py.)"""
from __future__ import annotations

import http.client
import json
import time
from typing import Any, Iterable

import pytest

from framework import NodeNet, NodeProcess, PeerClient, get, height, post_tx, request, transfer, wait_until
from ledger.tx import COIN, MAX_TX_BYTES, SignedTx
from node.api import MAX_TX_BODY
from node.peers import MAX_BLOCK_BODY, MAX_JSON_BODY, MAX_TXS_BODY

pytestmark = pytest.mark.functional

MEMPOOL_SIZE, PER_SENDER, PEER_RATE = 3, 2, 2.0  # node A's flags; a peer's burst is 5 s worth: 10 requests


@pytest.fixture(scope="module")
def net(module_node_net: Any) -> NodeNet:
    """Node A: small mempool and a slow peer rate; blocks every 2 s, so a burst of posts rarely straddles one."""
    return module_node_net(authorities=1, observers=0, accounts=12, spare_observers=2, block_interval_ms=2000,
                           extra_args=["--mempool-size", str(MEMPOOL_SIZE), "--mempool-per-sender",
                                       str(PER_SENDER), "--peer-rate", str(PEER_RATE)])


@pytest.fixture(scope="module")
def node(net: NodeNet) -> NodeProcess:
    return net.authorities[0]


def _error(code: int, data: Any, status: int, error: str) -> str:
    """Assert an error answer of the contract's form; returns its detail."""
    assert isinstance(data, dict) and set(data) == {"error", "detail"}, (code, data)
    assert (code, data["error"]) == (status, error), (code, data)
    assert isinstance(data["detail"], str) and data["detail"]
    return data["detail"]


def _raw(node: NodeProcess, path: str, headers: dict[str, str], body: bytes | Iterable[bytes] = b"",
         chunked: bool = False) -> tuple[int, Any]:
    """POST with a declared length that may be a lie, or chunked without any length: what urllib won't do."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    try:
        if chunked:
            conn.request("POST", path, body=body, headers=headers, encode_chunked=True)
        else:
            conn.putrequest("POST", path, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders(body if isinstance(body, bytes) else b"".join(body))
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ bodies

def test_request_bodies_are_bounded_before_they_are_read(net: NodeNet, node: NodeProcess) -> None:
    """413 too_large for every route that takes a body, whether the length is declared (refused before a
    byte is read: nothing follows the headers here) or the body is chunked without one."""
    peer = PeerClient(node, net.spare_keys[1], net.chain_id)
    assert peer.handshake()[0] == 200
    session = {"Authorization": f"Bearer {peer.token}", "Content-Type": "application/msgpack"}
    for path, limit, headers in (("/tx", MAX_TX_BODY, {"Content-Type": "application/msgpack"}),
                                 ("/peer/hello", MAX_JSON_BODY, {"Content-Type": "application/json"}),
                                 ("/admin/grid-signal", MAX_JSON_BODY, {"Content-Type": "application/json",
                                                                        "Authorization": "Bearer test-admin-token"}),
                                 ("/peer/block", MAX_BLOCK_BODY, session), ("/peer/txs", MAX_TXS_BODY, session)):
        declared = dict(headers, **{"Content-Length": str(limit + 1)})
        detail = _error(*_raw(node, path, declared), 413, "too_large")
        assert str(limit) in detail, detail
    chunks = [b"{" + b" " * 4095] * (MAX_TX_BODY // 4096 + 1)  # JSON whitespace, no length until the end
    detail = _error(*_raw(node, "/tx", {"Content-Type": "application/json"}, iter(chunks), chunked=True),
                    413, "too_large")
    assert f"exceeds {MAX_TX_BODY}" in detail
    # under the body limit, the tx's own limit (canonical bytes) still applies
    _error(*post_tx(node, b"\x00" * (MAX_TX_BYTES + 1)), 413, "too_large")
    assert node.alive and peer.post("/peer/txs", b"\x90") == (200, {"accepted": 0, "received": 0})


# ------------------------------------------------------------------------------------------- rates

def test_peer_session_rate_is_bounded_without_a_ban(net: NodeNet, node: NodeProcess) -> None:
    """--peer-rate: a session's burst passes, then 429 rate_limited on /peer/* and on public routes it calls
    with its token; being fast is not misbehaviour, so the session works again once the bucket refills."""
    peer = PeerClient(node, net.spare_keys[0], net.chain_id)
    assert peer.handshake()[0] == 200
    answers = [peer.post("/peer/txs", b"\x90") for _ in range(int(PEER_RATE * 5) + 5)]
    ok = [a for a in answers if a[0] == 200]
    limited = [a for a in answers if a[0] == 429]
    assert len(ok) >= int(PEER_RATE * 5) - 1 and limited, answers
    _error(*limited[0], 429, "rate_limited")
    _error(*request(node, "GET", "/status", headers={"Authorization": f"Bearer {peer.token}"})[:2],
           429, "rate_limited")
    assert request(node, "GET", "/status")[0] == 200  # other clients are not slowed by this peer
    time.sleep(1.5 / PEER_RATE)
    assert peer.post("/peer/txs", b"\x90") == (200, {"accepted": 0, "received": 0})
    assert node.alive


def test_client_rate_is_bounded_and_recovers(node_net: Any) -> None:
    """--api-rate: per client address, for reads and writes alike; a peer session has its own bucket, so
    public clients on the same address cannot starve a peer."""
    net = node_net(authorities=1, observers=0, spare_observers=1, extra_args=["--api-rate", "5"])
    b = net.authorities[0]
    peer = PeerClient(b, net.spare_keys[0], net.chain_id)
    wait_until(lambda: peer.handshake()[0] == 200, 10, message="handshake within the client rate")
    answers = [request(b, "GET", "/status")[:2] for _ in range(25)]
    limited = [a for a in answers if a[0] == 429]
    assert limited and any(a[0] == 200 for a in answers), [a[0] for a in answers]
    _error(*limited[0], 429, "rate_limited")
    _error(*post_tx(b, b"\x00"), 429, "rate_limited")  # refused before the body is looked at
    assert request(b, "GET", "/status", headers={"Authorization": f"Bearer {peer.token}"})[0] == 200
    time.sleep(1.0)
    assert request(b, "GET", "/status")[0] == 200
    start = height(b)
    time.sleep(0.5)
    wait_until(lambda: request(b, "GET", "/status")[1].get("height", 0) > start, 20, 0.5,
               message="the node goes on producing")
    assert b.alive


# ----------------------------------------------------------------------------------------- mempool

def _accounts_address(net: NodeNet, i: int) -> str:
    return net.net.accounts[i].address_text


def _fill(net: NodeNet, node: NodeProcess, base: int) -> dict[str, Any]:
    """One burst against an empty pool with accounts base..base+3 (see the test); returns what happened."""
    to = net.net.accounts[base].address
    s0 = [transfer(net.net, base, to, COIN, nonce=n) for n in range(PER_SENDER + 1)]
    s1 = transfer(net.net, base + 1, to, COIN, nonce=0)
    s2 = transfer(net.net, base + 2, to, COIN, nonce=0)  # minimum fee: cannot evict anyone
    s3 = transfer(net.net, base + 3, to, COIN, nonce=0, fee=net.net.genesis.min_fee * 10)
    h = height(node)
    answers = {"s0": [post_tx(node, t) for t in s0], "s1": post_tx(node, s1), "s2": post_tx(node, s2),
               "s3": post_tx(node, s3)}
    return {"answers": answers, "quiet": height(node) == h, "txs": {"s0": s0, "s1": s1, "s2": s2, "s3": s3}}


def test_mempool_size_and_sender_share_are_bounded_and_lose_nothing(net: NodeNet, node: NodeProcess) -> None:
    """--mempool-per-sender 2: a sender's third pending tx is refused; --mempool-size 3: a fourth sender's tx
    is refused unless it pays more than the cheapest, which it then replaces. Every tx that stays in the
    pool is included later; the one replaced is reported rejected; coin is conserved."""
    before = sum(get(node, f"/accounts/{_accounts_address(net, i)}")["coin"] for i in range(12))
    for base in (0, 4, 8):  # a block between the posts empties the pool: then try again with fresh accounts
        wait_until(lambda: get(node, "/status")["mempool"] == 0, 20, message="empty mempool")
        run = _fill(net, node, base)
        if run["quiet"]:
            break
    else:
        pytest.fail("a block landed inside every burst")
    a, txs = run["answers"], run["txs"]
    assert [code for code, _ in a["s0"][:PER_SENDER]] == [200] * PER_SENDER, a["s0"]
    assert f"limit {PER_SENDER}" in _error(*a["s0"][PER_SENDER], 409, "mempool_full")
    assert a["s1"][0] == 200, a["s1"]
    assert f"holds {MEMPOOL_SIZE}" in _error(*a["s2"], 409, "mempool_full")
    assert a["s3"][0] == 200, a["s3"]
    kept: list[SignedTx] = txs["s0"][:PER_SENDER] + [txs["s1"], txs["s3"]]
    evicted = [t for t in kept if get(node, f"/tx/{t.txid.hex()}")["status"] == "rejected"]
    assert len(evicted) == 1 and get(node, f"/tx/{evicted[0].txid.hex()}")["reason"] == "mempool_full"
    assert get(node, f"/tx/{txs['s2'].txid.hex()}")["reason"] == "mempool_full"  # the refusal is remembered
    survivors = [t for t in kept if t is not evicted[0]]
    wait_until(lambda: all(get(node, f"/tx/{t.txid.hex()}")["status"] == "included" for t in survivors), 30,
               message="every admitted tx is included")
    fees = sum(t.fee for t in survivors)
    after = sum(get(node, f"/accounts/{_accounts_address(net, i)}")["coin"] for i in range(12))
    assert after == before - fees  # transfers stay among these accounts; only the fees left for the proposer
    assert node.alive and "event=request_failed" not in node.log_text()
