"""Builders shared by the test suites, benchmarks and devnet tools: genesis with funded keys, blocks.

Public helpers for test scripts; nothing here is used by a running node's consensus path.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from .block import Block, mine
from .chain import Chain
from .errors import Rejected
from .fees import required_fee
from .genesis import Genesis, GenesisMeter
from .keys import P256_ORDER, AccountKey, MeterKey
from .store import KV, MemoryKV
from .tx import MAX_METER_BACKFILL_S, COIN, Body, MeterReading, ReadingFields, SignedTx, Tx, sign_reading, sign_tx

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
             block_interval_ms: int = 2000, min_fee: int = 1000, max_block_txs: int = 5000,
             authority_coin: int = 0, seed: int | None = None, meter_history_s: int | None = MAX_METER_BACKFILL_S) \
        -> Net:
    """Fresh keys and a genesis; `authority_coin` also funds the authorities (so they can pay fees).
    With `seed` the keys are derived from it, so a run can be repeated exactly. Genesis meters may report
    intervals from `meter_history_s` before genesis on (None: only after it)."""
    def account_key(role: str, i: int) -> AccountKey:
        if seed is None:
            return AccountKey.generate()
        return AccountKey(hashlib.sha256(f"kwh-test/{seed}/{role}/{i}".encode()).digest())

    def meter_key(i: int) -> MeterKey:
        if seed is None:
            return MeterKey.generate()
        secret = int.from_bytes(hashlib.sha256(f"kwh-test/{seed}/meter/{i}".encode()).digest(), "big")
        return MeterKey(ec.derive_private_key(secret % (P256_ORDER - 1) + 1, ec.SECP256R1()))

    auth = [account_key("authority", i) for i in range(authorities)]
    accts = [account_key("account", i) for i in range(accounts)]
    mkeys = [meter_key(i) for i in range(meters)]
    funded = [(a.address, coin) for a in accts] + [(a.address, authority_coin) for a in auth if authority_coin]
    genesis = Genesis(
        chain_id=CHAIN_ID, timestamp_ms=GENESIS_MS, authorities=tuple(a.public for a in auth),
        allocations=tuple(sorted(funded)), min_difficulty=min_difficulty,
        block_interval_ms=block_interval_ms, min_fee=min_fee, max_block_txs=max_block_txs,
        meters=tuple(GenesisMeter(m.public, accts[i % len(accts)].address, meter_kind, rated_w, interval_s, "solar",
                                  first_start=None if meter_history_s is None else
                                  -(-(GENESIS_MS // 1000 - meter_history_s) // interval_s) * interval_s)
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


def in_turn_slot(chain: Chain, net: Net, gap_ms: int = 0) -> tuple[AccountKey, int]:
    """The in-turn proposer of the next block and its earliest timestamp (+ gap_ms)."""
    height = chain.height + 1
    proposer = next(a for a in net.authorities if chain.in_turn(height, a.public))
    return proposer, chain.earliest_timestamp(chain.head, height, proposer.public) + gap_ms


def try_extend(chain: Chain, net: Net, txs: list[Tx] | tuple[Tx, ...] = (), gap_ms: int = 0) \
        -> tuple[Block, list[tuple[Tx, Rejected]]]:
    """Like `extend`, but transactions that break a rule are left out and returned with their rejections."""
    proposer, ts = in_turn_slot(chain, net, gap_ms)
    header, included, rejected = chain.build_block(txs, ts, proposer, chain.params.min_difficulty)
    block = mine(proposer, header, included)
    chain.import_block(block)
    return block, rejected


def rejection(chain: Chain, net: Net, tx: Tx, gap_ms: int = 0) -> Rejected | None:
    """Why the next block (in turn, at the earliest time + gap_ms) would leave `tx` out; None if it would
    include it. Nothing is written."""
    proposer, ts = in_turn_slot(chain, net, gap_ms)
    _header, _included, rejected = chain.build_block([tx], ts, proposer, chain.params.min_difficulty)
    return rejected[0][1] if rejected else None


def gap_until(chain: Chain, net: Net, timestamp_ms: int) -> int:
    """The gap_ms that times the next in-turn block at `timestamp_ms` or later (0 if that is already so)."""
    return max(0, timestamp_ms - in_turn_slot(chain, net)[1])


def advance_to(chain: Chain, net: Net, unix_s: int) -> Block:
    """Import an empty block timed at `unix_s` or later, so the next block's parent time has reached it
    (a reading's interval mints only once it has ended by the parent block's time)."""
    return extend(chain, net, gap_ms=gap_until(chain, net, unix_s * 1000))


def make_tx(chain: Chain, key: AccountKey, body: Body, nonce: int | None = None, fee: int | None = None) -> SignedTx:
    """A signed tx from `key`: by default the sender's next nonce on the head state and the minimum fee
    for its kind (ledger/fees.py)."""
    if nonce is None:
        nonce = chain.account(key.address).nonce
    return sign_tx(key, chain.chain_id, nonce, required_fee(chain.params.min_fee, body) if fee is None else fee, body)


class MeterState:
    """What a simulated meter remembers: counter, registers, next interval."""

    def __init__(self, key: MeterKey, start: int, interval_s: int = 900) -> None:
        self.key, self.next_start, self.interval_s = key, start, interval_s
        self.counter = 0
        self.export_register = self.import_register = 0

    def peek(self, export_wh: int, import_wh: int = 0) -> ReadingFields:
        """The fields the next `read` would sign, without advancing (tests alter them to break a rule)."""
        return ReadingFields(self.key.meter_id, self.next_start, self.interval_s, export_wh, import_wh,
                             self.export_register + export_wh, self.import_register + import_wh, self.counter + 1)

    def read(self, chain_id: str, export_wh: int, import_wh: int = 0) -> MeterReading:
        fields = self.peek(export_wh, import_wh)
        self.counter = fields.counter
        self.export_register = fields.export_register
        self.import_register = fields.import_register
        self.next_start += self.interval_s
        return sign_reading(self.key, chain_id, fields)


def flip_bits(data: bytes, bits: list[int]) -> bytes:
    """`data` with the given bit positions (modulo its length) inverted: fuzzing valid encodings."""
    out = bytearray(data)
    for bit in bits:
        out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)
