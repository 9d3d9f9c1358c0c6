"""The dashboard's weight and speed (`python -m bench.dashboard [--quick]`, also a section of `make bench`).

A devnet day of data is made first (`kwh-devnet up --sim-hours 24 --speed 1440`: 24 meters, market agents;
6 hours with --quick), then its nodes are started again and headless Chromium opens the overview and the
energy page, each in a fresh tab, several times. Figures:

* `dashboard_<page>_first_render_ms`: median time from navigation start until the page has drawn its data
  (app.js marks body[data-ready-ms]), goal under 1000 ms on this machine; `..._cold_render_ms` is the first
  visit after the nodes started (the energy page then also waits for the node's digest of the chain);
* `dashboard_<page>_requests` and `..._bytes`: how many requests the page made and the bytes it was sent
  (page, script, style and JSON, uncompressed), and `..._largest_json_bytes`, the biggest single answer: every view is one
  bounded page, so this stays small whatever the chain's length;
* `dashboard_index_blocks_per_s` / `_txs_per_s`: how fast a node builds its digest of the chain after a start.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "functional"))
import browser  # noqa: E402  (tests/functional/browser.py: the same headless Chromium the tests use)

PAGES = {"overview": "/", "energy": "/#/energy"}
GOAL_MS = 1000


def make_day(directory: Path, quick: bool, base_port: int) -> None:
    hours = "6" if quick else "24"
    subprocess.run([sys.executable, "-m", "devnet", "up", "--dir", str(directory), "--base-port", str(base_port),
                    "--speed", "1440", "--sim-hours", hours, "--block-interval-ms", "500", "--min-difficulty", "16",
                    "--seed", "2026", "--no-restart"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)


def measure_page(driver: Any, url: str) -> dict[str, Any]:
    driver.get("about:blank")
    driver.get(url)
    browser.wait_drawn(driver, 30)
    ready = float(driver.execute_script("return document.body.dataset.readyMs"))
    entries = driver.execute_script("""
        const nav = performance.getEntriesByType('navigation')[0];
        return [[nav.name, nav.transferSize, nav.decodedBodySize]].concat(
            performance.getEntriesByType('resource').map(e => [e.name, e.transferSize, e.decodedBodySize]));""")
    json_sizes = [size for name, _t, size in entries if "/dashboard/static/" not in name and not name.endswith("/")]
    return {"ready_ms": ready, "requests": len(entries), "bytes": sum(s for _n, _t, s in entries),
            "largest_json_bytes": max(json_sizes, default=0)}


def run(quick: bool) -> dict[str, Any]:
    why = browser.missing()
    if why:
        return {"dashboard_skipped": why}
    from devnet.layout import Devnet
    from devnet.nodes import Supervisor, port_free
    base = next(p for p in range(28701, 29701, 10) if all(port_free("127.0.0.1", p + i) for i in range(4)))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kwh-bench-dash-") as tmp:
        directory = Path(tmp) / "devnet"
        t0 = time.perf_counter()
        make_day(directory, quick, base)
        out["dashboard_day_made_s"] = round(time.perf_counter() - t0, 1)
        devnet = Devnet.load(directory)
        sup = Supervisor(devnet)
        sup.start_all()
        driver = browser.chromium()
        try:
            url = devnet.urls[-1]  # the observer: no mining beside it
            with urllib.request.urlopen(url + "/status", timeout=10) as resp:
                out["dashboard_chain_height"] = json.loads(resp.read())["height"]
            repeats = 3 if quick else 5
            for name, path in PAGES.items():
                cold, *runs = [measure_page(driver, url + path) for _ in range(repeats + 1)]
                out[f"dashboard_{name}_cold_render_ms"] = cold["ready_ms"]  # first visit after the node started
                out[f"dashboard_{name}_first_render_ms"] = statistics.median(r["ready_ms"] for r in runs)
                out[f"dashboard_{name}_requests"] = runs[-1]["requests"]
                out[f"dashboard_{name}_bytes"] = runs[-1]["bytes"]
                out[f"dashboard_{name}_largest_json_bytes"] = runs[-1]["largest_json_bytes"]
        finally:
            driver.quit()
            sup.stop_all()
        out.update(index_rate(devnet))
    return out


def index_rate(devnet: Any) -> dict[str, Any]:
    """How fast a node builds its dashboard digest (node/dashboard_index.py) from a stopped node's chain:
    what a restarted node spends before the energy page has its series (a real-time day at 2 s blocks is
    43,200 blocks)."""
    from ledger.chain import Chain
    from ledger.genesis import Genesis
    from ledger.store import LevelKV
    from node.dashboard_index import DashboardIndex
    node = devnet.nodes[-1]
    kv = LevelKV(str(devnet.path(node.data_dir)))
    try:
        chain = Chain(kv, Genesis.load(devnet.path("genesis.json")))
        index = DashboardIndex(chain)
        t0 = time.perf_counter()
        asyncio.run(index.refresh())
        elapsed = time.perf_counter() - t0
        out = {"dashboard_index_blocks_per_s": round(chain.height / elapsed)}
        if len(index.block_points) == chain.height:  # every block is among the points: count their txs
            out["dashboard_index_txs_per_s"] = round(sum(p.txs for p in index.block_points) / elapsed)
        return out
    finally:
        kv.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="6 simulated hours instead of a day")
    args = parser.parse_args()
    result = run(args.quick)
    for key, value in result.items():
        goal = f"  (goal < {GOAL_MS} ms: {'ok' if value < GOAL_MS else 'MISSED'})" if key.endswith("render_ms") else ""
        print(f"{key:44} {value}{goal}")


if __name__ == "__main__":
    main()
