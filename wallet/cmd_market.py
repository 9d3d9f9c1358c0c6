"""The market: prepaid offers, trades and deliveries, and the limit order book."""
from __future__ import annotations

from typing import Any

import click

from ledger.keys import format_address
from ledger.tx import BUY, SELL, SOURCES, AcceptOffer, CancelOffer, CancelOrder, Deliver, PlaceOrder, PostOffer

from .client import NodeError
from .context import Wallet, common, pass_wallet, with_key
from .output import EXIT_REJECTED, amount, coin_text, fail, kwh_text, parse_addr, price_text, resolve_id, wh_text
from .units import (UnitError, format_coin, format_price_per_kwh, format_wh, parse_kwh, parse_price_per_kwh,
                    parse_time)

SHORT = 10


def _source(value: str | None) -> str:
    return "" if value in (None, "", "any") else str(value)


SOURCE_CHOICE = click.Choice(("any",) + SOURCES)


MAX_WINDOW_S = 90 * 86400  # the ledger's limit (ledger/transition.py)


def offer_ids(w: Wallet) -> list[str]:
    return [o["offer_id"] for o in w.client.offers(None)]


def trade_ids(w: Wallet) -> list[str]:
    return [t["trade_id"] for t in w.client.trades(w.my_address())]


def order_ids(w: Wallet) -> list[str]:
    return [o["order_id"] for o in w.client.orders(w.my_address())]


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
    """Offer energy for delivery in a window; buyers prepay when they accept.

    A window that has already ended is refused here; offering more than you hold is allowed (you may
    produce it before the window ends) with a warning.

    \b
    Examples:
      kwh-wallet --name alice offer --kwh 2 --price-per-kwh 25 --window-end +1h
      kwh-wallet --name alice --wait offer --kwh 500Wh --price-per-kwh 24.5 \\
          --window-start 2026-03-01T09:00Z --window-end 2026-03-01T12:00Z --source solar
    """
    wh = amount(parse_kwh, kwh, "energy")
    price = amount(parse_price_per_kwh, price_per_kwh, "price")
    now = w.node_now()
    try:
        start, end = parse_time(window_start, now), parse_time(window_end, now)
    except UnitError as exc:
        fail("invalid_window", str(exc))
    if end <= now:
        fail("invalid_window", f"the window ends {w.when(end)}, which is already past (node time {w.when(now)}); "
                               "give a later --window-end, e.g. +1h")
    if end <= start:
        fail("invalid_window", f"window end {w.when(end)} is not after its start {w.when(start)}")
    if end - start > MAX_WINDOW_S:
        fail("invalid_window", "a delivery window may last at most 90 days")
    held = int(w.client.account(w.my_address())["wh"])
    if wh > held:
        w.warn(f"you hold {kwh_text(held)} and offer {kwh_text(wh)}: a buyer's prepayment for what you do not "
             "deliver by the window's end is refunded to them")
    w.submit(PostOffer(wh, price, start, end, _source(source)),
             f"offer {kwh_text(wh)} at {price_text(price)} (total {coin_text(wh * price)}), "
             f"delivery {w.when(start)} .. {w.when(end)}",
             {"wh": wh, "price_per_wh": price, "window_start": start, "window_end": end,
              "source": _source(source)}, id_fields=("offer_id",))


def _offer_rows(w: Wallet, items: list[dict[str, Any]]) -> list[list[str]]:
    return [[w.id(o["offer_id"]), w.addr(o["seller"]), f"{format_wh(o['remaining'])}/{format_wh(o['wh'])}",
             format_price_per_kwh(o["price_per_wh"]), w.window(o["window_start"], o["window_end"]),
             o["status"] + (f" {o['source']}" if o.get("source") else "")] for o in items]


@click.command()
@click.option("--all", "show_all", is_flag=True, help="closed offers too (filled, cancelled, expired)")
@click.option("--seller", metavar="ADDRESS", default=None, help="only this seller's offers")
@common
@pass_wallet
def offers(w: Wallet, show_all: bool, seller: str | None) -> None:
    """Offers on the market (open ones unless --all); ids are short, --full-ids shows them whole.

    \b
    Examples:
      kwh-wallet offers
      kwh-wallet offers --all --seller kwh0bea40a2ac03787f66fdaec9a5552fd77802858ed101b7cd
      kwh-wallet offers --full-ids
    """
    seller_text = format_address(parse_addr(seller, "seller")) if seller else None
    items = [o for o in w.client.offers(None if show_all else "open", seller_text)
             if seller_text is None or o.get("seller") == seller_text]  # `seller=` is a node extra
    if w.as_json:
        w.emit_json({"offers": items})
        return
    w.table(None, ["offer", "seller", "kWh left", "coin/kWh", f"window ({w.zone()})", "status"],
            _offer_rows(w, items), empty="(no offers)")


