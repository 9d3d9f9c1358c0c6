"""`kwh-wallet`: the command-line wallet of prosumers, consumers and traders.

Keys live in an encrypted keystore (wallet/keystore.py); everything else goes through a node's HTTP API
(wallet/client.py). People type coin with decimals, energy in kWh (or `500Wh`) and prices in coin per kWh;
wallet/units.py turns them into the ledger's exact integers or refuses. Nonce, fee and chain id are found
for the user. Output is tables for people or JSON (`--json`, ledger units: base units of coin and Wh).

Every failure ends in exactly one line on stderr, `error: CODE: detail`, and a non-zero exit code:
1 refused by the ledger or the node, 2 bad input, 3 node unreachable or too slow, 4 keystore problem.
"""
from __future__ import annotations

import functools
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn

import click
from rich.console import Console
from rich.table import Table

from ledger.keys import AccountKey, MeterKey, format_address, meter_id_of, meter_public_from_pem, parse_address
from ledger.tx import (BUY, INTERVALS, METER_KINDS, SELL, SOURCES, AcceptOffer, Body, CancelOffer, CancelOrder,
                       Deliver, EnrollMeter, PlaceOrder, PostOffer, Redeem, RevokeMeter, SignedTx, Transfer,
                       TransferWh, sign_tx)

from .client import BAD_NODE_URL, BAD_RESPONSE, DEFAULT_NODE, ENV_NODE, NODE_UNREACHABLE, TIMEOUT, NodeClient, NodeError
from .keystore import Keystore, KeystoreError, UnknownKey, check_name, resolve_dir
from .units import (UnitError, format_coin, format_price_per_kwh, format_time, format_wh, parse_coin, parse_kwh,
                    parse_price_per_kwh, parse_time)

EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_NODE = 3
EXIT_KEYSTORE = 4
ENV_PASSPHRASE = "KWH_WALLET_PASSPHRASE"
ENV_NEW_PASSPHRASE = "KWH_WALLET_NEW_PASSPHRASE"
ENV_DEBUG = "KWH_WALLET_DEBUG"
DEFAULT_KEY = "default"
DEFAULT_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 10.0
NONCE_RETRIES = 5


class CliError(Exception):
    """A failure to report as one line: `error: CODE: detail`."""

    def __init__(self, code: str, detail: str, exit_code: int = EXIT_REJECTED) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.exit_code = code, detail, exit_code


def fail(code: str, detail: str, exit_code: int = EXIT_USAGE) -> NoReturn:
    raise CliError(code, detail, exit_code)


# ------------------------------------------------------------------------------------ parsing input


def parse_addr(text: str, what: str = "address") -> bytes:
    try:
        return parse_address(text.strip())
    except ValueError as exc:
        fail("bad_address", f"{what} {text!r}: {exc}")


def parse_id(text: str, size: int, what: str) -> bytes:
    value = text.strip().lower()
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        fail("bad_id", f"{what} {text!r} is not hexadecimal")
    if len(raw) != size:
        fail("bad_id", f"{what} must be {2 * size} hex characters, got {len(value)}")
    return raw


def amount(parse: Callable[[str], int], text: str, what: str, positive: bool = True) -> int:
    try:
        value = parse(text)
    except UnitError as exc:
        fail("invalid_amount", str(exc))
    if positive and value <= 0:
        fail("invalid_amount", f"{what} must be more than zero")
    return value


def kwh_text(wh: int) -> str:
    return f"{format_wh(wh)} kWh"


def coin_text(units: int) -> str:
    return f"{format_coin(units)} coin"


def price_text(price_per_wh: int) -> str:
    return f"{format_price_per_kwh(price_per_wh)} coin/kWh"


# ------------------------------------------------------------------------------------------ context


