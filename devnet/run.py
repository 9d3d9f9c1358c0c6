"""One devnet run: the meter simulator, the market agents and a monitor of the nodes, until told to stop.

`DevnetRun.run(stop)` is what `kwh-devnet up` runs after starting the nodes, and what the functional tests
drive directly. It ends when `stop` is set (Ctrl-C: at once), or when `duration_s` of real time or
`sim_span_s` of simulated time have passed: then it winds down (no new readings or trades, queued
readings delivered, open trades left to settle at their window's end, for at most `drain_s`) so the
summary compares settled numbers: Wh minted on chain against exported Wh the simulator had accepted.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from .client import NodePool, NodeUnavailable
from ledger.keys import parse_address
from node.keyfile import write_private

from .layout import Devnet
from .market import PURCHASE_KINDS, Market, verification_shares
from .meters import SimClock
from .nodes import Supervisor
from .ocmf import OcmfFleet
from .simulator import Simulator
from .tamper import EXPECTED

log = logging.getLogger("devnet.run")
NODE_ENERGY_EVERY_S = 5.0  # how often the monitor asks every node for its whole energy


def sim_start(devnet: Devnet, history_s: float | None, now: float | None = None) -> float:
    """Where the simulated clock starts: `history_s` ago, or (None) at the start of yesterday, local time
    of the devnet's site, so a simulated day is a whole day from midnight to midnight."""
    now = time.time() if now is None else now
    if history_s is not None:
        return now - history_s
    tz = devnet.site.tz_offset_s
    return (now + tz) // 86400 * 86400 - tz - 86400


@dataclass
class RunOptions:
    speed: float = 120.0  # simulated seconds per real second
    history_s: float | None = None  # the simulated clock starts this long ago; None: yesterday's local midnight
    duration_s: float | None = None  # real seconds, then wind down
    sim_span_s: float | None = None  # simulated seconds, then wind down
    tamper: bool = False
    market: bool = True
    market_tick_s: float = 2.0
    window_s: float = 30.0  # delivery window of offers, real seconds
    drain_s: float = 30.0  # wind-down limit
    monitor_s: float = 1.0
    restart_dead: bool = True  # the supervisor restarts a node that died (not one stopped on purpose)
    seed: int | None = None