def find_offer(w: Wallet, offer_id: str) -> dict[str, Any]:
    try:
        return w.client.get(f"/market/offers/{offer_id}")  # type: ignore[no-any-return]
    except NodeError as exc:
        if exc.code != "not_found":
            raise
    fail("unknown_offer", f"no offer {offer_id} on the ledger (is it in a block yet?)", EXIT_REJECTED)


@click.command()
@click.argument("offer_id", metavar="OFFER_ID")
@click.option("--kwh", default=None, help="how much to buy (default: all that is left)")
@common
@with_key
@pass_wallet
def accept(w: Wallet, offer_id: str, kwh: str | None) -> None:
    """Accept (part of) an offer: its price is locked in escrow until delivery or the window's end.

    \b
    Examples:
      kwh-wallet --name bob --wait accept 3fcd8a01 --kwh 1.5
      kwh-wallet --name bob accept 3fcd8a01          (all that is left)
    """
    oid = resolve_id(offer_id, 32, "offer id", lambda: offer_ids(w))
    o = find_offer(w, oid)
    if o["status"] != "open":
        fail("offer_closed", f"offer {oid} is {o['status']}", EXIT_REJECTED)
    wh = amount(parse_kwh, kwh, "energy") if kwh is not None else int(o["remaining"])
    if wh > int(o["remaining"]):
        fail("offer_insufficient", f"offer {oid[:SHORT]} has only {wh_text(int(o['remaining']))} left", EXIT_REJECTED)
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
    """Deliver KWH into a trade you sold; the buyer's escrow is released to you pro rata.

    \b
    Examples:
      kwh-wallet --name alice --wait deliver bf5e02c1 1.5
      kwh-wallet --name alice deliver bf5e02c1 250Wh
    """
    tid = resolve_id(trade_id, 32, "trade id", lambda: trade_ids(w))
    wh = amount(parse_kwh, kwh, "energy")
    try:
        t = w.client.trade(tid)
    except NodeError as exc:
        if exc.code != "not_found":
            raise
        fail("unknown_trade", f"no trade {tid} on the ledger (is the accept in a block yet?)", EXIT_REJECTED)
    if t["status"] != "open":
        fail("trade_closed", f"trade {tid[:SHORT]} is {t['status']}", EXIT_REJECTED)
    left = int(t["wh"]) - int(t["delivered"])
    if wh > left:
        fail("over_delivery", f"trade {tid[:SHORT]} has only {wh_text(left)} left to deliver, not {kwh_text(wh)}",
             EXIT_REJECTED)
    now = w.node_now()
    if now >= int(t["window_end"]):
        fail("outside_window", f"the delivery window ended {w.when(int(t['window_end']))}", EXIT_REJECTED)
    w.submit(Deliver(bytes.fromhex(tid), wh), f"deliver {kwh_text(wh)} into trade {tid}", {"trade_id": tid, "wh": wh})


def _trade_pairs(w: Wallet, t: dict[str, Any]) -> list[tuple[str, str]]:
    return [("trade", t["trade_id"]), ("offer", t["offer_id"]), ("seller", t["seller"]), ("buyer", t["buyer"]),
            ("energy", kwh_text(t["wh"])), ("price", price_text(t["price_per_wh"])),
            ("escrow", coin_text(t["escrow"])), ("delivered", kwh_text(t["delivered"])),
            ("released", coin_text(t["released"])), ("refunded", coin_text(t["refunded"])),
            (f"window ({w.zone()})", f"{w.when(t['window_start'])} .. {w.when(t['window_end'])}"),
            ("source", t.get("source") or "any"), ("status", t["status"]), ("height", str(t["height"]))] + \
        ([("final", "yes" if t["final"] else "not yet")] if "final" in t else [])


@click.command()
@click.argument("trade_id", metavar="TRADE_ID")
@common
@pass_wallet
def trade(w: Wallet, trade_id: str) -> None:
    """Show a trade: escrow, delivered, released, refunded.

    \b
    Examples:
      kwh-wallet trade bf5e02c1
      kwh-wallet trade bf5e02c1 --json
    """
    t = w.client.trade(resolve_id(trade_id, 32, "trade id", lambda: trade_ids(w)))
    if w.as_json:
        w.emit_json(t)
    else:
        w.fields(None, _trade_pairs(w, t))


