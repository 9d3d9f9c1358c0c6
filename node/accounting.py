"""The node's whole energy, by what it was spent on, and what verifying one transaction of each kind costs.

Proof of work is a small part of what a ledger node burns: every node checks every signature, applies
every transaction, writes every block and talks to its peers. This module meters all of it, in CPU time:

* `CpuTimeline` charges the event loop thread's CPU time (`time.thread_time`) to one category at a time.
  Synchronous code paths (tx admission, block import and its phases, block building) switch the category
  and switch back; HTTP requests set the base category while they are in flight (API or peer routes), and
  the peer tasks (gossip, polls, sync) are driven step by step under "peer" (`meter_tasks`).
  One timeline, one category at any moment: the categories add up to the thread's CPU time exactly.
* The rest of the process's CPU time (other threads: LevelDB compaction, executors) is "other"; worker
  processes are read from /proc: mining workers are "hashing", signature workers "signatures".
* Signature checks that happen inside the state transition (the inline verifier and mempool admission
  check each signature as they apply it) are split off by a calibrated cost per check (measured at start
  on this machine), so the transition is never timed per transaction.
* CPU seconds become joules with RAPL where the package counters are readable (the node is charged the
  package energy times its share of the machine's busy CPU time, as `EnergyMeter` does for the miner:
  "measured"), else CPU seconds x watts per core ("estimated").

What it leaves out: the machine's idle power (only busy CPU time is charged), memory and disks beyond
what RAPL's package domain sees, network gear, and the meters themselves.
"""
from __future__ import annotations

import asyncio
import collections.abc
import multiprocessing
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ledger.tx import BODY_NAMES, MeterReading, OcmfReading, SignedTx, Tx, Vote

from .energy import PROC_STAT, RAPL_ROOT, EnergyMeter

CATEGORIES = ("signatures", "transition", "storage", "hashing", "peer", "api", "other")
REQUEST_CATEGORIES = ("api", "peer")
BLOCK_HISTORY = 100
CALIBRATION_CHECKS = 16
# Names a quote may be asked for besides the ledger's own kind names (docs/interfaces.md).
KIND_ALIASES = {"offer": "post_offer", "accept": "accept_offer", "order": "place_order"}
J_PER_WH = 3600.0
# Every kind a quote may be asked for: the ledger's kind names and the aliases.
QUOTE_KINDS = tuple(sorted(set(BODY_NAMES.values()) | {"reading", "ocmf_reading", "vote"} | set(KIND_ALIASES)))


def tx_kind(tx: Tx) -> str:
    return tx.kind


def wh_moved(tx: Tx) -> int:
    """The energy a transaction moves, in Wh (0 for coin transfers, votes, enrolments; an OCMF record's
    energy depends on the meter's previous record, so it counts 0 here)."""
    if isinstance(tx, SignedTx):
        return int(getattr(tx.body, "wh", 0) or 0)
    if isinstance(tx, MeterReading):
        return tx.fields.export_wh + tx.fields.import_wh
    return 0


def signature_kind(tx: Tx) -> str | None:
    """Which calibrated check a tx's signature costs: Ed25519 (signed txs, votes) or P-256 (meters)."""
    if isinstance(tx, (SignedTx, Vote)):
        return "ed25519"
    if isinstance(tx, (MeterReading, OcmfReading)):
        return "p256"
    return None


def calibrate_signature_costs(checks: int = CALIBRATION_CHECKS,
                              clock: Callable[[], float] = time.thread_time) -> dict[str, float]:
    """CPU seconds of one Ed25519 and one P-256 verification on this machine (best of two rounds)."""
    from ledger.keys import AccountKey, MeterKey, verify_ed25519, verify_p256
    message = os.urandom(120)
    account, meter = AccountKey.generate(), MeterKey.generate()
    cases = {"ed25519": (verify_ed25519, account.public, account.sign(message)),
             "p256": (verify_p256, meter.public, meter.sign(message))}
    costs: dict[str, float] = {}
    for name, (verify, public, signature) in cases.items():
        best = float("inf")
        for _ in range(2):
            t0 = clock()
            for _ in range(checks):
                verify(public, signature, message)
            best = min(best, (clock() - t0) / checks)
        costs[name] = max(0.0, best)
    return costs


