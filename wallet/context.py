"""The wallet's context object (options, keystore, node client, output) and the option decorators that
let global options also follow a command."""
from __future__ import annotations

import functools
import json
import os
import random
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from ledger.keys import AccountKey, format_address
from ledger.tx import Body, SignedTx, sign_tx

from .client import DEFAULT_NODE, ENV_NODE, ENV_NODE_KEY, NodeClient, NodeError
from .config import ConfigError, load_config
from .keystore import Keystore, UnknownKey, check_name, resolve_dir
from .output import EXIT_KEYSTORE, CliError, amount, coin_text, fail, parse_addr, short_address, short_id
from .units import format_time, parse_coin

ENV_PASSPHRASE = "KWH_WALLET_PASSPHRASE"
ENV_NEW_PASSPHRASE = "KWH_WALLET_NEW_PASSPHRASE"
DEFAULT_KEY = "default"
DEFAULT_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 10.0
NONCE_RETRIES = 5


class Wallet:
    """What every command needs: options, keystore, node client, output."""

    def __init__(self, node: str | None, keystore: str | None, name: str | None, as_json: bool, wait: bool,
                 timeout: float, fee: str | None, full_ids: bool = False, local_time: bool = False,
                 final: bool = False) -> None:
        try:
            cfg = load_config()
        except ConfigError as exc:
            fail("bad_config", str(exc))
        self.node_url = node or os.environ.get(ENV_NODE) or cfg.node or DEFAULT_NODE
        self.fallback_nodes = cfg.fallback_nodes
        self.keystore_dir = keystore
        self.name = name or cfg.name
        self.as_json = as_json
        self.final = final  # wait until the tx's block is finalized (implies wait)
        self.wait = wait or final
        self.timeout = timeout
        self.fee_text = fee
        self.full_ids = full_ids
        self.local_time = local_time or cfg.local_time
        self.warnings: list[str] = []
        self._client: NodeClient | None = None
        self._console: Console | None = None

    # resources ------------------------------------------------------------------------------------
    @property
    def keystore(self) -> Keystore:
        return Keystore(resolve_dir(self.keystore_dir))

    @property
    def client(self) -> NodeClient:
        if self._client is None:
            self._client = NodeClient(self.node_url, timeout=min(REQUEST_TIMEOUT_S, max(self.timeout, 1.0)),
                                      fallbacks=self.fallback_nodes, reader=self.unlock,
                                      key_for=self.key_for, node_key=self._node_key())
        return self._client

    @property
    def console(self) -> Console:
        if self._console is None:
            tty = sys.stdout.isatty()
            # not a terminal: $COLUMNS if set, else wide enough that nothing is folded (scripts use --json)
            columns = os.environ.get("COLUMNS", "")
            width = None if tty else int(columns) if columns.isdigit() and int(columns) > 0 else 1000
            self._console = Console(markup=False, highlight=False, emoji=False, width=width)
        return self._console

    # display ------------------------------------------------------------------------------------------
    def id(self, value: str) -> str:
        return short_id(value, self.full_ids)

    def addr(self, value: str | None) -> str:
        return short_address(value, self.full_ids) if value else "-"

    def when(self, seconds: int) -> str:
        """A time as people read it: UTC ('2026-03-01 12:00:00Z'), or local time with --local-time."""
        return format_time(seconds, local=self.local_time)

    def short_time(self, seconds: int | None) -> str:
        """A time in a table: 'MM-DD HH:MM' in the zone the column header names."""
        if not seconds:
            return "-"
        zone = None if self.local_time else timezone.utc
        return datetime.fromtimestamp(seconds, zone).strftime("%m-%d %H:%M")

    def window(self, start: int, end: int) -> str:
        """A delivery window in a table: '11-30 15:00 +60m' (start and length)."""
        minutes = (end - start) // 60
        length = f"+{minutes}m" if minutes < 600 else f"+{minutes // 60}h"
        return f"{self.short_time(start)} {length}"

    def zone(self) -> str:
        return "local" if self.local_time else "UTC"

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

    @staticmethod
    def _node_key() -> bytes | None:
        """KWH_NODE_KEY: the node key an https:// node URL is pinned to (its --tls-listen port, ADR 012)."""
        text = os.environ.get(ENV_NODE_KEY, "").strip()
        if not text:
            return None
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != 32:
            fail("bad_node_key", f"{ENV_NODE_KEY} must be a node's Ed25519 public key: 64 hex characters")
        return key

    def key_for(self, address: str) -> AccountKey | None:
        """The keystore's key of `address`, unlocked (to read that account's own data), or None if the
        keystore holds no key of it (or there is no keystore)."""
        try:
            entries = self.keystore.list()
        except Exception:  # noqa: BLE001 - no keystore: nothing of ours to read
            return None
        names = [k.name for k in entries if k.address == address]
        if not names:
            return None
        name = self.name if self.name in names else names[0]
        passphrase = os.environ.get(ENV_PASSPHRASE)
        if passphrase is None:
            passphrase = prompt_passphrase(f"Passphrase for key '{name}'", confirm=False)
        return self.keystore.unlock(name, passphrase)

    def address_or_mine(self, address: str | None) -> str:
        if address:
            return format_address(parse_addr(address))
        return self.my_address()

    # transactions ---------------------------------------------------------------------------------
    def fee(self, body: Body | None = None) -> int:
        """--fee, checked against the minimum for this kind of transaction here (in coin, as typed), else
        that minimum (ledger/fees.py: kinds that add lasting state entries pay more)."""
        minimum = self.client.min_fee() if body is None else self.client.fee_for(body)
        if self.fee_text is None:
            return minimum
        fee = amount(parse_coin, self.fee_text, "fee", positive=False)
        if fee < minimum:
            raise CliError("fee_too_low", f"fee {coin_text(fee)} is below the chain's minimum {coin_text(minimum)}")
        return fee

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
        if self.fee_text is not None:
            self.fee(body)  # a --fee below the minimum is refused before the passphrase is asked
        key = self.unlock()
        client = self.client
        client.sign_as(key)  # the balance check below reads personal data
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
            info = client.wait_tx(txid, self.timeout, final=self.final)
            result["status"] = info["status"]
            result["final"] = bool(info.get("final"))
            if info["status"] == "rejected":
                raise CliError(str(info.get("reason") or "rejected"),
                               f"{info.get('detail') or 'rejected'} (transaction {txid})")
            result["height"] = info.get("height")
            result["block"] = info.get("block")
            if after is not None:
                notes = after(result)
        if self.warnings:
            result["warnings"] = list(self.warnings)
        if self.as_json:
            self.emit_json(result)
        else:
            lines = [summary, f"txid: {txid}"]
            for label, key_name in (("offer id", "offer_id"), ("trade id", "trade_id"), ("order id", "order_id"),
                                    ("meter id", "meter_id")):
                if key_name in result:
                    lines.append(f"{label}: {result[key_name]}")
            if result["status"] == "included":
                lines.append(f"included in block {result['height']}" + (
                    ", final" if result.get("final") else ", not final yet (a fork could still take it back; "
                                                          "--final waits until it cannot)"))
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

    def warn(self, text: str) -> None:
        """Something the user should know that does not stop the command: a line 'warning: ...' on stderr, or
        with --json an entry in the result's "warnings" (stderr stays for errors)."""
        self.warnings.append(text)
        if not self.as_json:
            click.echo(f"warning: {text}", err=True)

    def echo(self, text: str) -> None:
        click.echo(text)

    def render(self, renderable: Any, wide: bool = False) -> None:
        """Print a rich renderable without the padding rich adds at line ends (friendlier to grep and diff).
        `wide`: as wide as it needs (whole ids asked for with --full-ids are never cut)."""
        console = Console(markup=False, highlight=False, emoji=False, width=1000) if wide else self.console
        with console.capture() as cap:
            console.print(renderable)
        click.echo("\n".join(line.rstrip() for line in cap.get().rstrip("\n").split("\n")))

    def table(self, title: str | None, columns: list[str], rows: list[list[str]], empty: str = "(none)",
              wrap_last: bool = False) -> None:
        """A table that fits 80 columns with short ids: no box, one space between columns; cells are not
        folded (an id split over lines cannot be copied), except the last column with `wrap_last`."""
        if not rows:
            click.echo(f"{title}\n{empty}" if title else empty)
            return
        table = Table(title=title, title_justify="left", box=None, padding=(0, 1), pad_edge=False,
                      header_style="bold", show_edge=False)
        for i, col in enumerate(columns):
            last = i == len(columns) - 1
            table.add_column(col, no_wrap=not (last and wrap_last), overflow="fold" if last and wrap_last
                             else "ellipsis")
        for row in rows:
            table.add_row(*row)
        self.render(table, wide=self.full_ids)

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
    """Ask at the terminal (hidden, confirmed for new keys), or read one line from a pipe. An empty passphrase
    is refused in words; Ctrl-C at the prompt is an interruption (exit 130), not a keystore error."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line.strip("\r\n"):
            fail("no_passphrase", f"no passphrase: stdin is not a terminal and gave none; set {ENV_PASSPHRASE}",
                 EXIT_KEYSTORE)
        return line.rstrip("\r\n")
    def ask(prompt: str) -> str:  # click.Abort on Ctrl-C: main() says 'interrupted'
        return str(click.prompt(prompt, hide_input=True, err=True, default="", show_default=False))

    value = ask(text)
    if not value:
        fail("empty_passphrase", "the passphrase is empty; type one (or set " + ENV_PASSPHRASE + ")", EXIT_KEYSTORE)
    if confirm and ask("Repeat for confirmation") != value:
        fail("passphrase_mismatch", "the two passphrases differ; nothing was written", EXIT_KEYSTORE)
    return value


pass_wallet = click.make_pass_decorator(Wallet)


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Let the global output and tx options also follow the command (`kwh-wallet send 1 kwh... --wait`)."""

    @click.option("--json", "as_json_", is_flag=True, default=False, hidden=True)
    @click.option("--wait", "wait_", is_flag=True, default=False, hidden=True)
    @click.option("--final", "final_", is_flag=True, default=False, hidden=True)
    @click.option("--timeout", "timeout_", type=float, default=None, hidden=True)
    @click.option("--fee", "fee_", default=None, hidden=True)
    @click.option("--node", "node_", default=None, hidden=True)
    @click.option("--full-ids", "full_ids_", is_flag=True, default=False, hidden=True)
    @functools.wraps(fn)
    def wrapper(*args: Any, as_json_: bool, wait_: bool, final_: bool, timeout_: float | None, fee_: str | None,
                node_: str | None, full_ids_: bool, **kwargs: Any) -> Any:
        w = click.get_current_context().find_object(Wallet)
        if w is not None:
            if node_ is not None:
                w.node_url, w._client = node_, None
            w.full_ids = w.full_ids or full_ids_
            w.as_json = w.as_json or as_json_
            w.final = w.final or final_
            w.wait = w.wait or wait_ or final_
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

