"""Limit order book: price-time priority, partial fills, price improvement, cancels, exact locks."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from ledger import errors as E
from ledger.chain import Chain
from ledger.keys import AccountKey
from ledger.state import lot_id_of
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, Net, extend, make_net, make_tx, rejection, try_extend
from ledger.tx import BUY, COIN, SELL, CancelOrder, PlaceOrder, Redeem, SignedTx, TransferWh

GENESIS_S = GENESIS_MS // 1000
START = 1_000 * COIN
FEE = 1000
ORDER_FEE = 3 * FEE  # PlaceOrder adds the order and its book entry and pays for both (ledger/fees.py)


@dataclass
class Book:
    net: Net
    chain: Chain
    lots: dict[bytes, list[bytes]]  # seller address -> its three 500 Wh lots, oldest first

    @property
    def s1(self) -> AccountKey:
        return self.net.accounts[0]

    @property
    def s2(self) -> AccountKey:
        return self.net.accounts[1]

    @property
    def b1(self) -> AccountKey:
        return self.net.accounts[2]

    @property
    def b2(self) -> AccountKey:
        return self.net.accounts[3]

    def order(self, key: AccountKey, side: str, wh: int, price: int) -> SignedTx:
        return make_tx(self.chain, key, PlaceOrder(side, wh, price))

    def place(self, key: AccountKey, side: str, wh: int, price: int) -> bytes:
        tx = self.order(key, side, wh, price)
        extend(self.chain, self.net, [tx])
        check_locks(self.chain)
        return tx.txid

    def cancel(self, key: AccountKey, order_id: bytes) -> None:
        extend(self.chain, self.net, [make_tx(self.chain, key, CancelOrder(order_id))])
        check_locks(self.chain)

    def reason(self, tx: SignedTx) -> str | None:
        r = rejection(self.chain, self.net, tx)
        return r.reason if r else None

    def book_ids(self) -> tuple[list[bytes], list[bytes]]:
        buys, sells = self.chain.order_book()
        return [i for i, _o in buys], [i for i, _o in sells]


def check_locks(chain: Chain) -> None:
    """Every buy locks exactly remaining * price, every sell exactly its remaining Wh in lots, and the
    accounts' locked totals are the sums of what their orders lock."""
    coin_locks: dict[bytes, int] = {}
    wh_locks: dict[bytes, int] = {}
    for _oid, o in chain.orders():
        lot_wh = sum(e[1] for e in o.lots)
        if o.side == BUY:
            assert o.locked_coin == (o.remaining * o.price_per_wh if o.status == "open" else 0)
            assert o.lots == []
        else:
            assert o.locked_coin == 0
            assert lot_wh == (o.remaining if o.status == "open" else 0)
        assert o.filled_wh + o.remaining == o.wh or o.status == "cancelled"
        if o.status == "open":
            coin_locks[o.owner] = coin_locks.get(o.owner, 0) + o.locked_coin
            wh_locks[o.owner] = wh_locks.get(o.owner, 0) + lot_wh
    for key, raw in chain.kv.iterate(b"sa"):
        acct = chain.account(key[2:])
        assert acct.locked_coin == coin_locks.get(key[2:], 0)
        assert acct.locked_wh == wh_locks.get(key[2:], 0)
    buys, sells = chain.order_book()
    assert all(o.status == "open" and o.side == BUY for _i, o in buys)
    assert all(o.status == "open" and o.side == SELL for _i, o in sells)
    assert len(buys) + len(sells) == sum(1 for _i, o in chain.orders() if o.status == "open")


@pytest.fixture
def b() -> Book:
    net = make_net(accounts=4, meters=2, meter_kind="both")
    chain = net.chain()
    readings = []
    lots: dict[bytes, list[bytes]] = {}
    for i in range(2):
        meter = MeterState(net.meters[i], start=GENESIS_S - 3 * 900)
        readings += [meter.read(CHAIN_ID, 500) for _ in range(3)]
        lots[net.accounts[i].address] = [lot_id_of(GENESIS_S - (3 - k) * 900, net.meters[i].meter_id)
                                         for k in range(3)]
    extend(chain, net, readings)
    return Book(net, chain, lots)


# --------------------------------------------------------------------------------------- placing

