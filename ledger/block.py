"""Blocks: header, proof-of-work seal with the energy it cost, transaction Merkle root.

The header is what the proof of work covers. Hashing is split so the miner's inner loop is one SHA-256
of 40 bytes: `pow_prefix = sha256(encode(header without nonce))`, `block hash = sha256(prefix || nonce)`.
The seal (hashes tried, energy in millijoules, whether that energy was estimated, the proposer's
signature over hash and energy) is known only after mining, so it sits beside the header and is bound to
it by the signature.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from .encoding import MAX_MESSAGE_BYTES, boolean, decode, encode, field, fixed, from_wire, text, to_wire, uint, wire
from .errors import DecodeError
from .keys import DOMAIN_BLOCK, AccountKey, signing_bytes, verify_ed25519
from .tx import Tx, tx_from_wire

ZERO_HASH = bytes(32)
TWO_256 = 1 << 256
# Consensus limit on the canonical bytes of a block (header, seal and txs), so every valid block fits a
# peer message (MAX_MESSAGE_BYTES) with room; the default max_block_txs of genesis stays well below it.
MAX_BLOCK_BYTES = 4 * 1024 * 1024
BLOCK_OVERHEAD_BYTES = 1024  # the most a block's header, seal and list headers take besides its txs


@wire
@dataclass(frozen=True)
class BlockHeader:
    chain_id: str = field(text(64))
    height: int = field(uint())
    prev_hash: bytes = field(fixed(32))
    timestamp_ms: int = field(uint())
    proposer: bytes = field(fixed(32))  # authority's Ed25519 public key
    tx_root: bytes = field(fixed(32))
    state_root: bytes = field(fixed(32))
    difficulty: int = field(uint())  # expected hashes; the hash must be below 2**256 / difficulty
    nonce: int = field(uint())

    def pow_prefix(self) -> bytes:
        fields = to_wire(self)[:-1]
        return hashlib.sha256(encode(["kwh/pow/v1", *fields])).digest()

    @property
    def hash(self) -> bytes:
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = pow_hash(self.pow_prefix(), self.nonce)
            object.__setattr__(self, "_hash", cached)
        return cached


@wire
@dataclass(frozen=True)
class Seal:
    hashes: int = field(uint())  # hashes tried to find the nonce
    energy_mj: int = field(uint())  # energy those hashes cost, millijoules
    energy_estimated: bool = field(boolean())  # True when estimated from CPU time, False when measured (RAPL)
    signature: bytes = field(fixed(64))


def pow_hash(prefix: bytes, nonce: int) -> bytes:
    return hashlib.sha256(prefix + nonce.to_bytes(8, "big")).digest()


def search_nonce(prefix: bytes, difficulty: int, start: int, count: int) -> tuple[int | None, int]:
    """Try nonces start..start+count-1; returns (nonce found or None, hashes tried). The miner's loop."""
    if difficulty <= 1:
        return start, 1
    bound = (TWO_256 // difficulty).to_bytes(32, "big")  # equal-length bytes compare as big-endian numbers
    sha = hashlib.sha256
    for nonce in range(start, start + count):
        if sha(prefix + nonce.to_bytes(8, "big")).digest() < bound:
            return nonce, nonce - start + 1
    return None, count


def meets_difficulty(block_hash: bytes, difficulty: int) -> bool:
    """True if the hash is below 2**256 / difficulty (probability 1/difficulty per try)."""
    return int.from_bytes(block_hash, "big") < TWO_256 // max(difficulty, 1)


def seal_message(header: BlockHeader, hashes: int, energy_mj: int, estimated: bool) -> bytes:
    return signing_bytes(DOMAIN_BLOCK, header.chain_id, [header.hash, hashes, energy_mj, estimated])


def make_seal(key: AccountKey, header: BlockHeader, hashes: int, energy_mj: int, estimated: bool) -> Seal:
    return Seal(hashes, energy_mj, estimated, key.sign(seal_message(header, hashes, energy_mj, estimated)))


def seal_block(key: AccountKey, header: BlockHeader, nonce: int, txs: tuple[Tx, ...] | list[Tx], hashes: int,
               energy_mj: int = 0, estimated: bool = True) -> Block:
    """The mined header with its nonce, sealed by the proposer with the work and energy it cost."""
    mined = dataclasses.replace(header, nonce=nonce)
    return Block(mined, make_seal(key, mined, hashes, energy_mj, estimated), tuple(txs))


def mine(key: AccountKey, header: BlockHeader, txs: tuple[Tx, ...] | list[Tx]) -> Block:
    """Mine and seal in this thread (tests and tools; the node mines in a worker process)."""
    prefix = header.pow_prefix()
    nonce, tried = search_nonce(prefix, header.difficulty, 0, 1 << 62)
    assert nonce is not None
    return seal_block(key, header, nonce, txs, tried)


def seal_valid(header: BlockHeader, seal: Seal) -> bool:
    return verify_ed25519(header.proposer, seal.signature,
                          seal_message(header, seal.hashes, seal.energy_mj, seal.energy_estimated))


def tx_leaf(tx: Tx) -> bytes:
    """What the tx root commits to for one transaction: its id and its signature bytes. A txid leaves the
    signature out (so a malleated signature is never a second transaction); a root over txids alone would
    let any relayer swap a signature under an unchanged block hash and get the genuine block refused as
    known invalid."""
    return hashlib.sha256(tx.txid + tx.signature).digest()


def tx_root_of(txs: tuple[Tx, ...] | list[Tx]) -> bytes:
    return merkle_root([tx_leaf(tx) for tx in txs])


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of the leaves (`tx_leaf` of each transaction; domain-separated leaves and
    nodes)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # the odd node is promoted, never duplicated (no CVE-2012-2459)
        level = nxt
    return level[0]


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    seal: Seal
    txs: tuple[Tx, ...]

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    def to_wire(self) -> list[Any]:
        return [to_wire(self.header), to_wire(self.seal), [tx.to_wire() for tx in self.txs]]

    def encode(self) -> bytes:
        """The canonical bytes (computed once: blocks are encoded to store, gossip and size-check them)."""
        cached = self.__dict__.get("_encoded")
        if cached is None:
            cached = encode(self.to_wire())
            object.__setattr__(self, "_encoded", cached)
        return cached

    @property
    def size(self) -> int:
        """Bytes of the canonical encoding, which the MAX_BLOCK_BYTES rule bounds."""
        return len(self.encode())


def decode_block(data: bytes, chain_id: str, max_txs: int, max_bytes: int = MAX_MESSAGE_BYTES) -> Block:
    """Canonical block bytes -> Block; shape and sizes only (signatures and rules are the chain's job)."""
    value = decode(data, max_bytes)
    if type(value) is not list or len(value) != 3 or type(value[2]) is not list:
        raise DecodeError("block: expected [header, seal, txs]")
    header = from_wire(BlockHeader, value[0])
    if header.chain_id != chain_id:
        raise DecodeError(f"block: chain id {header.chain_id!r} is not {chain_id!r}")
    if len(value[2]) > max_txs:
        raise DecodeError(f"block: more than {max_txs} transactions")
    seal = from_wire(Seal, value[1])
    block = Block(header, seal, tuple(tx_from_wire(t, chain_id) for t in value[2]))
    object.__setattr__(block, "_encoded", bytes(data))  # canonical: decode checked it re-encodes to data
    return block


def decode_header(data: bytes) -> BlockHeader:
    return from_wire(BlockHeader, decode(data))
