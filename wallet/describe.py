"""What a transaction means to one account, in words: direction, amount, counterparty, fee.

`GET /tx/{id}` gives the transaction's fields in ledger units (docs/interfaces.md); `describe` turns them into
what a person asks of their history: did coin or energy come in or go out, how much, from or to whom, and
what it cost. Someone else accepting your offer is 'in' (sold), not your own accept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .units import format_coin, format_price_per_kwh, format_wh

IN, OUT, NONE = "in", "out", "-"


@dataclass(frozen=True)
class Meaning:
    direction: str  # in, out, or - (nothing moved to or from the account yet: an offer, an order, a cancel)
    amount: str  # "1.5 coin", "0.25 kWh", or ""
    counterparty: str | None  # an address, or None
    what: str  # one short phrase
    fee: int | None  # base units the account paid, when it is the sender


def _kwh(wh: int) -> str:
    return f"{format_wh(wh)} kWh"


def _coin(units: int) -> str:
    return f"{format_coin(units)} coin"


def describe(tx: dict[str, Any], me: str | None) -> Meaning:
    """The meaning of `tx` (a tx_json object) for the account `me` (None: a neutral description)."""
    kind = str(tx.get("kind"))
    sender = tx.get("sender")
    mine = me is not None and sender == me
    fee = int(tx["fee"]) if mine and isinstance(tx.get("fee"), int) else None
    if kind == "reading":
        wh = int(tx.get("export_wh", 0))
        return Meaning(IN if wh else NONE, _kwh(wh) if wh else "", None,
                       f"meter {str(tx.get('meter_id', ''))[:12]} reading #{tx.get('counter')}: minted {_kwh(wh)}, "
                       f"consumed {_kwh(int(tx.get('import_wh', 0)))}", None)
    if kind == "transfer":
        units = int(tx.get("amount", 0))
        if mine:
            return Meaning(OUT, _coin(units), tx.get("to"), f"sent {_coin(units)}", fee)
        return Meaning(IN, _coin(units), sender, f"received {_coin(units)}", fee)
    if kind == "transfer_wh":
        wh = int(tx.get("wh", 0))
        if mine:
            return Meaning(OUT, _kwh(wh), tx.get("to"), f"sent {_kwh(wh)}", fee)
        return Meaning(IN, _kwh(wh), sender, f"received {_kwh(wh)}", fee)
    if kind == "redeem":
        wh = int(tx.get("wh", 0))
        return Meaning(OUT, _kwh(wh), None, f"redeemed (burned) {_kwh(wh)} against consumption", fee)
    if kind == "post_offer":
        wh, price = int(tx.get("wh", 0)), int(tx.get("price_per_wh", 0))
        return Meaning(NONE, _kwh(wh), None if mine else sender,
                       f"offered {_kwh(wh)} at {format_price_per_kwh(price)} coin/kWh", fee)
    if kind == "accept_offer":
        wh = int(tx.get("wh", 0))
        offer = str(tx.get("offer_id", ""))[:12]
        if mine:
            return Meaning(OUT, _kwh(wh), None, f"accepted {_kwh(wh)} of offer {offer} (price prepaid in escrow)", fee)
        return Meaning(IN, _kwh(wh), sender, f"your offer {offer} accepted for {_kwh(wh)} (sold)", fee)
    if kind == "deliver":
        wh = int(tx.get("wh", 0))
        trade = str(tx.get("trade_id", ""))[:12]
        if mine:
            return Meaning(OUT, _kwh(wh), None, f"delivered {_kwh(wh)} into trade {trade}", fee)
        return Meaning(IN, _kwh(wh), sender, f"received {_kwh(wh)} delivered into trade {trade}", fee)
    if kind == "place_order":
        wh, price = int(tx.get("wh", 0)), int(tx.get("price_per_wh", 0))
        return Meaning(NONE, _kwh(wh), None if mine else sender,
                       f"{tx.get('side')} order for {_kwh(wh)} at {format_price_per_kwh(price)} coin/kWh", fee)
    if kind == "cancel_offer":
        return Meaning(NONE, "", None, f"cancelled offer {str(tx.get('offer_id', ''))[:12]}", fee)
    if kind == "cancel_order":
        return Meaning(NONE, "", None, f"cancelled order {str(tx.get('order_id', ''))[:12]}", fee)
    if kind == "enroll_meter":
        return Meaning(NONE, "", tx.get("owner"), f"enrolled a {tx.get('meter_kind')} meter ({tx.get('rated_w')} W)",
                       fee)
    if kind == "revoke_meter":
        return Meaning(NONE, "", None, f"revoked meter {str(tx.get('meter_id', ''))[:12]}", fee)
    return Meaning(NONE, "", None if mine else sender, kind, fee)


def describe_refund(trade: dict[str, Any]) -> Meaning:
    """A history entry 'refund' (its txid is the trade's id): escrow back to the buyer at the window's end."""
    undelivered = int(trade["wh"]) - int(trade["delivered"])
    return Meaning(IN, _coin(int(trade["refunded"])), trade.get("seller"),
                   f"refund from trade {str(trade['trade_id'])[:12]}: {_kwh(undelivered)} not delivered", None)


def describe_fill(order: dict[str, Any]) -> Meaning:
    """A history entry 'fill' (its txid is the order's id): the order matched; totals so far."""
    buy = order.get("side") == "buy"
    filled = int(order["filled_wh"])
    return Meaning(IN if buy else OUT, _kwh(filled), None,
                   f"{order.get('side')} order {str(order['order_id'])[:12]} filled {_kwh(filled)} for "
                   f"{_coin(int(order['paid_coin']))} so far", None)
