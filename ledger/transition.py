"""The rules: how each transaction changes the state, and what happens at the end of every block.

Each rule checks everything first and raises `Rejected` before it mutates anything, so a rejected
transaction leaves the overlay exactly as it was. Conservation is by construction: every coin or Wh
debited in a rule is credited in the same rule; only readings mint Wh, only redemption burns it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from . import consensus
from . import errors as E
from .encoding import encode
from .errors import Rejected
from .fees import MAX_OPEN_OFFERS, MAX_OPEN_ORDERS, required_fee
from .keys import address_of, meter_id_of, valid_meter_public
from .ocmf_rules import OcmfRules
from .queries import LIST_OFFERS, LIST_ORDERS, LIST_TRADES, listing_key
from .state import (DUE_OFFER, DUE_TRADE, Lot, Meter, Offer, Order, StateOverlay, Trade, book_add, book_best,
                    book_remove, holding_add, holdings_take, k_lot, k_meter, k_offer, k_order, k_trade, lot_id_of,
                    order_lot_add, order_lots_release, order_lots_take, schedule_add, schedule_due, source_wh)
from .tx import (MAX_METER_BACKFILL_S, BUY, CONSUMPTION, GENERATION, INTERVALS, METER_KINDS, SELL, SOURCES, AcceptOffer,
                 AuthorityVote, CancelOffer, CancelOrder, Deliver, EnrollMeter, EnrollMeterSince, EnrollOcmfMeter,
                 MeterReading, OcmfReading, PlaceOrder, PostOffer, Redeem, RevokeMeter, SignedTx, Transfer, TransferWh,
                 Tx, Vote, cost)

MAX_WINDOW_S = 90 * 86400
U64 = (1 << 64) - 1


@dataclass
class Params:
    """The consensus parameters from genesis, as stored in the state."""
    chain_id: str
    authorities: tuple[bytes, ...]
    observers: tuple[bytes, ...]
    min_difficulty: int
    block_interval_ms: int
    min_fee: int
    max_block_txs: int

    @classmethod
    def from_record(cls, rec: list[Any]) -> "Params":
        return cls(rec[0], tuple(rec[1]), tuple(rec[2]), rec[3], rec[4], rec[5], rec[6])


def _no_ancestor(height: int) -> bytes | None:
    return None


@dataclass
class BlockContext:
    """What a rule may know about the block it runs in (never the wall clock). `parent_timestamp_ms` is a
    time every honest validator agrees has passed (the proposer's own timestamp may run ahead of their
    clocks); `ancestor(h)` is the hash of this branch's block at height h < height (finality votes)."""
    height: int
    timestamp_ms: int
    proposer: bytes
    params: Params
    parent_timestamp_ms: int = 0
    ancestor: Callable[[int], bytes | None] = _no_ancestor
    fees: int = 0
    index: dict[bytes, bytes] = field(default_factory=dict)  # history and provenance index entries
    _seq: int = 0

    @property
    def now_s(self) -> int:
        return self.timestamp_ms // 1000

    def _next(self) -> bytes:
        self._seq += 1
        return self.height.to_bytes(8, "big") + self._seq.to_bytes(4, "big")

    def history(self, addr: bytes, txid: bytes, kind: str) -> None:
        self.index[b"i" + addr + self._next()] = encode([txid, kind])

    def provenance(self, lot_id: bytes, txid: bytes, sender: bytes, receiver: bytes, wh: int, kind: str) -> None:
        self.index[b"k" + lot_id + self._next()] = encode([txid, sender, receiver, wh, kind])

    def listing(self, addr: bytes, kind: bytes, item_id: bytes) -> None:
        """Index an account's offer, trade or order, so its pages read only its own (ledger/queries.py)."""
        self.index[listing_key(addr, kind, self._next())] = item_id


def _positive(value: int, what: str) -> None:
    if value <= 0:
        raise Rejected(E.INVALID_AMOUNT, f"{what} must be positive")


