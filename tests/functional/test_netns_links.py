"""Nodes on two network namespaces joined by a veth pair (made here; needs root for `ip netns`): the peer
link crosses a real network interface, over TLS pinned to genesis node keys (ADR 012).

The authority lives in one namespace, the observer in the other; the observer can reach the authority
only at its address on the veth link, and only through the TLS port. A transfer posted to the authority
is read back, as the test auditor, from the observer on the other side.
"""
from __future__ import annotations

import dataclasses
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from devnet.nodes import stop_process
from framework import AUDITOR, HISTORY_S, REPO, wait_until
from ledger.keys import AccountKey
from ledger.testing import make_net
from ledger.tx import COIN, Transfer, encode_tx, sign_tx
from node.access import credential
from node.keyfile import save_key

pytestmark = [pytest.mark.functional, pytest.mark.timeout(120)]

SUBNET = "10.213.77"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    tag = secrets.token_hex(3)
    a, b = f"kwh-a-{tag}", f"kwh-b-{tag}"
    made = _ip("netns", "add", a)
    if made.returncode != 0:
        pytest.skip(f"cannot make network namespaces here (ip netns add: {made.stderr.strip()})")
    try:
        steps = [("netns", "add", b), ("link", "add", f"kv{tag}a", "type", "veth", "peer", "name", f"kv{tag}b"),
                 ("link", "set", f"kv{tag}a", "netns", a), ("link", "set", f"kv{tag}b", "netns", b),
                 ("-n", a, "addr", "add", f"{SUBNET}.1/24", "dev", f"kv{tag}a"),
                 ("-n", b, "addr", "add", f"{SUBNET}.2/24", "dev", f"kv{tag}b"),
                 ("-n", a, "link", "set", f"kv{tag}a", "up"), ("-n", b, "link", "set", f"kv{tag}b", "up"),
                 ("-n", a, "link", "set", "lo", "up"), ("-n", b, "link", "set", "lo", "up")]
        for step in steps:
            done = _ip(*step)
            assert done.returncode == 0, f"ip {' '.join(step)}: {done.stderr}"
        yield a, b
    finally:
        for ns in (a, b):
            _ip("netns", "del", ns)


def _fetch(ns: str, url: str, header: str = "") -> Any:
    """GET from inside namespace `ns` (the test's own namespace cannot reach the veth addresses)."""
    code = ("import sys, urllib.request as u; r = u.Request(sys.argv[1]); "
            "sys.argv[2] and r.add_header('Authorization', sys.argv[2]); "
            "print(u.urlopen(r, timeout=5).read().decode())")
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, url, header],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr[-500:]
    return json.loads(out.stdout)


def _post(ns: str, url: str, body: bytes) -> Any:
    code = ("import sys, urllib.request as u; r = u.Request(sys.argv[1], data=bytes.fromhex(sys.argv[2]), "
            "headers={'Content-Type': 'application/msgpack'}); print(u.urlopen(r, timeout=5).read().decode())")
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, url, body.hex()],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr[-500:]
    return json.loads(out.stdout)


def test_nodes_in_two_namespaces_sync_over_a_pinned_tls_link(namespaces: tuple[str, str], tmp_path: Path) -> None:
    ns_a, ns_b = namespaces
    net = make_net(authorities=1, accounts=2, min_difficulty=16, block_interval_ms=500)
    observer = AccountKey.generate()
    genesis = dataclasses.replace(net.genesis, timestamp_ms=(int(time.time()) - HISTORY_S) // 1800 * 1800 * 1000,
                                  observers=(observer.public,), auditors=(AUDITOR.public,))
    gpath = tmp_path / "genesis.json"
    genesis.save(gpath)
    nodes = {"auth": (ns_a, f"{SUBNET}.1", net.authorities[0]), "obs": (ns_b, f"{SUBNET}.2", observer)}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (ns, addr, key) in nodes.items():
            save_key(tmp_path / f"{name}.key", key)
            args = ["ip", "netns", "exec", ns, sys.executable, "-m", "node", "--genesis", str(gpath),
                    "--data-dir", str(tmp_path / name), "--key", str(tmp_path / f"{name}.key"),
                    "--listen", "127.0.0.1:8701", "--tls-listen", f"{addr}:8702", "--log-level", "debug"]
            if name == "obs":  # reaches the authority only over the veth link, only by TLS
                args += ["--peers", f"https://{SUBNET}.1:8702"]
            procs[name] = subprocess.Popen(args, cwd=REPO, stdout=open(tmp_path / f"{name}.log", "wb"),
                                           stderr=subprocess.STDOUT)
        auth_url, obs_url = "http://127.0.0.1:8701", "http://127.0.0.1:8701"  # each inside its own namespace
        wait_until(lambda: _fetch(ns_a, auth_url + "/status")["height"] >= 2, 40, 0.3, "the authority produces")
        tx = sign_tx(net.accounts[0], genesis.chain_id, 0, genesis.min_fee, Transfer(net.accounts[1].address, COIN))
        assert _post(ns_a, auth_url + "/tx", encode_tx(tx))["status"] == "pending"
        path = f"/tx/{tx.txid.hex()}"

        def seen_on_observer() -> bool:
            header = credential(AUDITOR, genesis.chain_id, observer.public, "GET", path, int(time.time() * 1000))
            return _fetch(ns_b, obs_url + path, header)["status"] == "included"
        wait_until(seen_on_observer, 40, 0.3, "the transfer reaches the observer across the namespaces")
        status = _fetch(ns_b, obs_url + "/status")
        assert [p["url"] for p in status["peers"]] == [f"https://{SUBNET}.1:8702"], status["peers"]
        assert status["peers"][0]["key"] == net.authorities[0].public.hex()
        log = (tmp_path / "obs.log").read_text()
        assert "event=peer_connected" in log and "event=peer_tls_refused" not in log
    finally:
        for proc in procs.values():
            stop_process(proc)