class CpuTimeline:
    """CPU time of one thread, charged to one category at a time (see the module docstring).

    Only call it from the thread it was made on: `thread_time` is per thread."""

    def __init__(self, clock: Callable[[], float] = time.thread_time) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = dict.fromkeys(CATEGORIES, 0.0)
        self._current = "other"
        self._last = clock()
        self._inflight: Counter[str] = Counter()

    @property
    def current(self) -> str:
        return self._current

    def switch(self, category: str) -> tuple[str, float]:
        """Charge the time since the last switch to the current category; returns (previous, now)."""
        now = self.clock()
        self.seconds[self._current] += now - self._last
        self._last = now
        previous, self._current = self._current, category
        return previous, now

    def flush(self) -> None:
        self.switch(self._current)

    def move(self, source: str, target: str, seconds: float) -> float:
        """Re-attribute up to `seconds` already charged to `source` (a split of a section); returns what moved."""
        seconds = max(0.0, min(seconds, self.seconds[source]))
        self.seconds[source] -= seconds
        self.seconds[target] += seconds
        return seconds

    def _base(self) -> str:
        for category in ("peer", "api"):
            if self._inflight[category]:
                return category
        return "other"

    def request_started(self, category: str) -> None:
        """An HTTP request is being handled: what is not a timed section meanwhile is charged to it. A request
        that awaits lets other code run under its category; the total stays exact, the split approximate."""
        self._inflight[category] += 1
        self.switch(self._base())

    def request_ended(self, category: str) -> None:
        self._inflight[category] -= 1
        self.switch(self._base())


@dataclass
class KindCost:
    """CPU seconds one node spent on the transactions of one kind."""
    admitted: int = 0
    admit_s: float = 0.0
    applied: int = 0
    apply_s: float = 0.0
    wh: int = 0  # energy moved by the admitted ones

    def node_s(self) -> float | None:
        """Average CPU seconds to admit and apply one (either average alone if the other has no sample)."""
        admit = self.admit_s / self.admitted if self.admitted else None
        apply = self.apply_s / self.applied if self.applied else None
        if admit is None and apply is None:
            return None
        return (admit or 0.0) + (apply or 0.0)

    def to_json(self, j_per_s: float, validators: int) -> dict[str, Any]:
        node_s = self.node_s()
        return {"admitted": self.admitted, "applied": self.applied,
                "admit_j": self.admit_s / self.admitted * j_per_s if self.admitted else None,
                "apply_j": self.apply_s / self.applied * j_per_s if self.applied else None,
                "node_j": node_s * j_per_s if node_s is not None else None,
                "network_j": node_s * j_per_s * validators if node_s is not None else None,
                "avg_wh": self.wh / self.admitted if self.admitted else None}