class Wallet:
    """What every command needs: options, keystore, node client, output."""

    def __init__(self, node: str | None, keystore: str | None, name: str | None, as_json: bool, wait: bool,
                 timeout: float, fee: str | None) -> None:
        self.node_url = node or os.environ.get(ENV_NODE) or DEFAULT_NODE
        self.keystore_dir = keystore
        self.name = name
        self.as_json = as_json
        self.wait = wait
        self.timeout = timeout
        self.fee_text = fee
        self._client: NodeClient | None = None
        self._console: Console | None = None

    # resources ------------------------------------------------------------------------------------
    @property
    def keystore(self) -> Keystore:
        return Keystore(resolve_dir(self.keystore_dir))

    @property
    def client(self) -> NodeClient:
        if self._client is None:
            self._client = NodeClient(self.node_url, timeout=min(REQUEST_TIMEOUT_S, max(self.timeout, 1.0)))
        return self._client

    @property
    def console(self) -> Console:
        if self._console is None:
            tty = sys.stdout.isatty()
            # not a terminal: wide enough that no id or address is ever folded (scripts should use --json)
            self._console = Console(markup=False, highlight=False, emoji=False, width=None if tty else 1000)
        return self._console

    # keys -----------------------------------------------------------------------------------------
    def key_name(self) -> str:
        """--name, else 'default', else the only key in the keystore."""
        if self.name:
            return check_name(self.name)
        store = self.keystore
        keys = store.list()
        names = [k.name for k in keys]
        if DEFAULT_KEY in names:
            return DEFAULT_KEY
        if len(keys) == 1:
            return keys[0].name
        if not keys:
            raise UnknownKey(f"no keys in {store.dir}; create one with 'kwh-wallet new'")
        raise UnknownKey(f"several keys in {store.dir} ({', '.join(names)}); choose one with --name")

    def my_address(self) -> str:
        return self.keystore.info(self.key_name()).address

    def unlock(self) -> AccountKey:
        name = self.key_name()
        store = self.keystore
        store.info(name)  # unknown key: say so before asking for a passphrase
        passphrase = os.environ.get(ENV_PASSPHRASE)
        if passphrase is None:
            passphrase = prompt_passphrase(f"Passphrase for key '{name}'", confirm=False)
        return store.unlock(name, passphrase)

    def address_or_mine(self, address: str | None) -> str:
        if address:
            return format_address(parse_addr(address))
        return self.my_address()

    # transactions ---------------------------------------------------------------------------------
    def fee(self, body: Body | None = None) -> int:
        if self.fee_text is None:
            return self.client.min_fee() if body is None else self.client.fee_for(body)
        return amount(parse_coin, self.fee_text, "fee", positive=False)

    def node_now(self) -> int:
        """The node's clock in unix seconds (blocks are judged by it), the local clock if it has none."""
        time_ms = self.client.status().get("time_ms")
        return int(time_ms) // 1000 if isinstance(time_ms, int) else int(time.time())

    def submit(self, body: Body, summary: str, extra: dict[str, Any] | None = None,
               after: Callable[[dict[str, Any]], list[str]] | None = None,
               id_fields: tuple[str, ...] = (), spends: int = 0) -> dict[str, Any]:
        """Sign `body` with the chosen key, send it, optionally wait for its block; print the outcome.

        `id_fields` name the ids the transaction creates (an offer's, a trade's, an order's id is its txid);
        `after` runs once the tx is in a block and returns extra lines for people. `spends` is the coin the
        tx moves or locks besides its fee: a balance that cannot cover both is refused here, in coin, before
        anything is signed (the node checks again when it admits the tx and when it builds the block).
        """
        key = self.unlock()
        client = self.client
        chain_id = client.chain_id()
        fee = self.fee(body)
        address = key.address_text
        available = int(client.account(address)["coin"])
        if available < spends + fee:
            what = f"amount {coin_text(spends)} + fee {coin_text(fee)}" if spends else f"fee {coin_text(fee)}"
            raise CliError("insufficient_funds", f"balance {coin_text(available)} < {what}")
        answer, tx, nonce = self._post_with_free_nonce(key, chain_id, fee, body)
        txid = str(answer["txid"])
        result: dict[str, Any] = {"txid": txid, "kind": tx.kind, "status": answer.get("status", "pending"),
                                  "sender": address, "nonce": nonce, "fee": fee}
        result.update(extra or {})
        result.update({name: txid for name in id_fields})
        notes: list[str] = []
        if self.wait:
            info = client.wait_tx(txid, self.timeout)
            result["status"] = info["status"]
            if info["status"] == "rejected":
                raise CliError(str(info.get("reason") or "rejected"),
                               f"{info.get('detail') or 'rejected'} (transaction {txid})")
            result["height"] = info.get("height")
            result["block"] = info.get("block")
            if after is not None:
                notes = after(result)
        if self.as_json:
            self.emit_json(result)
        else:
            lines = [summary, f"txid: {txid}"]
            for label, key_name in (("offer id", "offer_id"), ("trade id", "trade_id"), ("order id", "order_id"),
                                    ("meter id", "meter_id")):
                if key_name in result:
                    lines.append(f"{label}: {result[key_name]}")
            if result["status"] == "included":
                lines.append(f"included in block {result['height']}")
            else:
                lines.append(f"status: {result['status']} (see 'kwh-wallet tx {txid}', or use --wait)")
            lines.extend(notes)
            self.echo("\n".join(lines))
        return result

    def _post_with_free_nonce(self, key: AccountKey, chain_id: str, fee: int,
                              body: Body) -> tuple[dict[str, Any], SignedTx, int]:
        """Sign with the sender's next nonce (pending txs counted) and post. If another wallet of the same key
        took that nonce between our query and our post (`bad_nonce`, or `duplicate`: the nonce is pending with
        another tx), ask again and use the next one; anything else is the answer."""
        client = self.client
        address = key.address_text
        for attempt in range(NONCE_RETRIES):
            nonce = client.next_nonce(address)
            tx = sign_tx(key, chain_id, nonce, fee, body)
            try:
                return client.submit(tx), tx, nonce
            except NodeError as exc:
                if exc.code not in ("bad_nonce", "duplicate") or attempt == NONCE_RETRIES - 1 \
                        or client.next_nonce(address) == nonce:
                    raise
                time.sleep(random.uniform(0.0, 0.1))  # two racing wallets should not collide again
        raise AssertionError("unreachable")  # pragma: no cover

    # output ---------------------------------------------------------------------------------------
    def emit_json(self, data: Any) -> None:
        click.echo(json.dumps(data, indent=2, sort_keys=False))

    def echo(self, text: str) -> None:
        click.echo(text)

    def render(self, renderable: Any) -> None:
        """Print a rich renderable without the padding rich adds at line ends (friendlier to grep and diff)."""
        with self.console.capture() as cap:
            self.console.print(renderable)
        click.echo("\n".join(line.rstrip() for line in cap.get().rstrip("\n").split("\n")))

    def table(self, title: str | None, columns: list[str], rows: list[list[str]], empty: str = "(none)") -> None:
        if not rows:
            click.echo(f"{title}\n{empty}" if title else empty)
            return
        table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*row)
        self.render(table)

    def fields(self, title: str | None, pairs: list[tuple[str, str]]) -> None:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for label, value in pairs:
            table.add_row(label, value)
        if title:
            click.echo(title)
        self.render(table)