class DevnetRun:
    def __init__(self, devnet: Devnet, options: RunOptions, supervisor: Supervisor | None = None) -> None:
        self.devnet = devnet
        self.options = options
        self.supervisor = supervisor
        reader = devnet.node_key(devnet.authorities[0].name)  # reads every account's data (ADR 012)
        self.pool = NodePool(devnet.urls, timeout_s=5.0, reader=reader)
        self.status_pool = NodePool(devnet.urls, timeout_s=2.0, reader=reader)
        # never before genesis: the meters are enrolled there, and nothing before it can mint
        genesis_s = devnet.genesis().timestamp_ms / 1000
        self.clock = SimClock(max(sim_start(devnet, options.history_s), genesis_s), options.speed)
        self.sim = Simulator(devnet, self.pool, self.clock, tamper=options.tamper, span_s=options.sim_span_s,
                             seed=options.seed)
        self.ocmf = OcmfFleet(self.pool, devnet.node_key(devnet.authorities[0].name),
                              [parse_address(w.address) for w in devnet.wallets], devnet.genesis().min_fee,
                              devnet.path("ocmf"), tamper=options.tamper, seed=options.seed)
        self.ocmf_minted: dict[str, int] | None = None
        self.market = Market(devnet, self.pool, seed=options.seed, tick_s=options.market_tick_s,
                             window_s=options.window_s) if options.market else None
        self.nodes: list[dict[str, Any]] = [{"name": n.name, "role": n.role, "url": n.url, "up": False}
                                            for n in devnet.nodes]
        self.energy: dict[str, Any] = {}
        self.node_energy: dict[str, dict[str, Any]] = {}  # node name -> its whole energy (GET /energy "node")
        self._energy_runs: dict[str, dict[str, Any]] = {}  # node name -> its energy over this run (restarts too)
        self._chain_base: dict[str, float] | None = None  # hashing J and settled Wh at the first poll
        self.trade_list: list[dict[str, Any]] = []
        self._next_node_energy = 0.0
        self.trades: Counter[str] = Counter()
        self.phase = "starting"
        self.started = time.time()
        self.restarts: Counter[str] = Counter()
        self.paused_restarts: set[str] = set()  # nodes stopped on purpose (tests): not restarted
        self._next_restart: dict[str, float] = {}
        self._next_full_trades = 0.0
        self.stopped_by = "running"  # then: duration, sim-hours, signal, error
        self.agreement: dict[str, Any] = {}

    # monitor --------------------------------------------------------------------------------------
    async def poll(self) -> None:
        """Refresh what the view shows: every node's status, the chain's energy and trades."""
        energy_due = time.monotonic() >= self._next_node_energy or self.phase == "stopped"
        if energy_due:
            self._next_node_energy = time.monotonic() + NODE_ENERGY_EVERY_S
        async def one(i: int) -> dict[str, Any]:
            base = {"name": self.devnet.nodes[i].name, "role": self.devnet.nodes[i].role, "url": self.pool.urls[i]}
            try:
                status, data = await self.status_pool.call(i, "GET", "/status")
            except NodeUnavailable:
                return dict(base, up=False)
            if status != 200 or not isinstance(data, dict):
                return dict(base, up=False)
            peers = data.get("peers") or []
            if energy_due:  # every node's whole energy, now and then (it only grows) and at the end
                try:
                    code, energy = await self.status_pool.call(i, "GET", "/energy?limit=1")
                    if code == 200 and isinstance(energy, dict) and isinstance(energy.get("node"), dict):
                        self._node_energy_seen(base["name"], energy["node"])
                except NodeUnavailable:
                    pass
            return dict(base, up=True, height=data.get("height"), head=data.get("head"),
                        finalized=data.get("finalized_height"),
                        mempool=data.get("mempool"), syncing=data.get("syncing"),
                        peers=sum(1 for p in peers if p.get("connected", True)))
        self.nodes = list(await asyncio.gather(*(one(i) for i in range(len(self.pool.urls)))))
        if self.supervisor is not None:
            for row in self.nodes:
                p = self.supervisor.proc(row["name"])
                row["pid"] = p.pid if p.alive else None
                row["exit"] = p.returncode if p.proc is not None and not p.alive else None
        try:
            self.energy = await self.status_pool.get_ok("/energy?limit=1")
            if self._chain_base is None:
                self._chain_base = {"hashing_j": float(self.energy["total"]["energy_j"]),
                                    "settled_wh": float(self.energy["settled_wh"])}
            if self.market is not None:
                # open and delivered trades are few; the settled ones only grow: count them now and then
                full = time.monotonic() >= self._next_full_trades or self.phase == "stopped"
                trades = (await self.status_pool.get_ok("/trades" if full else "/trades?status=open"))["trades"]
                if not full:
                    trades += (await self.status_pool.get_ok("/trades?status=delivered"))["trades"]
                counts = Counter(t["status"] for t in trades)
                if full:
                    self.trade_list = trades
                if not full:
                    counts["settled"] = self.trades.get("settled", 0)
                else:
                    self._next_full_trades = time.monotonic() + 15.0
                self.trades = counts
        except NodeUnavailable:
            pass

    def _restart_dead(self) -> None:
        if self.supervisor is None or not self.options.restart_dead:
            return
        now = time.monotonic()
        for p in self.supervisor.dead():
            if p.name in self.paused_restarts:
                continue
            due = self._next_restart.get(p.name)
            if due is None:  # wait a moment (and longer after each restart) before trying again
                self._next_restart[p.name] = now + min(60.0, 2.0 * 2 ** self.restarts[p.name])
                log.warning("node %s exited with code %s; restarting it", p.name, p.returncode)
            elif now >= due:
                del self._next_restart[p.name]
                self.restarts[p.name] += 1
                p.start()
                self.supervisor.write_pid_file()

    async def _monitor(self, stop: asyncio.Event, on_update: Callable[["DevnetRun"], None] | None) -> None:
        while not stop.is_set():
            self._restart_dead()
            await self.poll()
            if on_update is not None:
                try:
                    on_update(self)
                except Exception:  # noqa: BLE001 - the view must never stop the devnet
                    log.exception("view update failed")
            try:
                await asyncio.wait_for(stop.wait(), self.options.monitor_s)
            except asyncio.TimeoutError:
                pass

    async def wait_connected(self, stop: asyncio.Event, timeout: float = 20.0) -> bool:
        """Until every node has a session with every other (a node gossips a tx only once, on arrival:
        a reading posted before its node reached the others would wait for a re-post elsewhere)."""
        deadline = time.monotonic() + timeout
        want = len(self.devnet.nodes) - 1
        while not stop.is_set() and time.monotonic() < deadline:
            await self.poll()
            if all(n.get("up") and n.get("peers", 0) >= want for n in self.nodes):
                return True
            await self._wait(stop, 0.2)
        log.warning("not every node is connected to every other after %.0f s: %s", timeout,
                    [(n["name"], n.get("peers")) for n in self.nodes])
        return False

    def _node_energy_seen(self, name: str, report: dict[str, Any]) -> None:
        """Keep each node's whole energy over this run: from the first poll on, across restarts (a restarted
        node counts from zero again, `since_ms` tells it apart)."""
        self.node_energy[name] = report
        now = {"energy_j": float(report["energy_j"]), **{k: float(v) for k, v in report["breakdown_j"].items()}}
        run = self._energy_runs.get(name)
        if run is None:
            self._energy_runs[name] = {"since": report["since_ms"], "start": now, "ended": {}, "last": now}
            return
        if report["since_ms"] != run["since"]:  # a new process: keep what the old one spent, count from zero
            run["ended"] = {k: run["ended"].get(k, 0.0) + v - run["start"].get(k, 0.0) for k, v in run["last"].items()}
            run["since"], run["start"] = report["since_ms"], {}
        run["last"] = now

    def energy_summary(self) -> dict[str, Any]:
        """The ledger's whole energy (every node's, summed) beside the hashing-only figure, per settled kWh and
        per simulated day, and what share of the energy each buying strategy bought went to verifying it."""
        spent: dict[str, float] = {}
        for run in self._energy_runs.values():
            for k, v in run["last"].items():
                spent[k] = spent.get(k, 0.0) + run["ended"].get(k, 0.0) + v - run["start"].get(k, 0.0)
        whole_j = spent.pop("energy_j", 0.0)
        base = self._chain_base or {"hashing_j": 0.0, "settled_wh": 0.0}
        total = self.energy.get("total") or {}
        hashing_j = float(total.get("energy_j", 0.0)) - base["hashing_j"]
        settled_kwh = (float(self.energy.get("settled_wh") or 0) - base["settled_wh"]) / 1000
        stats = self.sim.stats
        sim_days = max(0.0, (stats.sim_now or self.clock.start_s) - self.clock.start_s) / 86400
        whole_kwh, hashing_kwh = whole_j / 3.6e6, hashing_j / 3.6e6
        reports = list(self.node_energy.values())
        cost_wh: dict[str, float] = {}  # network Wh per transaction: each node's own cost, summed
        for r in reports:
            for kind, c in r.get("per_type", {}).items():
                if c.get("node_j") is not None:
                    cost_wh[kind] = cost_wh.get(kind, 0.0) + (c["node_j"] + r.get("overhead_j_per_tx", 0.0)) / 3600
        return {
            "nodes_j": {name: round(r["energy_j"], 3) for name, r in self.node_energy.items()},
            "estimated": any(r.get("estimated", True) for r in reports) if reports else None,
            "whole_kwh": whole_kwh, "hashing_kwh": hashing_kwh, "settled_kwh": settled_kwh,
            "whole_kwh_per_settled_kwh": whole_kwh / settled_kwh if settled_kwh > 0 else None,
            "hashing_kwh_per_settled_kwh": hashing_kwh / settled_kwh if settled_kwh > 0 else None,
            "sim_days": sim_days,
            "whole_kwh_per_sim_day": whole_kwh / sim_days if sim_days > 0 else None,
            "settled_kwh_per_sim_day": settled_kwh / sim_days if sim_days > 0 else None,
            "breakdown_j": spent, "network_wh_per_tx": cost_wh,
            "agents": verification_shares(self.trade_list, self.market.strategies(), cost_wh)
            if self.market is not None else None,
        }

    # run ------------------------------------------------------------------------------------------
    def _time_up(self) -> bool:
        o = self.options
        if o.duration_s is not None and time.time() - self.started >= o.duration_s:
            return True
        return self.sim.finished

    async def run(self, stop: asyncio.Event,
                  on_update: Callable[["DevnetRun"], None] | None = None) -> dict[str, Any]:
        """Run until `stop` (abrupt) or the duration / simulated span (wind down); returns the summary.

        The summary is written to summary.json however the run ends: wind-down, a signal, or an error in the
        simulator or the agents (which is raised after the summary is written)."""
        self.started = time.time()
        workers_stop = asyncio.Event()
        monitor_stop = asyncio.Event()
        tasks: list[asyncio.Task[Any]] = []
        monitor: asyncio.Task[Any] | None = None
        try:
            await self.wait_connected(stop)
            await self.sim.prepare()
            await self.ocmf.prepare()
            tasks.append(asyncio.create_task(self.sim.run(workers_stop)))
            tasks.append(asyncio.create_task(self.ocmf.run(workers_stop)))
            if self.market is not None:
                tasks.append(asyncio.create_task(self.market.run(workers_stop)))
            monitor = asyncio.create_task(self._monitor(monitor_stop, on_update))
            self.phase = "running"
            while not stop.is_set() and not self._time_up():
                await self._wait(stop, 0.2)
                for t in tasks:
                    if t.done() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
            if stop.is_set():
                self.stopped_by = "signal"
            else:
                self.stopped_by = "sim-hours" if self.sim.finished else "duration"
                self.phase = "winding down"
                await self.wind_down(stop)
        except BaseException:
            self.stopped_by = "signal" if stop.is_set() else "error"
            raise
        finally:
            workers_stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.phase = "stopped"
            monitor_stop.set()
            if monitor is not None:
                await asyncio.gather(monitor, return_exceptions=True)
            summary = await self._final_summary()
            if on_update is not None:
                try:
                    on_update(self)
                except Exception:  # noqa: BLE001 - a closed terminal or pipe must not lose the summary
                    log.exception("the last view update failed")
        return summary

    async def _final_summary(self) -> dict[str, Any]:
        """Poll once more, check that the nodes agree, write summary.json; never raises for a node or a disk."""
        try:
            await self.poll()
            self.agreement = await self.agree()
        except Exception:  # noqa: BLE001 - the summary says what is known
            log.exception("final poll failed")
        try:
            self.ocmf_minted = await self.ocmf.minted_on_chain()
        except Exception:  # noqa: BLE001 - NodeUnavailable or a node's error: the summary says None
            self.ocmf_minted = None
        finally:
            await self.pool.close()
            await self.status_pool.close()
        summary = self.summary()
        try:
            write_private(self.devnet.summary_path, (json.dumps(summary, indent=2) + "\n").encode())
        except OSError:
            log.exception("cannot write %s", self.devnet.summary_path)
        return summary

    async def agree(self, bound_s: float = 15.0) -> dict[str, Any]:
        """Do the nodes agree? They are compared at a common height (the lowest head among them), not at one
        instant: a block still in flight to one node is no disagreement. A different block at the common
        height may be a reorganisation under way, so it is asked again until `bound_s` has passed."""
        deadline = time.monotonic() + bound_s
        while True:
            result = await self._compare_at_common_height()
            if result["agree"] or time.monotonic() >= deadline:
                return result
            await asyncio.sleep(0.5)
            await self.poll()

    async def _compare_at_common_height(self) -> dict[str, Any]:
        down = [n["name"] for n in self.nodes if not n.get("up")]
        heights = [int(n["height"]) for n in self.nodes if n.get("up") and isinstance(n.get("height"), int)]
        if down or not heights:
            return {"agree": False, "height": None, "down": down}
        height = min(heights)
        hashes: dict[str, str | None] = {}
        for i, n in enumerate(self.nodes):
            try:
                status, data = await self.status_pool.call(i, "GET", f"/blocks/{height}")
            except NodeUnavailable:
                status, data = 0, None
            hashes[n["name"]] = data.get("hash") if status == 200 and isinstance(data, dict) else None
        agree = len(set(hashes.values())) == 1 and None not in hashes.values()
        return {"agree": agree, "height": height, "hashes": hashes}

    async def wind_down(self, stop: asyncio.Event) -> bool:
        """No new readings or trades; wait (at most drain_s) until readings are on chain, tamper rounds are
        done and every trade's window has ended and settled. True if everything settled in time."""
        self.sim.stop_emitting()
        self.ocmf.stop_emitting()
        if self.market is not None:
            self.market.stop_trading()
        deadline = time.monotonic() + self.options.drain_s
        while not stop.is_set() and time.monotonic() < deadline:
            open_trades = await self._open_trades()
            if self.sim.drained and self.ocmf.drained and open_trades == 0:
                return True
            await self._wait(stop, 0.5)
        return False

    async def _open_trades(self) -> int:
        if self.market is None:
            return 0
        try:
            return len((await self.pool.get_ok("/trades?status=open"))["trades"]) + \
                len((await self.pool.get_ok("/trades?status=delivered"))["trades"])
        except NodeUnavailable:
            return -1

    @staticmethod
    async def _wait(event: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def finality(self) -> dict[str, Any]:
        """The highest finalized height among the nodes that answered, and how far the highest head is
        ahead of it (blocks a fork could still take back)."""
        up = [n for n in self.nodes if n.get("up") and n.get("finalized") is not None]
        if not up:
            return {"finalized_height": None, "lag_blocks": None}
        finalized = max(int(n["finalized"]) for n in up)
        return {"finalized_height": finalized, "lag_blocks": max(int(n["height"]) for n in up) - finalized}

    # summary --------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        stats = self.sim.stats
        minted = self.energy.get("minted_wh")
        minted_since = minted - stats.baseline_minted_wh if minted is not None else None
        if minted_since is not None:  # native meters part: the OCMF meters mint is checked on its own
            minted_since -= sum(self.ocmf_minted.values()) if self.ocmf_minted is not None else 0
        return {
            "chain_id": self.devnet.chain_id,
            "elapsed_s": round(time.time() - self.started, 1),
            "stopped_by": self.stopped_by,
            "options": {k: v for k, v in vars(self.options).items()},
            "nodes": self.nodes,
            "restarts": dict(self.restarts),
            "chain": {k: self.energy.get(k) for k in ("minted_wh", "settled_wh", "redeemed_wh", "consumed_wh",
                                                       "ledger_kwh_per_settled_kwh")}
            | {"energy_kwh": (self.energy.get("total") or {}).get("energy_kwh"),
               "hashes": (self.energy.get("total") or {}).get("hashes")},
            "minted_wh_this_run": minted_since,
            "energy": self.energy_summary(),
            "simulator": stats.to_json(),
            "meters": self.sim.per_meter(),
            "market": self.market.stats.to_json() if self.market is not None else None,
            "ocmf": self.ocmf.summary(self.ocmf_minted),
            "trades": dict(self.trades),
            "agreement": self.agreement,
            "finality": self.finality(),
            "tamper_untried": sorted(set(EXPECTED) - set(stats.tamper)) if self.options.tamper else None,
            "checks": {
                "minted_equals_sent": minted_since == stats.export_wh_accepted and stats.pending == 0,
                "tamper_each_own_reason": stats.tamper_ok() if self.options.tamper else None,
                "nodes_agree": bool(self.agreement.get("agree")),
            },
        }
