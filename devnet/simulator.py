"""The meter simulator: simulated smart meters and their gateways, posting signed readings to the nodes.

Every meter (devnet/meters.py) reads at the end of each interval of the simulated clock and hands its
signed reading to its gateway. A gateway behaves like a real one that must not lose a reading:

  * it posts a meter's readings in order to the meter's home node (failing over to the next live node);
  * it keeps every reading until the chain has it: the chain's meter record (`GET /meters`, polled) says
    which counter was last accepted; readings at or below it are confirmed and dropped from the queue;
  * a reading not confirmed in time (a node died with it in its mempool) is posted again, in order with
    those after it; an honest reading refused because a node lacks its predecessor is re-posted the same
    way. The same bytes are re-posted, so the ledger can never count a reading twice (`duplicate`).

What was sent is tracked so it can be compared with what the chain minted: `export_wh_accepted` is the
exported energy of honest readings a node accepted; once everything is confirmed it must equal the Wh
minted on chain (`GET /energy` minted_wh) since the simulation started.

With `tamper=True`, one meter (the "tamper target") sends a round of tampered readings around one of its
honest readings (devnet/tamper.py), and another (the "stolen" meter) is revoked by an authority's
RevokeMeter and keeps sending. Each tamper must be refused with its own reason; the counts per reason
are in `stats.tamper`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from ledger.tx import MeterReading, RevokeMeter, encode_tx, sign_tx

from . import tamper as T
from .client import NodePool, NodeUnavailable, reason_of
from .layout import Devnet
from .meters import SimClock, SimMeter, align_down

log = logging.getLogger("devnet.simulator")

MAX_ATTEMPTS = 40  # posts of one honest reading before its meter is given up (a bug, not the network)
TAMPER_AFTER_READINGS = 4  # the tamper round happens at the target meter's 5th reading of the run
REVOKE_AFTER_READINGS = 12  # the stolen meter is revoked after 12 readings of the run


@dataclass
class Pending:
    """An honest reading not yet confirmed on chain."""
    reading: MeterReading
    raw: bytes
    counter: int
    export_wh: int
    import_wh: int
    sent_at: float | None = None  # monotonic time of the last post a node took; None: (re)post it
    accepted: bool = False  # a node took it at least once (counted in export_wh_accepted)
    attempts: int = 0


@dataclass
class Gateway:
    """One meter's gateway: its queue of unconfirmed readings and where it posts them."""
    meter: SimMeter
    home: int  # the node its readings go to first
    prefer: int = -1  # where they go now: moves on when a node refuses an honest reading
    queue: deque[Pending] = field(default_factory=deque)
    node: int = -1  # node that took the last post
    retry_at: float = 0.0  # after a refusal, wait before re-posting
    hold_at: int | None = None  # stop reading once the run has this many readings (tamper/revoke rounds)
    busy: bool = False  # a tamper or revoke round owns the gateway
    revoked: bool = False  # the chain revoked the meter; its readings are tampers now
    given_up: bool = False
    readings: int = 0  # readings made in this run
    confirmed_counter: int = 0
    baseline_minted_wh: int = 0  # the chain's minted_wh of this meter when the run started
    export_wh_accepted: int = 0
    export_wh_confirmed: int = 0


