"""Read roles on a real node (ADR 012): every route answers each role as the table says, and a read
credential is good for one request on one node, within a minute of the node's clock.

Roles asked: nobody (no credential), another account, the owner, the test auditor (genesis `auditors`)
and an authority (the node's own key).
"""
from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from framework import AUDITOR, NodeNet, NodeProcess, get, include_all, read_credential, request
from ledger.fees import required_fee
from ledger.keys import AccountKey
from ledger.testing import MeterState
from ledger.tx import COIN, PlaceOrder, PostOffer, AcceptOffer, Transfer, Tx, sign_tx

pytestmark = [pytest.mark.functional, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def net(module_node_net: Any) -> NodeNet:
    return module_node_net(authorities=1, observers=0, accounts=4, meters=1, meter_kind="both",
                           block_interval_ms=500)


@pytest.fixture(scope="module")
def node(net: NodeNet) -> NodeProcess:
    return net.authorities[0]



@pytest.fixture(scope="module")
def seeded(net: NodeNet, node: NodeProcess) -> dict[str, Any]:
    """A reading of account 0's meter, a transfer by account 1, an order by account 2, a trade 0 -> 3."""
    cid, (a0, a1, a2, a3) = net.chain_id, net.net.accounts
    now = int(time.time())
    reading = MeterState(net.net.meters[0], (now // 900 - 4) * 900).read(cid, 1500, 300)
    fee = net.net.genesis.min_fee

    def signed(key: AccountKey, body: Any) -> Tx:
        return sign_tx(key, cid, 0, required_fee(fee, body), body)  # with what the state it adds costs
    pay = signed(a1, Transfer(a2.address, COIN))
    order = signed(a2, PlaceOrder("buy", 10, 3))
    offer = signed(a0, PostOffer(1000, 5, now, now + 7200, "solar"))
    include_all(node, [reading, pay, order, offer])
    accept = signed(a3, AcceptOffer(offer.txid, 100))
    include_all(node, [accept])
    lot = get(node, f"/accounts/{a0.address_text}/lots")["lots"][0]["lot_id"]
    return {"reading": reading.txid.hex(), "pay": pay.txid.hex(), "trade": accept.txid.hex(), "lot": lot,
            "meter": net.net.meters[0].meter_id.hex()}


def _ask(node: NodeProcess, path: str, key: AccountKey | None) -> tuple[int, Any]:
    code, data, _ = request(node, "GET", path, auth=key)
    return code, data


def _roles(net: NodeNet, node: NodeProcess) -> dict[str, AccountKey | None]:
    return {"nobody": None, "a0": net.net.accounts[0], "a1": net.net.accounts[1], "a2": net.net.accounts[2],
            "a3": net.net.accounts[3], "auditor": AUDITOR, "authority": node.key}


# (path template, who may read it besides the auditor and the authority: "all" or account names)
TABLE = [
    ("/status", "all"), ("/genesis", "all"), ("/authorities", "all"), ("/evidence", "all"), ("/energy", "all"),
    ("/metrics", "all"), ("/openapi.json", "all"), ("/market/offers", "all"), ("/market/orderbook", "all"),
    ("/blocks", "all"), ("/blocks/1", "all"), ("/meters", "all"), ("/meters/{meter}", "all"), ("/ocmf-meters", "all"),
    ("/lots/{lot}", "all"),
    ("/accounts/{a0}", ["a0"]), ("/accounts/{a0}/lots", ["a0"]), ("/accounts/{a0}/history", ["a0"]),
    ("/accounts/{a1}", ["a1"]),
    ("/market/orders?owner={a2}", ["a2"]), ("/trades?party={a3}", ["a3"]), ("/trades?party={a0}", ["a0"]),
    ("/trades/{trade}", ["a0", "a3"]), ("/tx/{pay}", "all"), ("/tx/{reading}", "all"), ("/tx/{trade}", "all"),
    ("/market/orders", []), ("/trades", []), ("/blocks?format=msgpack", []), ("/blocks/1?format=msgpack", []),
    # the dashboard's views check the reader the same way
    ("/dashboard/api/accounts/{a0}/history", ["a0"]), ("/dashboard/api/accounts/{a0}/lots", ["a0"]),
    ("/dashboard/api/meters/{meter}/readings", ["a0"]), ("/dashboard/api/market", "all"),
    ("/dashboard/api/txs", "all"), ("/dashboard/session", "all"),
]


@pytest.mark.parametrize("template,readers", TABLE, ids=[t for t, _ in TABLE])
def test_every_route_answers_each_role_as_the_table_says(net: NodeNet, node: NodeProcess, seeded: dict[str, Any],
                                                         template: str, readers: Any) -> None:
    names = {f"a{i}": k.address_text for i, k in enumerate(net.net.accounts)}
    path = template.format(**names, **seeded)
    for role, key in _roles(net, node).items():
        code, data = _ask(node, path, key)
        allowed = readers == "all" or role in ("auditor", "authority") or role in readers
        if allowed:
            assert code == 200, f"{role} GET {path}: {code} {data!r}"
        elif key is None:
            assert (code, data["error"]) == (401, "credential_required"), f"{role} GET {path}: {code} {data!r}"
            assert "sign the request" in data["detail"]
        else:
            assert (code, data["error"]) == (403, "forbidden"), f"{role} GET {path}: {code} {data!r}"


def test_public_views_hide_readings_transactions_and_holders(net: NodeNet, node: NodeProcess,
                                                              seeded: dict[str, Any]) -> None:
    a0, a1 = net.net.accounts[0], net.net.accounts[1]
    for key in (None, a1):
        meter = get(node, f"/meters/{seeded['meter']}", auth=key)
        assert meter["owner"] == a0.address_text and meter["rated_w"] > 0
        assert not {"counter", "export_register", "import_register", "minted_wh", "consumed_wh"} & set(meter)
        assert all("counter" not in m for m in get(node, "/meters", auth=key)["meters"])
        lot = get(node, f"/lots/{seeded['lot']}", auth=key)
        assert lot["lot"]["meter_id"] == seeded["meter"] and lot["lot"]["source"] == "solar"  # provenance
        assert lot["movements"] == []
        blocks = get(node, "/blocks?from=1&limit=100", auth=key)["blocks"]
        assert all(b["txs"] == [] for b in blocks) and sum(b["tx_count"] for b in blocks) >= 5
    for key in (a0, AUDITOR, node.key):
        assert get(node, f"/meters/{seeded['meter']}", auth=key)["counter"] == 1
        assert get(node, f"/lots/{seeded['lot']}", auth=key)["movements"]
    blocks = get(node, "/blocks?from=1&limit=100", auth=AUDITOR)["blocks"]
    assert sum(len(b["txs"]) for b in blocks) >= 5


def _with(node: NodeProcess, path: str, header: str) -> tuple[int, Any]:
    code, data, _ = request(node, "GET", path, headers={"Authorization": header}, auth=None)
    return code, data


def test_a_read_credential_is_good_for_one_request_on_one_node_within_a_minute(net: NodeNet, node: NodeProcess,
                                                                               seeded: dict[str, Any]) -> None:
    a0 = net.net.accounts[0]
    path = f"/accounts/{a0.address_text}"
    header = read_credential(node, a0, "GET", path)
    assert _with(node, path, header)[0] == 200
    code, data = _with(node, path, header)
    assert (code, data["error"]) == (401, "credential_replayed"), data
    now = int(time.time() * 1000)
    for ts in (now - 120_000, now + 120_000):
        code, data = _with(node, path, read_credential(node, a0, "GET", path, ts_ms=ts))
        assert (code, data["error"]) == (401, "credential_expired"), data
    # signed for another path, another method, another node or another chain: the signature fails
    other = f"/accounts/{a0.address_text}/history"
    for header in (read_credential(node, a0, "GET", other), read_credential(node, a0, "POST", path)):
        code, data = _with(node, path, header)
        assert (code, data["error"]) == (401, "bad_credential"), data
    from node.access import credential
    for chain_id, node_id in ((net.chain_id, secrets.token_bytes(32)), ("other-chain", node.key.public)):
        header = credential(a0, chain_id, node_id, "GET", path, now)
        code, data = _with(node, path, header)
        assert (code, data["error"]) == (401, "bad_credential"), data
    # a broken credential is refused on a public route too, so a client bug shows at once
    for header in ("KWH-Sig key=00", "KWH-Sig " + "x" * 40, read_credential(node, a0, "GET", "/energy")[:-4] + "0000"):
        code, data = _with(node, "/energy", header)
        assert code == 401 and data["error"] == "bad_credential", data


# the signer and the accounts it names; once included, every account whose history holds it (a0: its offer)
@pytest.mark.parametrize("name,readers", [("pay", ["a1", "a2"]), ("reading", ["a0"]), ("trade", ["a3", "a0"])])
def test_anyone_follows_a_txid_but_only_its_signer_reads_the_body(net: NodeNet, node: NodeProcess,
                                                                  seeded: dict[str, Any], name: str,
                                                                  readers: list[str]) -> None:
    for role, key in _roles(net, node).items():
        code, data = _ask(node, f"/tx/{seeded[name]}", key)
        assert code == 200 and data["status"] == "included" and data["height"] >= 1, (role, data)
        sees = role in readers or role in ("auditor", "authority")
        assert ("tx" in data) == sees, (role, data)


def test_dashboard_views_show_the_public_what_the_api_does(net: NodeNet, node: NodeProcess,
                                                           seeded: dict[str, Any]) -> None:
    """Recent transactions: where they are for anyone, what they say for full readers; the market's
    recent trades: counts for anyone, a trade itself for its parties."""
    a0, a1 = net.net.accounts[0], net.net.accounts[1]
    for key in (None, a1):
        rows = get(node, "/dashboard/api/txs?limit=50", auth=key)["txs"]
        assert any(r["kind"] != "vote" for r in rows)  # votes are consensus data, public like headers
        assert all(set(r) <= {"txid", "kind", "height", "index", "final"} for r in rows if r["kind"] != "vote"), rows
        market = get(node, "/dashboard/api/market", auth=key)
        assert market["trades"] == [] and market["recent_trade_counts"], market
    assert any("sender" in r for r in get(node, "/dashboard/api/txs?limit=50", auth=AUDITOR)["txs"])
    assert [t["trade_id"] for t in get(node, "/dashboard/api/market", auth=a0)["trades"]] == [seeded["trade"]]


def _session(node: NodeProcess, method: str, cookie: str | None = None, key: AccountKey | None = None,
             header: str | None = None, path: str = "/dashboard/session") -> tuple[int, Any, dict[str, str]]:
    headers = {"Cookie": cookie} if cookie else {}
    if header is not None:
        headers["Authorization"] = header
    elif key is not None:
        headers["Authorization"] = read_credential(node, key, method, path)
    return request(node, method, path, headers=headers, auth=None)


def test_a_dashboard_sign_in_trades_one_credential_for_an_httponly_session(net: NodeNet, node: NodeProcess,
                                                                           seeded: dict[str, Any]) -> None:
    a0, a1 = net.net.accounts[0], net.net.accounts[1]
    code, data, _ = _session(node, "POST")
    assert (code, data["error"]) == (401, "credential_required"), data
    header = read_credential(node, a0, "POST", "/dashboard/session")
    code, data, headers = _session(node, "POST", header=header)
    assert code == 200 and data["address"] == a0.address_text and data["role"] == "account", data
    set_cookie = headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie, set_cookie
    cookie = set_cookie.split(";")[0]
    assert _session(node, "POST", header=header)[1]["error"] == "credential_replayed"
    assert _session(node, "GET", cookie)[1]["address"] == a0.address_text
    mine, theirs = f"/accounts/{a0.address_text}", f"/accounts/{a1.address_text}"
    assert _session(node, "GET", cookie, path=mine)[0] == 200
    assert _session(node, "GET", cookie, path=f"/dashboard/api/meters/{seeded['meter']}/readings")[0] == 200
    code, data, _ = _session(node, "GET", cookie, path=theirs)
    assert (code, data["error"]) == (403, "forbidden"), data
    assert _session(node, "GET", "kwh_read=forged", path=mine)[0] == 401  # an unknown session is no one
    assert _session(node, "DELETE", cookie)[0] == 200
    code, data, _ = _session(node, "GET", cookie, path=mine)
    assert (code, data["error"]) == (401, "credential_required"), "signed out: the session is gone"
    # an authority's session reads everything
    code, data, headers = _session(node, "POST", key=node.key)
    assert data["role"] == "authority" and data["full"] is True
    assert _session(node, "GET", headers["Set-Cookie"].split(";")[0], path=theirs)[0] == 200
