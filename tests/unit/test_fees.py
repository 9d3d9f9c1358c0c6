"""Whoever makes the state bigger pays for it: fees by the entries a kind adds, caps on open offers/orders."""
from __future__ import annotations

from ledger import errors as E
from ledger.fees import MAX_OPEN_OFFERS, MAX_OPEN_ORDERS, required_fee
from ledger.testing import GENESIS_MS, extend, gap_until, make_net, make_tx, rejection
from ledger.tx import BUY, AcceptOffer, CancelOffer, CancelOrder, PlaceOrder, PostOffer, Transfer, TransferWh

GENESIS_S = GENESIS_MS // 1000
MIN_FEE = 1000


def test_fee_schedule_by_kind() -> None:
    assert required_fee(MIN_FEE, Transfer(bytes(20), 1)) == MIN_FEE
    assert required_fee(MIN_FEE, TransferWh(bytes(20), 1)) == MIN_FEE
    assert required_fee(MIN_FEE, CancelOffer(bytes(32))) == MIN_FEE
    for body in (PostOffer(1, 1, 0, 1, ""), AcceptOffer(bytes(32), 1), PlaceOrder(BUY, 1, 1)):
        assert required_fee(MIN_FEE, body) == 3 * MIN_FEE


def test_state_adding_kinds_below_their_fee_are_refused() -> None:
    net = make_net(accounts=2, min_fee=MIN_FEE)
    chain = net.chain()
    seller = net.accounts[0]
    offer = PostOffer(10, 5, GENESIS_S, GENESIS_S + 3600, "")
    low = rejection(chain, net, make_tx(chain, seller, offer, fee=3 * MIN_FEE - 1))
    assert low is not None and low.reason == E.FEE_TOO_LOW and "3000" in low.detail
    assert rejection(chain, net, make_tx(chain, seller, PlaceOrder(BUY, 1, 1), fee=2 * MIN_FEE)).reason \
        == E.FEE_TOO_LOW
    extend(chain, net, [make_tx(chain, seller, offer)])  # make_tx pays the kind's fee
    assert chain.account(seller.address).coin == 1_000 * 10**9 - 3 * MIN_FEE


def test_open_offers_are_capped_per_seller_and_freed_when_they_close() -> None:
    net = make_net(accounts=2)
    chain = net.chain()
    seller = net.accounts[0]
    end = GENESIS_S + 3600
    posts = [make_tx(chain, seller, PostOffer(10, 5, GENESIS_S, end - (i % 2), ""), nonce=i)
             for i in range(MAX_OPEN_OFFERS)]
    extend(chain, net, posts)
    assert chain.account(seller.address).open_offers == MAX_OPEN_OFFERS
    one_more = make_tx(chain, seller, PostOffer(10, 5, GENESIS_S, end + 10, ""))
    assert rejection(chain, net, one_more).reason == E.TOO_MANY_OPEN
    extend(chain, net, [make_tx(chain, seller, CancelOffer(posts[0].txid))])
    extend(chain, net, [make_tx(chain, net.accounts[1], AcceptOffer(posts[1].txid, 10))])  # filled: closed
    assert chain.account(seller.address).open_offers == MAX_OPEN_OFFERS - 2
    extend(chain, net, [make_tx(chain, seller, PostOffer(10, 5, GENESIS_S, end + 10, ""))])
    extend(chain, net, gap_ms=gap_until(chain, net, (end - 1) * 1000))  # the ones ending at end-1 expire
    assert chain.account(seller.address).open_offers == MAX_OPEN_OFFERS // 2
    assert chain.offer(posts[3].txid).status == "expired"


def test_open_orders_are_capped_per_owner_and_freed_when_they_leave_the_book() -> None:
    net = make_net(accounts=2)
    chain = net.chain()
    buyer = net.accounts[0]
    orders = [make_tx(chain, buyer, PlaceOrder(BUY, 1, 1 + i), nonce=i) for i in range(MAX_OPEN_ORDERS)]
    extend(chain, net, orders)
    assert chain.account(buyer.address).open_orders == MAX_OPEN_ORDERS
    assert rejection(chain, net, make_tx(chain, buyer, PlaceOrder(BUY, 1, 1))).reason == E.TOO_MANY_OPEN
    extend(chain, net, [make_tx(chain, buyer, CancelOrder(orders[0].txid))])
    assert chain.account(buyer.address).open_orders == MAX_OPEN_ORDERS - 1
    extend(chain, net, [make_tx(chain, buyer, PlaceOrder(BUY, 1, 1))])
    assert len(chain.book_side(BUY)) == MAX_OPEN_ORDERS
