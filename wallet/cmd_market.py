"""The market: prepaid offers, trades and deliveries, and the limit order book."""
from __future__ import annotations

from typing import Any

import click

from ledger.keys import format_address
from ledger.tx import BUY, SELL, SOURCES, AcceptOffer, CancelOffer, CancelOrder, Deliver, PlaceOrder, PostOffer

from .context import Wallet, common, pass_wallet, with_key
from .output import EXIT_REJECTED, amount, coin_text, fail, kwh_text, parse_addr, parse_id, price_text
from .units import (UnitError, format_coin, format_price_per_kwh, format_time, format_wh, parse_kwh,
                    parse_price_per_kwh, parse_time)


def _source(value: str | None) -> str:
    return "" if value in (None, "", "any") else str(value)


SOURCE_CHOICE = click.Choice(("any",) + SOURCES)


@click.command()
@click.option("--kwh", required=True, help="energy offered (kWh, or e.g. 500Wh)")
@click.option("--price-per-kwh", required=True, metavar="COIN", help="price in coin per kWh")
@click.option("--window-start", default="now", show_default=True, metavar="TIME",
              help="delivery window start: ISO-8601 (UTC unless an offset is given), unix seconds, or +1h")
@click.option("--window-end", required=True, metavar="TIME", help="delivery window end (same forms)")
@click.option("--source", type=SOURCE_CHOICE, default="any", show_default=True,
              help="energy source the delivered lots must come from")
@common
@with_key
@pass_wallet
def offer(w: Wallet, kwh: str, price_per_kwh: str, window_start: str, window_end: str, source: str) -> None:
    """Offer energy for delivery in a window; buyers prepay when they accept."""
    wh = amount(parse_kwh, kwh, "energy")
    price = amount(parse_price_per_kwh, price_per_kwh, "price")
    now = w.node_now()
    try:
        start, end = parse_time(window_start, now), parse_time(window_end, now)
    except UnitError as exc:
        fail("invalid_window", str(exc))
    if end <= start:
        fail("invalid_window", f"window end {format_time(end)} is not after its start {format_time(start)}")
    w.submit(PostOffer(wh, price, start, end, _source(source)),
             f"offer {kwh_text(wh)} at {price_text(price)} (total {coin_text(wh * price)}), "
             f"delivery {format_time(start)} .. {format_time(end)}",
             {"wh": wh, "price_per_wh": price, "window_start": start, "window_end": end,
              "source": _source(source)}, id_fields=("offer_id",))


def _offer_rows(items: list[dict[str, Any]]) -> list[list[str]]:
    return [[o["offer_id"], o["seller"], f"{format_wh(o['remaining'])}/{format_wh(o['wh'])}",
             format_price_per_kwh(o["price_per_wh"]),
             f"{format_time(o['window_start'])} .. {format_time(o['window_end'])}", o.get("source") or "any",
             o["status"]] for o in items]


@click.command()
@click.option("--all", "show_all", is_flag=True, help="closed offers too (filled, cancelled, expired)")
@click.option("--seller", metavar="ADDRESS", default=None, help="only this seller's offers")
@common
@pass_wallet
def offers(w: Wallet, show_all: bool, seller: str | None) -> None:
    """Offers on the market (open ones unless --all)."""
    seller_text = format_address(parse_addr(seller, "seller")) if seller else None
    items = [o for o in w.client.offers(None if show_all else "open", seller_text)
             if seller_text is None or o.get("seller") == seller_text]  # `seller=` is a node extra
    if w.as_json:
        w.emit_json({"offers": items})
        return
    w.table(None, ["offer", "seller", "kWh left/total", "coin/kWh", "window (UTC)", "source", "status"],
            _offer_rows(items), empty="(no offers)")


