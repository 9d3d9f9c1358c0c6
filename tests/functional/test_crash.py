"""Crash safety with real processes: an authority is killed with SIGKILL again and again, at random moments
while it produces and imports blocks, syncs after a restart, and takes transfers from a client; after every
kill its LevelDB must be consistent (state root recomputed from the stored state equals the head's, canonical
index, undo data and tx/history indexes agree with the stored blocks), it must restart and rejoin the
network's head, and every transaction the network had committed must still be there.
"""
from __future__ import annotations

import re

import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from framework import (REPO, NodeNet, NodeProcess, free_port, get, height, post_tx, request, sync_blocks,
                       transfer, wait_until)
from ledger.chain import Chain
from ledger.store import LevelKV
from ledger.testing import extend, make_net
from ledger.tx import SignedTx, Transfer, sign_tx

pytestmark = pytest.mark.functional

KILLS = 32
STARTUP_KILL_EVERY = 4  # every 4th kill lands while the node is still starting (opening, resuming, syncing)
CLI_CHECK_EVERY = 8  # every 8th check goes through `python -m node --check-db`, like an operator's


class TxPump(threading.Thread):
    """Posts transfers to one node as fast as it takes them, riding out the node's deaths."""

    def __init__(self, net: NodeNet, node: NodeProcess, sender: int) -> None:
        super().__init__(name="tx-pump", daemon=True)
        self.net, self.node, self.sender = net, node, sender
        self.to = net.net.accounts[sender + 1].address
        self.stop_flag = threading.Event()
        self.accepted: list[SignedTx] = []
        self.refused = 0
        self.unreachable = 0
        self._amount = 1000

    def run(self) -> None:
        addr = self.net.net.accounts[self.sender].address_text
        while not self.stop_flag.is_set():
            try:
                nonce = get(self.node, f"/accounts/{addr}")["next_nonce"]
                for i in range(4):
                    self._amount += 1
                    tx = transfer(self.net.net, self.sender, self.to, self._amount, nonce + i)
                    code, _answer = post_tx(self.node, tx)
                    if code == 200:
                        self.accepted.append(tx)
                    else:
                        self.refused += 1
            except Exception:  # noqa: BLE001 - the node is dead or starting: try again in a moment
                self.unreachable += 1
                self.stop_flag.wait(0.05)
            self.stop_flag.wait(0.03)


