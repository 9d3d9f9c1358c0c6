"""`aging`: does the ledger get heavier with age? The same one-transaction blocks, applied to a small and a
large state built by the same code in the same run, compared as large / small.

  * a producer holding L lots (L = 35,040: one year of 15-minute readings, against L = 100): a block with
    one of its readings, and a block with a TransferWh from it;
  * 10,000 resting orders (against 10): a block with one order that rests on the book;
  * 10,000 open offers (against 10): an empty block, and a block with one offer.

Each figure is the median over `samples` blocks, small and large alternating so a burst of load from a
neighbour hits both alike. Time is the import of a block that extends the head (decode done, signatures
checked, executed, committed without fsync: fsync latency is the disk's, not the ledger's), both databases
compacted before the samples; bytes are
what the block's write batch put into LevelDB (keys + values, undo data and indexes included).
Also: bytes on disk per reading after a simulated year of one producer, after compaction.
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from ledger.block import Block, mine
from ledger.chain import Chain
from ledger.fees import required_fee
from ledger.genesis import Genesis, GenesisMeter
from ledger.keys import AccountKey, MeterKey
from ledger.store import LevelKV
from ledger.testing import CHAIN_ID, MeterState
from ledger.tx import BUY, COIN, PlaceOrder, PostOffer, TransferWh, Tx, sign_tx

YEAR_LOTS = 35_040
INTERVAL_S = 900
START_S = 1_700_000_000 // INTERVAL_S * INTERVAL_S  # first reading interval
FEE = 1000
BATCH = 2500  # transactions per setup block


class CountingKV(LevelKV):
    """LevelDB that counts the bytes each write batch puts (keys and values)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.last_batch_bytes = 0

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        self.last_batch_bytes = sum(len(k) + len(v or b"") for k, v in changes.items())
        super().write(changes, sync)

    def compact(self) -> None:
        self._db.compact_range()


