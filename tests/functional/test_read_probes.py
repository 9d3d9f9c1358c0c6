"""Probes of the read roles (ADR 012) from outside: a public client, another account holder, a page.
Each test is an attack that worked before its fix: it reads what the role table keeps from it, or stops
what the node promises others.
"""
from __future__ import annotations

import http.client
import time
from typing import Any
from urllib.parse import urlparse

import pytest

from framework import (NodeNet, NodeProcess, PeerClient, get, include_all, post_tx, read_credential, request,
                       wait_until)
from ledger.fees import required_fee
from ledger.keys import AccountKey
from ledger.ocmf_sim import OcmfMeterSim
from ledger.state import lot_id_of
from ledger.testing import MeterState
from ledger.tx import COIN, REMOVE, AuthorityVote, EnrollOcmfMeter, sign_tx

pytestmark = [pytest.mark.functional, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def net(module_node_net: Any) -> NodeNet:
    return module_node_net(authorities=1, observers=0, accounts=3, meters=1, meter_kind="both",
                           authority_coin=10 * COIN, block_interval_ms=500)


@pytest.fixture(scope="module")
def node(net: NodeNet) -> NodeProcess:
    return net.authorities[0]



def test_a_public_client_cannot_read_a_household_s_export_through_a_lot_id_it_computes(
        net: NodeNet, node: NodeProcess) -> None:
    """A lot's id is its interval start and meter id (ledger/state.py lot_id_of), both public: before the fix
    anyone walked a meter's intervals through GET /lots/{id} and read each reading's export as `minted_wh`,
    the load curve that /dashboard/api/meters/{id}/readings refuses them."""
    meter = net.net.meters[0]
    start = (int(time.time()) // 900 - 6) * 900
    state = MeterState(meter, start)
    readings = [state.read(net.chain_id, wh, 50) for wh in (1234, 0, 777)]  # a quiet quarter-hour between
    include_all(node, readings)
    outsider = AccountKey.generate()
    owner = net.net.accounts[0]
    assert request(node, "GET", f"/dashboard/api/meters/{meter.meter_id.hex()}/readings", auth=None)[0] == 401
    for key in (None, outsider):
        for i, wh in enumerate((1234, 777)):
            lot_id = lot_id_of(start + 900 * (0 if i == 0 else 2), meter.meter_id).hex()
            lot = get(node, f"/lots/{lot_id}", auth=key)["lot"]
            assert lot["meter_id"] == meter.meter_id.hex() and lot["source"]  # provenance stays public
            assert "minted_wh" not in lot, f"{'public' if key is None else 'another account'} reads export {wh} Wh"
    assert get(node, f"/lots/{lot_id_of(start, meter.meter_id).hex()}", auth=owner)["lot"]["minted_wh"] == 1234


def test_the_ocmf_meter_list_answers_every_role_once_a_meter_is_enrolled(net: NodeNet, node: NodeProcess) -> None:
    """GET /ocmf-meters chose each meter's view by the reader and then compared with a MAX_LIST that paging
    had removed: a 500 for every reader as soon as one OCMF meter was enrolled."""
    owner = net.net.accounts[1]
    sim = OcmfMeterSim("PROBE-1")
    body = EnrollOcmfMeter(sim.spki, sim.serial, owner.address, "2.8.0", "", 5000, "solar")
    nonce = get(node, f"/accounts/{node.key.address_text}")["next_nonce"]
    include_all(node, [sign_tx(node.key, net.chain_id, nonce, required_fee(net.net.genesis.min_fee, body), body)])
    for key in (None, net.net.accounts[2], owner):
        code, data, _ = request(node, "GET", "/ocmf-meters", auth=key)
        assert code == 200, (code, data)
        [meter] = [m for m in data["meters"] if m["serial"] == "PROBE-1"]
        assert ("records" in meter) == (key is owner), meter  # readings only for the owner


def _sign_in(conn: http.client.HTTPConnection, node: NodeProcess, key: AccountKey) -> tuple[int, str | None]:
    conn.request("POST", "/dashboard/session", headers={
        "Authorization": read_credential(node, key, "POST", "/dashboard/session"), "Content-Length": "0"})
    resp = conn.getresponse()
    resp.read()
    cookie = resp.getheader("Set-Cookie")
    return resp.status, cookie.split(";")[0] if cookie else None


def test_one_account_cannot_sign_every_browser_out_by_signing_in_ten_thousand_times(
        net: NodeNet, node: NodeProcess) -> None:
    """The node holds at most 10,000 dashboard sessions and dropped the oldest for a new one, and any key
    could sign in: one client with a key of its own signed every household out in a few seconds, again
    and again. Now a key keeps a few sessions (its own oldest go), and only keys with an account on the
    chain (or a full-read role) sign in at all."""
    victim, attacker = net.net.accounts[0], net.net.accounts[2]
    url = urlparse(node.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    code, cookie = _sign_in(conn, node, victim)
    assert code == 200 and cookie
    mine = f"/accounts/{victim.address_text}"
    assert request(node, "GET", mine, headers={"Cookie": cookie}, auth=None)[0] == 200
    code, _ = _sign_in(conn, node, AccountKey.generate())  # a key made up a moment ago owns nothing here
    assert code == 403, code
    for _ in range(10_000):
        code, _ = _sign_in(conn, node, attacker)
        assert code in (200, 429), code
    conn.close()
    code, data, _ = request(node, "GET", mine, headers={"Cookie": cookie}, auth=None)
    assert code == 200, ("the victim was signed out", code, data)


def test_a_genesis_authority_voted_out_no_longer_reads_every_household(node_net: Any) -> None:
    """ADR 012: "a key voted out of the authorities loses its role at once". A genesis authority voted out
    still read everything: its key fell back to the peer role (genesis authorities were members for good),
    signed or with a peer session from the handshake."""
    net: NodeNet = node_net(authorities=2, observers=0, accounts=1, spare_observers=0, authority_coin=10 * COIN,
                            block_interval_ms=500)
    node, (stays, gone) = net.authorities[0], net.net.authorities
    household = f"/accounts/{net.net.accounts[0].address_text}"
    assert request(node, "GET", household, auth=gone)[0] == 200  # an authority reads everything
    for voter in (stays, gone):  # a majority of two
        nonce = get(node, f"/accounts/{voter.address_text}")["next_nonce"]
        code, answer = post_tx(node, sign_tx(voter, net.chain_id, nonce, net.net.genesis.min_fee,
                                             AuthorityVote(REMOVE, gone.public)))
        assert code == 200, answer
    wait_until(lambda: get(node, "/authorities")["authorities"] == [stays.public.hex()], 90,
               message="the removed authority leaves the set at finality")
    for path in (household, "/blocks?from=1&format=msgpack"):
        code, data, _ = request(node, "GET", path, auth=gone)
        assert (code, data.get("error") if isinstance(data, dict) else data) == (403, "forbidden"), (path, code)
    peer = PeerClient(node, gone, net.chain_id)
    if peer.handshake()[0] == 200:  # a session from the handshake reads no more than the key
        code, data, _ = request(node, "GET", household, headers={"Authorization": f"Bearer {peer.token}"},
                                auth=None)
        assert code == 401 or (code, data["error"]) == (403, "forbidden"), (code, data)


def _signed_get(node: NodeProcess, key: AccountKey, path: str, conn: http.client.HTTPConnection | None = None,
                source: str = "127.0.0.1") -> int:
    """One signed GET on a kept-alive connection (or a new one from `source`, another loopback address)."""
    url = urlparse(node.url)
    own = conn is None
    conn = conn or http.client.HTTPConnection(url.hostname, url.port, timeout=30, source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Authorization": read_credential(node, key, "GET", path)})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        if own:
            conn.close()


def test_one_client_cannot_fill_the_nonce_memory_and_stop_everyone_s_signed_reads(
        net: NodeNet, node: NodeProcess) -> None:
    """The node remembers 200,000 nonces and answers 429 to every signed request while that is full, and
    any key may sign. One client on loopback with a key made a moment before (credentials dated 59 s
    ahead, so each is remembered two minutes) filled it in 81 s; then a household's own read and the
    authority's block-body fetch, which is how nodes sync, both got 429, for as long as it kept on.
    Now one client address holds at most MAX_REMEMBERED_PER_CLIENT nonces of owners (then 429 for it
    alone), and the full-read roles are never refused for a full memory."""
    url = urlparse(node.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    attacker = AccountKey.generate()
    refused_after = None
    for i in range(10_200):  # node/access.py MAX_REMEMBERED_PER_CLIENT is 10,000
        if _signed_get(node, attacker, "/status", conn) == 429:
            refused_after = i
            break
    conn.close()
    assert refused_after is not None, "one client had more nonces remembered than its share"
    household = net.net.accounts[0]
    assert _signed_get(node, household, f"/accounts/{household.address_text}", source="127.0.0.2") == 200
    assert _signed_get(node, node.key, "/blocks?from=1&format=msgpack") == 200  # same client, a full-read role