class NodeEnergy:
    """Whole-node energy accounting; `Node` owns one and feeds it from its code paths."""

    def __init__(self, watts_per_core: float, rapl_root: Path | str = RAPL_ROOT, proc_stat: Path | str = PROC_STAT,
                 proc_root: Path | str = "/proc", clock: Callable[[], float] = time.thread_time) -> None:
        self.meter = EnergyMeter(watts_per_core, rapl_root, proc_stat)
        self.proc_root = Path(proc_root)
        self.clock_ticks = os.sysconf("SC_CLK_TCK")
        self.signature_s = calibrate_signature_costs(clock=clock)
        self.timeline = CpuTimeline(clock)
        self._token = self.meter.start()
        self._process0 = time.process_time()
        self.started_ms = int(time.time() * 1000)
        self.signature_pids: frozenset[int] = frozenset()  # worker processes that check signatures
        self._children: dict[int, tuple[str, float]] = {}  # pid -> (category, last CPU seconds seen)
        self.kinds: dict[str, KindCost] = {}
        self.blocks: deque[dict[str, Any]] = deque(maxlen=BLOCK_HISTORY)
        self.txs_applied = 0  # not votes: the transactions the ledger is there for
        self.blocks_applied = 0
        self._last_block: dict[str, float] = dict.fromkeys(CATEGORIES, 0.0)

    # feeding -----------------------------------------------------------------------------------------------
    def _kind(self, kind: str) -> KindCost:
        cost = self.kinds.get(kind)
        if cost is None:
            cost = self.kinds[kind] = KindCost()
        return cost

    def admission_started(self) -> tuple[str, float]:
        return self.timeline.switch("transition")

    def admission_ended(self, started: tuple[str, float], tx: Tx, accepted: bool) -> None:
        """A tx was judged for the mempool (signature + transition on the head state): split and record it."""
        previous, t0 = started
        _, t1 = self.timeline.switch(previous)
        elapsed = max(0.0, t1 - t0)
        sig = signature_kind(tx)
        if sig is not None:
            self.timeline.move("transition", "signatures", min(elapsed, self.signature_s[sig]))
        if accepted:
            cost = self._kind(tx_kind(tx))
            cost.admitted += 1
            cost.admit_s += elapsed
            cost.wh += wh_moved(tx)

    def section(self, category: str) -> "_Section":
        """`with energy.section("transition"):` around a synchronous code path (no await inside)."""
        return _Section(self.timeline, category)

    def import_started(self) -> tuple[str, dict[str, float]]:
        """Before `Chain.import_block`: header checks are signature work; the chain's phases follow."""
        previous, _ = self.timeline.switch("signatures")
        return previous, dict(self.timeline.seconds)

    def phase(self, name: str) -> None:
        """The chain's phase callback: "signatures", "transition" or "storage"."""
        self.timeline.switch(name)

    def import_ended(self, started: tuple[str, dict[str, float]], applied: Iterable[Any],
                     inline_signatures: bool) -> None:
        """After `Chain.import_block`: split off inline signature checks and allot the import's CPU time to
        the kinds of the transactions it applied, in proportion to what admitting each kind costs."""
        previous, before = started
        self.timeline.switch(previous)
        blocks = list(applied)
        txs = [tx for block in blocks for tx in block.txs]
        if inline_signatures:
            sig_s = sum(self.signature_s[s] for s in map(signature_kind, txs) if s is not None)
            spent = self.timeline.seconds["transition"] - before["transition"]
            self.timeline.move("transition", "signatures", min(sig_s, spent))
        spent_total = sum(self.timeline.seconds[c] - before[c] for c in ("signatures", "transition", "storage"))
        if not txs:
            return
        counts = Counter(tx_kind(tx) for tx in txs)
        fallback = _mean(c.admit_s / c.admitted for c in self.kinds.values() if c.admitted) or 1.0
        weights = {k: (self.kinds[k].admit_s / self.kinds[k].admitted
                       if k in self.kinds and self.kinds[k].admitted else fallback) for k in counts}
        total_weight = sum(weights[k] * n for k, n in counts.items())
        for kind, n in counts.items():
            cost = self._kind(kind)
            cost.applied += n
            cost.apply_s += spent_total * weights[kind] * n / total_weight if total_weight > 0 else 0.0
        self.txs_applied += sum(n for k, n in counts.items() if k != "vote")
        self.blocks_applied += len(blocks)

    def block_recorded(self, height: int, block_hash: bytes, txs: int) -> None:
        """A new head: the node's whole energy since the previous head, with its breakdown."""
        snap = self.snapshot_seconds()
        delta = {c: max(0.0, snap[c] - self._last_block[c]) for c in CATEGORIES}
        self._last_block = snap
        j_per_s, estimated = self.joules_per_cpu_s(sum(snap.values()))
        self.blocks.append({"height": height, "hash": block_hash.hex(), "txs": txs,
                            "energy_j": sum(delta.values()) * j_per_s,
                            "breakdown_j": {c: delta[c] * j_per_s for c in CATEGORIES}, "estimated": estimated})

    # reading -----------------------------------------------------------------------------------------------
    def snapshot_seconds(self) -> dict[str, float]:
        """CPU seconds by category since the accounting started; their sum is the node's whole CPU time."""
        self.timeline.flush()
        seconds = dict(self.timeline.seconds)
        main = time.process_time() - self._process0
        timed = sum(v for c, v in seconds.items() if c != "other")
        seconds["other"] = max(0.0, main - timed)  # the loop thread's untimed part and every other thread
        for category, cpu in self._children_seconds().items():
            seconds[category] += cpu
        return seconds

    def joules_per_cpu_s(self, cpu_s: float) -> tuple[float, bool]:
        """(joules per CPU second, estimated): RAPL's share when readable, else watts per core."""
        if cpu_s <= 0 or self.meter.source != "rapl":
            return self.meter.watts_per_core, True
        mj, estimated = self.meter.stop(self._token, cpu_s)
        return mj / 1000 / cpu_s, estimated

    @staticmethod
    def validators(authorities: Iterable[bytes], peer_keys: Iterable[bytes | None],
                   own_key: bytes | None) -> int:
        """Nodes that validate every transaction: the authorities, the connected peers and this node."""
        keys = set(authorities) | {k for k in peer_keys if k is not None}
        if own_key is not None:
            keys.add(own_key)
        return len(keys) + (1 if own_key is None else 0)

    def totals(self) -> tuple[dict[str, float], bool]:
        """(joules by category since the accounting started, estimated): for /metrics."""
        seconds = self.snapshot_seconds()
        j_per_s, estimated = self.joules_per_cpu_s(sum(seconds.values()))
        return {c: seconds[c] * j_per_s for c in CATEGORIES}, estimated

    def report(self, validators: int, limit: int = 20) -> dict[str, Any]:
        """The node part of GET /energy."""
        seconds = self.snapshot_seconds()
        cpu_s = sum(seconds.values())
        j_per_s, estimated = self.joules_per_cpu_s(cpu_s)
        overhead_s = self._overhead_s(seconds)
        return {"energy_j": cpu_s * j_per_s, "energy_kwh": cpu_s * j_per_s / 3.6e6, "cpu_s": cpu_s,
                "estimated": estimated, "source": self.meter.source, "watts_per_core": self.meter.watts_per_core,
                "j_per_cpu_s": j_per_s, "since_ms": self.started_ms,
                "breakdown_j": {c: seconds[c] * j_per_s for c in CATEGORIES},
                "breakdown_cpu_s": seconds, "signature_check_s": dict(self.signature_s),
                "blocks": list(self.blocks)[-limit:][::-1], "blocks_applied": self.blocks_applied,
                "txs_applied": self.txs_applied, "validators": validators,
                "overhead_j_per_tx": overhead_s * j_per_s,
                "per_type": {k: c.to_json(j_per_s, validators) for k, c in sorted(self.kinds.items())}}

    def _overhead_s(self, seconds: dict[str, float]) -> float:
        """CPU seconds per transaction of running the ledger beyond the transactions' own checks: hashing,
        votes, peer traffic, block headers, refused transactions and the rest; API serving is left out (reads
        are paid by whoever reads)."""
        whole = sum(seconds.values()) - seconds["api"]
        own = sum(c.admit_s + c.apply_s for k, c in self.kinds.items() if k != "vote")
        return max(0.0, whole - own) / self.txs_applied if self.txs_applied else 0.0

    def quote(self, kind: str, validators: int, wh: int | None = None) -> dict[str, Any]:
        """What verifying one `kind` transaction costs the network now (GET /energy/quote)."""
        kind = KIND_ALIASES.get(kind, kind)
        seconds = self.snapshot_seconds()
        j_per_s, estimated = self.joules_per_cpu_s(sum(seconds.values()))
        cost = self.kinds.get(kind)
        node_s = cost.node_s() if cost is not None else None
        samples = (cost.admitted + cost.applied) if cost is not None else 0
        if node_s is None:  # no sample of this kind yet: the average transaction
            known = [c.node_s() for k, c in self.kinds.items() if k != "vote" and c.node_s() is not None]
            node_s = _mean(known) or 0.0
        overhead_s = self._overhead_s(seconds) if kind != "vote" else 0.0
        marginal_wh = node_s * j_per_s * validators / J_PER_WH
        network_wh = (node_s + overhead_s) * j_per_s * validators / J_PER_WH
        if wh is None and cost is not None and cost.admitted and cost.wh:
            moved: float | None = cost.wh / cost.admitted
        else:
            moved = float(wh) if wh else None
        return {"type": kind, "validators": validators, "samples": samples, "estimated": estimated,
                "source": self.meter.source, "node_j": (node_s + overhead_s) * j_per_s,
                "marginal_node_j": node_s * j_per_s, "overhead_node_j": overhead_s * j_per_s,
                "network_wh": network_wh, "marginal_network_wh": marginal_wh, "wh_moved": moved,
                "fraction": network_wh / moved if moved else None}

    def _children_seconds(self) -> dict[str, float]:
        """CPU seconds of the worker processes, by category (a worker that ended keeps its last reading)."""
        for child in multiprocessing.active_children():
            pid = child.pid
            if pid is None:
                continue
            cpu = self._proc_cpu_s(pid)
            if cpu is None:
                continue
            category = "signatures" if pid in self.signature_pids else "hashing"
            self._children[pid] = (category, cpu)
        out: dict[str, float] = {}
        for category, cpu in self._children.values():
            out[category] = out.get(category, 0.0) + cpu
        return out

    def _proc_cpu_s(self, pid: int) -> float | None:
        try:
            raw = (self.proc_root / str(pid) / "stat").read_text()
        except OSError:
            return None
        fields = raw[raw.rfind(")") + 2:].split()  # the command name may hold spaces
        try:
            return (int(fields[11]) + int(fields[12])) / self.clock_ticks  # utime, stime
        except (IndexError, ValueError):
            return None