def test_buy_order_locks_coin(b: Book) -> None:
    oid = b.place(b.b1, BUY, 300, 7)
    o = b.chain.order(oid)
    assert (o.owner, o.side, o.price_per_wh, o.wh, o.remaining, o.locked_coin, o.lots, o.status, o.filled_wh,
            o.paid_coin) == (b.b1.address, BUY, 7, 300, 300, 2100, [], "open", 0, 0)
    acct = b.chain.account(b.b1.address)
    assert (acct.coin, acct.locked_coin) == (START - 2100 - ORDER_FEE, 2100)
    assert b.book_ids() == ([oid], [])


def test_sell_order_locks_lots_oldest_first(b: Book) -> None:
    oid = b.place(b.s1, SELL, 700, 3)
    lots = b.lots[b.s1.address]
    o = b.chain.order(oid)
    assert o.lots == [[lots[0], 500, "solar"], [lots[1], 200, "solar"]]
    assert (o.remaining, o.locked_coin) == (700, 0)
    acct = b.chain.account(b.s1.address)
    assert (acct.wh, acct.locked_wh, acct.coin) == (800, 700, START - ORDER_FEE)
    assert b.chain.holdings(b.s1.address) == [(lots[1], 300, "solar"), (lots[2], 500, "solar")]
    assert b.book_ids() == ([], [oid])


def test_locked_wh_cannot_be_spent_elsewhere(b: Book) -> None:
    b.place(b.s1, SELL, 1400, 3)
    assert b.reason(make_tx(b.chain, b.s1, TransferWh(b.s2.address, 101))) == E.INSUFFICIENT_WH
    assert b.reason(b.order(b.s1, SELL, 101, 3)) == E.INSUFFICIENT_WH
    assert b.reason(make_tx(b.chain, b.s1, TransferWh(b.s2.address, 100))) is None


@pytest.mark.parametrize("side,wh,price,reason", [
    (BUY, 0, 5, E.INVALID_AMOUNT), (SELL, 0, 5, E.INVALID_AMOUNT), ("hold", 10, 5, E.INVALID_AMOUNT),
    (BUY, 10, 0, E.INVALID_PRICE), (SELL, 10, 0, E.INVALID_PRICE), (BUY, 2**40, 2**30, E.INVALID_PRICE),
    (BUY, 1000, COIN, E.INSUFFICIENT_FUNDS), (SELL, 1501, 1, E.INSUFFICIENT_WH),
])
def test_place_rejections(b: Book, side: str, wh: int, price: int, reason: str) -> None:
    key = b.s1
    assert b.reason(b.order(key, side, wh, price)) == reason


def test_buy_lock_plus_fee_must_fit_the_balance(b: Book) -> None:
    assert b.reason(b.order(b.b1, BUY, 1, START - ORDER_FEE + 1)) == E.INSUFFICIENT_FUNDS
    b.place(b.b1, BUY, 1, START - ORDER_FEE)
    assert b.chain.account(b.b1.address).coin == 0


# --------------------------------------------------------------------------------------- matching

def test_price_time_priority_for_a_buy_taker(b: Book) -> None:
    s1_at5 = b.place(b.s1, SELL, 100, 5)
    s2_at4 = b.place(b.s2, SELL, 100, 4)
    s1_at4 = b.place(b.s1, SELL, 100, 4)  # same price, later: behind s2
    assert b.book_ids() == ([], [s2_at4, s1_at4, s1_at5])
    taker = b.place(b.b1, BUY, 250, 5)
    assert [b.chain.order(o).remaining for o in (s2_at4, s1_at4, s1_at5, taker)] == [0, 0, 50, 0]
    assert [b.chain.order(o).status for o in (s2_at4, s1_at4, s1_at5, taker)] == ["filled", "filled", "open",
                                                                                   "filled"]
    paid = 100 * 4 + 100 * 4 + 50 * 5
    buyer = b.chain.account(b.b1.address)
    assert (buyer.coin, buyer.locked_coin, buyer.wh) == (START - ORDER_FEE - paid, 0, 250)  # 200 improvement refunded
    assert b.chain.order(taker).paid_coin == paid and b.chain.order(taker).filled_wh == 250
    assert b.chain.account(b.s2.address).coin == START - ORDER_FEE + 400
    assert b.chain.account(b.s1.address).coin == START - 2 * ORDER_FEE + 400 + 250
    assert (b.chain.account(b.s1.address).locked_wh, b.chain.account(b.s2.address).locked_wh) == (50, 0)
    assert b.book_ids() == ([], [s1_at5])
    # the buyer received s2's lot first, then s1's lots in the order they were locked
    l1, l2 = b.lots[b.s1.address], b.lots[b.s2.address]
    assert sorted(b.chain.holdings(b.b1.address)) == sorted([(l2[0], 100, "solar"), (l1[0], 150, "solar")])
    assert b.chain.lot_movements(l2[0])[-1] == [s2_at4, b.s2.address, b.b1.address, 100, "fill"]
    assert b.chain.globals().settled_wh == 250


