"""`kwh-wallet authority ...`: who signs blocks, and votes to change that (authority keys only).

A change passes when more than half of the current authorities voted for it, and takes effect at the end
of the first block whose finalized height has reached the block where it passed, on every node alike
(ADR 004). The first vote for a change is its proposal.
"""
from __future__ import annotations

import click

from ledger.tx import ADD, REMOVE, AuthorityVote

from .context import Wallet, common, pass_wallet, with_key
from .output import fail, short_id


def _node_key(text: str) -> bytes:
    """An authority's node key: 64 hex characters (its Ed25519 public key, as `kwh-node` prints it)."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        fail("bad_key", f"{text[:70]!r} is not a node key (64 hex characters of an Ed25519 public key)")
    return raw


@click.group()
def authority() -> None:
    """The authority set: list it, vote to add or remove a key (authorities only).

    \b
    Examples:
      kwh-wallet authority list
      kwh-wallet --name auth0 --final authority add 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29
    """


@authority.command("list")
@common
@pass_wallet
def list_(w: Wallet) -> None:
    """The authorities that sign the next block, open proposals and their votes, and changes that
    passed and wait for their block to be finalized.

    \b
    Examples:
      kwh-wallet authority list
      kwh-wallet --json authority list
    """
    data = w.client._object("/authorities")
    if w.as_json:
        w.emit_json(data)
        return
    n = len(data["authorities"])
    w.table(f"authorities ({n}: blocks go on while {n // 2 + 1} sign, finality while {2 * n // 3 + 1} vote)",
            ["#", "node key"], [[str(i), short_id(k, w.full_ids)] for i, k in enumerate(data["authorities"])])
    w.table("proposals (a majority of the authorities passes one)", ["action", "key", "votes"],
            [[p["action"], short_id(p["key"], w.full_ids), f"{len(p['votes'])} of {n // 2 + 1} needed"]
             for p in data["proposals"]])
    w.table("passed, waiting for finality", ["action", "key", "passed at"],
            [[s["action"], short_id(s["key"], w.full_ids), str(s["passed_height"])] for s in data["scheduled"]])


def _vote(w: Wallet, action: str, key_text: str) -> None:
    key = _node_key(key_text)
    verb = "add" if action == ADD else "remove"
    w.submit(AuthorityVote(action, key), f"vote to {verb} authority {key.hex()}",
             {"action": action, "key": key.hex()})


@authority.command("add")
@click.argument("node_key", metavar="NODE_KEY")
@common
@with_key
@pass_wallet
def add(w: Wallet, node_key: str) -> None:
    """Vote to make NODE_KEY an authority (sign with an authority key). The node with that key proposes
    in its turn from the first block after the change is final.

    \b
    Examples:
      kwh-wallet --name auth0 --wait authority add 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29
    """
    _vote(w, ADD, node_key)


@authority.command("remove")
@click.argument("node_key", metavar="NODE_KEY")
@common
@with_key
@pass_wallet
def remove(w: Wallet, node_key: str) -> None:
    """Vote to remove NODE_KEY from the authorities (sign with an authority key); once the change is
    final, its blocks and finality votes are refused.

    \b
    Examples:
      kwh-wallet --name auth0 --wait authority remove 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29
    """
    _vote(w, REMOVE, node_key)


COMMANDS = [authority]