def check_data_dir(net: NodeNet, node: NodeProcess, via_cli: bool) -> int:
    """The stopped node's LevelDB is consistent; returns its head height. Opens it without resuming an
    interrupted head move (that is the restart's job), so what the kill left is what is checked."""
    if via_cli:
        result = subprocess.run([sys.executable, "-m", "node", "--genesis", str(net.genesis_path), "--data-dir",
                                 str(node.data_dir), "--check-db"], cwd=REPO, capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
        assert result.returncode == 0 and "is consistent at height" in result.stdout, result
    kv = LevelKV(node.data_dir)
    try:
        chain = Chain(kv, net.net.genesis, resume=False)
        problems = chain.check(full=True)
        assert problems == [], problems
        return chain.height
    finally:
        kv.close()


def test_sigkill_at_random_moments_loses_nothing(node_net: Any) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    print(f"crash test seed {seed}")
    net = node_net(authorities=3, observers=0, accounts=4, block_interval_ms=500)
    victim, others = net.authorities[2], net.authorities[:2]
    wait_until(lambda: min(height(n) for n in net.authorities) >= 2, 30, message="the net produces blocks")
    pump = TxPump(net, victim, sender=0)
    pump.start()
    committed: dict[str, str] = {}  # txid -> block: txs the others held at least two blocks deep
    looked_at: set[str] = set()
    settled = 0  # txs accepted before the previous round: checked in this one
    checked = 0
    restarts: list[float] = []
    rejoins: list[float] = []
    started = time.monotonic()
    try:
        for i in range(KILLS):
            during_startup = i % STARTUP_KILL_EVERY == STARTUP_KILL_EVERY - 1
            if during_startup:  # the previous restart waited for readiness; start again and kill it early
                victim.kill()
                victim.start(wait=False)
                time.sleep(rng.uniform(0.0, 0.6))
            else:
                time.sleep(rng.uniform(0.05, 1.5))
            victim.kill()
            checked = max(checked, check_data_dir(net, victim, via_cli=i % CLI_CHECK_EVERY == 0))
            t0 = time.monotonic()
            victim.start()
            restarts.append(time.monotonic() - t0)
            if not during_startup or i == KILLS - 1:
                target = max(height(n) for n in others)
                t0 = time.monotonic()
                sync_blocks([victim, *others], min_height=target, timeout=30)
                rejoins.append(time.monotonic() - t0)
                for txid in rng.sample(sorted(committed), min(8, len(committed))):  # still there after the kill
                    mine, theirs = _tx(victim, txid), _tx(others[0], txid)
                    assert mine is not None and mine["status"] == "included" and mine == theirs, (mine, theirs)
            _collect_committed(others[0], pump.accepted[:settled], committed, looked_at)
            settled = len(pump.accepted)
    finally:
        pump.stop_flag.set()
        pump.join(timeout=15)
    elapsed = time.monotonic() - started
    print(f"{KILLS} kills in {elapsed:.1f} s; restart to /status max {max(restarts):.2f} s "
          f"mean {sum(restarts) / len(restarts):.2f} s; rejoin max {max(rejoins):.2f} s; victim reached height "
          f"{checked}; {len(pump.accepted)} txs accepted by the victim, {pump.refused} refused, "
          f"{len(committed)} committed")

    assert checked >= 10 and len(committed) >= 20, "the victim must have been busy when it was killed"
    sync_blocks(net.authorities, min_height=max(height(n) for n in others), timeout=30)
    _collect_committed(others[0], pump.accepted, committed, looked_at)
    for txid in rng.sample(sorted(committed), min(300, len(committed))):  # on every node, in the same block
        seen = {n.name: get(n, f"/tx/{txid}") for n in net.authorities}
        assert all(s["status"] == "included" for s in seen.values()), seen
        assert len({s["block"] for s in seen.values()}) == 1, seen
    sender = net.net.accounts[0].address_text
    views = [get(n, f"/accounts/{sender}") for n in net.authorities]
    assert all(v["nonce"] == views[0]["nonce"] and v["coin"] == views[0]["coin"] for v in views), views
    assert all(get(n, "/evidence") == {"evidence": [], "votes": [], "next": None} for n in net.authorities), \
        "a restarted authority must never sign a second block at a height it already signed"
    # A worker process the node was spawning when SIGKILL came finds its parent's pipe closed and says so
    # on the shared log before it exits: that is the kill, not the node. Any other traceback is a failure.
    log = re.sub(r"Traceback \(most recent call last\):\n  File \"<string>\", line 1, in <module>\n"
                 r"  File \"[^\"]*multiprocessing/spawn\.py\"(?:(?!Traceback).)*?\nEOFError: Ran out of input\n", "", victim.log_text(),
                 flags=re.S)
    assert "event=task_failed" not in log and "Traceback" not in log


def _collect_committed(node: NodeProcess, accepted: list[SignedTx], committed: dict[str, str],
                       seen: set[str]) -> None:
    """Add the accepted txs that `node` holds at least two blocks deep. Each tx is looked at once, in the
    round after the one it was accepted in (older ones are settled: included, or lost with a killed mempool)."""
    head = height(node)
    for tx in accepted:
        txid = tx.txid.hex()
        if txid in seen:
            continue
        seen.add(txid)
        info = _tx(node, txid)
        if info is not None and info.get("status") == "included" and info["height"] <= head - 2:
            committed[txid] = info["block"]


def _tx(node: NodeProcess, txid: str) -> dict[str, Any] | None:
    code, data, _ = request(node, "GET", f"/tx/{txid}")
    return data if code == 200 and isinstance(data, dict) else None


def test_a_damaged_data_dir_is_reported_and_refused(tmp_path: Path) -> None:
    """What the checks are for: a state entry lost without its block (what a non-atomic write would do) is
    found by `--check-db` (exit 1) and the node refuses to start on it (exit 2, one readable line)."""
    net = make_net(authorities=1, accounts=2, seed=21)
    genesis = tmp_path / "genesis.json"
    net.genesis.save(genesis)
    data_dir = tmp_path / "db"
    kv = LevelKV(data_dir)
    chain = Chain(kv, net.genesis)
    a, b = net.accounts
    for nonce in range(3):
        extend(chain, net, [sign_tx(a, chain.chain_id, nonce, net.genesis.min_fee, Transfer(b.address, 5))])
    kv.write({b"sa" + b.address: None})
    kv.close()

    def node(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "node", "--genesis", str(genesis), "--data-dir", str(data_dir),
                               *extra], cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    checked = node("--check-db")
    assert checked.returncode == 1, checked
    assert "state recomputed from the stored entries does not match" in checked.stdout
    errors = [line for line in checked.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("kwh-node: error:") and "inconsistent" in errors[0], errors
    started = node("--listen", f"127.0.0.1:{free_port()}")
    assert started.returncode == 2, started
    errors = [line for line in started.stderr.splitlines() if " level=" not in line and line.strip()]
    assert len(errors) == 1 and "is inconsistent" in errors[0] and "--check-db" in errors[0], started.stderr
    missing = node("--check-db", "--data-dir", str(tmp_path / "nothing-here"))
    assert missing.returncode == 2 and "holds no database" in missing.stderr, missing


def _children(pid: int) -> set[int]:
    """Live processes whose parent is `pid` (from /proc, so no extra dependency)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_node_leaves_no_worker_processes(node_net: Any) -> None:
    """SIGKILL gives a node no chance to stop its miner and signature workers; they must end by themselves."""
    net = node_net(authorities=1, observers=0, accounts=1, block_interval_ms=300,
                   extra_args=["--verify-workers", "1"])
    node = net.authorities[0]
    wait_until(lambda: height(node) >= 2, 30, message="the miner pool has started")
    workers = wait_until(lambda: _children(node.proc.pid) if len(_children(node.proc.pid)) >= 2 else None, 15,
                         message="miner and verify workers running")
    net.kill(node)
    wait_until(lambda: not any(_alive(p) for p in workers), 10, message=f"orphaned workers {workers} exited")
