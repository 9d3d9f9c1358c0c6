"""The devnet with real node processes on 127.0.0.1: a simulated day, tampering, the market, a crash.

`test_a_simulated_day` drives the devnet package directly (as `kwh-devnet up` does): 3 authorities and 1
observer, 8 meters reading every 15 minutes, 500 ms blocks. Yesterday (local midnight to midnight) runs in
about 60 s; mid-day one authority is killed with SIGKILL and restarted. Then: every node has the same
head; the Wh minted on chain equal the exported Wh the simulator had accepted (in total and per meter);
coin and Wh are conserved over all accounts; every trade settled as the rules say; every tamper was
refused with its own reason and minted nothing; the restarted authority caught up and the others kept
producing while it was down.

`test_cli_up_status_down` runs the `kwh-devnet` command: a short run with --duration, then `up` again on
the same directory in the background (the chain continues), `status`, and `down`.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devnet.genesis import coin_holders, create_devnet, genesis_total_coin
from devnet.layout import Devnet
from devnet.nodes import Supervisor, pid_alive, port_free
from devnet.run import DevnetRun, RunOptions
from devnet.tamper import EXPECTED
from devnet.layout import TLS_PORT_OFFSET
from framework import REPO, read_credential, wait_until
from ledger.keys import AccountKey

pytestmark = pytest.mark.functional

DAY_S = 86400
SPEED = 1440  # a day in 60 s
KILL_AT = 0.4  # of the simulated day


def free_base_port(count: int) -> int:
    """A base port with `count` free ports after it (random, so parallel runs rarely collide)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000 - count)
        if all(port_free("127.0.0.1", base + i) and port_free("127.0.0.1", base + i + TLS_PORT_OFFSET)
               for i in range(count)):
            return base
    raise RuntimeError("no free port range")


def get(url: str, path: str, key: AccountKey | None = None) -> Any:
    """GET; with `key`, signed as that key (personal routes need a role that may read them, ADR 012)."""
    headers = {"Authorization": read_credential(url, key, "GET", path)} if key is not None else {}
    with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers), timeout=10) as resp:
        return json.loads(resp.read())


def heads(devnet: Devnet) -> list[tuple[int, str]]:
    return [(s["height"], s["head"]) for s in (get(u, "/status") for u in devnet.urls)]


def settle(devnet: Devnet, timeout: float = 30) -> int:
    """Until every node has an empty mempool and all show the same head at one moment; that height."""
    def same() -> int:
        if any(get(u, "/status")["mempool"] for u in devnet.urls):
            return 0
        hs = heads(devnet)
        return hs[0][0] if len(set(hs)) == 1 else 0
    return wait_until(same, timeout, 0.05, "all nodes at one head with empty mempools")


def dump_logs(devnet: Devnet, tail: int = 40) -> str:
    out = []
    for n in devnet.nodes:
        lines = devnet.path(n.log_file).read_text(errors="replace").splitlines() if \
            devnet.path(n.log_file).exists() else []
        out.append(f"===== {n.name} ({n.url}) last {tail} lines =====")
        out.extend(lines[-tail:])
    log = devnet.path("logs/devnet.log")
    if log.exists():
        out.append("===== devnet.log =====")
        out.extend(log.read_text().splitlines()[-tail:])
    return "\n".join(out)


async def day_with_a_crash(run: DevnetRun, sup: Supervisor) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the day; at KILL_AT kill -9 auth1, check the others go on, restart it; return (summary, notes)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run.run(stop))
    notes: dict[str, Any] = {}
    victim = sup.proc("auth1")
    others = [p.url for p in sup.procs if p is not victim]
    try:
        deadline = time.monotonic() + 90
        while run.sim.stats.sim_now < run.clock.start_s + KILL_AT * DAY_S:
            assert not task.done(), "the run ended before the crash"
            assert time.monotonic() < deadline, "the simulated day does not advance"
            await asyncio.sleep(0.1)
        notes["before"] = [get(u, "/status")["height"] for u in others]
        victim.kill()  # SIGKILL: no clean shutdown, LevelDB as the crash left it
        notes["killed_at"] = time.time()
        await asyncio.sleep(4)
        notes["during"] = [get(u, "/status")["height"] for u in others]
        victim.start()
        await asyncio.to_thread(victim.wait_ready, 30)
        notes["restarted_at"] = time.time()
        summary = await asyncio.wait_for(task, 150)
    finally:
        stop.set()
        if not task.done():
            await asyncio.gather(task, return_exceptions=True)
    return summary, notes