def prompt_passphrase(text: str, confirm: bool) -> str:
    """Ask at the terminal (hidden, confirmed for new keys), or read one line from a pipe."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line.strip("\r\n"):
            fail("no_passphrase", f"no passphrase: stdin is not a terminal and gave none; set {ENV_PASSPHRASE}",
                 EXIT_KEYSTORE)
        return line.rstrip("\r\n")
    try:
        value = click.prompt(text, hide_input=True, confirmation_prompt=confirm, err=True)
    except click.Abort:
        fail("no_passphrase", f"no passphrase given (type it at the prompt or set {ENV_PASSPHRASE})",
             EXIT_KEYSTORE)
    return str(value)


pass_wallet = click.make_pass_decorator(Wallet)


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Let the global output and tx options also follow the command (`kwh-wallet send 1 kwh... --wait`)."""

    @click.option("--json", "as_json_", is_flag=True, default=False, hidden=True)
    @click.option("--wait", "wait_", is_flag=True, default=False, hidden=True)
    @click.option("--timeout", "timeout_", type=float, default=None, hidden=True)
    @click.option("--fee", "fee_", default=None, hidden=True)
    @functools.wraps(fn)
    def wrapper(*args: Any, as_json_: bool, wait_: bool, timeout_: float | None, fee_: str | None,
                **kwargs: Any) -> Any:
        w = click.get_current_context().find_object(Wallet)
        if w is not None:
            w.as_json = w.as_json or as_json_
            w.wait = w.wait or wait_
            if timeout_ is not None:
                w.timeout = timeout_
            if fee_ is not None:
                w.fee_text = fee_
        return fn(*args, **kwargs)

    return wrapper