@dataclass
class SimStats:
    readings: int = 0  # honest readings made
    accepted: int = 0  # honest readings a node took (first time)
    confirmed: int = 0  # honest readings the chain has
    export_wh_accepted: int = 0  # exported Wh of accepted honest readings: must equal Wh minted
    import_wh_accepted: int = 0
    export_wh_confirmed: int = 0
    import_wh_confirmed: int = 0
    posts: int = 0
    reposts: int = 0  # honest readings posted again (lost with a node, or refused for a missing predecessor)
    refusals: Counter[str] = field(default_factory=Counter)  # honest readings refused (then re-posted)
    node_failures: int = 0
    given_up: int = 0  # meters given up (an honest reading kept being refused: a bug)
    tamper: dict[str, Counter[str]] = field(default_factory=dict)  # tamper -> reason -> count
    tamper_skipped: Counter[str] = field(default_factory=Counter)  # not sent (node down, ...)
    revoked: list[str] = field(default_factory=list)
    baseline_minted_wh: int = 0  # chain's minted_wh when the run started
    sim_start: float = 0.0
    sim_now: float = 0.0
    started: float = field(default_factory=time.time)

    @property
    def pending(self) -> int:
        return self.accepted - self.confirmed

    def tamper_ok(self) -> bool:
        """Every tamper sent got exactly its own reason."""
        return all(set(reasons) == {T.EXPECTED[name]} for name, reasons in self.tamper.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "readings": self.readings, "accepted": self.accepted, "confirmed": self.confirmed,
            "export_wh_accepted": self.export_wh_accepted, "import_wh_accepted": self.import_wh_accepted,
            "export_wh_confirmed": self.export_wh_confirmed, "import_wh_confirmed": self.import_wh_confirmed,
            "posts": self.posts, "reposts": self.reposts, "refusals": dict(self.refusals),
            "node_failures": self.node_failures, "given_up": self.given_up,
            "tamper": {name: {"expected": T.EXPECTED[name], "got": dict(reasons)}
                       for name, reasons in sorted(self.tamper.items())},
            "tamper_skipped": dict(self.tamper_skipped), "revoked_meters": self.revoked,
            "baseline_minted_wh": self.baseline_minted_wh, "sim_start": self.sim_start, "sim_now": self.sim_now,
        }


