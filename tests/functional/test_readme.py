"""The README as a new user follows it, on a devnet started by `make devnet` with its market agents running.

The "First steps" blocks are read from README.md and run exactly as written, each terminal's lines in one
bash (so `. .venv/bin/activate` carries to the lines after it), in a directory that looks like a fresh
clone (Makefile, pyproject.toml and the already installed .venv). Only the environment differs from a
person's: free ports (`KWH_DEVNET_BASE_PORT`, and `KWH_NODE` for the wallet), a temporary keystore with a
passphrase from the environment, a smaller devnet through `DEVNET_ARGS`, and a PATH without .venv/bin.

Then the walkthrough, step by step with the wallet: a new key funded from a person wallet, a send,
your own meter (keygen, enrollment by the grid operator, read, submit: Wh minted), a prepaid offer accepted,
delivered in part and refunded, the order book, redemption. All along the agents trade; at the end nothing
of the people's accounts was touched by an agent. Ctrl-C (SIGINT to `make devnet`'s process group) stops
the devnet, which writes its summary with `nodes_agree`.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from devnet.nodes import pid_alive
from framework import REPO, read_credential, wait_until
from node.keyfile import load_key
from test_devnet import free_base_port

pytestmark = pytest.mark.functional

PASSPHRASE = "walkthrough passphrase"
NODES = 5  # the devnet's default: 4 authorities and 1 observer
DEVNET_ARGS = "--meters 4 --speed 600 --block-interval-ms 1000 --min-difficulty 16 --window 20"
KWH = 1000  # Wh


def readme_block(marker: str) -> list[str]:
    """The lines of the fenced block right after `<!-- marker -->` in README.md (continuations joined)."""
    text = (REPO / "README.md").read_text()
    after = text.split(f"<!-- {marker} -->", 1)[1]
    block = after.split("```", 2)[1]
    lines: list[str] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + line.strip()
        else:
            lines.append(line.rstrip())
    return lines


class Clone:
    """A fresh-looking checkout, its environment, and the devnet `make devnet` runs there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for name in ("Makefile", "pyproject.toml", ".venv"):
            (root / name).symlink_to(REPO / name)
        self.base = free_base_port(NODES)
        self.node = f"http://127.0.0.1:{self.base}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KWH_") and k not in ("VIRTUAL_ENV",)}
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if Path(p).resolve() != (REPO / ".venv/bin").resolve())
        env.update(KWH_DEVNET_BASE_PORT=str(self.base), KWH_NODE=self.node, KWH_WALLET_DIR=str(root / "keystore"),
                   KWH_WALLET_PASSPHRASE=PASSPHRASE, KWH_WALLET_FAST_KDF="1", DEVNET_ARGS=DEVNET_ARGS,
                   PYTHONPATH=str(REPO), COLUMNS="80")
        self.env = env
        self.devnet_dir = root / "devnet-data"
        self.proc: subprocess.Popen[bytes] | None = None

    def bash(self, lines: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        script = "set -e\n" + "\n".join(lines) + "\n"
        return subprocess.run(["bash", "-c", script], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def wallet(self, *args: str, as_json: bool = True, ok: bool = True) -> Any:
        argv = [str(REPO / ".venv/bin/kwh-wallet"), "--timeout", "40", *(["--json"] if as_json else []), *args]
        proc = subprocess.run(argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=90,
                              stdin=subprocess.DEVNULL)
        assert "Traceback" not in proc.stderr, proc.stderr
        if not ok:
            return proc
        assert proc.returncode == 0, f"kwh-wallet {' '.join(args)}: rc={proc.returncode} {proc.stderr}"
        return json.loads(proc.stdout) if as_json else proc.stdout

    def get(self, path: str) -> Any:
        """GET as the devnet's first node key (it may read every route, ADR 012)."""
        key = load_key(sorted(self.root.rglob("keys/nodes/*.json"))[0])
        req = urllib.request.Request(self.node + path,
                                     headers={"Authorization": read_credential(self.node, key, "GET", path)})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    if not (REPO / ".venv/bin/activate").exists() or not (REPO / ".venv/bin/kwh-wallet").exists():
        pytest.skip("the README's steps need the project installed in .venv (make .venv/.installed)")
    c = Clone(tmp_path_factory.mktemp("clone"))
    (line,) = readme_block("first-steps:terminal-1")
    assert line == "make devnet"
    log = open(c.root / "make-devnet.out", "wb")
    c.proc = subprocess.Popen(["bash", "-c", line], cwd=c.root, env=c.env, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    node_pids: list[int] = []
    try:
        def up() -> bool:
            assert c.proc is not None and c.proc.poll() is None, (c.root / "make-devnet.out").read_text()
            if not (c.devnet_dir / "devnet.pid").exists():
                return False
            try:
                return all(c.get("/status")["height"] >= 0 for _ in (0,)) and \
                    "running" in (c.root / "make-devnet.out").read_text()
            except OSError:
                return False
        wait_until(up, 120, 0.5, "make devnet is up")
        node_pids = [n["pid"] for n in json.loads((c.devnet_dir / "devnet.pid").read_text())["nodes"].values()]
        yield c
    finally:
        if c.proc.poll() is None:
            os.killpg(c.proc.pid, signal.SIGKILL)
            c.proc.wait(timeout=10)
        for pid in node_pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()


def test_first_steps_then_the_walkthrough_untouched_by_agents(clone: Clone) -> None:
    c = clone
    # ---- First steps, literally
    steps = readme_block("first-steps:terminal-2")
    assert steps[0] == ". .venv/bin/activate"
    without = c.bash(steps[1:2])
    assert without.returncode == 127, "without the activation line the README's commands would not be found"
    done = c.bash(steps)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "auth0" in done.stdout and "obs0" in done.stdout  # kwh-devnet status
    assert "kwh-devnet" in done.stdout and "min fee" in done.stdout and "0.000001 coin" in done.stdout
    assert "imported key 'person-01'" in done.stdout and "10000 coin" in done.stdout
    assert re.search(r"sync\s+up to date", done.stdout), done.stdout  # not 'syncing False'
    # the devnet told the same story when it started (piped: plain text with the simulated clock)
    started = (c.root / "make-devnet.out").read_text()
    assert "  . .venv/bin/activate" in started and "  kwh-devnet status\n" in started and "person-01" in started

    devnet = json.loads((c.devnet_dir / "devnet.json").read_text())
    authorities = [n for n in devnet["nodes"] if n["role"] == "authority"]
    assert len(authorities) == 4
    agents = {w["address"] for w in devnet["wallets"] if w["role"] != "person"}

    # ---- 2. a new key; 3. funded from a person wallet, and a send
    alice = c.wallet("new", "--name", "alice")["address"]
    bob = c.wallet("import-key", str(c.devnet_dir / "keys/wallets/person-02.json"), "--name", "bob")["address"]
    again = c.wallet("import-key", str(c.devnet_dir / "keys/wallets/person-02.json"), "--name", "bob2", ok=False)
    assert again.returncode == 4 and "already in the keystore as 'bob'" in again.stderr
    c.wallet("--name", "person-01", "--wait", "send", "100", alice)
    sent = c.wallet("--name", "alice", "--wait", "send", "1.5", bob)
    shown = c.wallet("tx", sent["txid"][:8], "--name", "alice", as_json=False)  # a prefix, and the details
    for text in ("1.5 coin", bob, "fee", "0.000001 coin", "included", "sent 1.5 coin"):
        assert text in shown, (text, shown)

    # ---- 4. your own meter: keygen, enroll (grid operator), read, submit: Wh minted
    keys = c.wallet("meter", "keygen", "--out", str(c.root / "alice-meter"))
    assert (c.root / "alice-meter.pem").stat().st_mode & 0o777 == 0o600
    c.wallet("import-key", str(c.devnet_dir / "keys/nodes/auth0.json"), "--name", "grid-operator")
    refused = c.wallet("--name", "grid-operator", "meter", "enroll", "--pubkey", str(c.root / "alice-meter.pem"),
                       "--owner", alice, "--kind", "both", "--rated-w", "5000", "--interval", "900", ok=False)
    assert refused.returncode == 2 and "PRIVATE key" in refused.stderr
    enrolled = c.wallet("--name", "grid-operator", "--wait", "meter", "enroll", "--pubkey",
                        str(c.root / "alice-meter.pub.pem"), "--since=-1h", "--owner", alice, "--kind", "both",
                        "--rated-w", "5000", "--interval", "900", "--source", "solar")
    assert enrolled["meter_id"] == keys["meter_id"]
    reading = c.wallet("meter", "read", "--key", str(c.root / "alice-meter.pem"), "--export", "1", "--import", "0.4")
    document = json.loads(Path(reading["file"]).read_text())
    assert document["format"] == "kwhledger-reading" and document["reading"]["counter"] == 1
    minted = c.wallet("--wait", "meter", "submit", reading["file"])
    assert minted["status"] == "included" and minted["export_wh"] == KWH
    assert c.wallet("meter", "show", keys["meter_id"][:8])["minted_wh"] == KWH
    balance = c.wallet("--name", "alice", "balance")
    assert (balance["wh"], balance["consumed_wh"]) == (KWH, 400)
    (lot,) = c.wallet("--name", "alice", "lots")["lots"]
    assert lot["meter_id"] == keys["meter_id"]

    # ---- 5. sell with prepayment: accept, deliver in part, the rest refunded after the window
    offer = c.wallet("--name", "alice", "--wait", "offer", "--kwh", "0.5", "--price-per-kwh", "25",
                     "--window-end", "+45s", "--source", "solar")
    past = c.wallet("--name", "alice", "offer", "--kwh", "0.5", "--price-per-kwh", "25", "--window-end", "-1m",
                    ok=False)
    assert past.returncode == 2 and "already past" in past.stderr
    table = c.wallet("offers", as_json=False)
    assert offer["offer_id"][:10] in table and all(len(line) <= 80 for line in table.splitlines()), table
    trade = c.wallet("--name", "bob", "--wait", "accept", offer["offer_id"][:8], "--kwh", "0.3")
    over = c.wallet("--name", "alice", "deliver", trade["trade_id"][:8], "5", ok=False)
    assert over.returncode == 1 and "only 0.3 kWh (300 Wh) left" in over.stderr, over.stderr
    c.wallet("--name", "alice", "--wait", "deliver", trade["trade_id"][:8], "0.2")
    settled = wait_until(lambda: (t := c.wallet("--name", "bob", "trade", trade["trade_id"]))["status"] == "settled" and t, 120, 1.0,
                         "the trade settles after its window")
    assert (settled["delivered"], settled["released"], settled["refunded"]) == (200, 5 * 10**9, 25 * 10**8)
    # the lot's story: minted by alice's meter, 0.2 kWh of it delivered to bob
    story = c.wallet("--name", "alice", "lot", lot["lot_id"][:8])
    assert story["lot"]["meter_id"] == keys["meter_id"] and story["reading"]["counter"] == 1
    assert any(m["to"] == bob and m["wh"] == 200 for m in story["movements"]), story

    # ---- 6. the order book: alice's sell rests above the agents' band; bob's buy fills at the best sell
    sell = c.wallet("--name", "alice", "--wait", "order", "sell", "--kwh", "0.2", "--price-per-kwh", "40")
    buy = c.wallet("--name", "bob", "--wait", "order", "buy", "--kwh", "0.1", "--price-per-kwh", "40")
    assert buy["order"]["filled_wh"] == 100
    mine = {o["order_id"]: o for o in c.wallet("--name", "alice", "orders")["orders"]}
    if mine[sell["order_id"]]["status"] == "open":
        c.wallet("--name", "alice", "--wait", "cancel-order", sell["order_id"][:8])

    # ---- 7. consume: redeem against the consumption alice's meter reported
    c.wallet("--name", "alice", "--wait", "redeem", "0.3")
    assert c.wallet("--name", "alice", "balance")["redeemed_wh"] == 300

    # ---- nothing of the people's was touched by an agent, although the agents traded all along
    people = {alice, bob, c.wallet("--name", "person-01", "address")["address"]}
    for who in ("alice", "bob", "person-01"):
        for entry in c.wallet("--name", who, "history", "--limit", "200")["history"]:
            tx = c.get(f"/tx/{entry['txid']}")["tx"]
            assert tx.get("sender") not in agents, (who, tx)
    for t in c.get("/trades")["trades"]:
        assert not ({t["seller"], t["buyer"]} & people and {t["seller"], t["buyer"]} & agents), t
    history = c.wallet("--name", "alice", "history", as_json=False)
    assert all(len(line) <= 80 for line in history.splitlines()), history
    assert "received 100 coin" in history and "sent 1.5 coin" in history
    said = c.wallet("--name", "alice", "history", "--limit", "100")["history"]
    assert any(e["kind"] == "accept_offer" and e["direction"] == "in" and "your offer" in e["what"]
               and e["counterparty"] == bob for e in said), said  # bob's accept, not alice's own
    bobs = c.wallet("--name", "bob", "history", "--limit", "100")["history"]
    assert any(e["kind"] == "refund" and e["amount"] == "2.5 coin" for e in bobs), bobs
    assert all(e["time"] for e in bobs)

    # /metrics carries the chain's energy totals
    with urllib.request.urlopen(c.node + "/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert re.search(r"^kwh_energy_redeemed_wh \d", metrics, re.M) and "kwh_escrow_coin_units" in metrics

    # the config file: a default node that is down, and a fallback that answers
    config = c.root / "config.toml"
    config.write_text(f'node = "http://127.0.0.1:9"\nfallback_nodes = ["{c.node}"]\nname = "alice"\n')
    env = dict(c.env, KWH_WALLET_CONFIG=str(config))
    del env["KWH_NODE"]
    answer = subprocess.run([str(REPO / ".venv/bin/kwh-wallet"), "--json", "balance"], cwd=c.root, env=env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert answer.returncode == 0 and json.loads(answer.stdout)["address"] == alice, answer.stderr

    # ---- Ctrl-C: the devnet stops in order and writes its summary
    assert c.proc is not None
    os.killpg(c.proc.pid, signal.SIGINT)
    assert c.proc.wait(timeout=90) is not None
    summary = json.loads((c.devnet_dir / "summary.json").read_text())
    assert summary["stopped_by"] == "signal"
    assert summary["checks"]["nodes_agree"] is True, summary["agreement"]
    assert sum(summary["market"]["accepted"].values()) > 0, "the agents traded all along"
    assert not (c.devnet_dir / "devnet.pid").exists()
    out = (c.root / "make-devnet.out").read_text()
    assert "simulated" in out and "UTC" in out and "{" not in out.split("stopping nodes")[0], out[-2000:]

