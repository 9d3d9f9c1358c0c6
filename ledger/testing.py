"""Builders shared by the test suites, benchmarks and devnet tools: genesis with funded keys, blocks.

Public helpers for test scripts; nothing here is used by a running node's consensus path.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .block import Block, mine
from .chain import Chain
from .genesis import Genesis, GenesisMeter
from .keys import AccountKey, MeterKey
from .store import KV, MemoryKV
from .tx import COIN, ReadingFields, Tx, sign_reading

CHAIN_ID = "kwh-test"
GENESIS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass
class Net:
    """A genesis with its secrets: authority keys, funded account keys, meter keys."""
    genesis: Genesis
    authorities: list[AccountKey]
    accounts: list[AccountKey]
    meters: list[MeterKey] = field(default_factory=list)

    def chain(self, kv: KV | None = None) -> Chain:
        return Chain(kv if kv is not None else MemoryKV(), self.genesis)


def make_net(authorities: int = 3, accounts: int = 4, coin: int = 1_000 * COIN, meters: int = 0,
             meter_kind: str = "both", rated_w: int = 10_000, interval_s: int = 900, min_difficulty: int = 1,
             block_interval_ms: int = 2000, min_fee: int = 1000, max_block_txs: int = 5000) -> Net:
    auth = [AccountKey.generate() for _ in range(authorities)]
    accts = [AccountKey.generate() for _ in range(accounts)]
    mkeys = [MeterKey.generate() for _ in range(meters)]
    genesis = Genesis(
        chain_id=CHAIN_ID, timestamp_ms=GENESIS_MS, authorities=tuple(a.public for a in auth),
        allocations=tuple(sorted((a.address, coin) for a in accts)), min_difficulty=min_difficulty,
        block_interval_ms=block_interval_ms, min_fee=min_fee, max_block_txs=max_block_txs,
        meters=tuple(GenesisMeter(m.public, accts[i % len(accts)].address, meter_kind, rated_w, interval_s, "solar")
                     for i, m in enumerate(mkeys)))
    return Net(genesis, auth, accts, mkeys)


def next_block(chain: Chain, net: Net, txs: list[Tx] | tuple[Tx, ...] = (), gap_ms: int = 0,
               proposer: AccountKey | None = None, difficulty: int | None = None) -> Block:
    """Build and mine the next block with the in-turn authority (or `proposer`), at the earliest time."""
    height = chain.height + 1
    if proposer is None:
        proposer = next(a for a in net.authorities if chain.in_turn(height, a.public))
    ts = chain.earliest_timestamp(chain.head, height, proposer.public) + gap_ms
    header, included, rejected = chain.build_block(txs, ts, proposer, difficulty or chain.params.min_difficulty)
    if rejected:
        raise AssertionError(f"rejected while building: {[(t.txid.hex()[:8], r.reason) for t, r in rejected]}")
    return mine(proposer, header, included)


def extend(chain: Chain, net: Net, txs: list[Tx] | tuple[Tx, ...] = (), gap_ms: int = 0) -> Block:
    """Build, mine and import the next block; returns it."""
    block = next_block(chain, net, txs, gap_ms)
    chain.import_block(block)
    return block


class MeterState:
    """What a simulated meter remembers: counter, registers, next interval."""

    def __init__(self, key: MeterKey, start: int, interval_s: int = 900) -> None:
        self.key, self.next_start, self.interval_s = key, start, interval_s
        self.counter = 0
        self.export_register = self.import_register = 0

    def read(self, chain_id: str, export_wh: int, import_wh: int = 0):
        self.counter += 1
        self.export_register += export_wh
        self.import_register += import_wh
        fields = ReadingFields(self.key.meter_id, self.next_start, self.interval_s, export_wh, import_wh,
                               self.export_register, self.import_register, self.counter)
        self.next_start += self.interval_s
        return sign_reading(self.key, chain_id, fields)