def test_a_simulated_day(tmp_path: Path) -> None:
    started = time.monotonic()
    devnet = create_devnet(tmp_path / "devnet", authorities=3, observers=1, meters=8, traders=1, seed=2026,
                           block_interval_ms=500, min_difficulty=16, interval="900", base_port=free_base_port(4))
    sup = Supervisor(devnet)
    try:
        sup.start_all(timeout=60)
        options = RunOptions(speed=SPEED, history_s=None, sim_span_s=DAY_S, tamper=True, market=True,
                             market_tick_s=1.0, window_s=8.0, drain_s=45.0, restart_dead=False)
        run = DevnetRun(devnet, options, sup)
        summary, notes = asyncio.run(day_with_a_crash(run, sup))
        check_day(devnet, run, summary, notes)
        assert all(p.alive for p in sup.procs)
    except BaseException:
        print(dump_logs(devnet))
        raise
    finally:
        sup.stop_all()
    assert not any(p.alive for p in sup.procs)
    print(f"simulated day: {time.monotonic() - started:.0f} s")


def check_day(devnet: Devnet, run: DevnetRun, summary: dict[str, Any], notes: dict[str, Any]) -> None:
    sim = summary["simulator"]
    reader = devnet.node_key(devnet.authorities[0].name)  # an authority reads every route (ADR 012)

    def read(url: str, path: str) -> Any:
        return get(url, path, reader)

    # the whole day was simulated: 96 quarter hours per meter (the revoked meter's later ones are tampers)
    assert run.sim.finished and run.sim.drained
    assert all(m["readings"] == 96 for m in summary["meters"]), [(m["name"], m["readings"]) for m in summary["meters"]]
    assert sim["readings"] == sim["accepted"] == sim["confirmed"] > 0
    assert sim["given_up"] == 0
    # the network kept producing without auth1, which caught up after its restart
    assert all(d > b for b, d in zip(notes["before"], notes["during"])), notes
    height = settle(devnet)
    assert height > max(notes["during"])

    energy = read(devnet.urls[0], "/energy")
    assert {read(u, "/energy")["minted_wh"] for u in devnet.urls} == {energy["minted_wh"]}
    # the OCMF meters (devnet/ocmf.py) minted what their accepted records grew; their tampering nothing
    ocmf = summary["ocmf"]
    assert ocmf["checks"] == {"minted_equals_sent": True, "tamper_each_own_reason": True}, ocmf
    assert ocmf["tamper_untried"] == [], ocmf
    ocmf_minted = ocmf["minted_wh_this_run"]
    ocmf_consumed = sum(read(devnet.urls[0], f"/ocmf-meters/{m['meter_id']}")["consumed_wh"] for m in ocmf["meters"])
    assert ocmf_minted > 0 and ocmf_consumed > 0
    # Wh minted on chain == exported energy of the readings the simulator had accepted, per meter too
    assert energy["minted_wh"] - ocmf_minted == sim["export_wh_accepted"] == sim["export_wh_confirmed"] > 0
    assert energy["consumed_wh"] - ocmf_consumed == sim["import_wh_accepted"] > 0
    chain_meters = {m["meter_id"]: m for m in read(devnet.urls[2], "/meters")["meters"]}
    for m in summary["meters"]:
        assert chain_meters[m["meter_id"]]["minted_wh"] == m["export_wh_accepted"], m
        assert chain_meters[m["meter_id"]]["counter"] == m["confirmed_counter"] or m["revoked"], m

    # every tamper refused with its own reason; the revoked meter minted nothing after its revocation
    tamper = sim["tamper"]
    assert set(tamper) == set(EXPECTED), tamper
    for name, result in tamper.items():
        assert set(result["got"]) == {EXPECTED[name]}, (name, result)
    assert tamper["revoked_meter"]["got"]["meter_revoked"] >= 40
    assert summary["checks"]["tamper_each_own_reason"] is True
    (stolen,) = [m for m in summary["meters"] if m["revoked"]]
    rec = chain_meters[stolen["meter_id"]]
    assert rec["active"] is False and rec["counter"] == stolen["confirmed_counter"] < 96

    # conservation over every account that can hold coin or Wh
    genesis = devnet.genesis()
    accounts = [read(devnet.urls[3], f"/accounts/{a}") for a in coin_holders(devnet)]
    assert sum(a["coin"] + a["locked_coin"] for a in accounts) == genesis_total_coin(genesis)
    assert sum(a["wh"] + a["locked_wh"] for a in accounts) == energy["minted_wh"] - energy["redeemed_wh"]
    assert sum(a["consumed_wh"] for a in accounts) == energy["consumed_wh"]
    assert all(a["redeemed_wh"] <= a["consumed_wh"] for a in accounts)
    assert energy["redeemed_wh"] > 0

    # the market ran, and every trade settled as the rules say: escrow released pro rata, the rest refunded
    trades = read(devnet.urls[1], "/trades")["trades"]
    assert len(trades) >= 3, summary["market"]
    for t in trades:
        assert t["status"] == "settled", t
        assert t["escrow"] == t["wh"] * t["price_per_wh"]
        assert 0 <= t["delivered"] <= t["wh"]
        assert t["released"] == t["escrow"] * t["delivered"] // t["wh"]
        assert t["refunded"] == t["escrow"] - t["released"]
    assert any(t["delivered"] == t["wh"] and t["refunded"] == 0 for t in trades), "a trade delivered in full"
    assert any(0 < t["refunded"] for t in trades), "a trade delivered in part, the rest refunded"
    orders = read(devnet.urls[0], "/market/orders")["orders"]
    assert any(o["filled_wh"] > 0 for o in orders), "the order book matched"
    # what is still locked is exactly what open orders hold
    by_owner: dict[str, list[int]] = {}
    for o in orders:
        if o["status"] == "open":
            lock = by_owner.setdefault(o["owner"], [0, 0])
            if o["side"] == "buy":
                lock[0] += o["remaining"] * o["price_per_wh"]
            else:
                lock[1] += o["remaining"]
    for a in accounts:
        assert [a["locked_coin"], a["locked_wh"]] == by_owner.get(a["address"], [0, 0]), a
    market = summary["market"]["accepted"]
    for kind in ("post_offer", "accept_offer", "deliver", "place_order", "redeem"):
        assert market.get(kind, 0) > 0, (kind, summary["market"])
    assert energy["settled_wh"] > 0 and energy["total"]["energy_j"] > 0
    # the ledger's whole energy, every node's summed, beside the hashing-only figure; the buyers that size their
    # trades from the verification quote spent a smaller share of the energy they bought on verifying it
    whole = summary["energy"]
    print("energy:", json.dumps({k: v for k, v in whole.items() if k != "network_wh_per_tx"}))
    assert set(whole["nodes_j"]) == {n.name for n in devnet.nodes}
    assert whole["whole_kwh"] > whole["hashing_kwh"] > 0 and whole["sim_days"] > 0.9
    assert whole["whole_kwh_per_settled_kwh"] > whole["hashing_kwh_per_settled_kwh"] > 0
    assert sum(whole["breakdown_j"].values()) == pytest.approx(whole["whole_kwh"] * 3.6e6, rel=1e-6)
    agents = whole["agents"]
    assert agents["quote"]["trades"] > 0 and agents["fixed"]["trades"] > 0, agents
    assert agents["quote"]["share"] < agents["fixed"]["share"], agents
    assert summary["checks"] == {"minted_equals_sent": True, "tamper_each_own_reason": True, "nodes_agree": True}