def test_price_time_priority_for_a_sell_taker(b: Book) -> None:
    at3 = b.place(b.b1, BUY, 100, 3)
    at5_first = b.place(b.b2, BUY, 100, 5)
    at5_second = b.place(b.b1, BUY, 100, 5)
    assert b.book_ids() == ([at5_first, at5_second, at3], [])
    taker = b.place(b.s1, SELL, 150, 2)
    assert [b.chain.order(o).remaining for o in (at5_first, at5_second, at3, taker)] == [0, 50, 100, 0]
    # the seller gets the resting buyers' price, 5, not its own limit of 2
    assert b.chain.account(b.s1.address).coin == START - ORDER_FEE + 150 * 5
    assert b.chain.order(taker).paid_coin == 750
    b1 = b.chain.account(b.b1.address)
    assert (b1.coin, b1.locked_coin, b1.wh) == (START - 2 * ORDER_FEE - 300 - 500, 300 + 250, 50)
    b2 = b.chain.account(b.b2.address)
    assert (b2.coin, b2.locked_coin, b2.wh) == (START - ORDER_FEE - 500, 0, 100)
    assert b.book_ids() == ([at5_second, at3], [])


def test_no_cross_both_rest(b: Book) -> None:
    buy = b.place(b.b1, BUY, 100, 3)
    sell = b.place(b.s1, SELL, 100, 4)
    assert b.book_ids() == ([buy], [sell])
    assert b.chain.order(buy).remaining == 100 and b.chain.order(sell).remaining == 100


def test_partial_fill_of_the_taker_rests_in_the_book(b: Book) -> None:
    sell = b.place(b.s1, SELL, 100, 4)
    buy = b.place(b.b1, BUY, 300, 6)
    o = b.chain.order(buy)
    assert (o.remaining, o.filled_wh, o.locked_coin, o.paid_coin, o.status) == (200, 100, 1200, 400, "open")
    acct = b.chain.account(b.b1.address)
    assert (acct.coin, acct.locked_coin) == (START - ORDER_FEE - 400 - 1200, 1200)
    assert b.book_ids() == ([buy], [])
    assert b.chain.order(sell).status == "filled"
    # a later sell below the resting buy fills at the buy's price
    b.place(b.s2, SELL, 50, 1)
    o = b.chain.order(buy)
    assert (o.remaining, o.locked_coin, o.paid_coin) == (150, 900, 400 + 300)
    assert b.chain.account(b.s2.address).coin == START - ORDER_FEE + 300


def test_one_taker_several_makers_in_one_block(b: Book) -> None:
    txs = [b.order(b.s1, SELL, 100, 4), b.order(b.s2, SELL, 100, 4), b.order(b.b1, BUY, 200, 4)]
    extend(b.chain, b.net, txs)
    check_locks(b.chain)
    assert [b.chain.order(t.txid).status for t in txs] == ["filled", "filled", "filled"]
    assert b.book_ids() == ([], [])


def test_orders_of_one_owner_cross_without_creating_anything(b: Book) -> None:
    before = b.chain.account(b.s1.address)
    b.place(b.s1, SELL, 100, 4)
    b.place(b.s1, BUY, 100, 4)
    after = b.chain.account(b.s1.address)
    assert after.coin + after.locked_coin == before.coin - 2 * ORDER_FEE
    assert after.wh + after.locked_wh == before.wh