class Transition(OcmfRules):
    """Applies transactions to one block's overlay (OCMF meter rules in ledger/ocmf_rules.py)."""

    def __init__(self, state: StateOverlay, ctx: BlockContext) -> None:
        self.st = state
        self.ctx = ctx
        self._rules: dict[type, Callable[[SignedTx, Any], None]] = {
            Transfer: self._transfer, TransferWh: self._transfer_wh, EnrollMeter: self._enroll,
            RevokeMeter: self._revoke, Redeem: self._redeem, PostOffer: self._post_offer,
            AcceptOffer: self._accept_offer, Deliver: self._deliver, CancelOffer: self._cancel_offer,
            PlaceOrder: self._place_order, CancelOrder: self._cancel_order,
            AuthorityVote: self._authority_vote, EnrollMeterSince: self._enroll,
            EnrollOcmfMeter: self._enroll_ocmf,
        }

    # entry point --------------------------------------------------------------------------------
    def apply(self, tx: Tx, verified: bool = False) -> None:
        """Check and apply one transaction; raises Rejected and changes nothing if it breaks a rule."""
        if isinstance(tx, MeterReading):
            self._reading(tx, verified)
            return
        if isinstance(tx, Vote):
            consensus.apply_vote(self.st, tx, self.ctx.height, self.ctx.ancestor, self.ctx.params.authorities,
                                 verified)
            return
        if isinstance(tx, OcmfReading):
            self._ocmf_reading(tx, verified)
            return
        if not verified and not tx.verify():
            raise Rejected(E.BAD_SIGNATURE, "account signature does not verify")
        sender = tx.sender_address
        acct = self.st.account(sender)
        if tx.nonce != acct.nonce:
            raise Rejected(E.BAD_NONCE, f"expected nonce {acct.nonce}, got {tx.nonce}")
        fee = required_fee(self.ctx.params.min_fee, tx.body)
        if tx.fee < fee:
            raise Rejected(E.FEE_TOO_LOW, f"fee {tx.fee} below minimum {fee} for a {tx.kind} "
                                          f"(state it adds pays: ledger/fees.py)")
        if acct.coin < tx.fee:
            raise Rejected(E.INSUFFICIENT_FUNDS, "cannot pay the fee")
        self._rules[type(tx.body)](tx, tx.body)
        acct.coin -= tx.fee
        acct.nonce += 1
        self.ctx.fees += tx.fee
        self.ctx.history(sender, tx.txid, tx.kind)

    # coin and Wh --------------------------------------------------------------------------------
    def _transfer(self, tx: SignedTx, body: Transfer) -> None:
        _positive(body.amount, "amount")
        sender = self.st.account(tx.sender_address)
        if sender.coin < body.amount + tx.fee:
            raise Rejected(E.INSUFFICIENT_FUNDS, f"balance {sender.coin} < amount {body.amount} + fee {tx.fee}")
        sender.coin -= body.amount
        self.st.account(body.to).coin += body.amount
        if body.to != tx.sender_address:
            self.ctx.history(body.to, tx.txid, tx.kind)

    def _move_wh(self, txid: bytes, sender: bytes, receiver: bytes, wh: int, source: str, kind: str) -> None:
        """Move wh from sender's holdings to receiver's, lot by lot; the caller checked availability."""
        src_acct, dst_acct = self.st.account(sender), self.st.account(receiver)
        lots = holdings_take(self.st, sender, wh, source)
        self._give(receiver, lots, txid, sender, kind)
        src_acct.wh -= wh
        dst_acct.wh += wh

    def _give(self, receiver: bytes, lots: list[list[Any]], txid: bytes, sender: bytes, kind: str) -> None:
        for lot_id, wh, source in lots:
            holding_add(self.st, receiver, lot_id, wh, source)
            self.ctx.provenance(lot_id, txid, sender, receiver, wh, kind)

    def _need_wh(self, addr: bytes, wh: int, source: str = "") -> None:
        have = source_wh(self.st, addr, source) if source else self.st.account(addr).wh
        if have < wh:
            what = f"{source} Wh" if source else "Wh"
            raise Rejected(E.INSUFFICIENT_WH, f"holds {have} {what}, needs {wh}")

    def _transfer_wh(self, tx: SignedTx, body: TransferWh) -> None:
        _positive(body.wh, "wh")
        self._need_wh(tx.sender_address, body.wh)
        self._move_wh(tx.txid, tx.sender_address, body.to, body.wh, "", tx.kind)
        if body.to != tx.sender_address:
            self.ctx.history(body.to, tx.txid, tx.kind)

    def _redeem(self, tx: SignedTx, body: Redeem) -> None:
        _positive(body.wh, "wh")
        addr = tx.sender_address
        acct = self.st.account(addr)
        uncovered = acct.consumed_wh - acct.redeemed_wh
        if body.wh > uncovered:
            raise Rejected(E.EXCEEDS_CONSUMPTION, f"only {uncovered} Wh of metered consumption not yet covered")
        self._need_wh(addr, body.wh)
        for lot_id, wh, _source in holdings_take(self.st, addr, body.wh):
            self.ctx.provenance(lot_id, tx.txid, addr, b"", wh, "redeem")
        acct.wh -= body.wh
        acct.redeemed_wh += body.wh
        self.st.globals().redeemed_wh += body.wh

    # meters -------------------------------------------------------------------------------------
    def authorities(self) -> tuple[bytes, ...]:
        """The current authority set (genesis, changed by finalized governance votes)."""
        return consensus.authorities(self.st, self.ctx.params.authorities)

    def _authority_vote(self, tx: SignedTx, body: AuthorityVote) -> None:
        consensus.apply_authority_vote(self.st, tx, body, self.ctx.height, self.ctx.params.authorities)

    def _require_authority(self, tx: SignedTx) -> None:
        if tx.sender not in self.authorities():
            raise Rejected(E.NOT_AUTHORITY, "only an authority may enroll or revoke meters")

    def _enroll(self, tx: SignedTx, body: EnrollMeter | EnrollMeterSince) -> None:
        self._require_authority(tx)
        if not valid_meter_public(body.meter_public):
            raise Rejected(E.INVALID_METER, "meter key is not a compressed P-256 point")
        if body.kind not in METER_KINDS or body.interval_s not in INTERVALS or body.source not in SOURCES \
                or not 0 < body.rated_w <= 100_000_000:
            raise Rejected(E.INVALID_METER, f"kind in {METER_KINDS}, interval in {INTERVALS}, source in "
                                            f"{SOURCES}, rated_w in 1..1e8")
        first_start = getattr(body, "first_start", None)
        if first_start is not None and (first_start % body.interval_s
                                        or not self.ctx.now_s - MAX_METER_BACKFILL_S <= first_start
                                        or first_start > self.ctx.now_s + MAX_METER_BACKFILL_S):
            raise Rejected(E.INVALID_METER, f"first_start must be on an interval boundary, at most "
                                            f"{MAX_METER_BACKFILL_S} s before (or after) the enrollment block")
        meter_id = meter_id_of(body.meter_public)
        if self.st.meter(meter_id) is not None:
            raise Rejected(E.METER_EXISTS, f"meter {meter_id.hex()} is already enrolled")
        self.enroll_meter(body.meter_public, body.owner, body.kind, body.rated_w, body.interval_s, body.source,
                          body.export_register, body.import_register, first_start)
        self.ctx.history(body.owner, tx.txid, tx.kind)

    def enroll_meter(self, public: bytes, owner: bytes, kind: str, rated_w: int, interval_s: int, source: str,
                     export_register: int = 0, import_register: int = 0, first_start: int | None = None) -> None:
        """Enroll a meter; its first interval starts at the first boundary after enrollment (a genesis
        meter may name an earlier `first_start`, bounded by ledger.genesis), never at 0: a stolen key
        cannot mint the years before the meter joined."""
        meter_id = meter_id_of(public)
        if first_start is None:
            first_start = -(-self.ctx.now_s // interval_s) * interval_s
        self.st.put(k_meter(meter_id), Meter(public, owner, kind, rated_w, interval_s, source, True, 0,
                                             first_start, export_register, import_register, self.ctx.height))

    def _revoke(self, tx: SignedTx, body: RevokeMeter) -> None:
        self._require_authority(tx)
        meter = self.st.meter(body.meter_id)
        if meter is None:
            if self._revoke_ocmf(body.meter_id):
                return
            raise Rejected(E.UNKNOWN_METER, body.meter_id.hex())
        if not meter.active:
            raise Rejected(E.METER_REVOKED, "meter is already revoked")
        meter.active = False

    def _reading(self, reading: MeterReading, verified: bool) -> None:
        f = reading.fields
        meter = self.st.meter(f.meter_id)
        if meter is None:
            raise Rejected(E.UNKNOWN_METER, f"meter {f.meter_id.hex()} is not enrolled")
        if not meter.active:
            raise Rejected(E.METER_REVOKED, f"meter {f.meter_id.hex()} was revoked")
        if not verified and not reading.verify(meter.public):
            raise Rejected(E.BAD_SIGNATURE, "meter signature does not verify")
        if f.counter <= meter.counter:
            raise Rejected(E.COUNTER_NOT_INCREASING, f"counter {f.counter} <= last {meter.counter}")
        if f.interval_s != meter.interval_s or f.interval_start % f.interval_s:
            raise Rejected(E.INTERVAL_MISALIGNED, f"interval must be {meter.interval_s} s on a boundary")
        if f.interval_start < meter.next_start:
            if meter.counter == 0:  # nothing accepted yet: next_start is the meter's enrollment
                raise Rejected(E.INTERVAL_BEFORE_ENROLLMENT,
                               f"the meter's first interval may start at {meter.next_start} (its enrollment)")
            raise Rejected(E.INTERVAL_OVERLAP, f"interval starts before {meter.next_start}")
        if f.interval_start + f.interval_s > self.ctx.parent_timestamp_ms // 1000:
            raise Rejected(E.INTERVAL_IN_FUTURE, "interval has not ended by the parent block's time")
        limit = meter.rated_w * f.interval_s // 3600
        if f.export_wh > limit or f.import_wh > limit:
            raise Rejected(E.ENERGY_EXCEEDS_RATING, f"more than {limit} Wh in {f.interval_s} s at {meter.rated_w} W")
        if (f.export_wh and meter.kind == CONSUMPTION) or (f.import_wh and meter.kind == GENERATION):
            raise Rejected(E.KIND_MISMATCH, f"a {meter.kind} meter cannot report that direction")
        if f.export_register != meter.export_register + f.export_wh or \
                f.import_register != meter.import_register + f.import_wh:
            raise Rejected(E.REGISTER_MISMATCH, "cumulative register is not previous register plus interval")
        meter.counter = f.counter
        meter.next_start = f.interval_start + f.interval_s
        meter.export_register = f.export_register
        meter.import_register = f.import_register
        g = self.st.globals()
        g.readings += 1
        owner = self.st.account(meter.owner)
        txid = reading.txid
        if f.export_wh:
            lot_id = lot_id_of(f.interval_start, f.meter_id)
            self.st.put(k_lot(lot_id), Lot(f.meter_id, meter.owner, f.interval_start, f.interval_s, meter.source,
                                           f.export_wh, self.ctx.height, txid))
            holding_add(self.st, meter.owner, lot_id, f.export_wh, meter.source)
            owner.wh += f.export_wh
            meter.minted_wh += f.export_wh
            g.minted_wh += f.export_wh
            self.ctx.provenance(lot_id, txid, b"", meter.owner, f.export_wh, "mint")
        if f.import_wh:
            owner.consumed_wh += f.import_wh
            meter.consumed_wh += f.import_wh
            g.consumed_wh += f.import_wh
        self.ctx.history(meter.owner, txid, "reading")

    # prepaid trades -----------------------------------------------------------------------------
    def _post_offer(self, tx: SignedTx, body: PostOffer) -> None:
        _positive(body.wh, "wh")
        if body.price_per_wh <= 0 or cost(body.wh, body.price_per_wh) > U64:
            raise Rejected(E.INVALID_PRICE, "price must be positive and the total must fit 64 bits")
        if not body.window_start < body.window_end or body.window_end <= self.ctx.now_s \
                or body.window_end - body.window_start > MAX_WINDOW_S:
            raise Rejected(E.INVALID_WINDOW, "window must end after it starts, in the future, within 90 days")
        if body.source and body.source not in SOURCES:
            raise Rejected(E.INVALID_AMOUNT, f"source must be one of {SOURCES}")
        seller = self.st.account(tx.sender_address)
        if seller.open_offers >= MAX_OPEN_OFFERS:
            raise Rejected(E.TOO_MANY_OPEN, f"{seller.open_offers} offers open (limit {MAX_OPEN_OFFERS})")
        seller.open_offers += 1
        self.st.put(k_offer(tx.txid), Offer(tx.sender_address, body.wh, body.wh, body.price_per_wh,
                                            body.window_start, body.window_end, body.source, "open",
                                            self.ctx.height))
        schedule_add(self.st, body.window_end, DUE_OFFER, tx.txid)
        self.ctx.listing(tx.sender_address, LIST_OFFERS, tx.txid)

    def _open_offer(self, offer_id: bytes) -> Offer:
        offer = self.st.offer(offer_id)
        if offer is None:
            raise Rejected(E.UNKNOWN_OFFER, offer_id.hex())
        if offer.status != "open":
            raise Rejected(E.OFFER_CLOSED, f"offer is {offer.status}")
        return offer

    def _accept_offer(self, tx: SignedTx, body: AcceptOffer) -> None:
        _positive(body.wh, "wh")
        offer = self._open_offer(body.offer_id)
        buyer_addr = tx.sender_address
        if buyer_addr == offer.seller:
            raise Rejected(E.SELF_TRADE, "a seller cannot accept its own offer")
        if self.ctx.now_s >= offer.window_end:
            raise Rejected(E.OUTSIDE_WINDOW, "the delivery window has ended")
        if body.wh > offer.remaining:
            raise Rejected(E.OFFER_INSUFFICIENT, f"only {offer.remaining} Wh left on the offer")
        price = cost(body.wh, offer.price_per_wh)
        buyer = self.st.account(buyer_addr)
        if buyer.coin < price + tx.fee:
            raise Rejected(E.INSUFFICIENT_FUNDS, f"prepayment {price} + fee {tx.fee} exceeds balance {buyer.coin}")
        buyer.coin -= price
        buyer.locked_coin += price
        offer.remaining -= body.wh
        if offer.remaining == 0:
            self._close_offer(offer, "filled")
        self.st.put(k_trade(tx.txid), Trade(body.offer_id, offer.seller, buyer_addr, body.wh, offer.price_per_wh,
                                            price, 0, 0, 0, offer.window_start, offer.window_end, offer.source,
                                            "open", self.ctx.height))
        schedule_add(self.st, offer.window_end, DUE_TRADE, tx.txid)
        self.ctx.listing(buyer_addr, LIST_TRADES, tx.txid)
        self.ctx.listing(offer.seller, LIST_TRADES, tx.txid)
        self.ctx.history(offer.seller, tx.txid, tx.kind)

    def _deliver(self, tx: SignedTx, body: Deliver) -> None:
        _positive(body.wh, "wh")
        trade = self.st.trade(body.trade_id)
        if trade is None:
            raise Rejected(E.UNKNOWN_TRADE, body.trade_id.hex())
        if trade.seller != tx.sender_address:
            raise Rejected(E.NOT_SELLER, "only the trade's seller delivers")
        if trade.status != "open":
            raise Rejected(E.TRADE_CLOSED, f"trade is {trade.status}")
        if not trade.window_start <= self.ctx.now_s < trade.window_end:
            raise Rejected(E.OUTSIDE_WINDOW, "deliveries count only inside the delivery window")
        if trade.delivered + body.wh > trade.wh:
            raise Rejected(E.OVER_DELIVERY, f"only {trade.wh - trade.delivered} Wh left to deliver")
        self._need_wh(trade.seller, body.wh, trade.source)
        self._move_wh(tx.txid, trade.seller, trade.buyer, body.wh, trade.source, tx.kind)
        trade.delivered += body.wh
        trade.updated = self.ctx.height
        release = trade.escrow * trade.delivered // trade.wh - trade.released  # exact: full delivery = escrow
        trade.released += release
        self.st.account(trade.buyer).locked_coin -= release
        self.st.account(trade.seller).coin += release
        self.st.globals().settled_wh += body.wh
        if trade.delivered == trade.wh:
            trade.status = "delivered"
        self.ctx.history(trade.buyer, tx.txid, tx.kind)

    def _cancel_offer(self, tx: SignedTx, body: CancelOffer) -> None:
        offer = self._open_offer(body.offer_id)
        if offer.seller != tx.sender_address:
            raise Rejected(E.NOT_OWNER, "only the seller cancels an offer")
        self._close_offer(offer, "cancelled")

    def _close_offer(self, offer: Offer, status: str) -> None:
        offer.status = status
        self.st.account(offer.seller).open_offers -= 1

    def end_block(self) -> None:
        """Settle what expires at this block's time, pay the fees to the proposer, then apply authority
        changes whose block is finalized (deterministic)."""
        self._end_market()
        consensus.end_block(self.st, self.ctx.ancestor(0) or b"", self.ctx.params.authorities)

    def _end_market(self) -> None:
        for kind, item_id in schedule_due(self.st, self.ctx.now_s):
            if kind == DUE_OFFER:
                offer = self.st.offer(item_id)
                if offer is not None and offer.status == "open":
                    self._close_offer(offer, "expired")
            else:
                self._settle_trade(item_id)
        if self.ctx.fees:
            self.st.account(address_of(self.ctx.proposer)).coin += self.ctx.fees
            self.st.globals().fees += self.ctx.fees

    def _settle_trade(self, trade_id: bytes) -> None:
        trade = self.st.trade(trade_id)
        if trade is None or trade.status == "settled":
            return
        refund = trade.escrow - trade.released
        trade.refunded = refund
        trade.status = "settled"
        trade.updated = self.ctx.height
        if refund:
            buyer = self.st.account(trade.buyer)
            buyer.locked_coin -= refund
            buyer.coin += refund
            self.ctx.history(trade.buyer, trade_id, "refund")

    # order book ---------------------------------------------------------------------------------
    def _place_order(self, tx: SignedTx, body: PlaceOrder) -> None:
        _positive(body.wh, "wh")
        if body.side not in (BUY, SELL):
            raise Rejected(E.INVALID_AMOUNT, "side must be buy or sell")
        if body.price_per_wh <= 0 or cost(body.wh, body.price_per_wh) > U64:
            raise Rejected(E.INVALID_PRICE, "price must be positive and the total must fit 64 bits")
        addr = tx.sender_address
        acct = self.st.account(addr)
        if acct.open_orders >= MAX_OPEN_ORDERS:
            raise Rejected(E.TOO_MANY_OPEN, f"{acct.open_orders} orders open (limit {MAX_OPEN_ORDERS})")
        if body.side == BUY:
            lock = cost(body.wh, body.price_per_wh)
            if acct.coin < lock + tx.fee:
                raise Rejected(E.INSUFFICIENT_FUNDS, f"order needs {lock} + fee {tx.fee}, balance {acct.coin}")
        else:
            self._need_wh(addr, body.wh)
        g = self.st.globals()  # only now: loading a missing record creates it, a rejection must leave no trace
        if body.side == BUY:
            acct.coin -= lock
            acct.locked_coin += lock
            order = Order(addr, BUY, body.price_per_wh, body.wh, body.wh, lock, [], g.seq, "open", self.ctx.height)
        else:
            for lot_id, wh, source in holdings_take(self.st, addr, body.wh):
                order_lot_add(self.st, tx.txid, lot_id, wh, source)
            acct.wh -= body.wh
            acct.locked_wh += body.wh
            order = Order(addr, SELL, body.price_per_wh, body.wh, body.wh, 0, [], g.seq, "open", self.ctx.height)
        g.seq += 1
        order_id = tx.txid
        self.st.put(k_order(order_id), order)
        self.ctx.listing(addr, LIST_ORDERS, order_id)
        self._match(order_id, order)
        if order.remaining:
            book_add(self.st, order.side, order.price_per_wh, order.seq, order_id)
            acct.open_orders += 1

    def _match(self, taker_id: bytes, taker: Order) -> None:
        """Price-time priority: cross against the best resting orders at their prices."""
        filled: list[Order] = []
        for price, maker_id in book_best(self.st, SELL if taker.side == BUY else BUY):
            if not taker.remaining:
                break
            if price > taker.price_per_wh if taker.side == BUY else price < taker.price_per_wh:
                break  # the best resting order no longer crosses
            maker = self.st.order(maker_id)
            assert maker is not None and maker.status == "open"
            wh = min(taker.remaining, maker.remaining)
            buy, sell = (taker, maker) if taker.side == BUY else (maker, taker)
            buy_id, sell_id = (taker_id, maker_id) if taker.side == BUY else (maker_id, taker_id)
            self._fill(buy, sell, wh, price, buy_id, sell_id)
            if maker.remaining == 0:
                maker.status = "filled"
                filled.append(maker)
        for maker in filled:  # off the book after the walk, so the walk never sees its own deletions
            book_remove(self.st, maker.side, maker.price_per_wh, maker.seq)
            self.st.account(maker.owner).open_orders -= 1
        if taker.remaining == 0:
            taker.status = "filled"

    def _fill(self, buy: Order, sell: Order, wh: int, price: int, buy_id: bytes, sell_id: bytes) -> None:
        paid = cost(wh, price)
        released = cost(wh, buy.price_per_wh)  # what the buy order had locked for these Wh
        buyer, seller = self.st.account(buy.owner), self.st.account(sell.owner)
        buy.locked_coin -= released
        buyer.locked_coin -= released
        buyer.coin += released - paid  # price improvement goes back to the buyer
        seller.coin += paid
        lots = order_lots_take(self.st, sell_id, wh)
        self._give(buy.owner, lots, sell_id, sell.owner, "fill")
        seller.locked_wh -= wh
        buyer.wh += wh
        for order in (buy, sell):
            order.remaining -= wh
            order.filled_wh += wh
            order.updated = self.ctx.height
        buy.paid_coin += paid
        sell.paid_coin += paid
        self.st.globals().settled_wh += wh
        self.ctx.history(buy.owner, buy_id, "fill")
        self.ctx.history(sell.owner, sell_id, "fill")

    def _cancel_order(self, tx: SignedTx, body: CancelOrder) -> None:
        order = self.st.order(body.order_id)
        if order is None:
            raise Rejected(E.UNKNOWN_ORDER, body.order_id.hex())
        if order.owner != tx.sender_address:
            raise Rejected(E.NOT_OWNER, "only the owner cancels an order")
        if order.status != "open":
            raise Rejected(E.ORDER_CLOSED, f"order is {order.status}")
        acct = self.st.account(order.owner)
        if order.side == BUY:
            acct.locked_coin -= order.locked_coin
            acct.coin += order.locked_coin
            order.locked_coin = 0
        else:
            self._give(order.owner, order_lots_release(self.st, body.order_id), tx.txid, order.owner,
                       "cancel_order")
            acct.locked_wh -= order.remaining
            acct.wh += order.remaining
        book_remove(self.st, order.side, order.price_per_wh, order.seq)
        acct.open_orders -= 1
        order.status = "cancelled"
        order.updated = self.ctx.height
