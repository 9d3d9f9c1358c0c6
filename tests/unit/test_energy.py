"""EnergyMeter (RAPL on fake counter files, CPU-time estimate), GridPolicy and GridSignalFile."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from node.energy import SOURCE_ESTIMATE, SOURCE_RAPL, EnergyMeter
from node.grid import GridPolicy, GridSignalFile, parse_signal_text

MAX_RANGE = 262_143_328_850


def write_zone(root: Path, zone: str, name: str, energy_uj: int, max_range: int = MAX_RANGE) -> Path:
    d = root / zone
    d.mkdir(parents=True, exist_ok=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d / "energy_uj"


def write_proc_stat(path: Path, busy_ticks: int, idle_ticks: int = 10_000) -> None:
    """First line of /proc/stat: cpu user nice system idle iowait irq softirq steal guest guest_nice."""
    user, system, irq = busy_ticks - 30, 20, 10
    path.write_text(f"cpu  {user} 0 {system} {idle_ticks} 77 {irq} 0 500 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")


# ------------------------------------------------------------------------------ CPU-time estimate

def test_estimate_when_rapl_absent(tmp_path: Path) -> None:
    meter = EnergyMeter(watts_per_core=20.0, rapl_root=tmp_path / "no-such-dir")
    assert meter.source == SOURCE_ESTIMATE
    assert meter.stop(meter.start(), 1.5) == (30_000, True)  # 1.5 s x 20 W = 30 J
    empty = EnergyMeter(rapl_root=tmp_path)
    assert empty.source == SOURCE_ESTIMATE
    assert empty.stop(empty.start(), 0.25) == (round(0.25 * 15 * 1000), True)  # default 15 W per core


def test_estimate_ignores_malformed_and_non_package_zones(tmp_path: Path) -> None:
    write_zone(tmp_path, "intel-rapl:0", "package-0", 0).write_text("not a number\n")
    write_zone(tmp_path, "intel-rapl:0:0", "core", 5)  # sub-zone of a package
    write_zone(tmp_path, "intel-rapl:1", "psys", 5)  # whole platform: would double count
    meter = EnergyMeter(watts_per_core=10.0, rapl_root=tmp_path)
    assert meter.source == SOURCE_ESTIMATE
    assert meter.stop(meter.start(), 2.0) == (20_000, True)


def test_bad_watts_refused() -> None:
    with pytest.raises(ValueError):
        EnergyMeter(watts_per_core=0)


# ------------------------------------------------------------------------------ RAPL

def test_rapl_whole_package_when_busy_time_unknown(tmp_path: Path) -> None:
    pkg0 = write_zone(tmp_path / "rapl", "intel-rapl:0", "package-0", 1_000_000)
    pkg1 = write_zone(tmp_path / "rapl", "intel-rapl:2", "package-1", 50)
    core = write_zone(tmp_path / "rapl", "intel-rapl:0:0", "core", 7)
    psys = write_zone(tmp_path / "rapl", "intel-rapl:1", "psys", 9)
    meter = EnergyMeter(rapl_root=tmp_path / "rapl", proc_stat=tmp_path / "missing-stat")
    assert meter.source == SOURCE_RAPL
    token = meter.start()
    pkg0.write_text("3500000\n")  # +2.5 J
    pkg1.write_text("500050\n")  # +0.5 J
    core.write_text("999999999\n")  # sub-zone and platform zone must not be added
    psys.write_text("999999999\n")
    assert meter.stop(token, 0.1) == (3_000, False)


def test_rapl_counter_wraparound(tmp_path: Path) -> None:
    pkg = write_zone(tmp_path, "intel-rapl:0", "package-0", MAX_RANGE - 500_000)
    meter = EnergyMeter(rapl_root=tmp_path, proc_stat=tmp_path / "missing-stat")
    token = meter.start()
    pkg.write_text("1500000\n")  # wrapped through zero: 0.5 J before, 1.5 J after
    assert meter.stop(token, 0.1) == (2_000, False)


def test_rapl_attributed_by_share_of_busy_cpu_time(tmp_path: Path) -> None:
    pkg = write_zone(tmp_path / "rapl", "intel-rapl:0", "package-0", 0)
    stat = tmp_path / "stat"
    write_proc_stat(stat, busy_ticks=100_000)
    meter = EnergyMeter(rapl_root=tmp_path / "rapl", proc_stat=stat)
    token = meter.start()
    pkg.write_text("8000000\n")  # the package used 8 J
    write_proc_stat(stat, busy_ticks=100_000 + 2 * meter.clock_ticks, idle_ticks=99_999)  # machine busy 2 s
    assert meter.stop(token, 0.5) == (2_000, False)  # the worker ran 0.5 of those 2 s: a quarter of 8 J


def test_rapl_share_capped_at_whole_package(tmp_path: Path) -> None:
    pkg = write_zone(tmp_path / "rapl", "intel-rapl:0", "package-0", 0)
    stat = tmp_path / "stat"
    write_proc_stat(stat, busy_ticks=1_000)
    meter = EnergyMeter(rapl_root=tmp_path / "rapl", proc_stat=stat)
    token = meter.start()
    pkg.write_text("4000000\n")
    write_proc_stat(stat, busy_ticks=1_000 + meter.clock_ticks)  # 1 s busy, but the worker claims 3 s
    assert meter.stop(token, 3.0) == (4_000, False)


def test_rapl_unreadable_at_stop_falls_back_to_estimate(tmp_path: Path) -> None:
    pkg = write_zone(tmp_path, "intel-rapl:0", "package-0", 10)
    meter = EnergyMeter(watts_per_core=15.0, rapl_root=tmp_path)
    token = meter.start()
    pkg.unlink()
    assert meter.stop(token, 2.0) == (30_000, True)


@pytest.mark.skipif(not Path("/sys/class/powercap").exists(), reason="no powercap on this machine")
def test_real_machine_meter_answers() -> None:
    meter = EnergyMeter()
    energy, estimated = meter.stop(meter.start(), 0.01)
    assert energy >= 0 and estimated == (meter.source == SOURCE_ESTIMATE)


# ------------------------------------------------------------------------------ grid policy

def policy(**kw: float) -> GridPolicy:
    args = {"min_difficulty": 256, "block_interval_ms": 2000, "power_cap_w": 100.0, "watts_per_core": 15.0,
            "cores": 2}
    args.update(kw)
    return GridPolicy(**args)  # type: ignore[arg-type]


def test_scarcity_gives_minimum() -> None:
    p = policy()
    assert p.difficulty(1e6) == 256  # no signal yet counts as scarcity
    for surplus in (0, -1, -50_000):
        p.set_signal(surplus)
        assert p.difficulty(1e6) == 256
        assert p.snapshot() == {"surplus_w": surplus, "power_w": 0.0, "difficulty": 256, "power_cap_w": 100.0}


def test_surplus_buys_half_an_interval_of_hashes() -> None:
    p = policy(cores=1)
    p.set_signal(10)
    # 10 W x 2 s x 0.5 = 10 J; 15 W / 1e6 hashes/s = 15 uJ per hash; 10 J / 15 uJ = 666,666 hashes
    assert p.difficulty(1e6) == 666_666
    assert p.snapshot() == {"surplus_w": 10, "power_w": 10.0, "difficulty": 666_666, "power_cap_w": 100.0}


def test_difficulty_monotonic_in_surplus_and_capped() -> None:
    p = policy(power_cap_w=20.0, cores=4)  # cores allow 60 W, the cap 20 W
    seen = []
    for surplus in (1, 2, 5, 10, 15, 19, 20, 21, 60, 1_000, 10**9):
        p.set_signal(surplus)
        seen.append(p.difficulty(2e6))
    assert seen == sorted(seen)
    assert seen[0] < seen[3] < seen[6]  # it does grow below the cap
    assert seen[6] == seen[-1] == int(20 * 2 * 0.5 / (15 / 2e6))  # and stops at power_cap_w
    p.set_signal(10**9)
    assert p.snapshot()["power_w"] == 20.0


def test_difficulty_capped_by_cores() -> None:
    p = policy(power_cap_w=1_000.0, cores=2)  # 2 cores x 15 W = 30 W below the 1 kW cap
    p.set_signal(30)
    at_cores = p.difficulty(1e6)
    p.set_signal(900)
    assert p.difficulty(1e6) == at_cores == 2_000_000  # 30 W x 1 s / 15 uJ


def test_tiny_budget_or_unknown_rate_stays_at_minimum() -> None:
    p = policy()
    p.set_signal(1)
    assert p.difficulty(10.0) == 256  # 1 J buys 0.67 hashes at 10 hashes/s: never below the minimum
    assert p.difficulty(0.0) == 256


def test_policy_refuses_bad_input() -> None:
    p = policy()
    for bad in (1.5, True, "100", None):
        with pytest.raises(ValueError):
            p.set_signal(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        policy(watts_per_core=0)
    with pytest.raises(ValueError):
        policy(min_difficulty=0)


# ------------------------------------------------------------------------------ signal file

def test_signal_text_forms() -> None:
    assert parse_signal_text("1500\n") == 1500
    assert parse_signal_text("  -300 ") == -300
    assert parse_signal_text(json.dumps({"surplus_w": 2500, "source": "dso"})) == 2500
    for bad in ("", "abc", "1.5", "true", '{"surplus": 1}', '{"surplus_w": "1"}', "[1]"):
        with pytest.raises(ValueError):
            parse_signal_text(bad)


def test_signal_file_poll(tmp_path: Path) -> None:
    path = tmp_path / "grid-signal"
    watch = GridSignalFile(path)
    assert watch.poll() is None  # no file yet
    path.write_text("1200\n")
    assert watch.poll() == 1200
    assert watch.poll() is None  # unchanged
    tmp = tmp_path / "grid-signal.tmp"
    tmp.write_text('{"surplus_w": -40}')
    os.replace(tmp, path)
    assert watch.poll() == -40
    path.write_text("garbage")
    with pytest.raises(ValueError, match="grid-signal"):
        watch.poll()
    assert watch.poll() is None  # the bad content is reported once
    path.write_text("1200")
    assert watch.poll() == 1200
    path.write_text("9" * 5000)
    with pytest.raises(ValueError, match="larger"):
        watch.poll()
