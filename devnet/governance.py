"""Adding and removing an authority of a running devnet, the way real operators would (ADR 004).

`add_authority`: a new node key and node (index entry, key file, data dir), votes by the devnet's
authorities to add its key, and the node process started: it syncs over the public routes, and once the
block where the vote passed is final it is an authority on every node, connects as a peer and proposes
in its turn. `remove_authority`: votes to remove one; once final its blocks and votes are refused. Nodes
started here are recorded in `extra-nodes.json` beside the pid file, so `kwh-devnet down` stops them too.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from ledger.keys import AccountKey, format_address
from ledger.tx import ADD, REMOVE, AuthorityVote, encode_tx, sign_tx
from node.access import credential
from node.keyfile import save_key

from .layout import AUTHORITY, Devnet, LayoutError, NodeSpec
from .nodes import NodeProc, pid_alive

EXTRA_NODES = "extra-nodes.json"


def _json(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    headers = dict(headers or {}, **({"Content-Type": "application/msgpack"} if body else {}))
    request = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _read_as(key: AccountKey, url: str, path: str) -> Any:
    """GET a route of personal data, signed with `key` (an authority reads everything: ADR 012)."""
    status = _json(url + "/status")
    node_id = bytes.fromhex(status.get("node_key") or status["genesis"])
    auth = credential(key, status["chain_id"], node_id, "GET", path, int(time.time() * 1000))
    return _json(url + path, headers={"Authorization": auth})


def _answering(devnet: Devnet) -> str:
    """The URL of a node that answers, or LayoutError."""
    for spec in devnet.nodes:
        try:
            _json(spec.url + "/status")
            return spec.url
        except (urllib.error.URLError, OSError, ValueError):
            continue
    raise LayoutError("no node of the devnet answers: start it with `kwh-devnet up`")


def current_authorities(devnet: Devnet) -> list[str]:
    """The node keys (hex) of the authority set that signs the next block."""
    return list(_json(_answering(devnet) + "/authorities")["authorities"])


def vote(devnet: Devnet, action: str, key: bytes) -> list[str]:
    """Every authority of the devnet whose key it holds and that can pay the fee votes for the change
    (an authority added here holds no coin); returns the txids."""
    url = _answering(devnet)
    genesis = devnet.genesis()
    current = set(current_authorities(devnet))
    txids = []
    for spec in devnet.authorities:
        if spec.public not in current or bytes.fromhex(spec.public) == key:
            continue
        voter = devnet.node_key(spec.name)
        account = _read_as(voter, url, f"/accounts/{format_address(voter.address)}")
        if int(account["coin"]) < genesis.min_fee:
            continue
        nonce = account["next_nonce"]
        tx = sign_tx(voter, genesis.chain_id, nonce, genesis.min_fee, AuthorityVote(action, key))
        try:
            _json(url + "/tx", encode_tx(tx))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise LayoutError(f"{spec.name}'s vote was refused: {detail}") from None
        txids.append(tx.txid.hex())
    return txids


def wait_member(devnet: Devnet, key_hex: str, present: bool, timeout: float) -> bool:
    """Wait until the key is (or is no longer) in the authority set; False at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (key_hex in current_authorities(devnet)) == present:
                return True
        except (LayoutError, urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.5)
    return False


def _record_extra(devnet: Devnet, proc: NodeProc) -> None:
    path = devnet.pid_path.with_name(EXTRA_NODES)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    known = {name: info for name, info in known.items() if pid_alive(int(info.get("pid") or 0))}
    known[proc.name] = {"pid": proc.pid, "data_dir": str(proc.data_dir)}
    path.write_text(json.dumps(known, indent=2) + "\n")


def extra_nodes(devnet: Devnet) -> dict[str, dict[str, Any]]:
    """Nodes started by `add_authority` (name -> {pid, data_dir})."""
    try:
        return dict(json.loads(devnet.pid_path.with_name(EXTRA_NODES).read_text()))
    except (OSError, ValueError):
        return {}


def add_authority(devnet: Devnet, name: str | None = None, log_level: str = "info") -> tuple[NodeSpec, NodeProc]:
    """A new authority node: key, index entry, votes, process (started, not yet proposing: see above)."""
    taken = {n.name for n in devnet.nodes}
    if name is None:
        name = next(f"auth{i}" for i in range(len(taken) + 1) if f"auth{i}" not in taken)
    if name in taken:
        raise LayoutError(f"the devnet already has a node named {name}")
    key = AccountKey.generate()
    key_file = f"keys/nodes/{name}.json"
    save_key(devnet.path(key_file), key)
    last = max(devnet.nodes, key=lambda n: n.port)
    spec = NodeSpec(name, AUTHORITY, key.public.hex(), last.host, last.port + 1, key_file, f"nodes/{name}",
                    f"logs/{name}.log")
    vote(devnet, ADD, key.public)
    devnet.nodes.append(spec)
    devnet.save()
    proc = NodeProc(devnet, spec, log_level=log_level)
    proc.start()
    _record_extra(devnet, proc)
    proc.wait_ready()
    return spec, proc


def remove_authority(devnet: Devnet, name: str) -> list[str]:
    """Votes of the other authorities to remove node `name` from the set; returns the txids."""
    try:
        spec = devnet.node(name)
    except KeyError:
        raise LayoutError(f"the devnet has no node named {name}") from None
    if spec.public not in current_authorities(devnet):
        raise LayoutError(f"{name} is not an authority now")
    return vote(devnet, REMOVE, bytes.fromhex(spec.public))


def stop_extra_nodes(devnet: Devnet) -> list[str]:
    """SIGTERM the nodes `add_authority` started (`kwh-devnet down` calls this)."""
    import signal
    stopped = []
    for name, info in extra_nodes(devnet).items():
        pid = int(info.get("pid") or 0)
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            stopped.append(name)
    return stopped
