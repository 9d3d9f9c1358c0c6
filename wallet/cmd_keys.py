"""Keys: create, import, list, show the address, change the passphrase (no node needed)."""
from __future__ import annotations

import os

import click

from ledger.keys import AccountKey

from .context import DEFAULT_KEY, ENV_NEW_PASSPHRASE, ENV_PASSPHRASE, Wallet, common, pass_wallet, prompt_passphrase, with_key
from .keystore import check_name
from .output import EXIT_KEYSTORE, fail


@click.command()
@click.option("--name", "new_name", metavar="KEY", default=None, help=f"name of the new key (default: "
                                                                          f"the global --name, else '{DEFAULT_KEY}')")
@common
@pass_wallet
def new(w: Wallet, new_name: str | None) -> None:
    """Create a new account key in the keystore.

    \b
    Examples:
      kwh-wallet new --name alice
      KWH_WALLET_PASSPHRASE=... kwh-wallet new --name bob     (scripts)
    """
    _create_key(w, check_name(new_name or w.name or DEFAULT_KEY), None)


def _create_key(w: Wallet, name: str, key: AccountKey | None) -> None:
    store = w.keystore
    if store.path_of(name).exists():
        fail("key_exists", f"a key named {name!r} already exists in {store.dir}; choose another with --name",
             EXIT_KEYSTORE)
    if key is not None:
        same = [k.name for k in store.list() if k.address == key.address_text]
        if same:
            fail("key_exists", f"this key is already in the keystore as {same[0]!r} (address {key.address_text}); "
                               f"use --name {same[0]}", EXIT_KEYSTORE)
    passphrase = os.environ.get(ENV_PASSPHRASE)
    if passphrase is None:
        passphrase = prompt_passphrase(f"New passphrase for key '{name}'", confirm=True)
    info = store.create(name, passphrase, key)
    if w.as_json:
        w.emit_json({"name": info.name, "address": info.address, "public": info.public.hex(),
                     "path": str(info.path)})
    else:
        verb = "created" if key is None else "imported"
        w.echo(f"{verb} key '{info.name}'\naddress: {info.address}\nfile: {info.path}")


@click.command("import-key")
@click.argument("keyfile", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", "new_name", metavar="KEY", default=None, help="name for the imported key")
@common
@pass_wallet
def import_key(w: Wallet, keyfile: str, new_name: str | None) -> None:
    """Import a node or authority key file into the keystore (encrypting it).

    The file is the node's key format: {"type": "ed25519", "public": HEX, "seed": HEX}.
    A key already in the keystore under another name is refused.

    \b
    Examples:
      kwh-wallet import-key devnet-data/keys/wallets/person-01.json --name person-01
      kwh-wallet import-key node1-key.json --name grid-operator
    """
    from node.keyfile import load_key  # the contract's key file reader

    try:
        key = load_key(keyfile)
    except ValueError as exc:
        fail("bad_key_file", str(exc), EXIT_KEYSTORE)
    _create_key(w, check_name(new_name or w.name or DEFAULT_KEY), key)


@click.command("list")
@common
@pass_wallet
def list_keys(w: Wallet) -> None:
    """List the keys in the keystore (no passphrase needed).

    \b
    Examples:
      kwh-wallet list
      kwh-wallet --keystore /media/usb/keys list
    """
    store = w.keystore
    keys = store.list()
    if w.as_json:
        w.emit_json({"keystore": str(store.dir), "keys": [{"name": k.name, "address": k.address,
                                                          "public": k.public.hex()} for k in keys]})
        return
    w.table(f"keys in {store.dir}", ["name", "address"], [[k.name, k.address] for k in keys],
            empty="(no keys; create one with 'kwh-wallet new')")


@click.command()
@common
@with_key
@pass_wallet
def address(w: Wallet) -> None:
    """Print the address of the chosen key.

    \b
    Examples:
      kwh-wallet --name alice address
    """
    name = w.key_name()
    info = w.keystore.info(name)
    if w.as_json:
        w.emit_json({"name": info.name, "address": info.address})
    else:
        w.echo(info.address)


@click.command("export-public")
@common
@with_key
@pass_wallet
def export_public(w: Wallet) -> None:
    """Print the public key and address (JSON), e.g. for a genesis file.

    \b
    Examples:
      kwh-wallet --name alice export-public
    """
    info = w.keystore.info(w.key_name())
    w.emit_json({"name": info.name, "type": "ed25519", "address": info.address, "public": info.public.hex()})


@click.command()
@common
@with_key
@pass_wallet
def passwd(w: Wallet) -> None:
    """Change the passphrase of the chosen key (the file is replaced atomically).

    \b
    Examples:
      kwh-wallet --name alice passwd
    """
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


COMMANDS = [new, import_key, list_keys, address, export_public, passwd]
