"""The node's HTTP API against its own OpenAPI document, fuzzed by schemathesis on a real node process.

Schemathesis reads GET /openapi.json from the running node and sends, for every operation, requests that
fit the schema (positive) and requests that break it (negative). Every answer must be no server error,
have a documented status and content type, and match its response schema; every schema-breaking request
must be refused with a 4xx. Before fuzzing the node gets real state (a reading, an offer, a trade, an
order, a transfer) so list routes answer with content; afterwards the node must still run, produce
blocks on the same chain, and hold exactly the state it had: bad input loses nothing.
"""
from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

from framework import (ADMIN_TOKEN, AUDITOR, NodeNet, NodeProcess, PeerClient, get, height, include_all,
                       read_credential, request, wait_until)
from ledger.testing import MeterState
from ledger.tx import COIN, AcceptOffer, PlaceOrder, PostOffer, Transfer, sign_tx

pytestmark = [pytest.mark.functional, pytest.mark.timeout(300)]

# The node speaks msgpack to peers and tools: send generated binary bodies as they are.
schemathesis.serializer.alias("application/msgpack", "application/octet-stream")

# per operation and mode: about 1500 requests in all, some 15 s; raise it for a longer hunt
EXAMPLES = int(os.environ.get("KWH_SCHEMA_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def net(module_node_net: Any) -> NodeNet:
    return module_node_net(authorities=1, observers=0, accounts=4, meters=1, meter_kind="both",
                           spare_observers=1, block_interval_ms=500)


@pytest.fixture(scope="module")
def node(net: NodeNet) -> NodeProcess:
    return net.authorities[0]


@pytest.fixture(scope="module")
def seeded(net: NodeNet, node: NodeProcess) -> dict[str, str]:
    """One object of every kind on chain; returns their ids for the explicit cases."""
    cid, (a0, a1, a2, a3) = net.chain_id, net.net.accounts
    now = int(time.time())
    reading = MeterState(net.net.meters[0], (now // 900 - 4) * 900).read(cid, 1500, 300)
    offer = sign_tx(a0, cid, 0, 3000, PostOffer(1000, 5, now, now + 7200, "solar"))
    order = sign_tx(a2, cid, 0, 3000, PlaceOrder("buy", 10, 3))
    pay = sign_tx(a3, cid, 0, 1000, Transfer(a0.address, COIN))
    include_all(node, [reading, offer, order, pay])
    accept = sign_tx(a1, cid, 0, 3000, AcceptOffer(offer.txid, 100))  # needs the offer on chain
    include_all(node, [accept])
    lot = get(node, f"/accounts/{a0.address_text}/lots")["lots"][0]["lot_id"]
    return {"txid": pay.txid.hex(), "trade_id": accept.txid.hex(), "offer_id": offer.txid.hex(), "meter_id": net.net.meters[0].meter_id.hex(),
            "lot_id": lot, "addr": a0.address_text, "buyer": a2.address_text,
            "block": get(node, f"/tx/{pay.txid.hex()}")["block"]}



def _unfinalized(listing: dict[str, Any], key: str) -> dict[str, Any]:
    """A listing without its `final` flags, which turn true by themselves as blocks are finalized."""
    return {key: [{k: v for k, v in item.items() if k != "final"} for item in listing[key]]}


def _snapshot(net: NodeNet, node: NodeProcess) -> dict[str, Any]:
    """Everything a client could lose: balances of every key in genesis, meters, market, evidence."""
    keys = net.net.accounts + net.net.authorities
    return {"accounts": {k.address_text: get(node, f"/accounts/{k.address_text}") for k in keys},
            "lots": {k.address_text: get(node, f"/accounts/{k.address_text}/lots") for k in keys},
            "meters": get(node, "/meters"), "offers": get(node, "/market/offers"),
            "orders": _unfinalized(get(node, "/market/orders"), "orders"),
            "trades": _unfinalized(get(node, "/trades"), "trades"),
            "book": get(node, "/market/orderbook"), "evidence": get(node, "/evidence"),
            "mempool": get(node, "/status")["mempool"]}


def _has_inputs(op: Any) -> bool:
    """Negative cases need something to break: a parameter or a body."""
    return any(True for _ in op.iter_parameters()) or len(op.body) > 0


def _fuzz(op: Any, mode: GenerationMode, headers: dict[str, str] | None) -> str | None:
    """Run schemathesis on one operation; the failure report, or None."""
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(op.as_strategy(generation_mode=mode, headers=headers))
    def run(case: Any) -> None:
        case.call_and_validate(checks=checks, timeout=10)

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - schemathesis reports an ExceptionGroup
        return f"{op.label} [{mode.value}{' +auth' if headers else ''}]: {exc}"
    return None


def test_schemathesis_finds_nothing_and_the_node_loses_nothing(net: NodeNet, node: NodeProcess,
                                                               seeded: dict[str, str]) -> None:
    """Every operation, positive and negative, without credentials and with them (admin token; a peer
    session for the peer routes, whose first garbage gets it banned: later cases see the 403)."""
    before = _snapshot(net, node)
    chain_before = {h: get(node, f"/blocks/{h}")["hash"] for h in range(1, height(node) + 1)}
    schema = schemathesis.openapi.from_url(node.url + "/openapi.json")
    peer = PeerClient(node, net.spare_keys[0], net.chain_id)
    assert peer.handshake()[0] == 200 and peer.token
    session = {"Authorization": f"Bearer {peer.token}"}
    failures, runs = [], 0
    for result in schema.get_all_operations():
        op = result.ok()
        variants: list[dict[str, str] | None] = [None]
        if op.path.startswith("/admin/"):
            variants.append(ADMIN)
        if op.path in ("/peer/block", "/peer/txs"):
            variants.append(session)
        for headers in variants:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                if mode is GenerationMode.NEGATIVE and (not _has_inputs(op) or headers is session):
                    continue  # nothing to break (a binary body breaks no schema once the header is fixed)
                runs += 1
                failure = _fuzz(op, mode, headers)
                if failure:
                    failures.append(failure)
    assert runs >= 45, f"only {runs} operation runs: did the schema lose operations?"
    assert not failures, "\n\n".join(failures)

    assert node.alive, node.log_text()[-3000:]
    assert "event=request_failed" not in node.log_text(), "a request ended in a 500"
    reset = request(node, "POST", "/admin/grid-signal", {"surplus_w": 0}, ADMIN)
    assert reset[0] == 200 and reset[1]["surplus_w"] == 0
    target = height(node) + 2
    wait_until(lambda: height(node) >= target, 30, message="block production goes on after the fuzzing")
    assert {h: get(node, f"/blocks/{h}")["hash"] for h in chain_before} == chain_before  # no block lost
    assert _snapshot(net, node) == before  # no coin, Wh, meter, offer, order or trade changed


def _explicit_cases(seeded: dict[str, str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path, Case kwargs) that hit real objects: the response schemas of full answers."""
    s = seeded
    yield "GET", "/blocks/{ref}", {"path_parameters": {"ref": "1"}}
    yield "GET", "/blocks/{ref}", {"path_parameters": {"ref": s["block"]}}
    yield "GET", "/blocks/{ref}", {"path_parameters": {"ref": "1"}, "query": {"format": "msgpack"}}
    yield "GET", "/blocks", {"query": {"from": 1, "limit": 5}}
    yield "GET", "/tx/{txid}", {"path_parameters": {"txid": s["txid"]}}
    yield "GET", "/accounts/{addr}", {"path_parameters": {"addr": s["addr"]}}
    yield "GET", "/accounts/{addr}/lots", {"path_parameters": {"addr": s["addr"]}}
    yield "GET", "/accounts/{addr}/history", {"path_parameters": {"addr": s["addr"]}, "query": {"limit": 5}}
    yield "GET", "/meters/{meter_id}", {"path_parameters": {"meter_id": s["meter_id"]}}
    yield "GET", "/lots/{lot_id}", {"path_parameters": {"lot_id": s["lot_id"]}}
    yield "GET", "/trades/{trade_id}", {"path_parameters": {"trade_id": s["trade_id"]}}
    yield "GET", "/market/offers/{offer_id}", {"path_parameters": {"offer_id": s["offer_id"]}}
    yield "GET", "/trades", {"query": {"party": s["addr"], "status": "open"}}
    yield "GET", "/market/offers", {"query": {"seller": s["addr"], "status": "open"}}
    yield "GET", "/market/orders", {"query": {"owner": s["buyer"], "status": "open"}}
    for path in ("/status", "/genesis", "/meters", "/market/orderbook", "/energy", "/evidence", "/metrics",
                 "/openapi.json"):
        yield "GET", path, {}


def test_answers_about_real_objects_match_their_schemas(node: NodeProcess, seeded: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_url(node.url + "/openapi.json")
    for method, path, kwargs in _explicit_cases(seeded):
        # as the auditor (ADR 012), signed for the path exactly as it is sent
        sent = schema[path][method].Case(**kwargs).formatted_path
        if kwargs.get("query"):
            sent += "?" + urllib.parse.urlencode(kwargs["query"])
        headers = {"Authorization": read_credential(node, AUDITOR, method, sent)}
        case = schema[path][method].Case(**kwargs, headers=headers)
        response = case.call_and_validate(checks=CHECKS, timeout=10)
        assert response.status_code == 200, (path, kwargs, response.text[:300])
    lists = {p: get(node, p) for p in ("/market/offers", "/market/orders", "/trades", "/meters")}
    assert all(next(iter(v.values())) for v in lists.values()), f"seeded lists are empty: {lists}"


def test_admin_route_needs_the_token(node: NodeProcess) -> None:
    op = schemathesis.openapi.from_url(node.url + "/openapi.json")["/admin/grid-signal"]["POST"]
    for headers in ({}, {"Authorization": "Bearer wrong-token-123"}, {"Authorization": ADMIN_TOKEN},
                    {"Authorization": "Basic " + ADMIN_TOKEN}):
        response = op.Case(body={"surplus_w": 100}, headers=headers).call_and_validate(checks=CHECKS, timeout=10)
        assert response.status_code == 403 and response.json()["error"] == "unauthorized", (headers, response.text)
    ok = op.Case(body={"surplus_w": 100}, headers=ADMIN).call_and_validate(checks=CHECKS, timeout=10)
    assert ok.status_code == 200 and ok.json()["surplus_w"] == 100
    back = op.Case(body={"surplus_w": 0}, headers=ADMIN).call_and_validate(checks=CHECKS, timeout=10)
    assert back.status_code == 200 and back.json()["surplus_w"] == 0


def _raw(node: NodeProcess, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None, raw_headers: list[tuple[bytes, bytes]] = ()) -> tuple[int, Any]:
    """A request with bytes no polite client would send (non-UTF-8 header values, odd paths)."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        for name, value in raw_headers:
            conn.putheader(name.decode(), value)  # bytes values go out as they are
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if response.getheader("Content-Type", "").startswith(
            "application/json") else data
    finally:
        conn.close()


@pytest.mark.parametrize("method,path,body,headers,raw_headers", [
    ("GET", "/blocks/%C2%B2", b"", {}, []),  # '²': str.isdigit() says yes, int() says no
    ("GET", "/blocks/%D9%A1", b"", {}, []),  # Arabic-Indic one: only ASCII digits are heights
    ("POST", "/tx", b'{"tx": ' + b"[" * 5000, {"Content-Type": "application/json"}, []),
    ("POST", "/peer/hello", b"[" * 10000, {"Content-Type": "application/json"}, []),
    ("POST", "/peer/hello", b'{"chain_id": "kwh-test", "key": "' + b"11" * 32 + b'", "url": "http://[::1", '
     b'"challenge": "' + b"22" * 32 + b'"}', {"Content-Type": "application/json"}, []),
    ("POST", "/admin/grid-signal", b'{"surplus_w": 1}', {"Content-Type": "application/json"},
     [(b"Authorization", b"Bearer \xff\xfe-not-utf8")]),
    ("GET", "/market/offers?seller=", b"", {}, []),
    ("GET", "/market/offers?status=gone", b"", {}, []),
    ("GET", "/blocks?limit=", b"", {}, []),
    ("GET", "/blocks?from=%C2%B2", b"", {}, []),
], ids=["superscript-height", "arabic-digit-height", "deep-json-tx", "deep-json-hello", "unclosed-ipv6-url",
        "non-utf8-token", "empty-address-filter", "unknown-status", "empty-limit", "superscript-from"])
def test_inputs_that_crashed_or_slipped_through_are_4xx(node: NodeProcess, method: str, path: str, body: bytes,
                                                        headers: dict[str, str],
                                                        raw_headers: list[tuple[bytes, bytes]]) -> None:
    """Found by this fuzzing: each gave a 500 (or a silent 200 with a typo'd filter) before the fix."""
    code, data = _raw(node, method, path, body, headers, raw_headers)
    assert 400 <= code < 500 and isinstance(data, dict) and set(data) == {"error", "detail"}, (code, data)
    assert node.alive
