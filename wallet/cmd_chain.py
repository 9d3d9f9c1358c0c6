"""The chain and accounts: node status, balances, lots, history, transactions; coin and kWh transfers and
redemption."""
from __future__ import annotations

from typing import Any

import click

from ledger.keys import format_address
from ledger.tx import Redeem, Transfer, TransferWh

from .client import NodeError
from .context import Wallet, common, pass_wallet, with_key
from .describe import describe, describe_fill, describe_refund
from .keystore import KeystoreError
from .output import CliError, amount, coin_text, kwh_text, parse_addr, resolve_id
from .units import format_wh, parse_coin, parse_kwh


@click.command()
@common
@pass_wallet
def status(w: Wallet) -> None:
    """Show the node's chain, height, finality and peers, and the minimum fee.

    \b
    Examples:
      kwh-wallet status
      kwh-wallet --node http://127.0.0.1:8702 status
    """
    s = w.client.status()
    s["min_fee"] = w.client.min_fee()
    if w.as_json:
        w.emit_json(s)
        return
    peers = s.get("peers") or []
    pairs = [("node", w.client.url), ("chain", str(s.get("chain_id"))), ("height", str(s.get("height"))),
             ("head", w.id(str(s.get("head"))))]
    if s.get("finalized_height") is not None:
        pairs.append(("finalized", f"block {s['finalized_height']}"
                      + (f" ({s['finality_lag_blocks']} behind the head)" if s.get("finality_lag_blocks") is not None
                         else "")))
    pairs += [("sync", "catching up with a peer" if s.get("syncing") else "up to date"),
              ("mempool", f"{s.get('mempool')} pending"),
              ("peers", f"{sum(1 for p in peers if p.get('connected', True))} connected"),
              ("min fee", coin_text(s["min_fee"])), ("node time", w.when(int(s["time_ms"]) // 1000)
                                                     if isinstance(s.get("time_ms"), int) else "-")]
    w.fields(None, pairs)


@click.command()
@common
@with_key
@pass_wallet
def dashboard(w: Wallet) -> None:
    """Print a link that signs the node's browser dashboard in as the chosen key, for one hour.

    Without it the dashboard shows public data only (ADR 012); signed in, it shows the key's own balances,
    lots, history, meter readings and trades (an authority or auditor key: everything). The link holds a
    one-use credential, good for a minute; the key itself never reaches the browser.

    \b
    Examples:
      kwh-wallet --name alice dashboard
    """
    link = w.client.sign_in_link(w.unlock())
    if w.as_json:
        w.emit_json({"url": link, "address": w.my_address()})
        return
    click.echo(link)


@click.command()
@click.argument("addr", metavar="[ADDRESS]", required=False)
@common
@with_key
@pass_wallet
def balance(w: Wallet, addr: str | None) -> None:
    """Coin and kWh of an account (default: the chosen key).

    \b
    Examples:
      kwh-wallet --name alice balance
      kwh-wallet balance kwh0bea40a2ac03787f66fdaec9a5552fd77802858ed101b7cd
    """
    a = w.client.account(w.address_or_mine(addr))
    if w.as_json:
        w.emit_json(a)
        return
    w.fields(None, [
        ("address", a["address"]),
        ("coin", coin_text(a["coin"])),
        ("locked coin", coin_text(a["locked_coin"])),
        ("energy", kwh_text(a["wh"])),
        ("locked energy", kwh_text(a["locked_wh"])),
        ("consumed", kwh_text(a["consumed_wh"])),
        ("redeemed", kwh_text(a["redeemed_wh"])),
        ("redeemable", kwh_text(max(0, a["consumed_wh"] - a["redeemed_wh"]))),
        ("next nonce", str(a["next_nonce"])),
    ])


@click.command()
@click.argument("addr", metavar="[ADDRESS]", required=False)
@common
@with_key
@pass_wallet
def lots(w: Wallet, addr: str | None) -> None:
    """The kWh lots an account holds, with their provenance ('kwh-wallet lot ID' for one lot's story).

    \b
    Examples:
      kwh-wallet --name alice lots
      kwh-wallet --name alice lots --full-ids
    """
    items = w.client.lots(w.address_or_mine(addr))
    if w.as_json:
        w.emit_json({"lots": items})
        return
    w.table(None, ["lot", "kWh", "source", "meter", f"interval ({w.zone()})"],
            [[w.id(x["lot_id"]), format_wh(x.get("wh", 0)), x.get("source", ""), w.id(x.get("meter_id", "")),
              w.when(x["interval_start"]) if "interval_start" in x else ""]
             for x in items], empty="(no lots)")


def _lot_ids(w: Wallet) -> list[str]:
    """Lot ids a prefix is looked up among: the chosen key's lots (the API has no list of all lots)."""
    try:
        return [x["lot_id"] for x in w.client.lots(w.my_address())]
    except KeystoreError:
        return []


@click.command("lot")
@click.argument("lot_id", metavar="LOT_ID")
@common
@with_key
@pass_wallet
def lot(w: Wallet, lot_id: str) -> None:
    """Trace a lot: the meter and reading that minted it, and every movement since.

    A prefix (8+ hex characters) is looked up among the chosen key's lots; give the whole id for others.

    \b
    Examples:
      kwh-wallet --name alice lot 5a1c09e2
      kwh-wallet lot 5a1c09e2d4f1...(48 hex characters) --json
    """
    lid = resolve_id(lot_id, 24, "lot id", lambda: _lot_ids(w))
    data = w.client.get(f"/lots/{lid}")
    x = data.get("lot") or {}
    reading: dict[str, Any] = {}
    if x.get("reading_id"):
        try:
            reading = (w.client.tx(x["reading_id"]).get("tx") or {})
        except NodeError:
            reading = {}
    if w.as_json:
        w.emit_json(dict(data, reading=reading))
        return
    pairs = [("lot", x.get("lot_id", lid)), ("minted", kwh_text(int(x.get("minted_wh", 0)))),
             ("source", x.get("source") or "-"), ("meter", str(x.get("meter_id", "-"))),
             ("producer", str(x.get("producer", "-"))),
             (f"interval ({w.zone()})", f"{w.when(x['interval_start'])} + {x.get('interval_s')} s"
              if "interval_start" in x else "-"),
             ("minted in block", str(x.get("height", "-"))), ("reading", str(x.get("reading_id", "-")))]
    if reading:
        pairs.append(("reading detail", f"counter {reading.get('counter')}, export register "
                                        f"{reading.get('export_register')} Wh, import register "
                                        f"{reading.get('import_register')} Wh"))
    w.fields(None, pairs)
    w.table("movements", ["txid", "kind", "from", "to", "kWh"],
            [[w.id(m["txid"]), m["kind"], w.addr(m.get("from")), w.addr(m.get("to")), format_wh(m["wh"])]
             for m in data.get("movements", [])], empty="(none)")


class _Blocks:
    """Block times by height, fetched once each (history shows when things happened)."""

    def __init__(self, w: Wallet) -> None:
        self.w, self.cache = w, {}  # type: ignore[var-annotated]

    def time(self, height: int | None) -> int | None:
        if height is None:
            return None
        if height not in self.cache:
            try:
                self.cache[height] = int(self.w.client.get(f"/blocks/{height}")["timestamp_ms"]) // 1000
            except (NodeError, KeyError, TypeError, ValueError):
                self.cache[height] = None
        return self.cache[height]


@click.command()
@click.argument("addr", metavar="[ADDRESS]", required=False)
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="newest N entries")
@click.option("--all", "all_", is_flag=True, help="every entry (the node is read page by page)")
@common
@with_key
@pass_wallet
def history(w: Wallet, addr: str | None, limit: int, all_: bool) -> None:
    """Transactions that touched an account, newest first: when, what, in or out, how much, with whom.

    \b
    Examples:
      kwh-wallet --name alice history
      kwh-wallet --name alice history --limit 100 --json
      kwh-wallet --name alice history --all
    """
    me = w.address_or_mine(addr)
    items = w.client.history(me, None if all_ else limit)
    blocks = _Blocks(w)
    rows = []
    orders: dict[str, dict[str, Any]] | None = None
    for x in items:
        meaning = None
        try:
            if x["kind"] == "refund":  # the entry's txid is the trade's id
                meaning = describe_refund(w.client.trade(x["txid"]))
            elif x["kind"] == "fill":  # the entry's txid is the order's id
                if orders is None:
                    orders = {o["order_id"]: o for o in w.client.orders(me)}
                if x["txid"] in orders:
                    meaning = describe_fill(orders[x["txid"]])
            if meaning is None:
                meaning = describe(w.client.tx(x["txid"]).get("tx") or {}, me)
        except NodeError:
            meaning = describe({"kind": x["kind"]}, me)
        x.update({"time": blocks.time(x.get("height")), "direction": meaning.direction,
                  "amount": meaning.amount, "counterparty": meaning.counterparty, "what": meaning.what,
                  "fee": meaning.fee})
        rows.append(x)
    if w.as_json:
        w.emit_json({"history": rows})
        return
    w.table(None, [f"time ({w.zone()})", "block", "txid", "in/out", "amount", "with", "what"],
            [[w.when(x["time"]) if x["time"] else "-", str(x["height"]) + ("" if x.get("final") is not False
                                                                          else "*"),
              w.id(x["txid"])[:8] if not w.full_ids else x["txid"], x["direction"], x["amount"],
              w.addr(x["counterparty"]), x["what"]] for x in rows], empty="(no history)")
    if any(x.get("final") is False for x in rows):
        w.echo("* not final yet")