@click.command()
@click.argument("addr", metavar="[ADDRESS]", required=False)
@common
@with_key
@pass_wallet
def trades(w: Wallet, addr: str | None) -> None:
    """Trades an account bought or sold (default: the chosen key).

    \b
    Examples:
      kwh-wallet --name alice trades
    """
    me = w.address_or_mine(addr)
    items = w.client.trades(me)
    if w.as_json:
        w.emit_json({"trades": items})
        return
    w.table(None, ["trade", "role", "with", "kWh done/all", "coin/kWh", "status"],
            [[w.id(t["trade_id"]), "seller" if t["seller"] == me else "buyer",
              w.addr(t["buyer"] if t["seller"] == me else t["seller"]),
              f"{format_wh(t['delivered'])}/{format_wh(t['wh'])}", format_price_per_kwh(t["price_per_wh"]),
              t["status"]] for t in items], empty="(no trades)")


@click.command()
@click.argument("offer_id", metavar="OFFER_ID")
@common
@with_key
@pass_wallet
def cancel(w: Wallet, offer_id: str) -> None:
    """Cancel the part of your offer nobody accepted yet.

    \b
    Examples:
      kwh-wallet --name alice cancel 3fcd8a01
    """
    oid = resolve_id(offer_id, 32, "offer id", lambda: offer_ids(w))
    w.submit(CancelOffer(bytes.fromhex(oid)), f"cancel offer {oid}", {"offer_id": oid})


# --------------------------------------------------------------------------------------- order book


def _order_row(w: Wallet, o: dict[str, Any]) -> list[str]:
    return [w.id(o["order_id"]), o["side"], format_price_per_kwh(o["price_per_wh"]),
            f"{format_wh(o['remaining'])}/{format_wh(o['wh'])}", format_wh(o["filled_wh"]),
            format_coin(o["paid_coin"]), o["status"]]


ORDER_COLUMNS = ["order", "side", "coin/kWh", "kWh left", "filled", "coin paid", "status"]


@click.command()
@click.argument("side", type=click.Choice((BUY, SELL)))
@click.option("--kwh", required=True, help="energy to buy or sell (kWh, or e.g. 500Wh)")
@click.option("--price-per-kwh", required=True, metavar="COIN", help="limit price in coin per kWh")
@common
@with_key
@pass_wallet
def order(w: Wallet, side: str, kwh: str, price_per_kwh: str) -> None:
    """Place a limit order: buy locks coin at the limit, sell locks kWh; matching is price-time.

    \b
    Examples:
      kwh-wallet --name alice --wait order sell --kwh 1 --price-per-kwh 30
      kwh-wallet --name bob --wait order buy --kwh 0.6 --price-per-kwh 31
    """
    wh = amount(parse_kwh, kwh, "energy")
    price = amount(parse_price_per_kwh, price_per_kwh, "price")
    if side == SELL:
        held = int(w.client.account(w.my_address())["wh"])
        if wh > held:
            fail("insufficient_wh", f"you hold {wh_text(held)}; a sell order locks the energy it sells, "
                                        f"{kwh_text(wh)}", EXIT_REJECTED)

    def filled(result: dict[str, Any]) -> list[str]:
        for o in w.client.orders(result["sender"]):
            if o.get("order_id") == result["txid"]:
                result["order"] = o
                return [f"order {o['status']}: {kwh_text(o['filled_wh'])} of {kwh_text(o['wh'])} filled for "
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
    """Orders of an account (default: the chosen key).

    \b
    Examples:
      kwh-wallet --name alice orders
    """
    items = w.client.orders(w.address_or_mine(addr))
    if w.as_json:
        w.emit_json({"orders": items})
        return
    w.table(None, ORDER_COLUMNS, [_order_row(w, o) for o in items], empty="(no orders)")


@click.command()
@common
@pass_wallet
def orderbook(w: Wallet) -> None:
    """Resting buy and sell orders, best first.

    \b
    Examples:
      kwh-wallet orderbook
      kwh-wallet orderbook --json
    """
    book = w.client.orderbook()
    if w.as_json:
        w.emit_json(book)
        return
    for title, side in (("sells (lowest price first)", "sells"), ("buys (highest price first)", "buys")):
        w.table(title, ["order", "owner", "coin/kWh", "kWh left"],
                [[w.id(o["order_id"]), w.addr(o["owner"]), format_price_per_kwh(o["price_per_wh"]),
                  format_wh(o["remaining"])] for o in book.get(side, [])], empty="(none)")


@click.command("cancel-order")
@click.argument("order_id", metavar="ORDER_ID")
@common
@with_key
@pass_wallet
def cancel_order(w: Wallet, order_id: str) -> None:
    """Cancel the unfilled rest of your order; what it locked comes back.

    \b
    Examples:
      kwh-wallet --name alice cancel-order f074c2d9
    """
    oid = resolve_id(order_id, 32, "order id", lambda: order_ids(w))
    w.submit(CancelOrder(bytes.fromhex(oid)), f"cancel order {oid}", {"order_id": oid})


COMMANDS = [offer, offers, accept, deliver, trade, trades, cancel, order, orders, orderbook, cancel_order]
