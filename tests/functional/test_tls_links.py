"""Peer links over TLS pinned to genesis node keys (ADR 012, node/tls.py), through relays on 127.0.0.1.

A wiretap on every link sees only TLS records; a relay that flips bits gets nothing accepted (and the
nodes sync as soon as it stops); a relay that terminates TLS with a key not in genesis, or with another
member's key, is refused before any block or session passes.
"""
from __future__ import annotations

import time
from typing import Any

import pytest

from framework import NodeNet, PeerClient, get, height, post_tx, sync_blocks, transfer, wait_until
from ledger.keys import AccountKey
from netproxy import ProxyHub

pytestmark = [pytest.mark.functional, pytest.mark.timeout(180)]


def test_nodes_sync_over_pinned_tls_and_a_wiretap_sees_only_ciphertext(node_net: Any) -> None:
    net: NodeNet = node_net(authorities=2, observers=1, tls=True, proxied=True)
    a0, a1, obs = net.nodes
    tx = transfer(net.net, 0, net.net.accounts[1].address, 12345, 0)
    assert post_tx(a0, tx)[0] == 200
    wait_until(lambda: get(obs, f"/tx/{tx.txid.hex()}")["status"] == "included", 30, message="tx over TLS links")
    sync_blocks(net.nodes, min_height=3)
    wait_until(lambda: any(p["connected"] for p in get(obs, "/status")["peers"]), 10, message="a TLS session")
    links = list(net.links.values()) + list(net.back_links.values())
    wire = b"".join(bytes(link.capture) for link in links)
    assert sum(link.accepted for link in links) >= 3 and len(wire) > 10_000
    for plain in (b"/peer/", b"Bearer", b"HTTP/1.1", net.chain_id.encode(), tx.txid.hex().encode(), tx.txid,
                  net.net.accounts[1].address):
        assert plain not in wire, f"{plain!r} crossed a link in the clear"
    assert all(link.capture[:1] in (b"", b"\x16") for link in links)  # every connection opens with TLS


def test_a_relay_that_flips_bits_gets_nothing_accepted(node_net: Any) -> None:
    net: NodeNet = node_net(authorities=1, observers=1, tls=True, proxied=True, start=False)
    auth, obs = net.nodes
    links = list(net.links.values()) + list(net.back_links.values())
    for link in links:
        link.tamper_after = 0
    net.start()
    wait_until(lambda: height(auth) >= 4, 30, message="the authority produces blocks alone")
    assert height(obs) == 0 and sum(link.accepted for link in links) > 0
    assert not any(p["connected"] for p in get(auth, "/status")["peers"] + get(obs, "/status")["peers"])
    for link in links:
        link.tamper_after = None
    sync_blocks(net.nodes, min_height=5)  # once the relay stops tampering, the same links work


@pytest.mark.parametrize("impostor", ["key not in genesis", "another member's key"])
def test_a_relay_that_terminates_tls_with_another_key_is_refused(node_net: Any, impostor: str) -> None:
    net: NodeNet = node_net(authorities=1, observers=1, tls=True, start=False)
    auth, obs = net.nodes
    key = AccountKey.generate() if impostor == "key not in genesis" else net.spare_keys[0]
    hub = ProxyHub()
    try:
        mitm = hub.add(auth.tls_port, "mitm", tls=True, mitm_key=key)
        obs.peers = [mitm.url]
        obs.public_url = "https://127.0.0.1:9"  # the authority cannot dial back: only the relay joins them
        auth.peers = []
        net.start()
        wait_until(lambda: height(auth) >= 4, 30, message="the authority produces blocks")
        wait_until(lambda: mitm.accepted >= 1, 20, message="the observer dials through the relay")
        time.sleep(1.0)  # a few more poll rounds through the relay
        assert height(obs) == 0
        # a stranger's certificate is closed before a request byte is sent; a member's that is not this
        # peer's key is refused when its answer names another key (handshake or /status)
        reasons = (["is not a genesis node key"] if impostor == "key not in genesis"
                   else ["name different keys", "event=peer_tls_refused"])
        wait_until(lambda: any(r in obs.log_text() for r in reasons), 10, message=f"observer log says {reasons}")
        assert "peer_accepted" not in auth.log_text()
        assert not get(obs, "/status")["peers"][0]["connected"]
    finally:
        hub.close()


def test_a_node_with_tls_takes_peers_over_tls_only(node_net: Any) -> None:
    net: NodeNet = node_net(authorities=1, observers=0, tls=True, spare_observers=1)
    (auth,) = net.nodes
    code, answer = PeerClient(auth, net.spare_keys[0], net.chain_id).handshake()  # on the plain port
    assert (code, answer["error"]) == (403, "unauthorized") and "over TLS only" in answer["detail"], answer


def test_the_wallet_reads_over_tls_pinned_to_the_node_key(node_net: Any, tmp_path: Any) -> None:
    import os
    import subprocess

    from framework import REPO
    net: NodeNet = node_net(authorities=1, observers=0, tls=True)
    (auth,) = net.nodes
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWH_")}
    env.update(KWH_WALLET_DIR=str(tmp_path / "keys"), KWH_NODE=auth.tls_url)

    def wallet(node_key: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(REPO / ".venv/bin/kwh-wallet"), "--json", *args], capture_output=True, text=True,
                              timeout=60, env={**env, "KWH_NODE_KEY": node_key}, stdin=subprocess.DEVNULL)
    ok = wallet(auth.key.public.hex(), "status")
    assert ok.returncode == 0, ok.stderr
    wrong = wallet(AccountKey.generate().public.hex(), "status")
    assert wrong.returncode != 0 and wrong.stdout == "" and len(wrong.stderr.splitlines()) == 1, wrong.stderr
    assert "is not the pinned KWH_NODE_KEY" in wrong.stderr, wrong.stderr
