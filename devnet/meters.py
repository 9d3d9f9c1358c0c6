"""Simulated smart meters and the simulated clock they read by (no networking here).

A `SimMeter` is what sits in a meter cabinet: a P-256 key, a strictly increasing counter and two
cumulative registers. At the end of every interval it measures (devnet/profiles.py) and signs a reading
exactly as `ledger.tx.sign_reading` says a meter does. It can resume from the chain's record of the
meter (counter, next interval, registers), so a devnet that restarts continues where it stopped.

The `SimClock` runs `speed` times faster than real time from a start in the past, and never passes real
time minus a small lag: the ledger refuses readings for intervals that have not ended at block time
(`interval_in_future`), so a simulated day compressed into a minute must be yesterday, catching up with now.
"""
from __future__ import annotations

import time
from typing import Callable

from ledger.keys import MeterKey
from ledger.tx import CONSUMPTION, GENERATION, MeterReading, ReadingFields, sign_reading

from .layout import MeterSpec
from .profiles import Site, interval_energy


def align_down(t: float, step: int) -> int:
    return int(t // step) * step


def align_up(t: float, step: int) -> int:
    return -int(-t // step) * step


class SimClock:
    """Simulated unix time: `start + speed * elapsed`, capped at real time minus `lag_s`."""

    def __init__(self, start_s: float, speed: float, lag_s: float = 2.0,
                 time_fn: Callable[[], float] = time.time) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.time_fn = time_fn
        self.real_start = time_fn()
        self.start_s = min(float(start_s), self.real_start - lag_s)
        self.speed = float(speed)
        self.lag_s = lag_s

    def jump_to(self, start_s: float) -> None:
        """Restart the clock at `start_s` if that is later than where it is (never past real time)."""
        if start_s > self.now():
            self.real_start = self.time_fn()
            self.start_s = min(float(start_s), self.real_start - self.lag_s)

    def now(self) -> float:
        real = self.time_fn()
        return min(self.start_s + (real - self.real_start) * self.speed, real - self.lag_s)

    @property
    def caught_up(self) -> bool:
        """True once the simulation runs at real time (it cannot go faster than the wall clock)."""
        real = self.time_fn()
        return self.start_s + (real - self.real_start) * self.speed >= real - self.lag_s

    def real_seconds_until(self, sim_t: float) -> float:
        """Real seconds until the simulated clock shows `sim_t` (0 if it already does)."""
        real = self.time_fn()
        if self.now() >= sim_t:
            return 0.0
        by_speed = (sim_t - self.start_s) / self.speed + self.real_start - real
        by_wall = sim_t + self.lag_s - real
        return max(0.0, by_speed, by_wall)


class SimMeter:
    """One meter: profile, key, counter and registers. `read()` measures and signs the next interval."""

    def __init__(self, spec: MeterSpec, key: MeterKey, chain_id: str, seed: int, site: Site = Site()) -> None:
        if key.meter_id.hex() != spec.meter_id:
            raise ValueError(f"meter {spec.name}: key does not match meter id {spec.meter_id}")
        self.spec = spec
        self.key = key
        self.chain_id = chain_id
        self.seed = seed
        self.site = site
        self.profile = spec.energy_profile()
        self.interval_s = spec.interval_s
        self.counter = 0
        self.export_register = 0
        self.import_register = 0
        self.next_start = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def meter_id(self) -> bytes:
        return self.key.meter_id

    @property
    def limit_wh(self) -> int:
        """The most Wh one interval may carry in either direction at the meter's rating."""
        return self.spec.rated_w * self.interval_s // 3600

    def resume(self, counter: int, next_start: int, export_register: int, import_register: int) -> None:
        """Continue from what the chain last accepted from this meter."""
        self.counter, self.next_start = counter, next_start
        self.export_register, self.import_register = export_register, import_register

    def start_at(self, t: float) -> None:
        """Report from the first interval starting at or after `t` (never before what was reported)."""
        self.next_start = max(self.next_start, align_up(t, self.interval_s))

    def due(self, sim_now: float) -> bool:
        """Has the next interval ended on the simulated clock?"""
        return self.next_start + self.interval_s <= sim_now

    def measure(self, start: int) -> tuple[int, int]:
        """(export_wh, import_wh) over the interval starting at `start`, as this meter's kind can report."""
        export_wh, import_wh = interval_energy(self.profile, self.seed, self.name, start, self.interval_s,
                                               self.site)
        if self.spec.kind == GENERATION:
            import_wh = 0
        elif self.spec.kind == CONSUMPTION:
            export_wh = 0
        return export_wh, import_wh

    def fields(self, start: int, export_wh: int, import_wh: int, counter: int | None = None) -> ReadingFields:
        """Reading fields for an interval on top of the current registers (tamper code varies them)."""
        return ReadingFields(self.meter_id, start, self.interval_s, export_wh, import_wh,
                             self.export_register + export_wh, self.import_register + import_wh,
                             self.counter + 1 if counter is None else counter)

    def peek(self) -> ReadingFields:
        """The honest fields of the next interval, without advancing."""
        return self.fields(self.next_start, *self.measure(self.next_start))

    def sign(self, fields: ReadingFields) -> MeterReading:
        return sign_reading(self.key, self.chain_id, fields)

    def read(self) -> MeterReading:
        """Measure and sign the next interval, and advance counter, registers and interval."""
        f = self.peek()
        self.counter = f.counter
        self.export_register, self.import_register = f.export_register, f.import_register
        self.next_start = f.interval_start + f.interval_s
        return self.sign(f)