def with_key(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--name` after the command too (`kwh-wallet balance --name bob`)."""

    @click.option("--name", "name_", default=None, hidden=True)
    @functools.wraps(fn)
    def wrapper(*args: Any, name_: str | None, **kwargs: Any) -> Any:
        w = click.get_current_context().find_object(Wallet)
        if w is not None and name_:
            w.name = name_
        return fn(*args, **kwargs)

    return wrapper


# ------------------------------------------------------------------------------------------- group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             invoke_without_command=True)
@click.option("--node", metavar="URL", default=None,
              help=f"node HTTP API (default: ${ENV_NODE}, else {DEFAULT_NODE})")
@click.option("--keystore", metavar="DIR", default=None,
              help="keystore directory (default: $KWH_WALLET_DIR, else ~/.kwh-wallet)")
@click.option("--name", metavar="KEY", default=None,
              help=f"which key to use (default: '{DEFAULT_KEY}', or the only key)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (ledger units: base units, Wh)")
@click.option("--wait", is_flag=True, help="return once the transaction is in a block (or rejected)")
@click.option("--timeout", type=float, default=DEFAULT_TIMEOUT_S, show_default=True,
              help="seconds --wait waits at most")
@click.option("--fee", metavar="COIN", default=None, help="fee in coin (default: the chain's minimum fee)")
@click.version_option(package_name="kwhledger", prog_name="kwh-wallet")
@click.pass_context
def cli(ctx: click.Context, node: str | None, keystore: str | None, name: str | None, as_json: bool, wait: bool,
        timeout: float, fee: str | None) -> None:
    """kwhledger wallet: keys, balances, transfers, prepaid energy offers, the order book and meters.

    Amounts: coin with decimals (1.5), energy in kWh (0.25) or Wh (500Wh), prices in coin per kWh.
    Passphrases are asked for, or taken from $KWH_WALLET_PASSPHRASE.
    """
    if timeout <= 0:
        raise click.BadParameter("must be positive", param_hint="--timeout")
    ctx.obj = Wallet(node, keystore, name, as_json, wait, timeout, fee)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


# ---------------------------------------------------------------------------------------------- keys


@cli.command()
@click.option("--name", "new_name", metavar="KEY", default=None, help=f"name of the new key (default: "
                                                                          f"the global --name, else '{DEFAULT_KEY}')")
@common
@pass_wallet
def new(w: Wallet, new_name: str | None) -> None:
    """Create a new account key in the keystore."""
    _create_key(w, check_name(new_name or w.name or DEFAULT_KEY), None)


def _create_key(w: Wallet, name: str, key: AccountKey | None) -> None:
    store = w.keystore
    if store.path_of(name).exists():
        fail("key_exists", f"a key named {name!r} already exists in {store.dir}; choose another with --name",
             EXIT_KEYSTORE)
    passphrase = os.environ.get(ENV_PASSPHRASE)
    if passphrase is None:
        passphrase = prompt_passphrase(f"New passphrase for key '{name}'", confirm=True)
    info = store.create(name, passphrase, key)
    if w.as_json:
        w.emit_json({"name": info.name, "address": info.address, "public": info.public.hex(),
                     "path": str(info.path)})
    else:
        w.echo(f"created key '{info.name}'\naddress: {info.address}\nfile: {info.path}")


@cli.command("import-key")
@click.argument("keyfile", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", "new_name", metavar="KEY", default=None, help="name for the imported key")
@common
@pass_wallet
def import_key(w: Wallet, keyfile: str, new_name: str | None) -> None:
    """Import a node or authority key file into the keystore (encrypting it).

    The file is the node's key format: {"type": "ed25519", "public": HEX, "seed": HEX}.
    """
    from node.keyfile import load_key  # the contract's key file reader

    try:
        key = load_key(keyfile)
    except ValueError as exc:
        fail("bad_key_file", str(exc), EXIT_KEYSTORE)
    _create_key(w, check_name(new_name or w.name or DEFAULT_KEY), key)


@cli.command("list")
@common
@pass_wallet
def list_keys(w: Wallet) -> None:
    """List the keys in the keystore (no passphrase needed)."""
    store = w.keystore
    keys = store.list()
    if w.as_json:
        w.emit_json({"keystore": str(store.dir), "keys": [{"name": k.name, "address": k.address,
                                                          "public": k.public.hex()} for k in keys]})
        return
    w.table(f"keys in {store.dir}", ["name", "address"], [[k.name, k.address] for k in keys],
            empty="(no keys; create one with 'kwh-wallet new')")


@cli.command()
@common
@with_key
@pass_wallet
def address(w: Wallet) -> None:
    """Print the address of the chosen key."""
    name = w.key_name()
    info = w.keystore.info(name)
    if w.as_json:
        w.emit_json({"name": info.name, "address": info.address})
    else:
        w.echo(info.address)


@cli.command("export-public")
@common
@with_key
@pass_wallet
def export_public(w: Wallet) -> None:
    """Print the public key and address (JSON), e.g. for a genesis file."""
    info = w.keystore.info(w.key_name())
    w.emit_json({"name": info.name, "type": "ed25519", "address": info.address, "public": info.public.hex()})


@cli.command()
@common
@with_key
@pass_wallet
def passwd(w: Wallet) -> None:
    """Change the passphrase of the chosen key (the file is replaced atomically)."""
    name = w.key_name()
    store = w.keystore
    store.info(name)
    old = os.environ.get(ENV_PASSPHRASE)
    if old is None:
        old = prompt_passphrase(f"Current passphrase for key '{name}'", confirm=False)
    store.unlock(name, old)  # a wrong passphrase stops here, before asking for a new one
    new_pass = os.environ.get(ENV_NEW_PASSPHRASE)
    if new_pass is None:
        new_pass = prompt_passphrase(f"New passphrase for key '{name}'", confirm=True)
    info = store.change_passphrase(name, old, new_pass)
    if w.as_json:
        w.emit_json({"name": info.name, "address": info.address, "path": str(info.path)})
    else:
        w.echo(f"passphrase of key '{name}' changed")


# ------------------------------------------------------------------------------------- node queries


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
@click.argument("addr", metavar="[ADDRESS]", required=False)
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="newest N entries")
@click.option("--all", "all_", is_flag=True, help="every entry (the node is read page by page)")
@common
@with_key
@pass_wallet
def history(w: Wallet, addr: str | None, limit: int, all_: bool) -> None:
    """Transactions that touched an account, newest first."""
    items = w.client.history(w.address_or_mine(addr), None if all_ else limit)
    if w.as_json:
        w.emit_json({"history": items})
        return
    w.table(None, ["height", "kind", "txid"], [[str(x["height"]), x["kind"], x["txid"]] for x in items],
            empty="(no history)")


@cli.command("tx")
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


@cli.command()
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


@cli.command("send-wh")
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


@cli.command()
@click.argument("kwh", metavar="KWH")
@common
@with_key
@pass_wallet
def redeem(w: Wallet, kwh: str) -> None:
    """Burn KWH of tokens against your own metered consumption not yet covered."""
    wh = amount(parse_kwh, kwh, "energy")
    w.submit(Redeem(wh), f"redeem {kwh_text(wh)}", {"wh": wh})


# --------------------------------------------------------------------------------- prepaid trading


def _source(value: str | None) -> str:
    return "" if value in (None, "", "any") else str(value)


SOURCE_CHOICE = click.Choice(("any",) + SOURCES)


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command("cancel-order")
@click.argument("order_id", metavar="ORDER_ID")
@common
@with_key
@pass_wallet
def cancel_order(w: Wallet, order_id: str) -> None:
    """Cancel the unfilled rest of your order; what it locked comes back."""
    oid = parse_id(order_id, 32, "order id")
    w.submit(CancelOrder(oid), f"cancel order {oid.hex()}", {"order_id": oid.hex()})


# -------------------------------------------------------------------------------------------- meters


@cli.group()
def meter() -> None:
    """Smart meters: enroll and revoke (authority keys), show."""


def read_meter_public(path: str) -> bytes:
    """A meter's compressed P-256 key from a PEM public key, a PEM private key, or hex."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        fail("bad_meter_key", f"cannot read {path}: {exc.strerror or exc}")
    try:
        return meter_public_from_pem(data)
    except (ValueError, TypeError):
        pass
    try:
        return MeterKey.from_pem(data).public
    except (ValueError, TypeError):
        pass
    try:
        raw = bytes.fromhex(data.decode("ascii").strip())
        if len(raw) == 33:
            return raw
    except (ValueError, UnicodeDecodeError):
        pass
    fail("bad_meter_key", f"{path} is not a P-256 key (PEM public or private key, or 33-byte hex)")


@meter.command()
@click.option("--pubkey", required=True, type=click.Path(exists=True, dir_okay=False), metavar="PEM_FILE",
              help="the meter's P-256 public key (PEM)")
@click.option("--owner", required=True, metavar="ADDRESS", help="account that receives what the meter mints")
@click.option("--kind", required=True, type=click.Choice(METER_KINDS))
@click.option("--rated-w", required=True, type=click.IntRange(1), help="rated power in W")
@click.option("--interval", required=True, type=click.Choice([str(i) for i in INTERVALS]),
              help="reading interval in seconds")
@click.option("--source", type=click.Choice(SOURCES), default="solar", show_default=True)
@click.option("--export-register", type=click.IntRange(0), default=0, show_default=True,
              help="cumulative Wh exported before enrollment")
@click.option("--import-register", type=click.IntRange(0), default=0, show_default=True,
              help="cumulative Wh imported before enrollment")
@common
@with_key
@pass_wallet
def enroll(w: Wallet, pubkey: str, owner: str, kind: str, rated_w: int, interval: str, source: str,
           export_register: int, import_register: int) -> None:
    """Enroll a meter (sign with an authority key)."""
    public = read_meter_public(pubkey)
    owner_raw = parse_addr(owner, "owner")
    meter_id = meter_id_of(public).hex()
    w.submit(EnrollMeter(public, owner_raw, kind, rated_w, int(interval), source, export_register, import_register),
             f"enroll {kind} meter {meter_id} ({rated_w} W, {source}, every {interval} s) for "
             f"{format_address(owner_raw)}", {"meter_id": meter_id, "owner": format_address(owner_raw)})


@meter.command()
@click.argument("meter_id", metavar="METER_ID")
@common
@with_key
@pass_wallet
def revoke(w: Wallet, meter_id: str) -> None:
    """Revoke a meter (sign with an authority key); it mints nothing after this."""
    mid = parse_id(meter_id, 16, "meter id")
    w.submit(RevokeMeter(mid), f"revoke meter {mid.hex()}", {"meter_id": mid.hex()})


def _meter_pairs(m: dict[str, Any]) -> list[tuple[str, str]]:
    return [("meter", m["meter_id"]), ("owner", m["owner"]), ("kind", m["kind"]), ("source", m["source"]),
            ("rated", f"{m['rated_w']} W"), ("interval", f"{m['interval_s']} s"),
            ("active", "yes" if m["active"] else "no (revoked)"), ("counter", str(m["counter"])),
            ("next interval", format_time(m["next_start"]) if m.get("next_start") else "-"),
            ("export register", f"{m['export_register']} Wh"), ("import register", f"{m['import_register']} Wh"),
            ("minted", kwh_text(m["minted_wh"])), ("consumed", kwh_text(m["consumed_wh"])),
            ("enrolled at block", str(m["enrolled_height"])), ("public key", m["public"])]


@meter.command()
@click.argument("meter_id", metavar="METER_ID")
@common
@pass_wallet
def show(w: Wallet, meter_id: str) -> None:
    """Show a meter: owner, kind, registers, what it minted."""
    m = w.client.meter(parse_id(meter_id, 16, "meter id").hex())
    if w.as_json:
        w.emit_json(m)
    else:
        w.fields(None, _meter_pairs(m))


@meter.command("list")
@click.option("--owner", metavar="ADDRESS", default=None, help="only this owner's meters")
@common
@pass_wallet
def meter_list(w: Wallet, owner: str | None) -> None:
    """All enrolled meters."""
    owner_text = format_address(parse_addr(owner, "owner")) if owner else None
    items = [m for m in w.client.meters() if owner_text is None or m.get("owner") == owner_text]
    if w.as_json:
        w.emit_json({"meters": items})
        return
    w.table(None, ["meter", "owner", "kind", "source", "rated W", "minted kWh", "active"],
            [[m["meter_id"], m["owner"], m["kind"], m["source"], str(m["rated_w"]), format_wh(m["minted_wh"]),
              "yes" if m["active"] else "no"] for m in items], empty="(no meters)")


# ---------------------------------------------------------------------------------------------- main

_NODE_CODES = {NODE_UNREACHABLE, TIMEOUT, BAD_RESPONSE}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _report(code: str, detail: str) -> None:
    line = f"error: {code}: {detail}" if detail else f"error: {code}"
    try:
        sys.stderr.write(_one_line(line) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code. Errors are one line on stderr, never a traceback."""
    try:
        rv = cli.main(args=argv, prog_name="kwh-wallet", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help())
        return 0
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _report("usage", exc.format_message() + hint)
        return EXIT_USAGE
    except CliError as exc:
        _report(exc.code, exc.detail)
        return exc.exit_code
    except KeystoreError as exc:
        _report(exc.code, exc.detail)
        return EXIT_KEYSTORE if exc.code != "bad_name" else EXIT_USAGE
    except NodeError as exc:
        _report(exc.code, exc.detail)
        if exc.code == BAD_NODE_URL:
            return EXIT_USAGE
        return EXIT_NODE if exc.code in _NODE_CODES else EXIT_REJECTED
    except UnitError as exc:
        _report("invalid_amount", str(exc))
        return EXIT_USAGE
    except click.Abort:
        _report("aborted", "")
        return EXIT_REJECTED
    except click.ClickException as exc:
        _report("error", exc.format_message())
        return exc.exit_code or EXIT_REJECTED
    except KeyboardInterrupt:
        _report("interrupted", "")
        return 130
    except BrokenPipeError:
        try:  # the reader went away (| head); say nothing more
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_REJECTED
    except Exception as exc:  # noqa: BLE001 - the one-line promise holds for bugs too
        if os.environ.get(ENV_DEBUG):
            raise
        _report("internal", f"{type(exc).__name__}: {exc} (set {ENV_DEBUG}=1 for a traceback)")
        return EXIT_REJECTED


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