@click.command("tx")
@click.argument("txid")
@common
@with_key
@pass_wallet
def show_tx(w: Wallet, txid: str) -> None:
    """A transaction: status, block and time, what it did (amount, direction, counterparty), fee, finality.

    A prefix (8+ hex characters) is looked up in the chosen key's history. With --wait: wait until it is
    included; a rejection is then an error with the ledger's reason.

    \b
    Examples:
      kwh-wallet tx 3fcd8a01
      kwh-wallet --name alice --wait tx 3fcd8a01
    """
    tid = resolve_id(txid, 32, "txid", lambda: _history_ids(w))
    info = w.client.wait_tx(tid, w.timeout, final=w.final) if w.wait else w.client.tx(tid)
    if w.wait and info["status"] == "rejected":
        raise CliError(str(info.get("reason") or "rejected"), f"{info.get('detail') or 'rejected'} (transaction {tid})")
    if w.as_json:
        w.emit_json(info)
        return
    tx = info.get("tx") or {}
    try:
        me: str | None = w.my_address()
    except KeystoreError:
        me = None
    meaning = describe(tx, me if me in (tx.get("sender"), tx.get("to")) else tx.get("sender"))
    pairs = [("txid", info["txid"]), ("status", str(info["status"]))]
    if info.get("height") is not None:
        when = _Blocks(w).time(info["height"])
        pairs.append(("block", f"{info['height']} ({w.id(str(info.get('block')))})"))
        pairs.append((f"time ({w.zone()})", w.when(when) if when else "-"))
    if "final" in info:
        pairs.append(("final", "yes" if info["final"] else "not yet"))
    if info.get("reason"):
        pairs.append(("reason", f"{info['reason']}: {info.get('detail', '')}"))
    pairs.append(("kind", str(tx.get("kind"))))
    pairs.append(("what", meaning.what))
    if "sender" in tx:
        pairs.append(("from", tx["sender"]))
    if tx.get("to"):
        pairs.append(("to", tx["to"]))
    if meaning.amount:
        pairs.append(("amount", meaning.amount))
    if isinstance(tx.get("fee"), int):
        pairs.append(("fee", coin_text(tx["fee"])))
    if "nonce" in tx:
        pairs.append(("nonce", str(tx["nonce"])))
    w.fields(None, pairs)