def find_offer(w: Wallet, offer_id: str) -> dict[str, Any]:
    """The API has no route for one offer: look among the open ones, then among all (to say why it is closed)."""
    for status in ("open", None):
        for o in w.client.offers(status):
            if o.get("offer_id") == offer_id:
                return o
    fail("unknown_offer", f"no offer {offer_id} on the ledger (is it in a block yet?)", EXIT_REJECTED)


@click.command()
@click.argument("offer_id", metavar="OFFER_ID")
@click.option("--kwh", default=None, help="how much to buy (default: all that is left)")
@common
@with_key
@pass_wallet
def accept(w: Wallet, offer_id: str, kwh: str | None) -> None:
    """Accept (part of) an offer: its price is locked in escrow until delivery or the window's end."""
    oid = parse_id(offer_id, 32, "offer id").hex()
    o = find_offer(w, oid)
    if o["status"] != "open":
        fail("offer_closed", f"offer {oid} is {o['status']}", EXIT_REJECTED)
    wh = amount(parse_kwh, kwh, "energy") if kwh is not None else int(o["remaining"])
    price = int(o["price_per_wh"])
    w.submit(AcceptOffer(bytes.fromhex(oid), wh),
             f"accept {kwh_text(wh)} of offer {oid} at {price_text(price)}: prepay {coin_text(wh * price)}",
             {"offer_id": oid, "wh": wh, "escrow": wh * price}, id_fields=("trade_id",), spends=wh * price)


@click.command()
@click.argument("trade_id", metavar="TRADE_ID")
@click.argument("kwh", metavar="KWH")
@common
@with_key
@pass_wallet
def deliver(w: Wallet, trade_id: str, kwh: str) -> None:
    """Deliver KWH into a trade you sold; the buyer's escrow is released to you pro rata."""
    tid = parse_id(trade_id, 32, "trade id")
    wh = amount(parse_kwh, kwh, "energy")
    w.submit(Deliver(tid, wh), f"deliver {kwh_text(wh)} into trade {tid.hex()}", {"trade_id": tid.hex(), "wh": wh})


def _trade_pairs(t: dict[str, Any]) -> list[tuple[str, str]]:
    return [("trade", t["trade_id"]), ("offer", t["offer_id"]), ("seller", t["seller"]), ("buyer", t["buyer"]),
            ("energy", kwh_text(t["wh"])), ("price", price_text(t["price_per_wh"])),
            ("escrow", coin_text(t["escrow"])), ("delivered", kwh_text(t["delivered"])),
            ("released", coin_text(t["released"])), ("refunded", coin_text(t["refunded"])),
            ("window (UTC)", f"{format_time(t['window_start'])} .. {format_time(t['window_end'])}"),
            ("source", t.get("source") or "any"), ("status", t["status"]), ("height", str(t["height"]))]


@click.command()
@click.argument("trade_id", metavar="TRADE_ID")
@common
@pass_wallet
def trade(w: Wallet, trade_id: str) -> None:
    """Show a trade: escrow, delivered, released, refunded."""
    t = w.client.trade(parse_id(trade_id, 32, "trade id").hex())
    if w.as_json:
        w.emit_json(t)
    else:
        w.fields(None, _trade_pairs(t))


@click.command()
@click.argument("addr", metavar="[ADDRESS]", required=False)
@common
@with_key
@pass_wallet
def trades(w: Wallet, addr: str | None) -> None:
    """Trades an account bought or sold (default: the chosen key)."""
    items = w.client.trades(w.address_or_mine(addr))
    if w.as_json:
        w.emit_json({"trades": items})
        return
    w.table(None, ["trade", "seller", "buyer", "kWh delivered/bought", "coin/kWh", "status"],
            [[t["trade_id"], t["seller"], t["buyer"], f"{format_wh(t['delivered'])}/{format_wh(t['wh'])}",
              format_price_per_kwh(t["price_per_wh"]), t["status"]] for t in items], empty="(no trades)")