class Simulator:
    """All meters of a devnet and their gateways. `run(stop)` until `stop` is set; see the module doc."""

    def __init__(self, devnet: Devnet, pool: NodePool, clock: SimClock, *, tamper: bool = False,
                 span_s: float | None = None, tick_s: float = 0.1, reconcile_s: float = 1.0,
                 resend_after_s: float | None = None, seed: int | None = None) -> None:
        self.devnet = devnet
        self.pool = pool
        self.clock = clock
        self.tamper = tamper
        self.span_s = span_s  # simulate this long (from where the clock starts), then stop reading
        self.until_s: float | None = None
        self.tick_s = tick_s
        self.reconcile_s = reconcile_s
        genesis = devnet.genesis()
        self.block_interval_s = genesis.block_interval_ms / 1000
        self.min_fee = genesis.min_fee
        self.resend_after_s = resend_after_s if resend_after_s is not None else max(6.0, 8 * self.block_interval_s)
        seed = devnet.seed if seed is None else seed
        names = [n.name for n in devnet.nodes]
        self.gateways = [Gateway(SimMeter(spec, devnet.meter_key(spec), devnet.chain_id, seed, devnet.site),
                                 names.index(spec.home) if spec.home in names else i % len(names))
                         for i, spec in enumerate(devnet.meters)]
        for gw in self.gateways:
            gw.prefer = gw.home
        self.stats = SimStats()
        self.emitting = True
        self.prepared = False
        self.tamper_target: Gateway | None = None
        self.stolen: Gateway | None = None
        self.tamper_done = asyncio.Event()
        self.revoke_done = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._rounds: list[tuple[asyncio.Task[Any], Gateway]] = []
        if tamper:
            self._pick_tamper_meters()

    # setup ----------------------------------------------------------------------------------------
    def _pick_tamper_meters(self) -> None:
        """The target: the first meter that is not bidirectional (generation preferred, so every tamper
        applies); the stolen meter: the last other meter."""
        singles = [g for g in self.gateways if g.meter.spec.kind != "both"]
        singles.sort(key=lambda g: g.meter.spec.kind != "generation")
        if not singles or len(self.gateways) < 2:
            raise ValueError("tamper mode needs at least two meters, one of them not bidirectional")
        self.tamper_target = singles[0]
        others = [g for g in self.gateways if g is not self.tamper_target]
        generators = [g for g in others if g.meter.spec.kind == "generation"]
        self.stolen = (generators or others)[-1]

    async def prepare(self) -> None:
        """Resume every meter from the chain (a reused devnet continues) and start the simulated day."""
        data = await self.pool.get_ok("/meters")
        chain = {m["meter_id"]: m for m in data["meters"]}
        energy = await self.pool.get_ok("/energy?limit=1")
        self.stats.baseline_minted_wh = int(energy["minted_wh"])
        # A reused devnet: start the clock where the chain's meters stopped, if that is later.
        reported = [int(m["next_start"]) for m in chain.values() if m["active"] and int(m["counter"]) > 0]
        if reported:
            self.clock.jump_to(min(reported))
        if self.span_s is not None:
            self.until_s = self.clock.start_s + self.span_s
        start = align_down(self.clock.start_s, 1800)
        for gw in self.gateways:
            m = chain.get(gw.meter.spec.meter_id)
            if m is None:
                raise ValueError(f"meter {gw.meter.name} ({gw.meter.spec.meter_id}) is not on the chain")
            gw.meter.resume(int(m["counter"]), int(m["next_start"]), int(m["export_register"]),
                            int(m["import_register"]))
            gw.meter.start_at(start)
            gw.confirmed_counter = int(m["counter"])
            gw.baseline_minted_wh = int(m["minted_wh"])
            if not m["active"]:
                gw.revoked = True
        self.stats.sim_start = self.clock.start_s
        if self.tamper_target is not None:
            self.tamper_target.hold_at = TAMPER_AFTER_READINGS
        if self.stolen is not None:
            if self.stolen.revoked:
                self.revoke_done.set()
            else:
                self.stolen.hold_at = REVOKE_AFTER_READINGS
        self.prepared = True

    # main loop ------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        if not self.prepared:
            await self.prepare()
        if self.tamper:
            assert self.tamper_target is not None and self.stolen is not None
            self._rounds = [(asyncio.create_task(self._tamper_round(self.tamper_target)), self.tamper_target),
                            (asyncio.create_task(self._revoke_round(self.stolen)), self.stolen)]
            self._tasks = [t for t, _gw in self._rounds]
        last_reconcile = 0.0
        try:
            while not stop.is_set():
                self.stats.sim_now = self.clock.now()
                if self.emitting:
                    self._emit(self.stats.sim_now)
                await asyncio.gather(*(self._flush(gw) for gw in self.gateways if not gw.busy))
                if time.monotonic() - last_reconcile >= self.reconcile_s:
                    last_reconcile = time.monotonic()
                    await self._reconcile()
                try:
                    await asyncio.wait_for(stop.wait(), self.tick_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop_emitting(self) -> None:
        """No new readings from now on; queued ones are still delivered. Tamper rounds that have not begun
        will not (their meter would never reach its turn); one under way finishes. What is due by now (at
        most the end of the simulated span) is read first: the run may stop on the very tick the span ends,
        before the loop read the day's last interval (every meter then had 95 readings of 96)."""
        if self.emitting:
            self._emit(self.clock.now())
        self.emitting = False
        for task, gw in self._rounds:
            if not gw.busy:
                task.cancel()

    @property
    def finished(self) -> bool:
        """The simulated span is over (with `until_s`)."""
        return self.until_s is not None and self.clock.now() >= self.until_s

    @property
    def drained(self) -> bool:
        """Every honest reading is on chain (and the tamper rounds are done, if any)."""
        rounds = not self.tamper or (self.tamper_done.is_set() and self.revoke_done.is_set())
        return rounds and all(not gw.queue or gw.given_up for gw in self.gateways)

    def _emit(self, sim_now: float) -> None:
        limit = sim_now if self.until_s is None else min(sim_now, self.until_s)
        for gw in self.gateways:
            if gw.busy or gw.given_up or (gw.revoked and not self.tamper):
                continue  # a revoked meter is out of service, unless it plays the stolen meter
            while gw.meter.due(limit) and (gw.hold_at is None or gw.readings < gw.hold_at):
                reading = gw.meter.read()
                gw.readings += 1
                if gw.revoked:
                    self._spawn(self._send_tamper(T.REVOKED_METER, reading, gw.home, failover=True))
                    continue
                f = reading.fields
                gw.queue.append(Pending(reading, encode_tx(reading), f.counter, f.export_wh, f.import_wh))
                self.stats.readings += 1

    def _spawn(self, coro: Any) -> None:
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(coro))

    # posting --------------------------------------------------------------------------------------
    def _accept(self, gw: Gateway, p: Pending) -> None:
        if not p.accepted:
            p.accepted = True
            self.stats.accepted += 1
            self.stats.export_wh_accepted += p.export_wh
            self.stats.import_wh_accepted += p.import_wh
            gw.export_wh_accepted += p.export_wh

    async def _flush(self, gw: Gateway) -> None:
        """Post the gateway's unsent readings in order; stop at the first refusal or dead node."""
        if not gw.queue or time.monotonic() < gw.retry_at or gw.given_up:
            return
        for p in list(gw.queue):
            if p.sent_at is not None:
                continue
            if p.attempts >= MAX_ATTEMPTS:
                gw.given_up = True
                self.stats.given_up += 1
                log.error("gave up meter %s at counter %d after %d refused posts", gw.meter.name, p.counter,
                          p.attempts)
                return
            p.attempts += 1
            if p.attempts > 1:
                self.stats.reposts += 1
            self.stats.posts += 1
            try:
                node, status, data = await self.pool.post_tx(p.raw, gw.prefer)
            except NodeUnavailable:
                self.stats.node_failures += 1
                gw.retry_at = time.monotonic() + 0.5
                return
            reason = reason_of(status, data)
            if reason in ("ok", "duplicate"):
                p.sent_at = time.monotonic()
                gw.node = node
                self._accept(gw, p)
                continue
            # Honest readings are refused only when a node lacks what came before (a predecessor lost with
            # a dead node, or not gossiped yet): post everything unconfirmed again, in order, a bit later.
            self.stats.refusals[reason] += 1
            log.info("meter %s reading %d refused by %s: %s %s", gw.meter.name, p.counter,
                     self.pool.urls[node], reason, data.get("detail", "") if isinstance(data, dict) else "")
            for q in gw.queue:
                q.sent_at = None
            gw.prefer = (node + 1) % len(self.pool.urls)  # a node that is behind: try the next one
            gw.retry_at = time.monotonic() + max(0.5, self.block_interval_s)
            return

    async def _reconcile(self) -> None:
        """Drop confirmed readings from the queues; re-post what was not confirmed in time."""
        try:
            data = await self.pool.get_ok("/meters")
        except NodeUnavailable:
            self.stats.node_failures += 1
            return
        chain = {m["meter_id"]: m for m in data["meters"]}
        now = time.monotonic()
        for gw in self.gateways:
            m = chain.get(gw.meter.spec.meter_id)
            if m is None:
                continue
            counter = int(m["counter"])
            gw.confirmed_counter = max(gw.confirmed_counter, counter)
            while gw.queue and gw.queue[0].counter <= gw.confirmed_counter:
                p = gw.queue.popleft()
                self._accept(gw, p)  # a post whose answer was lost still counts once it is on chain
                self.stats.confirmed += 1
                self.stats.export_wh_confirmed += p.export_wh
                self.stats.import_wh_confirmed += p.import_wh
                gw.export_wh_confirmed += p.export_wh
            if gw.queue and gw.queue[0].sent_at is not None and now - gw.queue[0].sent_at > self.resend_after_s:
                # The node took it but it is not on chain: the node died with it, or never passed it on (a
                # node gossips a tx once, when it arrives). Post everything unconfirmed to the next node.
                gw.prefer = (gw.node + 1) % len(self.pool.urls)
                log.info("meter %s: reading %d not on chain after %.0f s, posting again via %s", gw.meter.name,
                         gw.queue[0].counter, now - gw.queue[0].sent_at, self.pool.urls[gw.prefer])
                for q in gw.queue:
                    q.sent_at = None

    # tampering ------------------------------------------------------------------------------------
    async def _send_tamper(self, name: str, reading: MeterReading, node: int, failover: bool = False) -> str:
        try:
            _i, status, data = await self.pool.post_tx(encode_tx(reading), node, failover=failover)
        except NodeUnavailable:
            self.stats.tamper_skipped[name] += 1
            return "unavailable"
        reason = reason_of(status, data)
        self.stats.tamper.setdefault(name, Counter())[reason] += 1
        if reason != T.EXPECTED[name]:
            log.error("tamper %s: expected %s, got %s (%s)", name, T.EXPECTED[name], reason, data)
        return reason

    async def _wait_confirmed(self, gw: Gateway) -> None:
        """Until the gateway has read up to its hold point and the chain has every reading."""
        while gw.readings < (gw.hold_at or 0) or gw.queue:
            await asyncio.sleep(0.2)

    async def _tamper_round(self, gw: Gateway) -> None:
        """Around one honest reading R of the target meter: tampers before R, R itself, tampers after."""
        try:
            await self._wait_confirmed(gw)
            await asyncio.sleep(2 * self.block_interval_s)  # let every node import the block with the last one
            while not gw.meter.due(self.clock.now()):
                await asyncio.sleep(0.1)
            if not self.emitting:
                return
            gw.busy = True
            honest = gw.meter.peek()
            node = self.pool.order(gw.prefer)[0]  # one live node for the whole round (replay needs R there)
            for name, reading in T.before(gw.meter, honest, time.time()):
                await self._send_tamper(name, reading, node)
            r = gw.meter.read()
            gw.readings += 1
            self.stats.readings += 1
            p = Pending(r, encode_tx(r), r.fields.counter, r.fields.export_wh, r.fields.import_wh)
            gw.queue.append(p)
            try:
                _i, status, data = await self.pool.post_tx(p.raw, node, failover=False)
            except NodeUnavailable:
                status, data = 0, None
            if reason_of(status, data) in ("ok", "duplicate"):
                p.sent_at = time.monotonic()
                self._accept(gw, p)
                for name, reading in T.after(gw.meter, r):
                    await self._send_tamper(name, reading, node)
            else:
                self.stats.tamper_skipped["after_round"] += 1  # R did not get in: its gateway retries it
            log.info("tamper round on meter %s done: %s", gw.meter.name,
                     {k: dict(v) for k, v in self.stats.tamper.items()})
        finally:
            gw.hold_at = None
            gw.busy = False
            self.tamper_done.set()

    async def _revoke_round(self, gw: Gateway) -> None:
        """An authority revokes the stolen meter (once its honest readings are all on chain); the meter keeps
        sending, and every reading it sends from then on is a tamper (`meter_revoked`)."""
        try:
            if gw.revoked:
                return
            await self._wait_confirmed(gw)
            gw.busy = True
            authority = self.devnet.authorities[0]
            key = self.devnet.node_key(authority.name)
            meter_id = gw.meter.meter_id
            while True:
                try:
                    account = await self.pool.get_ok(f"/accounts/{key.address_text}")
                    tx = sign_tx(key, self.devnet.chain_id, int(account["next_nonce"]), self.min_fee,
                                 RevokeMeter(meter_id))
                    _i, status, data = await self.pool.post_tx(encode_tx(tx))
                    reason = reason_of(status, data)
                    if reason in ("ok", "duplicate", "meter_revoked"):
                        break
                    log.warning("revoke of %s refused: %s", gw.meter.name, data)
                except NodeUnavailable:
                    pass
                await asyncio.sleep(1.0)
            while True:
                try:
                    m = await self.pool.get_ok(f"/meters/{meter_id.hex()}")
                    if not m["active"]:
                        break
                except NodeUnavailable:
                    pass
                await asyncio.sleep(0.3)
            gw.revoked = True
            self.stats.revoked.append(gw.meter.name)
            log.info("meter %s revoked by %s", gw.meter.name, authority.name)
        finally:
            gw.hold_at = None
            gw.busy = False
            self.revoke_done.set()

    # reporting ------------------------------------------------------------------------------------
    def per_meter(self) -> list[dict[str, Any]]:
        return [{"name": gw.meter.name, "meter_id": gw.meter.spec.meter_id, "kind": gw.meter.spec.kind,
                 "profile": gw.meter.spec.profile, "interval_s": gw.meter.interval_s, "readings": gw.readings,
                 "queued": len(gw.queue), "counter": gw.meter.counter, "confirmed_counter": gw.confirmed_counter,
                 "export_wh_accepted": gw.export_wh_accepted, "export_wh_confirmed": gw.export_wh_confirmed,
                 "baseline_minted_wh": gw.baseline_minted_wh, "revoked": gw.revoked, "given_up": gw.given_up}
                for gw in self.gateways]
