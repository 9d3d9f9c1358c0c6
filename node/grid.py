"""Mining as flexible load (demand response): spend surplus power on proof of work, none on scarcity.

A grid operator (or a site controller) sends a signal: `surplus_w`, the power it would like absorbed
(> 0) or a shortage (<= 0). The policy turns it into the difficulty of the next block:

* scarcity: the genesis minimum at once, so block production draws as little as the chain allows;
* surplus: target power P = min(surplus_w, power_cap_w, watts_per_core * cores), and an energy budget
  per block of P x half a block interval (so mining rarely delays the next block); the difficulty is the
  hashes that budget buys, budget / joules_per_hash with joules_per_hash = watts_per_core / hash_rate.

The signal arrives by `POST /admin/grid-signal` (the node calls `set_signal`) or from a watched file
(`GridSignalFile`), which a site controller can write without speaking HTTP.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MAX_SIGNAL_FILE_BYTES = 4096
BUDGET_SHARE_OF_INTERVAL = 0.5


def parse_surplus(value: Any) -> int:
    """A surplus in watts from JSON: an integer (negative means shortage). Booleans and fractions are
    refused with ValueError, so a typo in a controller's output is an error rather than a silent 0/1."""
    if type(value) is not int:
        raise ValueError(f"surplus_w must be an integer number of watts, got {value!r}")
    return value


def parse_signal_text(text: str) -> int:
    """The content of a signal file: `1500` or `{"surplus_w": 1500}` (whitespace around is ignored)."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("grid signal is empty")
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        raise ValueError(f"grid signal is neither an integer nor JSON: {stripped[:80]!r}") from None
    if isinstance(value, dict):
        if "surplus_w" not in value:
            raise ValueError('grid signal JSON has no "surplus_w"')
        value = value["surplus_w"]
    return parse_surplus(value)


class GridPolicy:
    """The current grid signal and the difficulty it asks for. The initial signal is 0 (scarcity): a
    node burns nothing beyond the minimum until told there is surplus."""

    def __init__(self, min_difficulty: int, block_interval_ms: int, power_cap_w: float, watts_per_core: float,
                 cores: int = 1) -> None:
        if min_difficulty < 1 or block_interval_ms <= 0 or cores < 1:
            raise ValueError("min_difficulty >= 1, block_interval_ms > 0 and cores >= 1 are required")
        if not (power_cap_w >= 0 and math.isfinite(power_cap_w)):
            raise ValueError(f"power_cap_w must be a finite number >= 0, got {power_cap_w!r}")
        if not (watts_per_core > 0 and math.isfinite(watts_per_core)):
            raise ValueError(f"watts_per_core must be a finite number > 0, got {watts_per_core!r}")
        self.min_difficulty = min_difficulty
        self.block_interval_ms = block_interval_ms
        self.power_cap_w = power_cap_w
        self.watts_per_core = watts_per_core
        self.cores = cores
        self.surplus_w = 0
        self._last_hash_rate = 0.0

    def set_signal(self, surplus_w: int) -> None:
        self.surplus_w = parse_surplus(surplus_w)

    def power_w(self) -> float:
        """The power mining may draw now: 0 on scarcity, else the surplus within the cap and the cores."""
        if self.surplus_w <= 0:
            return 0.0
        return float(min(self.surplus_w, self.power_cap_w, self.watts_per_core * self.cores))

    def difficulty(self, hash_rate: float) -> int:
        """Difficulty (expected hashes) for the next block, given one worker's hashes per CPU-second.
        Without a known rate (<= 0) the minimum: no budget can be sized yet."""
        self._last_hash_rate = hash_rate
        return self._difficulty(hash_rate)

    def _difficulty(self, hash_rate: float) -> int:
        power = self.power_w()
        if power <= 0 or not hash_rate > 0 or not math.isfinite(hash_rate):
            return self.min_difficulty
        budget_j = power * self.block_interval_ms / 1000 * BUDGET_SHARE_OF_INTERVAL
        joules_per_hash = self.watts_per_core / hash_rate
        return max(self.min_difficulty, int(budget_j / joules_per_hash))

    def snapshot(self) -> dict[str, Any]:
        """The policy for the API, with the difficulty at the last hash rate `difficulty()` was given."""
        return {"surplus_w": self.surplus_w, "power_w": self.power_w(),
                "difficulty": self._difficulty(self._last_hash_rate), "power_cap_w": self.power_cap_w}


class GridSignalFile:
    """A file holding the grid signal; `poll()` answers the new surplus when the content changed."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._last: bytes | None = None

    def poll(self) -> int | None:
        """The surplus if the file's content changed since the last poll, else None (also None while the
        file does not exist). Bad content raises ValueError once per change, so a poll loop can log it and
        keep the previous signal without logging it again on every poll. An unreadable file (permissions, a
        directory) raises OSError. Writers should replace the file atomically (write a temp file, rename)."""
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_SIGNAL_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        if data == self._last:
            return None
        self._last = data
        if len(data) > MAX_SIGNAL_FILE_BYTES:
            raise ValueError(f"grid signal file {self.path} is larger than {MAX_SIGNAL_FILE_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"grid signal file {self.path} is not UTF-8") from None
        try:
            return parse_signal_text(text)
        except ValueError as exc:
            raise ValueError(f"grid signal file {self.path}: {exc}") from None