class MeteredCoroutine(collections.abc.Coroutine):
    """Drives a coroutine, charging each of its steps (from one await to the next) to a category: how the
    peer tasks' own work (gossip, polls, sync) counts as peer traffic without a clock inside them."""
    __slots__ = ("_coro", "_timeline", "_category")

    def __init__(self, coro: Any, timeline: CpuTimeline, category: str) -> None:
        self._coro, self._timeline, self._category = coro, timeline, category

    def send(self, value: Any) -> Any:
        previous, _ = self._timeline.switch(self._category)
        try:
            return self._coro.send(value)
        finally:
            self._timeline.switch(previous)

    def throw(self, *args: Any) -> Any:
        previous, _ = self._timeline.switch(self._category)
        try:
            return self._coro.throw(*args)
        finally:
            self._timeline.switch(previous)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Any:
        return self

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def __repr__(self) -> str:
        return f"<metered {self._category} {self._coro!r}>"


def meter_tasks(loop: asyncio.AbstractEventLoop, timeline: CpuTimeline, prefixes: dict[str, str]) -> bool:
    """Install a task factory that meters tasks whose coroutine's qualified name starts with one of
    `prefixes` (prefix -> category). False (nothing done) if the loop already has a factory."""
    if loop.get_task_factory() is not None:
        return False

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        name = getattr(coro, "__qualname__", "").rsplit("<locals>.", 1)[-1]
        for prefix, category in prefixes.items():
            if name.startswith(prefix):
                coro = MeteredCoroutine(coro, timeline, category)
                break
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    return True


class _Section:
    __slots__ = ("timeline", "category", "previous")

    def __init__(self, timeline: CpuTimeline, category: str) -> None:
        self.timeline, self.category = timeline, category

    def __enter__(self) -> None:
        self.previous, _ = self.timeline.switch(self.category)

    def __exit__(self, *exc: object) -> None:
        self.timeline.switch(self.previous)


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None

