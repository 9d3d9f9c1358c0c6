"""What the proof of work costs in energy: measured with Linux RAPL where readable, else estimated.

The seal of every block carries this figure (millijoules, and whether it was measured), so it should be
the best the machine can tell:

* RAPL (`/sys/class/powercap/intel-rapl:N/energy_uj`, package domains only) counts the energy of the
  whole CPU package, which also runs the node, the OS and anything else. The mining worker is charged
  the package energy times its share of the machine's busy CPU time over the same interval
  (worker CPU seconds / busy seconds from `/proc/stat`, capped at 1). Idle and uncore power is thus
  split among the processes that kept the package busy, in proportion to their work; a worker alone on
  the machine is charged the whole package. If `/proc/stat` cannot be read the whole package is charged
  (an overstatement, never an understatement).
* Without RAPL (VMs, non-Intel/AMD, or `energy_uj` readable only by root since CVE-2020-8694), the
  estimate is the worker's CPU seconds times a configurable power per busy core (default 15 W).

Counters wrap at `max_energy_range_uj`; one wrap per interval is corrected (at 100 W the usual range of
~262 kJ takes ~40 minutes, far longer than a block).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

RAPL_ROOT = Path("/sys/class/powercap")
PROC_STAT = Path("/proc/stat")
DEFAULT_WATTS_PER_CORE = 15.0
SOURCE_RAPL = "rapl"
SOURCE_ESTIMATE = "cpu-time-estimate"

_PACKAGE_ZONE = re.compile(r"^intel-rapl:\d+$")  # top-level zones; "intel-rapl:0:0" are sub-zones of a package


@dataclass(frozen=True)
class _Zone:
    energy_file: Path
    max_range_uj: int


@dataclass(frozen=True)
class EnergyToken:
    """Counter readings at `EnergyMeter.start()`; None where the source was not readable."""
    rapl_uj: tuple[int, ...] | None
    busy_ticks: int | None


class EnergyMeter:
    """Energy of a stretch of mining: `token = start()`, hash, `stop(token, worker_cpu_seconds)`."""

    def __init__(self, watts_per_core: float = DEFAULT_WATTS_PER_CORE, rapl_root: Path | str = RAPL_ROOT,
                 proc_stat: Path | str = PROC_STAT) -> None:
        if not watts_per_core > 0:
            raise ValueError(f"watts_per_core must be positive, got {watts_per_core!r}")
        self.watts_per_core = float(watts_per_core)
        self.proc_stat = Path(proc_stat)
        self.clock_ticks = os.sysconf("SC_CLK_TCK")  # the unit of /proc/stat (USER_HZ)
        self._zones = _find_package_zones(Path(rapl_root))

    @property
    def source(self) -> str:
        """"rapl" when package energy counters were found readable, else "cpu-time-estimate"."""
        return SOURCE_RAPL if self._zones else SOURCE_ESTIMATE

    def start(self) -> EnergyToken:
        return EnergyToken(self._read_rapl(), self._read_busy_ticks())

    def stop(self, token: EnergyToken, cpu_seconds: float) -> tuple[int, bool]:
        """(energy in mJ, estimated) for the worker's `cpu_seconds` since `token` was taken."""
        cpu_seconds = max(0.0, float(cpu_seconds))
        end_uj = self._read_rapl()
        if token.rapl_uj is None or end_uj is None or len(end_uj) != len(token.rapl_uj):
            return self.estimate_mj(cpu_seconds), True
        package_uj = sum(_counter_delta(a, b, zone.max_range_uj)
                         for a, b, zone in zip(token.rapl_uj, end_uj, self._zones))
        share = 1.0
        end_ticks = self._read_busy_ticks()
        if token.busy_ticks is not None and end_ticks is not None and end_ticks > token.busy_ticks:
            busy_seconds = (end_ticks - token.busy_ticks) / self.clock_ticks
            share = min(1.0, cpu_seconds / busy_seconds)
        # else: the busy time was below one tick or unreadable: charge the whole package
        return round(package_uj * share / 1000), False

    def estimate_mj(self, cpu_seconds: float) -> int:
        """CPU seconds x watts per core, in millijoules."""
        return round(max(0.0, cpu_seconds) * self.watts_per_core * 1000)

    def _read_rapl(self) -> tuple[int, ...] | None:
        if not self._zones:
            return None
        try:
            return tuple(int(zone.energy_file.read_text().strip()) for zone in self._zones)
        except (OSError, ValueError):
            return None

    def _read_busy_ticks(self) -> int | None:
        """Busy CPU time of the whole machine in ticks: user + nice + system + irq + softirq.
        Idle, iowait and steal are not work done on this package; guest time is already inside user."""
        try:
            with self.proc_stat.open() as f:
                line = f.readline()
            parts = line.split()
            if not parts or parts[0] != "cpu":
                return None
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in parts[1:8])
            return user + nice + system + irq + softirq
        except (OSError, ValueError):
            return None


def _find_package_zones(root: Path) -> tuple[_Zone, ...]:
    """Readable package-level RAPL zones under `root`. A zone named "psys" (whole platform, on some
    laptops also a top-level zone) is skipped, as it contains the packages and would count them twice."""
    zones: list[_Zone] = []
    try:
        candidates = sorted(p for p in root.iterdir() if _PACKAGE_ZONE.match(p.name))
    except OSError:
        return ()
    for path in candidates:
        try:
            name_file = path / "name"
            if name_file.exists() and not name_file.read_text().strip().startswith("package"):
                continue
            int((path / "energy_uj").read_text().strip())
            max_range = int((path / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError):
            continue  # unreadable (root-only) or malformed: this zone cannot be used
        if max_range > 0:
            zones.append(_Zone(path / "energy_uj", max_range))
    return tuple(zones)


def _counter_delta(start: int, end: int, max_range: int) -> int:
    """Energy counted from `start` to `end`, allowing for one wrap of the counter back through zero."""
    return end - start if end >= start else end + max_range - start
