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

import re

from . import cmd_authority, cmd_chain, cmd_config, cmd_keys, cmd_market, cmd_meters
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
@click.option("--final", is_flag=True, help="return once the transaction's block is finalized (no fork can take "
                                            "it back; about two block intervals after --wait)")
@click.option("--timeout", type=float, default=DEFAULT_TIMEOUT_S, show_default=True,
              help="seconds --wait waits at most")
@click.option("--fee", metavar="COIN", default=None, help="fee in coin (default: the chain's minimum fee)")
@click.option("--full-ids", is_flag=True, help="show whole ids and addresses in tables (default: short ids)")
@click.option("--local-time", is_flag=True, help="show times in the local time zone (default: UTC)")
@click.version_option(package_name="kwhledger", prog_name="kwh-wallet")
@click.pass_context
def cli(ctx: click.Context, node: str | None, keystore: str | None, name: str | None, as_json: bool, wait: bool,
        final: bool, timeout: float, fee: str | None, full_ids: bool, local_time: bool) -> None:
    """kwhledger wallet: keys, balances, transfers, prepaid energy offers, the order book and meters.

    Amounts: coin with decimals (1.5), energy in kWh (0.25) or Wh (500Wh), prices in coin per kWh.
    Ids may be shortened to a unique prefix of at least 8 hex characters. Times are UTC unless
    --local-time. Passphrases are asked for, or taken from $KWH_WALLET_PASSPHRASE.

    Defaults for --node, --name and fallback nodes can come from a config file, ~/.kwh-wallet/config.toml
    or $KWH_WALLET_CONFIG (see 'kwh-wallet config --help'). Shell completion: see the README.

    \b
    Examples:
      kwh-wallet status
      kwh-wallet new --name alice
      kwh-wallet --name alice balance
      kwh-wallet --node http://127.0.0.1:8702 offers
    """
    if timeout <= 0:
        raise click.BadParameter("must be positive", param_hint="--timeout")
    ctx.obj = Wallet(node, keystore, name, as_json, wait, timeout, fee, full_ids, local_time, final)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


for _module in (cmd_keys, cmd_chain, cmd_market, cmd_meters, cmd_config, cmd_authority):
    for _command in _module.COMMANDS:
        cli.add_command(_command)
from . import meter_ocmf  # noqa: E402,F401  (adds meter verify / enroll-ocmf / ocmf-show to the meter group)


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


_WH = re.compile(r"(?<![\w.(])(\d+) Wh\b")  # not one already said as "(N Wh)"


def humanize(code: str, detail: str) -> str:
    """The node's and ledger's details count whole Wh and coin base units; say them as the user types them:
    '219 Wh' -> '0.219 kWh (219 Wh)', 'fee 0 below minimum 1000' -> 'fee 0 coin below minimum 0.000001 coin'."""
    from .units import format_coin, format_wh
    if code == "insufficient_wh":  # the ledger says 'holds 0 Wh, needs 1000'
        detail = re.sub(r"needs (\d+)$", lambda m: f"needs {m.group(1)} Wh", detail)
    detail = _WH.sub(lambda m: f"{format_wh(int(m.group(1)))} kWh ({m.group(1)} Wh)", detail)
    if code == "fee_too_low":
        detail = re.sub(r"fee (\d+) below minimum (\d+)", lambda m: f"fee {format_coin(int(m.group(1)))} coin below "
                        f"the minimum {format_coin(int(m.group(2)))} coin", detail)
    return detail


def _usage_message(exc: click.UsageError) -> tuple[str, str]:
    """Click's usage errors, said for this CLI: a negative amount is not an unknown option, and the global
    options may follow the command."""
    if isinstance(exc, click.NoSuchOption):
        name = exc.option_name
        if re.fullmatch(r"-\d+(\.\d+)?", name):
            return "invalid_amount", f"amounts cannot be negative ({name}); give a positive amount like 1.5"
        if name in ("--keystore",):
            return "usage", f"{name} goes before the command: kwh-wallet {name} ... COMMAND"
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return "usage", exc.format_message() + hint


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code. Errors are one line on stderr, never a traceback."""
    try:
        rv = cli.main(args=argv, prog_name="kwh-wallet", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help())
        return 0
    except click.UsageError as exc:
        _report(*_usage_message(exc))
        return EXIT_USAGE
    except CliError as exc:
        _report(exc.code, humanize(exc.code, exc.detail) if exc.exit_code == EXIT_REJECTED else exc.detail)
        return exc.exit_code
    except KeystoreError as exc:
        _report(exc.code, exc.detail)
        return EXIT_KEYSTORE if exc.code != "bad_name" else EXIT_USAGE
    except NodeError as exc:
        detail = humanize(exc.code, exc.detail)
        if exc.code == NODE_UNREACHABLE:
            detail += " (is a node or the devnet running? `make devnet` starts one; choose a node with --node URL, " \
                      f"${ENV_NODE} or the config file)"
        _report(exc.code, detail)
        if exc.code == BAD_NODE_URL:
            return EXIT_USAGE
        return EXIT_NODE if exc.code in _NODE_CODES else EXIT_REJECTED
    except UnitError as exc:
        _report("invalid_amount", str(exc))
        return EXIT_USAGE
    except click.Abort:
        _report("interrupted", "stopped at a prompt; nothing was changed")
        return 130
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
