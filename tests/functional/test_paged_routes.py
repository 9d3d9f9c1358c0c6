"""Every listing route of a real node, walked page by page through its `next` cursors: the pages add up
to the whole set, with no duplicates and no gaps, each page within its limit; a bad cursor is a 400; the
wallet's client follows the cursors by itself."""
from __future__ import annotations

import time
from typing import Any

import pytest

from framework import NodeNet, NodeProcess, get, include_all, request
from ledger.fees import required_fee
from ledger.testing import MeterState
from ledger.tx import BUY, AcceptOffer, PlaceOrder, PostOffer, sign_tx
from wallet.client import NodeClient

pytestmark = [pytest.mark.functional, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def net(module_node_net: Any) -> NodeNet:
    return module_node_net(authorities=1, observers=0, accounts=4, meters=1, meter_kind="both",
                           block_interval_ms=500)


@pytest.fixture(scope="module")
def node(net: NodeNet) -> NodeProcess:
    node = net.authorities[0]
    cid, (a0, a1, a2, _a3) = net.chain_id, net.net.accounts
    now = int(time.time())
    meter = MeterState(net.net.meters[0], (now // 900 - 12) * 900)
    readings = [meter.read(cid, 100 + i, 5) for i in range(9)]
    offers = [sign_tx(a0, cid, i, required_fee(1000, PostOffer(50, 5, now, now + 7200, "")),
                      PostOffer(50, 5, now, now + 7200, "")) for i in range(7)]
    orders = [sign_tx(a2, cid, i, 3000, PlaceOrder(BUY, 10, 1 + i % 3)) for i in range(8)]
    include_all(node, readings + offers + orders)
    include_all(node, [sign_tx(a1, cid, i, 3000, AcceptOffer(o.txid, 10)) for i, o in enumerate(offers[:5])])
    return node



def _walk(node: NodeProcess, path: str, field: str, limit: int) -> list[Any]:
    sep = "&" if "?" in path else "?"
    items: list[Any] = []
    cursor = None
    for _ in range(1000):
        page = get(node, f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert len(page[field]) <= limit and "next" in page
        items.extend(page[field])
        if page["next"] is None:
            return items
        assert page["next"] != cursor
        cursor = page["next"]
    raise AssertionError(f"{path}: the cursor never ended")


def test_every_paged_route_walks_the_whole_set(net: NodeNet, node: NodeProcess) -> None:
    a0, a1, a2 = (k.address_text for k in net.net.accounts[:3])
    owner = get(node, f"/meters/{net.net.meters[0].meter_id.hex()}")["owner"]
    lot_id = get(node, f"/accounts/{owner}/lots")["lots"][0]["lot_id"]
    routes = [(f"/accounts/{owner}/lots", "lots", "lot_id"), (f"/accounts/{a0}/history", "history", "txid"),
              (f"/accounts/{a1}/history", "history", "txid"), ("/meters", "meters", "meter_id"),
              (f"/lots/{lot_id}", "movements", "txid"), ("/market/offers", "offers", "offer_id"),
              (f"/market/offers?seller={a0}", "offers", "offer_id"),
              ("/market/offers?status=open", "offers", "offer_id"), ("/market/orders", "orders", "order_id"),
              (f"/market/orders?owner={a2}&status=open", "orders", "order_id"), ("/trades", "trades", "trade_id"),
              (f"/trades?party={a0}", "trades", "trade_id"), (f"/trades?party={a1}", "trades", "trade_id"),
              ("/blocks?from=1", "blocks", "hash")]
    for path, field, key in routes:
        whole = _walk(node, path, field, 1000)
        assert whole, path
        for limit in (1, 2, 3):
            walked = _walk(node, path, field, limit)
            if field == "blocks":  # new blocks arrive while walking: compare the common part
                walked = walked[:len(whole)]
            ids = [item[key] for item in walked]
            assert ids == [item[key] for item in whole], (path, limit)
            assert len(set(ids)) == len(ids) or field in ("history", "movements"), (path, limit)
    assert len(_walk(node, f"/market/offers?seller={a0}", "offers", 2)) == 7
    assert len(_walk(node, f"/trades?party={a1}", "trades", 2)) == 5
    assert len(_walk(node, f"/market/orders?owner={a2}", "orders", 2)) == 8


def test_order_book_depth_and_bad_cursors(node: NodeProcess) -> None:
    book = get(node, "/market/orderbook?limit=2&depth=2")
    assert len(book["buys"]) == 2 and [lv["price_per_wh"] for lv in book["levels"]["buys"]] == [3, 2]
    assert [lv["orders"] for lv in book["levels"]["buys"]] == [2, 3] and book["levels"]["partial"] is False
    for path in ("/market/offers?cursor=zz", "/market/offers?cursor=", "/market/offers?cursor=abc",
                 "/trades?cursor=" + "00" * 65, "/meters?limit=0"):
        code, answer, _headers = request(node, "GET", path)
        assert code == 400 and answer["error"] == "bad_request", (path, answer)


def test_wallet_client_follows_the_cursors(net: NodeNet, node: NodeProcess) -> None:
    a0 = net.net.accounts[0].address_text
    client = NodeClient(node.url, reader=lambda: net.net.accounts[0])  # its history is personal: signed reads
    every = client.history(a0, None)
    assert [h["txid"] for h in every] == [h["txid"] for h in _walk(node, f"/accounts/{a0}/history", "history", 1000)]
    assert [h["txid"] for h in client.history(a0, 3)] == [h["txid"] for h in every[:3]]
    assert len(client.offers(None, a0)) == 7