class Scenario:
    """One chain in a temp dir with a producer (one meter), traders and an authority."""

    def __init__(self, traders: int = 100) -> None:
        self.auth = AccountKey.generate()
        self.producer = AccountKey.generate()
        self.traders = [AccountKey.generate() for _ in range(traders)]
        self.meter_key = MeterKey.generate()
        # the meter is enrolled at genesis, at its first interval (it mints nothing before its enrollment);
        # the first block is timed a year and a bit later, so every reading of the setup has ended by the
        # parent block's time
        genesis_ms = START_S * 1000
        alloc = tuple(sorted([(self.producer.address, 10**6 * COIN)] + [(t.address, 10**6 * COIN)
                                                                         for t in self.traders]))
        self.genesis = Genesis(CHAIN_ID, genesis_ms, (self.auth.public,), allocations=alloc, min_difficulty=1,
                               min_fee=FEE, meters=(GenesisMeter(self.meter_key.public, self.producer.address,
                                                                 "generation", 20_000, INTERVAL_S, "solar"),))
        self.path = tempfile.mkdtemp(prefix="kwh-aging-")
        self.kv = CountingKV(self.path)
        self.chain = Chain(self.kv, self.genesis)
        self.meter = MeterState(self.meter_key, START_S, INTERVAL_S)
        header, _inc, _rej = self.chain.build_block([], (START_S + (YEAR_LOTS + 10_000) * INTERVAL_S) * 1000,
                                                    self.auth, 1)
        self.chain.import_block(mine(self.auth, header, []))
        self.nonces: dict[bytes, int] = {}

    def close(self) -> None:
        self.kv.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def tx(self, key: AccountKey, body: Any) -> Tx:
        nonce = self.nonces.get(key.address, 0)
        self.nonces[key.address] = nonce + 1
        return sign_tx(key, CHAIN_ID, nonce, required_fee(FEE, body), body)

    def reading(self) -> Tx:
        return self.meter.read(CHAIN_ID, 1000)

    def block(self, txs: list[Tx]) -> Block:
        c = self.chain
        ts = c.earliest_timestamp(c.head, c.height + 1, self.auth.public)
        header, included, rejected = c.build_block(txs, ts, self.auth, 1)
        assert not rejected, [r.reason for _t, r in rejected[:1]]
        return mine(self.auth, header, included)

    def extend(self, txs: list[Tx]) -> None:
        for i in range(0, len(txs), BATCH):
            self.chain.import_block(self.block(txs[i:i + BATCH]), durable=False)

    def timed_import(self, block: Block) -> tuple[float, int]:
        t0 = time.perf_counter()
        result = self.chain.import_block(block, durable=False)
        elapsed = time.perf_counter() - t0
        assert result.status == "head"
        return elapsed, self.kv.last_batch_bytes

    # setups ------------------------------------------------------------------------------------
    def with_lots(self, lots: int) -> "Scenario":
        self.extend([self.reading() for _ in range(lots)])
        return self

    def with_orders(self, orders: int) -> "Scenario":
        per = -(-orders // len(self.traders))
        self.extend([self.tx(t, PlaceOrder(BUY, 1, 1000 + i)) for i in range(per) for t in self.traders][:orders])
        return self

    def with_offers(self, offers: int) -> "Scenario":
        end = self.chain.head.timestamp_ms // 1000 + 80 * 86400
        per = -(-offers // len(self.traders))
        self.extend([self.tx(t, PostOffer(1000, 1, end - 86400, end, "")) for i in range(per)
                     for t in self.traders][:offers])
        return self


def _paired(small: Scenario, large: Scenario, make: Callable[[Scenario], list[Tx]], samples: int) \
        -> dict[str, float]:
    """Median import time and batch bytes of one-block workloads on both, alternating. Both databases are
    compacted first, so both states are read from table files (as after any restart), not one from
    LevelDB's in-memory write buffer and the other from disk."""
    small.kv.compact()
    large.kv.compact()
    times: dict[str, list[float]] = {"small": [], "large": []}
    sizes: dict[str, list[int]] = {"small": [], "large": []}
    for _ in range(samples):
        for name, scen in (("small", small), ("large", large)):
            elapsed, size = scen.timed_import(scen.block(make(scen)))
            times[name].append(elapsed)
            sizes[name].append(size)
    ms_s, ms_l = statistics.median(times["small"]) * 1e3, statistics.median(times["large"]) * 1e3
    b_s, b_l = statistics.median(sizes["small"]), statistics.median(sizes["large"])
    return {"small_ms": ms_s, "large_ms": ms_l, "time_ratio": ms_l / ms_s,
            "small_bytes": b_s, "large_bytes": b_l, "bytes_ratio": b_l / b_s}


def disk_per_reading(readings: int) -> float:
    """Bytes on disk per reading after `readings` readings of one producer, after compaction."""
    scen = Scenario(traders=1)
    try:
        scen.with_lots(readings)
        scen.kv.compact()
        return sum(f.stat().st_size for f in Path(scen.path).rglob("*") if f.is_file()) / readings
    finally:
        scen.close()


def run(quick: bool) -> dict[str, Any]:
    lots = 5_000 if quick else YEAR_LOTS
    many = 2_000 if quick else 10_000
    samples = 9 if quick else 25
    r: dict[str, Any] = {"aging_lots": lots, "aging_orders": many, "aging_offers": many}
    small, large = Scenario().with_lots(100), Scenario().with_lots(lots)
    try:
        sink = AccountKey.generate().address
        r["aging_reading"] = _paired(small, large, lambda s: [s.reading()], samples)
        r["aging_transfer"] = _paired(small, large, lambda s: [s.tx(s.producer, TransferWh(sink, 1500))],
                                      samples)
    finally:
        small.close()
        large.close()
    small, large = Scenario().with_orders(10), Scenario().with_orders(many)
    try:
        r["aging_order"] = _paired(small, large, lambda s: [s.tx(s.traders[0], PlaceOrder(BUY, 1, 500))],
                                   samples)
    finally:
        small.close()
        large.close()
    small, large = Scenario().with_offers(10), Scenario().with_offers(many)
    try:
        end = small.chain.head.timestamp_ms // 1000 + 80 * 86400
        r["aging_empty_block"] = _paired(small, large, lambda s: [], samples)
        r["aging_offer"] = _paired(small, large, lambda s: [s.tx(s.traders[1], PostOffer(5, 1, end - 60, end, ""))],
                                   samples)
    finally:
        small.close()
        large.close()
    r["aging_disk_bytes_per_reading"] = disk_per_reading(lots)
    r["aging_max_ratio"] = max(v[k] for v in r.values() if isinstance(v, dict)
                               for k in ("time_ratio", "bytes_ratio"))
    return r


def show(r: dict[str, Any]) -> str:
    lines = [f"{'aging (large / small)':28} {'small ms':>9} {'large ms':>9} {'time':>6} "
             f"{'small B':>9} {'large B':>9} {'bytes':>6}"]
    for name in ("aging_reading", "aging_transfer", "aging_order", "aging_empty_block", "aging_offer"):
        v = r[name]
        lines.append(f"{name:28} {v['small_ms']:9.2f} {v['large_ms']:9.2f} {v['time_ratio']:6.2f} "
                     f"{v['small_bytes']:9,.0f} {v['large_bytes']:9,.0f} {v['bytes_ratio']:6.2f}")
    lines.append(f"disk per reading after {r['aging_lots']:,} readings: {r['aging_disk_bytes_per_reading']:,.0f} B")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    import json
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run(args.quick)
    print(show(result))
    print(json.dumps(result, indent=1))
