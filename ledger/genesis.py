"""Genesis: the chain's founding parameters, read from a JSON file people can review.

Example:
    {"chain_id": "kwh-devnet", "timestamp_ms": 1767225600000,
     "authorities": ["<ed25519 public key hex>", ...], "observers": ["<ed25519 public key hex>", ...],
     "auditors": ["<ed25519 public key hex>", ...],  (optional: keys that may read every route)
     "allocations": {"kwh...address": "1000000000000"},
     "min_difficulty": 256, "block_interval_ms": 2000, "min_fee": 1000, "max_block_txs": 5000,
     "meters": [{"public": "<compressed P-256 hex>", "owner": "kwh...", "kind": "generation",
                 "rated_w": 5000, "interval_s": 900, "source": "solar"}]}
Coin amounts are integers of base units (strings allowed so JSON tools keep them exact).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .encoding import MAX_CONTAINER_LEN
from .keys import format_address, parse_address, valid_meter_public
from .tx import INTERVALS, METER_KINDS, SOURCES

# A genesis meter may name its first interval up to this long before genesis: the founders review it in
# the file (its history before the chain began). Meters enrolled later: ledger.tx.MAX_GENESIS_BACKFILL_S.
MAX_GENESIS_BACKFILL_S = 31 * 86_400

DEFAULT_MIN_DIFFICULTY = 256
DEFAULT_BLOCK_INTERVAL_MS = 2000
DEFAULT_MIN_FEE = 1000
DEFAULT_MAX_BLOCK_TXS = 5000


@dataclass(frozen=True)
class GenesisMeter:
    public: bytes
    owner: bytes
    kind: str
    rated_w: int
    interval_s: int
    source: str
    first_start: int | None = None  # first interval's start (unix s); None: the first after genesis


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    timestamp_ms: int
    authorities: tuple[bytes, ...]
    observers: tuple[bytes, ...] = ()
    allocations: tuple[tuple[bytes, int], ...] = ()
    min_difficulty: int = DEFAULT_MIN_DIFFICULTY
    block_interval_ms: int = DEFAULT_BLOCK_INTERVAL_MS
    min_fee: int = DEFAULT_MIN_FEE
    max_block_txs: int = DEFAULT_MAX_BLOCK_TXS
    meters: tuple[GenesisMeter, ...] = field(default=())
    auditors: tuple[bytes, ...] = ()  # Ed25519 keys that may read everything (node/access.py); no write power

    def __post_init__(self) -> None:
        if not self.chain_id or len(self.chain_id) > 64:
            raise ValueError("chain_id must be 1..64 characters")
        if not self.authorities:
            raise ValueError("genesis needs at least one authority")
        if any(len(a) != 32 for a in self.authorities + self.observers + self.auditors):
            raise ValueError("authority, observer and auditor keys are 32-byte Ed25519 public keys")
        if len(set(self.authorities)) != len(self.authorities):
            raise ValueError("duplicate authority")
        if self.min_difficulty < 1 or self.block_interval_ms < 100 or self.max_block_txs < 1:
            raise ValueError("min_difficulty >= 1, block_interval_ms >= 100, max_block_txs >= 1")
        if self.max_block_txs > MAX_CONTAINER_LEN:  # a fuller block's tx list would not decode anywhere
            raise ValueError(f"max_block_txs must be at most {MAX_CONTAINER_LEN}")
        for m in self.meters:
            if not valid_meter_public(m.public) or m.kind not in METER_KINDS or m.interval_s not in INTERVALS \
                    or m.source not in SOURCES or m.rated_w <= 0:
                raise ValueError(f"invalid genesis meter {m.public.hex()}")
        genesis_s = self.timestamp_ms // 1000
        for m in self.meters:
            if m.first_start is not None and (m.first_start % m.interval_s or
                                              not genesis_s - MAX_GENESIS_BACKFILL_S <= m.first_start <= genesis_s):
                raise ValueError(f"genesis meter {m.public.hex()}: first_start must be on an interval boundary, "
                                 f"at most {MAX_GENESIS_BACKFILL_S} s before genesis and not after it")
        if len({m.public for m in self.meters}) != len(self.meters):
            raise ValueError("duplicate genesis meter key: one meter, one enrollment")
        if len({addr for addr, _coin in self.allocations}) != len(self.allocations):
            raise ValueError("duplicate allocation: one address, one genesis balance")

    def params_record(self) -> list[Any]:
        """What of genesis enters the state, so the state root commits to the rules."""
        return [self.chain_id, list(self.authorities), list(self.observers), self.min_difficulty,
                self.block_interval_ms, self.min_fee, self.max_block_txs]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Genesis":
        try:
            return cls(
                chain_id=str(data["chain_id"]),
                timestamp_ms=int(data["timestamp_ms"]),
                authorities=tuple(bytes.fromhex(a) for a in data["authorities"]),
                observers=tuple(bytes.fromhex(a) for a in data.get("observers", [])),
                allocations=tuple((parse_address(a), int(v)) for a, v in sorted(data.get("allocations", {}).items())),
                min_difficulty=int(data.get("min_difficulty", DEFAULT_MIN_DIFFICULTY)),
                block_interval_ms=int(data.get("block_interval_ms", DEFAULT_BLOCK_INTERVAL_MS)),
                min_fee=int(data.get("min_fee", DEFAULT_MIN_FEE)),
                max_block_txs=int(data.get("max_block_txs", DEFAULT_MAX_BLOCK_TXS)),
                meters=tuple(GenesisMeter(bytes.fromhex(m["public"]), parse_address(m["owner"]), m["kind"],
                                          int(m["rated_w"]), int(m["interval_s"]), m.get("source", "solar"),
                                          int(m["first_start"]) if m.get("first_start") is not None else None)
                             for m in data.get("meters", [])),
                auditors=tuple(bytes.fromhex(a) for a in data.get("auditors", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid genesis: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "timestamp_ms": self.timestamp_ms,
            "authorities": [a.hex() for a in self.authorities],
            "observers": [o.hex() for o in self.observers],
            "allocations": {format_address(a): str(v) for a, v in self.allocations},
            "min_difficulty": self.min_difficulty,
            "block_interval_ms": self.block_interval_ms,
            "min_fee": self.min_fee,
            "max_block_txs": self.max_block_txs,
            "meters": [{"public": m.public.hex(), "owner": format_address(m.owner), "kind": m.kind,
                        "rated_w": m.rated_w, "interval_s": m.interval_s, "source": m.source,
                        **({"first_start": m.first_start} if m.first_start is not None else {})}
                       for m in self.meters],
            # only when there are auditors: the genesis digest of files without the field stays as it was
            **({"auditors": [a.hex() for a in self.auditors]} if self.auditors else {}),
        }

    @classmethod
    def load(cls, path: str | Path) -> "Genesis":
        return cls.from_json(json.loads(Path(path).read_text()))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")
