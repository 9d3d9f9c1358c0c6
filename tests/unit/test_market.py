"""Prepaid trades: offers, acceptance into escrow, deliveries released pro rata, refunds at window end."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ledger import errors as E
from ledger.block import Block
from ledger.chain import Chain
from ledger.keys import AccountKey, MeterKey
from ledger.state import lot_id_of
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, Net, advance_to, extend, gap_until, make_net, make_tx, rejection, \
    try_extend
from ledger.transition import MAX_WINDOW_S
from ledger.tx import COIN, AcceptOffer, Body, CancelOffer, Deliver, EnrollMeter, PostOffer, SignedTx, Transfer, \
    TransferWh

GENESIS_S = GENESIS_MS // 1000
START = 1_000 * COIN
FEE = 1000
STATE_FEE = 3 * FEE  # PostOffer and AcceptOffer add two state entries each and pay for them (ledger/fees.py)
PRICE = 2_000  # coin units per Wh
WINDOW_START = GENESIS_S
WINDOW_END = GENESIS_S + 3600


@dataclass
class Market:
    net: Net
    chain: Chain
    lots: list[bytes]  # the seller's solar lots, 500 Wh each, oldest first

    @property
    def seller(self) -> AccountKey:
        return self.net.accounts[0]

    @property
    def buyers(self) -> list[AccountKey]:
        return self.net.accounts[1:]

    def tx(self, key: AccountKey, body: Body, fee: int | None = None) -> SignedTx:
        return make_tx(self.chain, key, body, fee=fee)

    def extend(self, txs: list[SignedTx] | tuple[()] = (), gap_ms: int = 0) -> Block:
        return extend(self.chain, self.net, list(txs), gap_ms)

    def reason(self, tx: SignedTx, gap_ms: int = 0) -> str | None:
        """Why the next block would reject tx (None: it would include it)."""
        r = rejection(self.chain, self.net, tx, gap_ms)
        return r.reason if r else None

    def post(self, wh: int = 1000, price: int = PRICE, start: int = WINDOW_START, end: int = WINDOW_END,
             source: str = "") -> bytes:
        tx = self.tx(self.seller, PostOffer(wh, price, start, end, source))
        self.extend([tx])
        return tx.txid

    def accept(self, buyer: AccountKey, offer_id: bytes, wh: int) -> bytes:
        tx = self.tx(buyer, AcceptOffer(offer_id, wh))
        self.extend([tx])
        return tx.txid

    def at(self, t_s: int) -> int:
        """gap_ms that times the next block at unix second t_s."""
        return gap_until(self.chain, self.net, t_s * 1000)

    def coin(self, key: AccountKey) -> int:
        return self.chain.account(key.address).coin

    def locked(self, key: AccountKey) -> int:
        return self.chain.account(key.address).locked_coin


@pytest.fixture
def m() -> Market:
    net = make_net(accounts=4, meters=1, meter_kind="generation", rated_w=10_000, authority_coin=10 * COIN)
    chain = net.chain()
    meter = MeterState(net.meters[0], start=GENESIS_S - 3 * 900)
    extend(chain, net, [meter.read(CHAIN_ID, 500) for _ in range(3)])
    lots = [lot_id_of(GENESIS_S - (3 - i) * 900, net.meters[0].meter_id) for i in range(3)]
    return Market(net, chain, lots)


# ------------------------------------------------------------------------------------------ offers

def test_post_offer(m: Market) -> None:
    offer_id = m.post(1000, PRICE, WINDOW_START, WINDOW_END, "")
    offer = m.chain.offer(offer_id)
    assert (offer.seller, offer.wh, offer.remaining, offer.price_per_wh, offer.window_start, offer.window_end,
            offer.source, offer.status, offer.height) == \
        (m.seller.address, 1000, 1000, PRICE, WINDOW_START, WINDOW_END, "", "open", 2)
    assert m.coin(m.seller) == START - STATE_FEE  # posting locks nothing: the seller delivers later
    assert m.chain.account(m.seller.address).wh == 1500


@pytest.mark.parametrize("body_args,reason", [
    ((0, PRICE, WINDOW_START, WINDOW_END, ""), E.INVALID_AMOUNT),
    ((1000, 0, WINDOW_START, WINDOW_END, ""), E.INVALID_PRICE),
    ((2**40, 2**30, WINDOW_START, WINDOW_END, ""), E.INVALID_PRICE),  # the total does not fit 64 bits
    ((1000, PRICE, WINDOW_END, WINDOW_END, ""), E.INVALID_WINDOW),  # empty
    ((1000, PRICE, WINDOW_END, WINDOW_START, ""), E.INVALID_WINDOW),  # backwards
    ((1000, PRICE, GENESIS_S - 7200, GENESIS_S - 3600, ""), E.INVALID_WINDOW),  # already over
    ((1000, PRICE, WINDOW_START, WINDOW_START + MAX_WINDOW_S + 1, ""), E.INVALID_WINDOW),  # too long
    ((1000, PRICE, WINDOW_START, WINDOW_END, "coal"), E.INVALID_AMOUNT),  # unknown source
])
def test_post_offer_rejections(m: Market, body_args: tuple, reason: str) -> None:
    assert m.reason(m.tx(m.seller, PostOffer(*body_args))) == reason


def test_post_offer_longest_window_is_accepted(m: Market) -> None:
    assert m.reason(m.tx(m.seller, PostOffer(1, 1, WINDOW_START, WINDOW_START + MAX_WINDOW_S, "wind"))) is None


def test_accept_locks_the_full_price_in_escrow(m: Market) -> None:
    offer_id = m.post()
    b1 = m.buyers[0]
    trade_id = m.accept(b1, offer_id, 300)
    assert m.coin(b1) == START - 300 * PRICE - STATE_FEE
    assert m.locked(b1) == 300 * PRICE
    trade = m.chain.trade(trade_id)
    assert (trade.offer_id, trade.seller, trade.buyer, trade.wh, trade.price_per_wh, trade.escrow, trade.delivered,
            trade.released, trade.refunded, trade.window_start, trade.window_end, trade.source, trade.status) == \
        (offer_id, m.seller.address, b1.address, 300, PRICE, 300 * PRICE, 0, 0, 0, WINDOW_START, WINDOW_END, "",
         "open")
    offer = m.chain.offer(offer_id)
    assert (offer.remaining, offer.status) == (700, "open")
    assert m.coin(m.seller) == START - STATE_FEE  # the seller gets nothing before delivering
    assert (3, trade_id, "accept_offer") in m.chain.history(m.seller.address)


def test_two_buyers_fill_one_offer(m: Market) -> None:
    offer_id = m.post()
    b1, b2, b3 = m.buyers
    t1 = m.tx(b1, AcceptOffer(offer_id, 300))
    t2 = m.tx(b2, AcceptOffer(offer_id, 700))
    m.extend([t1, t2])
    offer = m.chain.offer(offer_id)
    assert (offer.remaining, offer.status) == (0, "filled")
    assert [m.chain.trade(t.txid).wh for t in (t1, t2)] == [300, 700]
    assert (m.locked(b1), m.locked(b2)) == (300 * PRICE, 700 * PRICE)
    assert m.reason(m.tx(b3, AcceptOffer(offer_id, 1))) == E.OFFER_CLOSED


def test_accept_rejections(m: Market) -> None:
    offer_id = m.post()
    b1 = m.buyers[0]
    assert m.reason(m.tx(b1, AcceptOffer(offer_id, 1001))) == E.OFFER_INSUFFICIENT
    assert m.reason(m.tx(b1, AcceptOffer(offer_id, 0))) == E.INVALID_AMOUNT
    assert m.reason(m.tx(b1, AcceptOffer(bytes(32), 1))) == E.UNKNOWN_OFFER
    assert m.reason(m.tx(m.seller, AcceptOffer(offer_id, 1))) == E.SELF_TRADE
    m.accept(b1, offer_id, 400)
    assert m.reason(m.tx(b1, AcceptOffer(offer_id, 601))) == E.OFFER_INSUFFICIENT
    assert m.reason(m.tx(b1, AcceptOffer(offer_id, 600))) is None


def test_accept_insufficient_funds_counts_the_fee(m: Market) -> None:
    offer_id = m.post(1000, 2 * COIN)  # 2 coin per Wh: 500 Wh would cost everything a buyer has
    b1 = m.buyers[0]
    assert m.reason(m.tx(b1, AcceptOffer(offer_id, 500))) == E.INSUFFICIENT_FUNDS
    m.extend([m.tx(b1, Transfer(m.buyers[1].address, 2 * COIN - FEE - STATE_FEE))])  # leave 998 coin + 1 fee
    assert m.coin(b1) == 998 * COIN + STATE_FEE
    assert m.reason(m.tx(b1, AcceptOffer(offer_id, 499), fee=STATE_FEE + 1)) == E.INSUFFICIENT_FUNDS
    assert m.reason(m.tx(b1, AcceptOffer(offer_id, 499), fee=STATE_FEE - 1)) == E.FEE_TOO_LOW
    m.accept(b1, offer_id, 499)
    assert (m.coin(b1), m.locked(b1)) == (0, 998 * COIN)


# -------------------------------------------------------------------------------------- deliveries

@pytest.fixture
def trade(m: Market) -> bytes:
    """buyers[0] prepaid 300 Wh of a 1000 Wh offer."""
    return m.accept(m.buyers[0], m.post(), 300)


def test_deliveries_release_escrow_pro_rata(m: Market, trade: bytes) -> None:
    b1 = m.buyers[0]
    d1 = m.tx(m.seller, Deliver(trade, 100))
    m.extend([d1])
    t = m.chain.trade(trade)
    assert (t.delivered, t.released, t.status) == (100, 100 * PRICE, "open")
    assert m.coin(m.seller) == START - STATE_FEE - FEE + 100 * PRICE
    assert (m.coin(b1), m.locked(b1)) == (START - 300 * PRICE - STATE_FEE, 200 * PRICE)
    assert m.chain.holdings(b1.address) == [(m.lots[0], 100, "solar")]
    assert m.chain.account(b1.address).wh == 100
    assert m.chain.account(m.seller.address).wh == 1400
    assert m.chain.lot_movements(m.lots[0])[-1] == [d1.txid, m.seller.address, b1.address, 100, "deliver"]
    assert m.chain.globals().settled_wh == 100
    d2 = m.tx(m.seller, Deliver(trade, 200))  # the rest
    m.extend([d2])
    t = m.chain.trade(trade)
    assert (t.delivered, t.released, t.refunded, t.status) == (300, 300 * PRICE, 0, "delivered")
    assert t.released == t.escrow
    assert m.locked(b1) == 0
    assert m.coin(m.seller) == START - STATE_FEE - 2 * FEE + 300 * PRICE
    assert m.chain.holdings(b1.address) == [(m.lots[0], 300, "solar")]
    assert m.reason(m.tx(m.seller, Deliver(trade, 1))) == E.TRADE_CLOSED


def test_pro_rata_release_with_an_odd_price() -> None:
    net = make_net(accounts=2, meters=1, meter_kind="generation")
    chain = net.chain()
    extend(chain, net, [MeterState(net.meters[0], start=GENESIS_S - 900).read(CHAIN_ID, 10)])
    seller, buyer = net.accounts
    post = make_tx(chain, seller, PostOffer(7, 13, WINDOW_START, WINDOW_END, ""))
    extend(chain, net, [post])
    accept = make_tx(chain, buyer, AcceptOffer(post.txid, 7))
    extend(chain, net, [accept])
    released = []
    for wh in (1, 2, 3, 1):
        extend(chain, net, [make_tx(chain, seller, Deliver(accept.txid, wh))])
        released.append(chain.trade(accept.txid).released)
    assert released == [13, 39, 78, 91]  # escrow * delivered // wh, exactly the full 91 at the end
    assert chain.account(buyer.address).locked_coin == 0
    assert chain.account(seller.address).coin == START - STATE_FEE - 4 * FEE + 91


def test_deliver_rejections(m: Market, trade: bytes) -> None:
    b1, b2 = m.buyers[:2]
    assert m.reason(m.tx(m.seller, Deliver(trade, 301))) == E.OVER_DELIVERY
    assert m.reason(m.tx(m.seller, Deliver(trade, 0))) == E.INVALID_AMOUNT
    assert m.reason(m.tx(b1, Deliver(trade, 10))) == E.NOT_SELLER
    assert m.reason(m.tx(b2, Deliver(trade, 10))) == E.NOT_SELLER
    assert m.reason(m.tx(m.seller, Deliver(bytes(32), 10))) == E.UNKNOWN_TRADE
    m.extend([m.tx(m.seller, Deliver(trade, 250))])
    assert m.reason(m.tx(m.seller, Deliver(trade, 51))) == E.OVER_DELIVERY
    assert m.reason(m.tx(m.seller, Deliver(trade, 50))) is None


def test_deliver_needs_the_wh(m: Market, trade: bytes) -> None:
    m.extend([m.tx(m.seller, TransferWh(m.buyers[2].address, 1400))])
    assert m.reason(m.tx(m.seller, Deliver(trade, 101))) == E.INSUFFICIENT_WH
    m.extend([m.tx(m.seller, Deliver(trade, 100))])
    assert m.chain.trade(trade).delivered == 100


def test_deliver_before_the_window_opens(m: Market) -> None:
    now = m.chain.head.timestamp_ms // 1000
    offer_id = m.post(100, PRICE, now + 1000, now + 2000)
    trade_id = m.accept(m.buyers[0], offer_id, 100)  # accepting before the window is fine
    deliver = m.tx(m.seller, Deliver(trade_id, 100))
    assert m.reason(deliver) == E.OUTSIDE_WINDOW
    assert m.reason(deliver, gap_ms=m.at(now + 999)) == E.OUTSIDE_WINDOW
    m.extend([deliver], gap_ms=m.at(now + 1000))
    assert m.chain.trade(trade_id).status == "delivered"


def test_window_end_refunds_undelivered_escrow_automatically(m: Market, trade: bytes) -> None:
    b1 = m.buyers[0]
    offer_id = m.chain.trade(trade).offer_id
    m.extend([m.tx(m.seller, Deliver(trade, 100))])
    last_second = m.tx(m.seller, Deliver(trade, 50))
    m.extend([last_second], gap_ms=m.at(WINDOW_END - 1))  # still inside the window
    assert m.chain.trade(trade).status == "open"
    late = m.tx(m.seller, Deliver(trade, 50))
    block, rejected = try_extend(m.chain, m.net, [late], gap_ms=m.at(WINDOW_END))
    assert [r.reason for _t, r in rejected] == [E.OUTSIDE_WINDOW]
    assert block.txs == ()  # the refund needs no transaction: the block at window end settles it
    t = m.chain.trade(trade)
    assert (t.delivered, t.released, t.refunded, t.status) == (150, 150 * PRICE, 150 * PRICE, "settled")
    assert t.escrow - t.released - t.refunded == 0
    assert (m.coin(b1), m.locked(b1)) == (START - 150 * PRICE - STATE_FEE, 0)
    assert m.coin(m.seller) == START - STATE_FEE - 2 * FEE + 150 * PRICE
    assert m.chain.offer(offer_id).status == "expired"
    assert (block.height, trade, "refund") in m.chain.history(b1.address)
    assert m.reason(m.tx(m.seller, Deliver(trade, 1))) == E.TRADE_CLOSED
    assert m.reason(m.tx(b1, AcceptOffer(offer_id, 1))) == E.OFFER_CLOSED


def test_fully_delivered_trade_settles_without_refund(m: Market, trade: bytes) -> None:
    b1 = m.buyers[0]
    m.extend([m.tx(m.seller, Deliver(trade, 300))])
    m.extend(gap_ms=m.at(WINDOW_END + 10))
    t = m.chain.trade(trade)
    assert (t.released, t.refunded, t.status) == (300 * PRICE, 0, "settled")
    assert (m.coin(b1), m.locked(b1)) == (START - 300 * PRICE - STATE_FEE, 0)


def test_undelivered_trade_is_refunded_in_full(m: Market, trade: bytes) -> None:
    b1 = m.buyers[0]
    m.extend(gap_ms=m.at(WINDOW_END + 5000))  # one late block settles everything due before it
    t = m.chain.trade(trade)
    assert (t.released, t.refunded, t.status) == (0, 300 * PRICE, "settled")
    assert (m.coin(b1), m.locked(b1)) == (START - STATE_FEE, 0)
    assert m.coin(m.seller) == START - STATE_FEE


def test_accept_outside_window(m: Market) -> None:
    offer_id = m.post()
    accept = m.tx(m.buyers[0], AcceptOffer(offer_id, 10))
    assert m.reason(accept, gap_ms=m.at(WINDOW_END - 1)) is None
    assert m.reason(accept, gap_ms=m.at(WINDOW_END)) == E.OUTSIDE_WINDOW
    m.extend(gap_ms=m.at(WINDOW_END))
    assert m.chain.offer(offer_id).status == "expired"
    assert m.reason(accept) == E.OFFER_CLOSED


def test_offer_expiry(m: Market) -> None:
    offer_id = m.post(end=WINDOW_START + 600)
    m.extend(gap_ms=m.at(WINDOW_START + 599))
    assert m.chain.offer(offer_id).status == "open"
    m.extend(gap_ms=m.at(WINDOW_START + 600))
    offer = m.chain.offer(offer_id)
    assert (offer.status, offer.remaining) == ("expired", 1000)
    assert m.reason(m.tx(m.seller, CancelOffer(offer_id))) == E.OFFER_CLOSED


# -------------------------------------------------------------------------------------- sources

def test_source_restricted_offer_delivers_only_that_source(m: Market) -> None:
    wind = MeterKey(ec.derive_private_key(2024, ec.SECP256R1()))
    offer_id = m.post(400, PRICE, source="wind")
    trade_id = m.accept(m.buyers[0], offer_id, 400)
    deliver = m.tx(m.seller, Deliver(trade_id, 100))
    assert m.reason(deliver) == E.INSUFFICIENT_WH  # 1500 solar Wh do not count
    m.extend([m.tx(m.net.authorities[0], EnrollMeter(wind.public, m.seller.address, "generation", 10_000, 900,
                                                     "wind", 0, 0))])
    wind_start = m.chain.meter(wind.meter_id).next_start  # the first interval after its enrollment
    advance_to(m.chain, m.net, wind_start + 900)
    wind_meter = MeterState(wind, start=wind_start)
    m.extend([wind_meter.read(CHAIN_ID, 250)])
    wind_lot = lot_id_of(wind_start, wind.meter_id)
    assert m.chain.holdings(m.seller.address) == sorted([(m.lots[0], 500, "solar"), (m.lots[1], 500, "solar"),
                                                         (m.lots[2], 500, "solar"), (wind_lot, 250, "wind")])
    assert wind_lot > m.lots[1]  # older solar lots come first, yet only wind may be delivered
    assert m.reason(m.tx(m.seller, Deliver(trade_id, 251))) == E.INSUFFICIENT_WH
    m.extend([m.tx(m.seller, Deliver(trade_id, 250))])
    assert m.chain.holdings(m.buyers[0].address) == [(wind_lot, 250, "wind")]
    assert m.chain.holdings(m.seller.address) == [(lot, 500, "solar") for lot in m.lots]
    assert m.chain.trade(trade_id).source == "wind"
    assert m.chain.trade(trade_id).released == 250 * PRICE


def test_any_source_offer_delivers_oldest_first(m: Market, trade: bytes) -> None:
    m.extend([m.tx(m.seller, Deliver(trade, 300))])
    assert m.chain.holdings(m.seller.address) == [(m.lots[0], 200, "solar"), (m.lots[1], 500, "solar"),
                                                  (m.lots[2], 500, "solar")]


# ---------------------------------------------------------------------------------------- cancel

def test_cancel_unaccepted_offer(m: Market) -> None:
    offer_id = m.post()
    assert m.reason(m.tx(m.buyers[0], CancelOffer(offer_id))) == E.NOT_OWNER
    assert m.reason(m.tx(m.seller, CancelOffer(bytes(32)))) == E.UNKNOWN_OFFER
    m.extend([m.tx(m.seller, CancelOffer(offer_id))])
    assert m.chain.offer(offer_id).status == "cancelled"
    assert m.reason(m.tx(m.buyers[0], AcceptOffer(offer_id, 1))) == E.OFFER_CLOSED
    assert m.reason(m.tx(m.seller, CancelOffer(offer_id))) == E.OFFER_CLOSED
    assert m.coin(m.seller) == START - STATE_FEE - FEE


def test_cancel_keeps_accepted_trades(m: Market) -> None:
    offer_id = m.post()
    trade_id = m.accept(m.buyers[0], offer_id, 300)
    m.extend([m.tx(m.seller, CancelOffer(offer_id))])
    offer = m.chain.offer(offer_id)
    assert (offer.status, offer.remaining) == ("cancelled", 700)
    assert m.locked(m.buyers[0]) == 300 * PRICE  # the accepted part stands
    m.extend([m.tx(m.seller, Deliver(trade_id, 300))])
    assert m.chain.trade(trade_id).status == "delivered"
    assert m.locked(m.buyers[0]) == 0


def test_cancel_filled_offer_is_closed(m: Market) -> None:
    offer_id = m.post(100)
    m.accept(m.buyers[0], offer_id, 100)
    assert m.reason(m.tx(m.seller, CancelOffer(offer_id))) == E.OFFER_CLOSED
