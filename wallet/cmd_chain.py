"""The chain and accounts: node status, balances, lots, history, transactions; coin and kWh transfers and
redemption."""
from __future__ import annotations

import click

from ledger.keys import format_address
from ledger.tx import Redeem, Transfer, TransferWh

from .context import Wallet, common, pass_wallet, with_key
from .output import CliError, amount, coin_text, kwh_text, parse_addr, parse_id
from .units import format_time, format_wh, parse_coin, parse_kwh


@click.command()
@common
@pass_wallet
def status(w: Wallet) -> None:
    """Show the node's chain, height and peers."""
    s = w.client.status()
    s["min_fee"] = w.client.min_fee()
    if w.as_json:
        w.emit_json(s)
        return
    w.fields(None, [("node", w.client.url), ("chain", str(s.get("chain_id"))), ("height", str(s.get("height"))),
                    ("head", str(s.get("head"))), ("syncing", str(s.get("syncing"))),
                    ("mempool", str(s.get("mempool"))), ("peers", str(len(s.get("peers") or []))),
                    ("min fee", coin_text(s["min_fee"]))])


@click.command()
@click.argument("addr", metavar="[ADDRESS]", required=False)
@common
@with_key
@pass_wallet
def balance(w: Wallet, addr: str | None) -> None:
    """Coin and kWh of an account (default: the chosen key)."""
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
    """The kWh lots an account holds, with their provenance."""
    items = w.client.lots(w.address_or_mine(addr))
    if w.as_json:
        w.emit_json({"lots": items})
        return
    w.table(None, ["lot", "kWh", "source", "meter", "interval start", "producer"],
            [[x["lot_id"], format_wh(x.get("wh", 0)), x.get("source", ""), x.get("meter_id", ""),
              format_time(x["interval_start"]) if "interval_start" in x else "", x.get("producer", "")]
             for x in items], empty="(no lots)")


@click.command()
@click.argument("addr", metavar="[ADDRESS]", required=False)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@common
@with_key
@pass_wallet
def history(w: Wallet, addr: str | None, limit: int) -> None:
    """Transactions that touched an account, newest first."""
    items = w.client.history(w.address_or_mine(addr), limit)
    if w.as_json:
        w.emit_json({"history": items})
        return
    w.table(None, ["height", "kind", "txid"], [[str(x["height"]), x["kind"], x["txid"]] for x in items],
            empty="(no history)")


@click.command("tx")
@click.argument("txid")
@common
@pass_wallet
def show_tx(w: Wallet, txid: str) -> None:
    """Status of a transaction: pending, included (in which block) or rejected (why).

    With --wait: wait until it is included; a rejection is then an error with the ledger's reason.
    """
    tid = parse_id(txid, 32, "txid").hex()
    info = w.client.wait_tx(tid, w.timeout) if w.wait else w.client.tx(tid)
    if w.wait and info["status"] == "rejected":
        raise CliError(str(info.get("reason") or "rejected"), f"{info.get('detail') or 'rejected'} (transaction {tid})")
    if w.as_json:
        w.emit_json(info)
        return
    pairs = [("txid", info["txid"]), ("status", str(info["status"]))]
    if info.get("height") is not None:
        pairs.append(("block", f"{info['height']} ({info.get('block')})"))
    if info.get("reason"):
        pairs.append(("reason", f"{info['reason']}: {info.get('detail', '')}"))
    tx = info.get("tx") or {}
    pairs.append(("kind", str(tx.get("kind"))))
    if "sender" in tx:
        pairs.append(("sender", tx["sender"]))
    w.fields(None, pairs)


# ---------------------------------------------------------------------------------------- transfers


@click.command()
@click.argument("coin", metavar="COIN")
@click.argument("to", metavar="TO")
@common
@with_key
@pass_wallet
def send(w: Wallet, coin: str, to: str) -> None:
    """Send COIN to the address TO; COIN has decimals, like 1.5."""
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
    """Send KWH of energy tokens to the address TO, oldest lots first; KWH like 0.25 or 500Wh."""
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
    """Burn KWH of tokens against your own metered consumption not yet covered."""
    wh = amount(parse_kwh, kwh, "energy")
    w.submit(Redeem(wh), f"redeem {kwh_text(wh)}", {"wh": wh})


COMMANDS = [status, balance, lots, history, show_tx, send, send_wh, redeem]