@click.command()
@click.argument("offer_id", metavar="OFFER_ID")
@common
@with_key
@pass_wallet
def cancel(w: Wallet, offer_id: str) -> None:
    """Cancel the part of your offer nobody accepted yet."""
    oid = parse_id(offer_id, 32, "offer id")
    w.submit(CancelOffer(oid), f"cancel offer {oid.hex()}", {"offer_id": oid.hex()})


# --------------------------------------------------------------------------------------- order book


def _order_row(o: dict[str, Any]) -> list[str]:
    return [o["order_id"], o["side"], format_price_per_kwh(o["price_per_wh"]),
            f"{format_wh(o['remaining'])}/{format_wh(o['wh'])}", format_wh(o["filled_wh"]),
            format_coin(o["paid_coin"]), o["status"]]


ORDER_COLUMNS = ["order", "side", "coin/kWh", "kWh left/total", "kWh filled", "coin paid", "status"]


@click.command()
@click.argument("side", type=click.Choice((BUY, SELL)))
@click.option("--kwh", required=True, help="energy to buy or sell (kWh, or e.g. 500Wh)")
@click.option("--price-per-kwh", required=True, metavar="COIN", help="limit price in coin per kWh")
@common
@with_key
@pass_wallet
def order(w: Wallet, side: str, kwh: str, price_per_kwh: str) -> None:
    """Place a limit order: buy locks coin at the limit, sell locks kWh; matching is price-time."""
    wh = amount(parse_kwh, kwh, "energy")
    price = amount(parse_price_per_kwh, price_per_kwh, "price")

    def filled(result: dict[str, Any]) -> list[str]:
        for o in w.client.orders(result["sender"]):
            if o.get("order_id") == result["txid"]:
                result["order"] = o
                return [f"order {o['status']}: {format_wh(o['filled_wh'])} of {kwh_text(o['wh'])} filled for "
                        f"{coin_text(o['paid_coin'])}"]
        return []

    summary = (f"buy {kwh_text(wh)} at {price_text(price)} or less (locks {coin_text(wh * price)})" if side == BUY
               else f"sell {kwh_text(wh)} at {price_text(price)} or more")
    w.submit(PlaceOrder(side, wh, price), summary, {"side": side, "wh": wh, "price_per_wh": price}, after=filled,
             id_fields=("order_id",), spends=wh * price if side == BUY else 0)


@click.command()
@click.argument("addr", metavar="[ADDRESS]", required=False)
@common
@with_key
@pass_wallet
def orders(w: Wallet, addr: str | None) -> None:
    """Orders of an account (default: the chosen key)."""
    items = w.client.orders(w.address_or_mine(addr))
    if w.as_json:
        w.emit_json({"orders": items})
        return
    w.table(None, ORDER_COLUMNS, [_order_row(o) for o in items], empty="(no orders)")


@click.command()
@common
@pass_wallet
def orderbook(w: Wallet) -> None:
    """Resting buy and sell orders, best first."""
    book = w.client.orderbook()
    if w.as_json:
        w.emit_json(book)
        return
    for title, side in (("sells (lowest price first)", "sells"), ("buys (highest price first)", "buys")):
        w.table(title, ["order", "owner", "coin/kWh", "kWh left"],
                [[o["order_id"], o["owner"], format_price_per_kwh(o["price_per_wh"]), format_wh(o["remaining"])]
                 for o in book.get(side, [])], empty="(none)")


@click.command("cancel-order")
@click.argument("order_id", metavar="ORDER_ID")
@common
@with_key
@pass_wallet
def cancel_order(w: Wallet, order_id: str) -> None:
    """Cancel the unfilled rest of your order; what it locked comes back."""
    oid = parse_id(order_id, 32, "order id")
    w.submit(CancelOrder(oid), f"cancel order {oid.hex()}", {"order_id": oid.hex()})


COMMANDS = [offer, offers, accept, deliver, trade, trades, cancel, order, orders, orderbook, cancel_order]
