"""Paged queries (ledger/queries.py): a cursor walk visits every item once, in order, in bounded pages."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from ledger.chain import Chain
from ledger.queries import MAX_SCAN, Page, book_levels, history, lot_movements, meters, offers, orders, trades, walk
from ledger.store import KV, LevelKV
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, Net, extend, make_net, make_tx
from ledger.tx import BUY, SELL, AcceptOffer, CancelOrder, PlaceOrder, PostOffer, TransferWh

GENESIS_S = GENESIS_MS // 1000


def pages(fetch: Callable[[bytes | None], Page[Any]]) -> Iterator[Page[Any]]:
    cursor: bytes | None = None
    for _ in range(10_000):  # bounded: a cursor that never ends fails the test instead of hanging it
        page = fetch(cursor)
        yield page
        if page.next is None:
            return
        assert page.next != cursor, "a cursor must move"
        cursor = page.next
    raise AssertionError("the walk did not end")


def walked(fetch: Callable[[bytes | None], Page[Any]], limit: int) -> list[Any]:
    out: list[Any] = []
    for page in pages(fetch):
        assert len(page.items) <= limit
        out.extend(page.items)
    return out


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> tuple[Net, Chain]:
    """On LevelDB: 40 lots of two owners, 30 offers, 12 trades, 45 orders (some cancelled)."""
    net = make_net(accounts=4, meters=2, rated_w=100_000, meter_history_s=30 * 86400)
    chain = Chain(LevelKV(tmp_path_factory.mktemp("paging") / "db"), net.genesis)
    a, b, c, d = net.accounts
    ms = [MeterState(m, GENESIS_S - 200 * 900) for m in net.meters]
    extend(chain, net, [m.read(CHAIN_ID, 100 + i) for i in range(20) for m in ms])
    end = GENESIS_S + 7200
    posts = [make_tx(chain, a, PostOffer(50, 2, GENESIS_S, end, ""), nonce=i) for i in range(30)]
    extend(chain, net, posts)
    extend(chain, net, [make_tx(chain, c, AcceptOffer(p.txid, 5), nonce=i) for i, p in enumerate(posts[:12])])
    buys = [make_tx(chain, d, PlaceOrder(BUY, 3, 1 + i % 7), nonce=i) for i in range(40)]
    extend(chain, net, buys)
    sells = [make_tx(chain, b, PlaceOrder(SELL, 2, 10 + i), nonce=i) for i in range(5)]
    extend(chain, net, sells)
    extend(chain, net, [make_tx(chain, d, CancelOrder(o.txid), nonce=40 + i) for i, o in enumerate(buys[:6])])
    extend(chain, net, [make_tx(chain, a, TransferWh(c.address, 1), nonce=30 + i) for i in range(7)])
    yield net, chain
    chain.kv.close()


@pytest.mark.parametrize("limit", [1, 3, 7, 1000])
def test_every_listing_walks_whole_sets_without_duplicates_or_gaps(market: tuple[Net, Chain], limit: int) -> None:
    net, chain = market
    kv = chain.kv
    a, b, c, d = (k.address for k in net.accounts)
    # lots: oldest first, every one of the holder's lots
    for addr in (a, b, c):
        def lot_page(cur: bytes | None, addr: bytes = addr) -> Page[Any]:
            held = chain.holdings(addr, after=cur or b"", limit=limit + 1)
            return Page(held[:limit], held[limit - 1][0] if len(held) > limit else None)
        assert walked(lot_page, limit) == chain.holdings(addr)
    # history: newest first, as the unpaged query gives it
    for addr in (a, c, d):
        assert walked(lambda cur, addr=addr: history(kv, addr, cur, limit), limit) == chain.history(addr, 10**6)
    lot_id = chain.holdings(c)[0][0]
    assert walked(lambda cur: lot_movements(kv, lot_id, cur, limit), limit) == chain.lot_movements(lot_id)
    assert [i for i, _m in walked(lambda cur: meters(kv, cur, limit), limit)] == [i for i, _m in chain.meters()]
    # offers, trades, orders: all by id, or one account's newest first, with status filters
    assert [i for i, _o in walked(lambda cur: offers(kv, cur, limit), limit)] == [i for i, _o in chain.offers()]
    mine = [i for i, _o in walked(lambda cur: offers(kv, cur, limit, seller=a), limit)]
    assert sorted(mine) == sorted(i for i, o in chain.offers() if o.seller == a) and len(mine) == 30
    open_ones = walked(lambda cur: offers(kv, cur, limit, status="open", seller=a), limit)
    assert {i for i, _o in open_ones} == {i for i, o in chain.offers() if o.status == "open"}
    assert {i for i, _t in walked(lambda cur: trades(kv, cur, limit, party=a), limit)} == \
        {i for i, _t in chain.trades()}
    assert {i for i, _t in walked(lambda cur: trades(kv, cur, limit, party=c), limit)} == \
        {i for i, _t in chain.trades()}
    assert walked(lambda cur: trades(kv, cur, limit, party=d), limit) == []
    every = [i for i, _o in walked(lambda cur: orders(kv, cur, limit), limit)]
    assert every == [i for i, _o in chain.orders()]
    cancelled = walked(lambda cur: orders(kv, cur, limit, status="cancelled", owner=d), limit)
    assert len(cancelled) == 6 and all(o.status == "cancelled" and o.owner == d for _i, o in cancelled)


def test_newest_first_pages_are_stable_while_blocks_are_added(market: tuple[Net, Chain]) -> None:
    """A walk started before new entries arrive neither repeats nor skips: they land ahead of it."""
    net, chain = market
    kv = chain.kv
    a = net.accounts[0].address
    before = chain.history(a, 10**6)
    first = history(kv, a, None, 5)
    assert first.next is not None
    extend(chain, net, [make_tx(chain, net.accounts[0], TransferWh(net.accounts[3].address, 1))])
    rest = walked(lambda cur: history(kv, a, cur or first.next, 5), 5)
    assert first.items + rest == before
    assert len(chain.history(a, 10**6)) == len(before) + 1


def test_a_filtered_page_reads_at_most_its_scan_bound(tmp_path: Path) -> None:
    kv: KV = LevelKV(tmp_path / "db")
    kv.write({b"q" + i.to_bytes(4, "big"): b"x" for i in range(25)})
    reads: list[int] = []

    def none_match(suffix: bytes, _value: bytes) -> None:
        reads.append(int.from_bytes(suffix, "big"))
        return None
    page = walk(kv, b"q", None, 10, none_match, scan=10)
    assert page.items == [] and page.next == (9).to_bytes(4, "big") and len(reads) == 10
    got = [p for p in pages(lambda cur: walk(kv, b"q", cur, 10, none_match, scan=10))]
    assert len(got) == 3 and sorted(reads) == sorted(list(range(10)) + list(range(25)))
    assert MAX_SCAN >= 1000
    kv.close()


def test_book_levels_sum_orders_per_price_best_first(market: tuple[Net, Chain]) -> None:
    _net, chain = market
    levels, cut = book_levels(chain.kv, "buy", 3)
    open_buys = [o for _i, o in chain.orders() if o.side == BUY and o.status == "open"]
    prices = sorted({o.price_per_wh for o in open_buys}, reverse=True)[:3]
    assert not cut and [lv["price_per_wh"] for lv in levels] == prices
    for lv in levels:
        at = [o for o in open_buys if o.price_per_wh == lv["price_per_wh"]]
        assert (lv["wh"], lv["orders"]) == (sum(o.remaining for o in at), len(at))
    partial, cut = book_levels(chain.kv, "buy", 100, scan=4)
    assert cut and sum(lv["orders"] for lv in partial) == 4
