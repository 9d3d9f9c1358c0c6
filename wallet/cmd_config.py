"""`kwh-wallet config` (what the wallet will use, and from where) and `kwh-wallet completion` (shell
completion, which click provides)."""
from __future__ import annotations

import click

from .client import DEFAULT_NODE
from .config import DEFAULT_PATH, ENV_CONFIG, load_config
from .context import Wallet, common, pass_wallet

EXAMPLE = f'''# {DEFAULT_PATH} (or the file ${ENV_CONFIG} names)
node = "http://127.0.0.1:8701"
name = "alice"
fallback_nodes = ["http://127.0.0.1:8702", "http://127.0.0.1:8703"]
local_time = false'''


@click.command("config")
@click.option("--example", is_flag=True, help="print an example config file")
@common
@pass_wallet
def config(w: Wallet, example: bool) -> None:
    """Show the settings in effect and the config file they come from.

    \b
    Examples:
      kwh-wallet config
      kwh-wallet config --example > ~/.kwh-wallet/config.toml
    """
    if example:
        w.echo(EXAMPLE)
        return
    cfg = load_config()
    data = {"config_file": str(cfg.path), "exists": cfg.exists, "node": w.node_url,
            "fallback_nodes": list(w.fallback_nodes), "name": w.name, "local_time": w.local_time,
            "keystore": str(w.keystore.dir)}
    if w.as_json:
        w.emit_json(data)
        return
    w.fields(None, [("config file", f"{cfg.path}" + ("" if cfg.exists else " (none; defaults in use)")),
                    ("node", w.node_url + ("" if w.node_url != DEFAULT_NODE else " (default)")),
                    ("fallback nodes", ", ".join(w.fallback_nodes) or "-"),
                    ("key", w.name or "(default, or the only key)"), ("times", w.zone()),
                    ("keystore", str(w.keystore.dir))])


@click.command("completion")
@click.argument("shell", type=click.Choice(("bash", "zsh", "fish")))
def completion(shell: str) -> None:
    """Print how to turn on shell completion of commands and options.

    \b
    Examples:
      eval "$(_KWH_WALLET_COMPLETE=bash_source kwh-wallet)"     # in ~/.bashrc
      kwh-wallet completion zsh
    """
    rc = {"bash": "~/.bashrc", "zsh": "~/.zshrc", "fish": "~/.config/fish/completions/kwh-wallet.fish"}[shell]
    if shell == "fish":
        click.echo(f"_KWH_WALLET_COMPLETE=fish_source kwh-wallet > {rc}")
    else:
        click.echo(f'# add to {rc}:\neval "$(_KWH_WALLET_COMPLETE={shell}_source kwh-wallet)"')


COMMANDS = [config, completion]