# ------------------------------------------------------------------------------------------------ CLI


def devnet_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devnet", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_cli_up_status_down(tmp_path: Path) -> None:
    directory = tmp_path / "dn"
    base = free_base_port(3)
    common = ["--dir", str(directory), "--base-port", str(base)]
    first = devnet_cli("up", "--nodes", "2", "--observers", "1", "--meters", "3", "--traders", "1",
                       "--speed", "3000", "--duration", "12", "--block-interval-ms", "500", "--min-difficulty",
                       "16", "--tamper", "--check", "--window", "6", *common, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "created a devnet" in first.stdout and "checks:" in first.stdout
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["stopped_by"] == "duration"
    assert summary["checks"]["minted_equals_sent"] and summary["checks"]["tamper_each_own_reason"]
    assert summary["checks"]["nodes_agree"] and summary["agreement"]["height"] >= 1
    assert summary["simulator"]["accepted"] > 0
    assert not (directory / "devnet.pid").exists()
    height_before = max(n["height"] for n in summary["nodes"])
    devnet = Devnet.load(directory)

    down_status = devnet_cli("status", "--dir", str(directory))
    assert down_status.returncode == 1 and "down" in down_status.stdout

    # again, in the background, on the same directory: the chain continues
    proc = subprocess.Popen([sys.executable, "-m", "devnet", "up", "--speed", "600", "--no-market", *common],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True)
    node_pids: list[int] = []
    try:
        wait_until(lambda: (directory / "devnet.pid").exists() and all(
            urllib.request.urlopen(u + "/status", timeout=2).status == 200 for u in devnet.urls), 60, 0.2,
            "the devnet is up again")
        node_pids = [n["pid"] for n in json.loads((directory / "devnet.pid").read_text())["nodes"].values()]
        assert len(node_pids) == 3 and all(pid_alive(p) for p in node_pids)
        wait_until(lambda: min(h for h, _ in heads(devnet)) > height_before, 30, 0.2, "the chain continues")
        again = devnet_cli("up", *common)
        assert again.returncode == 1 and "already running" in again.stderr and len(again.stderr.splitlines()) == 1
        status = devnet_cli("status", "--dir", str(directory), "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        rows = json.loads(status.stdout)["nodes"]
        assert [r["role"] for r in rows] == ["authority", "authority", "observer"] and all(r["up"] for r in rows)
        down = devnet_cli("down", "--dir", str(directory))
        assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr
        assert proc.wait(timeout=30) == 0
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert "reusing the devnet" in output and "stopping nodes" in output, output
        assert not any(pid_alive(p) for p in node_pids)
        assert not (directory / "devnet.pid").exists()
        assert devnet_cli("down", "--dir", str(directory)).stdout.startswith("no devnet running")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for pid in node_pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    bad = devnet_cli("status", "--dir", str(tmp_path / "nothing"))
    assert bad.returncode == 1 and bad.stderr.startswith("kwh-devnet: error:") and len(bad.stderr.splitlines()) == 1