def _history_ids(w: Wallet) -> list[str]:
    try:
        return [x["txid"] for x in w.client.history(w.my_address(), 1000)]
    except KeystoreError:
        return []


# ---------------------------------------------------------------------------------------- transfers


@click.command()
@click.argument("coin", metavar="COIN")
@click.argument("to", metavar="TO")
@common
@with_key
@pass_wallet
def send(w: Wallet, coin: str, to: str) -> None:
    """Send COIN to the address TO; COIN has decimals, like 1.5.

    \b
    Examples:
      kwh-wallet --name alice --wait send 1.5 kwh0bea40a2ac03787f66fdaec9a5552fd77802858ed101b7cd
    """
    units = amount(parse_coin, coin, "amount")
    dest = parse_addr(to, "recipient")
    w.submit(Transfer(dest, units), f"send {coin_text(units)} to {format_address(dest)}",
             {"to": format_address(dest), "amount": units}, spends=units)


@click.command("send-wh")
@click.argument("kwh", metavar="KWH")
@click.argument("to", metavar="TO")
@common
@with_key
@pass_wallet
def send_wh(w: Wallet, kwh: str, to: str) -> None:
    """Send KWH of energy tokens to the address TO, oldest lots first; KWH like 0.25 or 500Wh.

    \b
    Examples:
      kwh-wallet --name alice send-wh 500Wh kwh0bea40a2ac03787f66fdaec9a5552fd77802858ed101b7cd
    """
    wh = amount(parse_kwh, kwh, "energy")
    dest = parse_addr(to, "recipient")
    w.submit(TransferWh(dest, wh), f"send {kwh_text(wh)} to {format_address(dest)}",
             {"to": format_address(dest), "wh": wh})


@click.command()
@click.argument("kwh", metavar="KWH")
@common
@with_key
@pass_wallet
def redeem(w: Wallet, kwh: str) -> None:
    """Burn KWH of tokens against your own metered consumption not yet covered.

    \b
    Examples:
      kwh-wallet --name carol --wait redeem 0.4        ('redeemable' in balance says how much)
    """
    wh = amount(parse_kwh, kwh, "energy")
    w.submit(Redeem(wh), f"redeem {kwh_text(wh)}", {"wh": wh})


COMMANDS = [status, balance, lots, lot, history, show_tx, send, send_wh, redeem, dashboard]
