"""`kwh-wallet`: the command-line wallet of prosumers, consumers and traders.

Keys live in an encrypted keystore (wallet/keystore.py); everything else goes through a node's HTTP API
(wallet/client.py). People type coin with decimals, energy in kWh (or `500Wh`) and prices in coin per kWh;
wallet/units.py turns them into the ledger's exact integers or refuses. Nonce, fee and chain id are found
for the user. Output is tables for people or JSON (`--json`, ledger units: base units of coin and Wh).

Every failure ends in exactly one line on stderr, `error: CODE: detail`, and a non-zero exit code:
1 refused by the ledger or the node, 2 bad input, 3 node unreachable or too slow, 4 keystore problem.
"""
from __future__ import annotations

import os
import sys

import click

from . import cmd_chain, cmd_keys, cmd_market, cmd_meters
from .client import BAD_NODE_URL, BAD_RESPONSE, DEFAULT_NODE, ENV_NODE, NODE_UNREACHABLE, TIMEOUT, NodeError
from .context import DEFAULT_KEY, DEFAULT_TIMEOUT_S, Wallet
from .keystore import KeystoreError
from .output import EXIT_KEYSTORE, EXIT_NODE, EXIT_REJECTED, EXIT_USAGE, CliError
from .units import UnitError

ENV_DEBUG = "KWH_WALLET_DEBUG"


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



for _module in (cmd_keys, cmd_chain, cmd_market, cmd_meters):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


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