# ---------------------------------------------------------------------------------------- cancel

def test_cancel_buy_returns_the_rest_of_the_lock(b: Book) -> None:
    b.place(b.s1, SELL, 100, 4)
    buy = b.place(b.b1, BUY, 300, 6)
    b.cancel(b.b1, buy)
    o = b.chain.order(buy)
    assert (o.status, o.locked_coin, o.remaining) == ("cancelled", 0, 200)
    acct = b.chain.account(b.b1.address)
    assert (acct.coin, acct.locked_coin, acct.wh) == (START - ORDER_FEE - FEE - 400, 0, 100)
    assert b.book_ids() == ([], [])


def test_cancel_sell_returns_the_same_lots(b: Book) -> None:
    lots = b.lots[b.s1.address]
    sell = b.place(b.s1, SELL, 700, 4)
    b.place(b.b1, BUY, 100, 4)
    assert b.chain.order(sell).lots == [[lots[0], 400, "solar"], [lots[1], 200, "solar"]]
    b.cancel(b.s1, sell)
    assert b.chain.holdings(b.s1.address) == [(lots[0], 400, "solar"), (lots[1], 500, "solar"),
                                              (lots[2], 500, "solar")]
    acct = b.chain.account(b.s1.address)
    assert (acct.wh, acct.locked_wh, acct.coin) == (1400, 0, START - ORDER_FEE - FEE + 400)
    o = b.chain.order(sell)
    assert (o.status, o.lots, o.remaining) == ("cancelled", [], 600)


def test_cancel_rejections(b: Book) -> None:
    buy = b.place(b.b1, BUY, 100, 4)
    assert b.reason(make_tx(b.chain, b.b2, CancelOrder(buy))) == E.NOT_OWNER
    assert b.reason(make_tx(b.chain, b.b1, CancelOrder(bytes(32)))) == E.UNKNOWN_ORDER
    b.cancel(b.b1, buy)
    assert b.reason(make_tx(b.chain, b.b1, CancelOrder(buy))) == E.ORDER_CLOSED
    sell = b.place(b.s1, SELL, 100, 4)
    b.place(b.b2, BUY, 100, 4)
    assert b.chain.order(sell).status == "filled"
    assert b.reason(make_tx(b.chain, b.s1, CancelOrder(sell))) == E.ORDER_CLOSED


def test_place_and_cancel_in_one_block(b: Book) -> None:
    place = b.order(b.b1, BUY, 100, 4)
    cancel = make_tx(b.chain, b.b1, CancelOrder(place.txid), nonce=1)
    block, rejected = try_extend(b.chain, b.net, [place, cancel])
    assert rejected == [] and len(block.txs) == 2
    check_locks(b.chain)
    assert b.chain.account(b.b1.address).coin == START - ORDER_FEE - FEE


def test_bought_wh_can_be_redeemed_against_own_consumption(b: Book) -> None:
    """Order book Wh are real Wh: the buyer can pass them on (and burn them if it consumed)."""
    b.place(b.s1, SELL, 100, 4)
    b.place(b.b1, BUY, 100, 4)
    extend(b.chain, b.net, [make_tx(b.chain, b.b1, TransferWh(b.s2.address, 100))])
    assert b.chain.account(b.s2.address).wh == 1600
    assert b.reason(make_tx(b.chain, b.b1, Redeem(1))) == E.EXCEEDS_CONSUMPTION


def test_rejected_orders_leave_no_trace_in_the_first_block() -> None:
    """On a fresh chain no global totals exist yet; a rejected order must not create them while the block
    is built, or the builder's state root differs from what every importer computes."""
    net = make_net(accounts=2)
    chain = net.chain()
    txs = [make_tx(chain, net.accounts[0], PlaceOrder(SELL, 10, 5)),  # holds no Wh
           make_tx(chain, net.accounts[1], PlaceOrder(BUY, 10, START))]  # cannot lock that much
    block, rejected = try_extend(chain, net, txs)  # raised bad_state_root before the fix
    assert [r.reason for _t, r in rejected] == [E.INSUFFICIENT_WH, E.INSUFFICIENT_FUNDS]
    assert block.txs == () and chain.height == 1 and chain.verify_state_root()
    assert chain.kv.get(b"sG") is None
