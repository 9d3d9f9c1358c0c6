"""The chain: genesis, block validation, fork choice, finality, atomic apply/revert, and read-only queries.

`Chain.import_block` is the single entry point for blocks from anywhere (own producer or peers).
Header rules follow Clique (EIP-225) with a small, bounded proof of work (ADR 004):
  * only current authorities propose (the set of the parent's state: genesis, changed by finalized
    governance votes); the in-turn proposer of height h is authorities[h % N];
  * an in-turn block may come `block_interval` after its parent, an out-of-turn one only after twice that;
  * a proposer may not sign again within floor(N/2) blocks of its last block, so no single authority
    (fewer than half of them) can build a chain alone;
  * the header hash must be below 2**256 / difficulty, with min_difficulty <= difficulty <= MAX_DIFFICULTY;
    the seal's claimed hashes and energy are bounded by the difficulty and the time since the parent.
Fork choice: a block weighs 2 in turn and 1 out of turn (authority signatures, never the work a proposer
chooses to claim); the head is the branch with the most weight, ties to fewer blocks, then to `tie_rank`
(never to a block hash, which hashing can buy). A block that does not descend from the finalized block is
refused (`finality_conflict`), so nothing finalized is ever reverted: not by weight, not by a sync, not after a
restart. Finality itself is state (ledger/consensus.py): votes included in blocks justify and finalize.
Every block applied or reverted is one atomic batch that also moves the head pointer, so the database is
consistent after a crash at any point. A head move that takes several batches (applying a stored side
branch, a reorg) is journaled: the batch that starts it names its target under `R`, the batch that ends
it deletes `R`, and opening the chain resumes a move a crash interrupted. A block that fails validation
is marked invalid together with the stored blocks of its branch built on it, so nothing built on an
invalid block is executed again; so is a block whose checks raise anything unexpected (`block_failed`).

Key layout besides the state (b"s..."):
    V              schema version              G            genesis hash
    H              head hash                   b<hash>      block bytes
    m<hash>        block meta                  n<height8>   canonical hash at height
    u<hash>        undo data of an applied block
    q<hash>        [the global totals record before the block] if the block changed them (kept when undo
                   data is pruned: per-block minted/settled figures for views)
    x<txid>        [height, block hash, index] of a canonical transaction
    i<addr><height8><seq4>   account history   k<lot_id><height8><seq4>   lot provenance movements
    P<proposer><height8>     first block seen  E<proposer><height8>       equivocation evidence
    A<set hash>    an authority set (blocks' metadata name their parent's set by hash)
    W<voter><target height8><target hash>      finality votes seen (for conflicting-vote evidence)
    e<voter><target height8>                   conflicting-vote evidence: [kind, vote bytes, vote bytes]
    R              target of a head move in progress (absent when none is)
    U              lowest height whose undo data is kept (absent: 1)   M   schema upgrade checkpoint
    F              the highest finalized height any applied block reached (absent: the head's): no revert
                   goes to or below it, even when the head's branch has recorded less finality
    j<addr><kind><height8><seq4>   an account's offers, trades, orders (ledger/queries.py)
"""
from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field
from typing import Any, Callable, Container, Iterable, Iterator, Sequence

from . import consensus, queries
from . import errors as E
from .block import (BLOCK_OVERHEAD_BYTES, MAX_BLOCK_BYTES, ZERO_HASH, Block, BlockHeader, Seal, decode_block,
                    meets_difficulty, merkle_root, seal_valid, tx_root_of)
from .encoding import decode, encode
from .errors import Rejected
from .genesis import Genesis
from .keys import AccountKey
from .state import (K_GLOBALS, ACC_BYTES, BOOK_BUY, BOOK_SELL, DUE_TRADE, K_PARAMS, P_BOOK, P_DUE, P_HOLDING, P_ORDER_LOT,
                    STATE_PREFIX, Account,
                    Globals, Lot, Meter, Offer, Order, StateOverlay, Trade, k_account, k_lot, k_meter, k_offer,
                    k_order, k_trade, entry_problems, recompute_accumulator, root_of, _unpack)
from .tx import SOURCES
from .store import KV
from .transition import BlockContext, Params, Transition
from .tx import SignedTx, Tx, Vote, encode_tx

SCHEMA_VERSION = 2  # 2: one state entry per lot held, resting order and scheduled expiry
MAX_FUTURE_DRIFT_MS = 15_000
# Bounds on what a proposer claims. Difficulty buys no weight, so the cap only keeps a block producible
# and its claims small; an honest miner tries more than 64x the expected hashes with probability e^-64.
MAX_DIFFICULTY = 1 << 40
MAX_HASHES_PER_DIFFICULTY = 64
MAX_MINING_POWER_W = 10_000_000  # 10 MW: energy claimed <= this x the time since the parent
CUM_LIMIT = (1 << 63) - 1  # running totals saturate here rather than overflow the 64-bit encoding
IN_TURN_WEIGHT, OUT_OF_TURN_WEIGHT = 2, 1
K_TARGET = b"R"  # journal of a head move in progress (see the module docstring)
K_UNDO_FLOOR = b"U"  # undo data is kept from this height up (Chain.prune_undo)
K_FINAL_FLOOR = b"F"  # Chain.final_floor, kept across restarts
ST_STORED, ST_VALID, ST_INVALID = 0, 1, 2

# A verifier checks signatures of many transactions at once (perhaps on several cores) and returns the
# ids of those that verified. Meter keys come from `meter_key(meter_id)`.
BatchVerifier = Callable[[Sequence[Tx], Callable[[bytes], bytes | None]], Container[bytes]]


@dataclass
class BlockMeta:
    height: int
    total_work: int
    parent: bytes
    status: int
    accumulator: int  # state accumulator after this block (valid once applied)
    cum_hashes: int  # hashes and energy along the chain up to and including this block
    cum_energy_mj: int
    proposer: bytes
    timestamp_ms: int
    work: int  # this block's weight (2 in turn, 1 out of turn); total_work sums it along the chain
    authset: bytes = b""  # hash of the authority set after this block (b"": the genesis set)
    justified: int = 0  # justified and finalized heights in this block's state (0 until applied)
    finalized: int = 0
    turn_checked: bool = True  # False: stored on a parent not applied then; its turn is checked when applied

    def pack(self) -> bytes:
        return encode([self.height, self.total_work.to_bytes(32, "big"), self.parent, self.status,
                       self.accumulator.to_bytes(ACC_BYTES, "big"), self.cum_hashes, self.cum_energy_mj,
                       self.proposer, self.timestamp_ms, self.work, self.authset, self.justified, self.finalized,
                       self.turn_checked])

    @classmethod
    def unpack(cls, raw: bytes) -> "BlockMeta":
        v = _unpack(raw)
        extra = v[10:14] if len(v) >= 13 else [b"", 0, 0]  # metadata written before finality existed
        return cls(v[0], int.from_bytes(v[1], "big"), v[2], v[3], int.from_bytes(v[4], "big"), v[5], v[6], v[7],
                   v[8], v[9], *extra)


@dataclass
class ImportResult:
    """What importing a block did: `status` is 'head', 'side', 'reorg' or 'known'."""
    status: str
    block_hash: bytes
    height: int
    reverted: list[Block] = field(default_factory=list)  # blocks taken off the canonical chain
    applied: list[Block] = field(default_factory=list)  # blocks put on it (in order)


MAX_BUILD_ATTEMPTS = 8


class _TxFailed(Exception):
    """A transaction whose rule raised something other than Rejected while a block was being built."""

    def __init__(self, tx: Tx, detail: str) -> None:
        super().__init__(detail)
        self.tx = tx
        self.detail = detail


def tie_rank(height: int, proposer: bytes) -> bytes:
    """Order of two equally heavy tips: a hash of the tip's height and proposer. Nothing a proposer
    chooses (nonce, difficulty, transactions, timestamp) moves it, so no tie can be bought."""
    return hashlib.sha256(b"kwh-tie" + height.to_bytes(8, "big") + proposer).digest()


def check_seal_claims(block: Block, parent_timestamp_ms: int) -> None:
    """The seal's hashes and energy are the proposer's signed claims: bound them by what the block's
    difficulty and the time since its parent allow, so no claim can inflate or overflow the totals."""
    seal, header = block.seal, block.header
    max_hashes = MAX_HASHES_PER_DIFFICULTY * header.difficulty + (1 << 24)  # + the workers' last chunks
    if not 1 <= seal.hashes <= max_hashes:
        raise Rejected(E.SEAL_OUT_OF_BOUNDS, f"claims {seal.hashes} hashes; 1..{max_hashes} at difficulty "
                                              f"{header.difficulty}")
    max_energy = MAX_MINING_POWER_W * max(header.timestamp_ms - parent_timestamp_ms, 0)  # W x ms = mJ
    if seal.energy_mj > max_energy:
        raise Rejected(E.SEAL_OUT_OF_BOUNDS, f"claims {seal.energy_mj} mJ; at most {max_energy} in the time "
                                              f"since the parent at {MAX_MINING_POWER_W} W")


def inline_verifier(txs: Sequence[Tx], meter_key: Callable[[bytes], bytes | None]) -> frozenset[bytes]:
    """Check nothing ahead: the transition checks each signature as it applies the transaction, with the
    meter record it loads anyway. The default on one core; node.verify.PoolVerifier checks ahead on others."""
    return frozenset()


def genesis_digest(genesis: Genesis) -> bytes:
    """Fingerprint of the genesis file's content, checked when a database is reopened."""
    import hashlib
    import json
    return hashlib.sha256(json.dumps(genesis.to_json(), sort_keys=True).encode()).digest()


class Chain:
    """A node's view of the chain over one KV store."""

    def __init__(self, kv: KV, genesis: Genesis, verifier: BatchVerifier = inline_verifier,
                 resume: bool = True) -> None:
        """Open (or create) the chain in `kv`. With `resume`, a head move a crash interrupted is finished
        now (`self.resumed` says what it did); without it opening an existing chain writes nothing."""
        self.kv = kv
        self.genesis = genesis
        self.verifier = verifier
        # Told the phase of a block import ("signatures", "transition", "storage") so a node can meter each;
        # a few calls per block, never per transaction. The ledger itself reads no clock.
        self.on_phase: Callable[[str], None] | None = None
        digest = genesis_digest(genesis)
        stored = kv.get(b"g")
        if stored is None:
            self._write_genesis(digest)
        elif stored != digest:
            raise ValueError("this database belongs to a different genesis")
        version = decode(kv.get(b"V") or encode(0))
        if version == 1:
            raise ValueError("database schema version 1 (whole-list state records), this build reads 2: stop "
                             "every node at the same block and run `kwh-node --genesis FILE --data-dir DIR "
                             "--upgrade-db` on each (README: Upgrading a data dir)")
        if version != SCHEMA_VERSION:
            raise ValueError(f"database schema version {version}, this build reads {SCHEMA_VERSION}")
        raw_checkpoint = kv.get(b"M")  # [height, hash, root] where a schema upgrade converted the state
        self.checkpoint: list[Any] | None = _unpack(raw_checkpoint) if raw_checkpoint is not None else None
        self.params = Params.from_record(_unpack(kv.get(K_PARAMS)))  # type: ignore[arg-type]
        self.chain_id = self.params.chain_id
        self._authsets: dict[bytes, tuple[bytes, ...]] = {b"": self.params.authorities}
        self.genesis_block: Block = self.block(kv.get(b"G"))  # type: ignore[arg-type,assignment]
        self._load_head()
        self.resumed: ImportResult | None = self.resume_head_move() if resume else None

    # genesis -----------------------------------------------------------------------------------
    def _genesis_state(self) -> tuple[StateOverlay, dict[bytes, bytes | None]]:
        from .store import MemoryKV
        st = StateOverlay(MemoryKV(), 0)
        g = self.genesis
        st.put(K_PARAMS, g.params_record())
        ctx = BlockContext(0, g.timestamp_ms, ZERO_HASH, Params.from_record(g.params_record()))
        tr = Transition(st, ctx)
        for addr, amount in g.allocations:
            st.account(addr).coin += amount
        for m in g.meters:
            tr.enroll_meter(m.public, m.owner, m.kind, m.rated_w, m.interval_s, m.source, first_start=m.first_start)
        writes, _undo = st.commit()
        return st, writes

    def _write_genesis(self, digest: bytes) -> None:
        st, writes = self._genesis_state()
        header = BlockHeader(self.genesis.chain_id, 0, ZERO_HASH, self.genesis.timestamp_ms, ZERO_HASH,
                             merkle_root([]), st.root, 1, 0)
        block = Block(header, Seal(0, 0, False, bytes(64)), ())
        meta = BlockMeta(0, 0, ZERO_HASH, ST_VALID, st.accumulator, 0, 0, ZERO_HASH, block.header.timestamp_ms, 0)
        writes.update({b"V": encode(SCHEMA_VERSION), b"G": block.hash, b"g": digest, b"H": block.hash,
                       b"b" + block.hash: block.encode(), b"m" + block.hash: meta.pack(),
                       b"n" + (0).to_bytes(8, "big"): block.hash})
        self.kv.write(writes)

    def _load_head(self) -> None:
        self.head_hash: bytes = self.kv.get(b"H")  # type: ignore[assignment]
        self.head: BlockMeta = self.meta(self.head_hash)  # type: ignore[assignment]
        self._head_header: BlockHeader | None = None
        # the highest finalized height this chain has reached: no revert may go below it (reverting the
        # head loads an older head, whose own record knows less)
        raw_floor = self.kv.get(K_FINAL_FLOOR)
        self.final_floor = max(getattr(self, "final_floor", 0), self.head.finalized,
                               decode(raw_floor) if raw_floor is not None else 0)

    # reading blocks ------------------------------------------------------------------------------
    def meta(self, block_hash: bytes) -> BlockMeta | None:
        raw = self.kv.get(b"m" + block_hash)
        return BlockMeta.unpack(raw) if raw is not None else None

    def block_bytes(self, block_hash: bytes) -> bytes | None:
        return self.kv.get(b"b" + block_hash)

    def block(self, block_hash: bytes) -> Block | None:
        raw = self.block_bytes(block_hash)
        return decode_block(raw, self.chain_id, 1 << 30) if raw is not None else None

    def canonical_hash(self, height: int) -> bytes | None:
        return self.kv.get(b"n" + height.to_bytes(8, "big"))

    def block_at(self, height: int) -> Block | None:
        h = self.canonical_hash(height)
        return self.block(h) if h is not None else None

    @property
    def height(self) -> int:
        return self.head.height

    @property
    def head_header(self) -> BlockHeader:
        if self._head_header is None:
            self._head_header = self.block(self.head_hash).header  # type: ignore[union-attr]
        return self._head_header

    def authorities_after(self, meta: BlockMeta) -> tuple[bytes, ...]:
        """The authority set that signs the child of the block with this metadata."""
        cached = self._authsets.get(meta.authset)
        if cached is None:
            raw = self.kv.get(b"A" + meta.authset)
            cached = tuple(_unpack(raw)) if raw is not None else self.params.authorities
            self._authsets[meta.authset] = cached
        return cached

    @property
    def authorities(self) -> tuple[bytes, ...]:
        """The authority set that signs the next block on the head."""
        return self.authorities_after(self.head)

    def in_turn(self, height: int, proposer: bytes, authorities: tuple[bytes, ...] | None = None) -> bool:
        auths = authorities if authorities is not None else self.authorities
        return auths[height % len(auths)] == proposer

    def recent_signers(self, parent_hash: bytes) -> list[bytes]:
        """Proposers of the last floor(N/2) blocks ending at parent (they may not sign the next one)."""
        parent = self.meta(parent_hash)
        limit = len(self.authorities_after(parent) if parent is not None else self.authorities) // 2
        out: list[bytes] = []
        h = parent_hash
        while len(out) < limit:
            meta = self.meta(h)
            if meta is None or meta.height == 0:
                break
            out.append(meta.proposer)
            h = meta.parent
        return out

    def earliest_timestamp(self, parent: BlockMeta, height: int, proposer: bytes) -> int:
        """When `proposer` may time a block on `parent`: one interval in turn, two out of turn."""
        factor = 1 if self.in_turn(height, proposer, self.authorities_after(parent)) else 2
        return parent.timestamp_ms + factor * self.params.block_interval_ms

    # validation ----------------------------------------------------------------------------------
    def validate_header(self, block: Block, parent: BlockMeta, now_ms: int | None) -> int:
        """Check a block against its parent without touching state; returns its weight (2 in turn, 1 out)."""
        h = block.header
        p = self.params
        if h.chain_id != p.chain_id:
            raise Rejected(E.WRONG_CHAIN, h.chain_id)
        if h.height != parent.height + 1:
            raise Rejected(E.BAD_HEIGHT, f"height {h.height} on parent at {parent.height}")
        auths = self.authorities_after(parent)
        if h.proposer not in auths:
            # A parent never applied here has the set of its own parent recorded, which a block of its
            # branch may have changed (a key voted in): the set of the parent's state is checked when the
            # branch is applied (`_apply`). Only session peers (members) can hand us such blocks.
            if parent.status == ST_VALID:
                raise Rejected(E.NOT_PROPOSER, "proposer is not an authority")
        exact = parent.status == ST_VALID  # else the parent's set is known only once its branch is applied
        if exact:
            self._check_turn(h, parent)
        elif h.timestamp_ms < parent.timestamp_ms + p.block_interval_ms:
            raise Rejected(E.BAD_TIMESTAMP, "block is earlier than any proposer may time it")
        if now_ms is not None and h.timestamp_ms > now_ms + MAX_FUTURE_DRIFT_MS:
            raise Rejected(E.BAD_TIMESTAMP, "block is from the future")
        if h.difficulty < p.min_difficulty:
            raise Rejected(E.INSUFFICIENT_WORK, f"difficulty {h.difficulty} below minimum {p.min_difficulty}")
        if h.difficulty > MAX_DIFFICULTY:
            raise Rejected(E.DIFFICULTY_TOO_HIGH, f"difficulty {h.difficulty} above {MAX_DIFFICULTY}")
        check_seal_claims(block, parent.timestamp_ms)
        if not meets_difficulty(h.hash, h.difficulty):
            raise Rejected(E.BAD_POW, "hash does not meet the difficulty")
        if not seal_valid(h, block.seal):
            raise Rejected(E.BAD_SIGNATURE, "seal signature does not verify")
        if len(block.txs) > p.max_block_txs:
            raise Rejected(E.TOO_MANY_TXS, f"{len(block.txs)} > {p.max_block_txs}")
        if block.size > MAX_BLOCK_BYTES:
            raise Rejected(E.BLOCK_TOO_LARGE, f"block of {block.size} bytes exceeds {MAX_BLOCK_BYTES}")
        txids = [tx.txid for tx in block.txs]
        if len(set(txids)) != len(txids):
            raise Rejected(E.DUPLICATE, "a transaction appears twice in the block")
        if tx_root_of(block.txs) != h.tx_root:
            raise Rejected(E.BAD_TX_ROOT, "transaction root does not match")
        return IN_TURN_WEIGHT if self.in_turn(h.height, h.proposer, auths) else OUT_OF_TURN_WEIGHT

    def _check_turn(self, h: BlockHeader, parent: BlockMeta) -> None:
        """The rules that depend on the parent's authority set: timing in and out of turn, recent signers."""
        if h.timestamp_ms < self.earliest_timestamp(parent, h.height, h.proposer):
            raise Rejected(E.BAD_TIMESTAMP, "block is earlier than its proposer may time it")
        if h.proposer in self.recent_signers(h.prev_hash):
            raise Rejected(E.SIGNED_RECENTLY, "proposer signed one of the last N/2 blocks")

    # import and fork choice ----------------------------------------------------------------------
    def import_block(self, block: Block, now_ms: int | None = None, durable: bool = True) -> ImportResult:
        """Store a block and make it head if its chain is heaviest; raises Rejected if it is invalid.

        A block that extends the head is stored and applied in one atomic batch. `durable=False` skips
        the fsync (a catch-up sync fsyncs once per batch of blocks): LevelDB keeps such writes through a
        process crash and keeps batches in order, so a power cut can only lose the last blocks whole,
        never leave a half-applied one; they are fetched again."""
        bh = block.hash
        known = self.meta(bh)
        if known is not None:
            if known.status == ST_INVALID:
                raise Rejected(E.KNOWN_INVALID, bh.hex())
            return ImportResult("known", bh, known.height)
        parent = self.meta(block.header.prev_hash)
        if parent is None:
            raise Rejected(E.UNKNOWN_PARENT, block.header.prev_hash.hex())
        if parent.status == ST_INVALID:
            raise Rejected(E.KNOWN_INVALID, "parent is invalid")
        try:
            work = self.validate_header(block, parent, now_ms)
        except Rejected:
            raise
        except Exception as exc:  # noqa: BLE001 - outside data must never stop the node: refuse the block
            raise Rejected(E.BLOCK_FAILED, f"checking the header raised {exc!r}"[:300]) from None
        self._check_finality(block, parent)
        if self.kv.get(b"E" + block.header.proposer + block.height.to_bytes(8, "big")) is not None:
            raise Rejected(E.DUPLICATE, "this proposer already signed two blocks at this height; a third is "
                                        "not stored (the evidence is kept)")
        meta = BlockMeta(block.height, parent.total_work + work, block.header.prev_hash, ST_STORED, 0,
                         min(CUM_LIMIT, parent.cum_hashes + block.seal.hashes),
                         min(CUM_LIMIT, parent.cum_energy_mj + block.seal.energy_mj),
                         block.header.proposer, block.header.timestamp_ms, work, parent.authset, parent.justified,
                         parent.finalized, parent.status == ST_VALID)
        writes: dict[bytes, bytes | None] = {b"b" + bh: block.encode(), b"m" + bh: meta.pack()}
        self._record_proposal(block, writes)
        heavier = self._heavier(meta, bh)
        if heavier and block.header.prev_hash == self.head_hash:
            try:
                self._apply(block, meta, writes, durable)
            except Rejected:
                meta.status = ST_INVALID  # keep the block (and any evidence) and remember it is invalid
                writes[b"m" + bh] = meta.pack()
                self.kv.write(writes, sync=durable)
                raise
            return ImportResult("head", bh, block.height, applied=[block])
        if heavier:  # journal: a crash before the head gets there resumes the move on reopen
            writes[K_TARGET] = encode([bh, self.head_hash])
        self._phase("storage")
        self.kv.write(writes, sync=durable)
        if not heavier:
            return ImportResult("side", bh, block.height)
        return self._move_head(bh)

    def _phase(self, name: str) -> None:
        if self.on_phase is not None:
            self.on_phase(name)

    def _record_proposal(self, block: Block, writes: dict[bytes, bytes | None]) -> None:
        """Remember who proposed at which height; a second, different block is equivocation evidence.
        Both signed headers are kept (the blocks stay stored), so anyone can check the double signing."""
        slot = block.header.proposer + block.height.to_bytes(8, "big")
        first = self.kv.get(b"P" + slot)
        if first is None:
            writes[b"P" + slot] = block.hash
        elif first != block.hash and self.kv.get(b"E" + slot) is None:
            writes[b"E" + slot] = encode([first, block.hash])

    def evidence(self) -> list[dict[str, Any]]:
        """Recorded double signings: proposer, height and the two block hashes (all: for tests and tools;
        the API pages them, queries.evidence)."""
        return [e for e in queries.iterate_pages(lambda c: queries.evidence(self.kv, c, 1000)) if "blocks" in e]

    def _check_finality(self, block: Block, parent: BlockMeta) -> None:
        """Refuse a block that does not descend from the finalized block: walk its branch down to the
        canonical chain (a side branch is short: it starts above the finalized height or is refused)."""
        final = self.final_floor  # not the head's record alone: a branch above the floor may know less
        if final == 0:
            return
        meta, h = parent, block.header.prev_hash
        while self.canonical_hash(meta.height) != h:
            if meta.height <= final:
                break
            h = meta.parent
            meta = self.meta(h)  # type: ignore[assignment]
            assert meta is not None, "a stored block's ancestors are stored"
        if meta.height < final or (meta.height == final and self.canonical_hash(final) != h):
            raise Rejected(E.FINALITY_CONFLICT, f"the block's branch leaves the chain below the finalized "
                                                f"block at height {final}")

    def _heavier(self, meta: BlockMeta, block_hash: bytes) -> bool:
        """Fork choice: more weight (authority signatures: 2 in turn, 1 out of turn), then fewer blocks
        (EIP-3436's rule), then `tie_rank` of the tip's height and proposer, which no proposer can change
        (a block hash would not do: a proposer buys a lower one with hashing); a tip of the same height
        and proposer (equivocation) keeps the head, the one seen first;
        never below the finalized block (`_check_finality`). The justified checkpoint is not compared: a
        branch this node has not applied knows only a lower bound of its own, and comparing that kept a
        node that had justified more on a losing branch there for good (ADR 004)."""
        head = self.head
        if meta.total_work != head.total_work:
            return meta.total_work > head.total_work
        if block_hash == self.head_hash:
            return False
        if meta.height != head.height:  # as much weight in fewer blocks: more of them came in turn
            return meta.height < head.height
        return tie_rank(meta.height, meta.proposer) < tie_rank(head.height, head.proposer)

    def _move_head(self, target: bytes, origin: bytes | None = None) -> ImportResult:
        """Make the stored block `target`, heavier than the head, the head: revert to the common ancestor
        and apply the branch, one batch per block; the last batch clears the journal. If a block of the
        branch is invalid, it and the branch above it are marked invalid, the head returns to `origin`
        (where it was when the move began) and Rejected is raised."""
        origin = origin if origin is not None else self.head_hash
        branch: list[bytes] = []  # target first, down to (not including) the canonical ancestor
        h = target
        while True:
            meta = self.meta(h)
            assert meta is not None, "a stored block's ancestors are stored"
            if self.canonical_hash(meta.height) == h:
                break
            if meta.status == ST_INVALID:  # built on a block known to be invalid: never execute it again
                self._fail_move(branch, origin)
                raise Rejected(E.KNOWN_INVALID, f"ancestor {h.hex()} at height {meta.height} is invalid")
            branch.append(h)
            h = meta.parent
        ancestor = h
        if self._below_checkpoint(self.meta(ancestor).height + 1):  # type: ignore[union-attr]
            self._fail_move(branch, origin)
            raise Rejected(E.KNOWN_INVALID, "the branch leaves the chain where blocks can no longer be reverted "
                                            "(a schema upgrade checkpoint, or undo data pruned)")
        reverted: list[Block] = []
        while self.head_hash != ancestor:
            reverted.append(self._revert_head())
        applied: list[Block] = []
        todo = list(reversed(branch))
        for i, bh in enumerate(todo):
            block = self.block(bh)
            assert block is not None
            last = i == len(todo) - 1
            try:
                self._apply(block, self.meta(bh), {K_TARGET: None} if last else None)  # type: ignore[arg-type]
            except Rejected:
                self._fail_move(todo[i:], origin)
                raise
            applied.append(block)
        status = "head" if not reverted and len(applied) == 1 else "reorg"
        return ImportResult(status, target, applied[-1].height, reverted=reverted, applied=applied)

    def _fail_move(self, invalid: list[bytes], origin: bytes) -> ImportResult | None:
        """A head move met an invalid block: mark it and the branch above it invalid, then return the head
        to `origin` if that is heavier than where it is now. Until that is done the journal names origin,
        so a crash in between ends there too."""
        back = origin != self.head_hash
        om = self.meta(origin)
        back = back and om is not None and om.status != ST_INVALID and self._heavier(om, origin)
        self._mark_invalid(invalid, {K_TARGET: encode([origin, origin]) if back else None})
        return self._move_head(origin, origin) if back else None

    def _mark_invalid(self, hashes: Iterable[bytes], extra: dict[bytes, bytes | None] | None = None) -> None:
        """Mark stored blocks invalid, in one batch with the `extra` writes."""
        writes: dict[bytes, bytes | None] = dict(extra or {})
        for block_hash in hashes:
            meta = self.meta(block_hash)
            if meta is not None:
                meta.status = ST_INVALID
                writes[b"m" + block_hash] = meta.pack()
        if writes:
            self.kv.write(writes)

    def resume_head_move(self) -> ImportResult | None:
        """Finish a head move that a crash interrupted: the journal names its target and the head it
        started from. None if none was pending; if the target cannot be reached (invalid, or no longer
        heavier) the head goes back to the origin when that is heavier than where the crash left it."""
        raw = self.kv.get(K_TARGET)
        if raw is None:
            return None
        target, origin = _unpack(raw)
        meta = self.meta(target)
        if target != self.head_hash and meta is not None and meta.status != ST_INVALID \
                and self._heavier(meta, target):
            try:
                return self._move_head(target, origin)
            except Rejected:
                return None
        return self._fail_move([], origin)

    def _apply(self, block: Block, meta: BlockMeta, stored: dict[bytes, bytes | None] | None = None,
               durable: bool = True) -> None:
        """Execute a block on the head state and commit it, with undo data, in one atomic batch
        (together with `stored`: the writes that store a new block, or the journal's). Raises Rejected
        and writes nothing if the block breaks a rule (the caller marks it invalid)."""
        parent = self.head
        st = StateOverlay(self.kv, parent.accumulator)
        tr = Transition(st, self._context(block.height, block.header.timestamp_ms, block.header.proposer))
        try:
            if block.header.proposer not in tr.authorities():
                raise Rejected(E.NOT_PROPOSER, "proposer is not an authority in the parent's state")
            if not meta.turn_checked:  # its header was checked on a parent not applied then: check it now
                self._check_turn(block.header, parent)
            self._phase("signatures")
            verified = self.verifier(block.txs, self._meter_key)
            self._phase("transition")
            for i, tx in enumerate(block.txs):
                try:
                    tr.apply(tx, verified=tx.txid in verified)
                except Rejected as exc:
                    raise Rejected(E.INVALID_TX, f"tx {i} ({tx.txid.hex()}): {exc.reason}: {exc.detail}") from None
            tr.end_block()
            writes, undo = st.commit()
        except Rejected:
            raise
        except Exception as exc:  # noqa: BLE001 - a block whose execution raises is invalid, never a halt
            raise Rejected(E.BLOCK_FAILED, f"applying the block raised {exc!r}"[:300]) from None
        if root_of(st.accumulator) != block.header.state_root:
            raise Rejected(E.BAD_STATE_ROOT, "state root does not match the header")
        self._phase("storage")
        ctx = tr.ctx
        self._record_finality(meta, st, writes)
        for tx in block.txs:
            if isinstance(tx, Vote):
                self._record_vote(tx, writes)
        bh = block.hash
        hb = block.height.to_bytes(8, "big")
        for i, tx in enumerate(block.txs):
            key = b"x" + tx.txid
            writes[key] = encode([block.height, bh, i])
            undo.append([key, None])
        for key, value in ctx.index.items():
            writes[key] = value
            undo.append([key, None])
        if K_GLOBALS in writes:  # the totals before this block, for per-block figures after undo is pruned
            before = next(old for key, old in undo if key == K_GLOBALS)
            writes[b"q" + bh] = encode([before])
            undo.append([b"q" + bh, None])
        meta.status = ST_VALID
        meta.accumulator = st.accumulator
        writes[b"m" + bh] = meta.pack()
        writes[b"u" + bh] = encode(undo)
        writes[b"n" + hb] = bh
        writes[b"H"] = bh
        if meta.finalized > self.final_floor:  # in the same batch: a restart never knows less
            writes[K_FINAL_FLOOR] = encode(meta.finalized)
        if stored:
            writes = {**stored, **writes}
        self.kv.write(writes, sync=durable)
        self.head_hash, self.head, self._head_header = bh, meta, block.header
        self.final_floor = max(self.final_floor, meta.finalized)

    def _revert_head(self, extra: dict[bytes, bytes | None] | None = None) -> Block:
        """Undo the head block in one atomic batch (with the `extra` writes); returns it. A finalized block
        is never undone (import refuses every branch that would need it, so this is a last guard)."""
        bh = self.head_hash
        block = self.block(bh)
        assert block is not None and block.height > 0
        if block.height <= self.final_floor:
            raise Rejected(E.FINALITY_CONFLICT, f"block {block.height} is finalized")
        undo = _unpack(self.kv.get(b"u" + bh))  # type: ignore[arg-type]
        writes: dict[bytes, bytes | None] = {}
        for key, old in reversed(undo):
            writes[key] = old
        writes[b"u" + bh] = None
        writes[b"n" + block.height.to_bytes(8, "big")] = None
        writes[b"H"] = self.head.parent
        writes.update(extra or {})
        self.kv.write(writes)
        self._load_head()
        return block

    def _record_finality(self, meta: BlockMeta, st: StateOverlay, writes: dict[bytes, bytes | None]) -> None:
        """Copy the block's finality and authority set from its state into its metadata (fork choice and
        header checks of its children read them there, without the state)."""
        fin = st.record(consensus.K_FINALITY, consensus.Finality)
        if fin is not None:
            meta.justified, meta.finalized = fin.justified_height, fin.finalized_height
        auths = consensus.authorities(st, self.params.authorities)
        if auths == self.params.authorities:
            meta.authset = b""
        else:
            meta.authset = hashlib.sha256(encode(list(auths))).digest()
            if meta.authset not in self._authsets:
                writes[b"A" + meta.authset] = encode(list(auths))

    # finality votes: evidence ----------------------------------------------------------------------
    def _record_vote(self, vote: Vote, writes: dict[bytes, bytes | None]) -> None:
        """Remember a vote (signature already checked) and keep evidence if it conflicts with one seen
        before from the same authority: two votes for one target height, or one vote surrounding the
        other. One vote is kept per authority and target height (a second is only evidence), so what an
        authority's votes can make a node store is bounded by the heights (and pruned below finality)."""
        f = vote.fields
        height8 = f.target_height.to_bytes(8, "big")
        slot = b"W" + f.voter + height8
        raw = encode(vote.to_wire())
        first = next((v for k, v in writes.items() if k.startswith(slot) and v is not None), None)
        if first is None:
            first = next((v for _k, v in self.kv.iterate(slot)), None)
        conflict: tuple[str, bytes] | None = None
        if first is not None:
            if first == raw:
                return
            conflict = ("double_vote", first)
        else:
            writes[slot + f.target_hash] = raw
            conflict = self._vote_conflict(vote)
        ekey = b"e" + f.voter + height8
        if conflict is not None and ekey not in writes and self.kv.get(ekey) is None:
            writes[ekey] = encode([conflict[0], conflict[1], raw])

    def _vote_conflict(self, vote: Vote) -> tuple[str, bytes] | None:
        """A stored vote of the same authority that this one contradicts. Reads only the voter's votes
        with targets above this vote's source, which for an honest voter are the last few."""
        from .tx import tx_from_wire
        f = vote.fields
        prefix = b"W" + f.voter
        start = prefix + (f.source_height + 1).to_bytes(8, "big")
        for key, raw in self.kv.iterate(prefix, start=start):
            if key[33:41] == f.target_height.to_bytes(8, "big"):
                continue  # the same slot: handled as a double vote by the caller
            other = tx_from_wire(_unpack(raw), self.chain_id)
            assert isinstance(other, Vote)
            o = other.fields
            if o.target_height == f.target_height and o.target_hash != f.target_hash:
                return "double_vote", raw
            if (f.source_height < o.source_height and o.target_height < f.target_height) or \
                    (o.source_height < f.source_height and f.target_height < o.target_height):
                return "surround_vote", raw
        return None

    def prune_votes(self, below_height: int) -> int:
        """Forget the votes remembered for targets below `below_height` (a vote that far down can no longer
        surround a vote that matters: its block is final); evidence stays. Returns how many went."""
        writes: dict[bytes, bytes | None] = {}
        voters = {key for auths in self._authsets.values() for key in auths} | set(self.authorities)
        for voter in voters:
            for key, _raw in self.kv.iterate(b"W" + voter):
                if int.from_bytes(key[33:41], "big") >= below_height:
                    break
                writes[key] = None
        if writes:
            self.kv.write(writes, sync=False)
        return len(writes)

    def record_vote(self, vote: Vote) -> bool:
        """Remember a gossiped vote whose signature the caller checked; True if it is new evidence."""
        writes: dict[bytes, bytes | None] = {}
        self._record_vote(vote, writes)
        if writes:
            self.kv.write(writes, sync=False)
        return any(k.startswith(b"e") for k in writes)

    def vote_evidence(self) -> list[dict[str, Any]]:
        """Conflicting votes: the authority, the kind of conflict and both signed votes (msgpack bytes)."""
        return [e for e in queries.iterate_pages(lambda c: queries.evidence(self.kv, c, 1000)) if "votes" in e]

    # finality: queries ----------------------------------------------------------------------------
    def finality(self) -> dict[str, Any]:
        """Justified and finalized checkpoints of the head's state (genesis until votes say more)."""
        raw = self.kv.get(consensus.K_FINALITY)
        return consensus.summary(consensus.Finality.unpack(raw) if raw is not None else None,
                                 self.genesis_block.hash)

    @property
    def finalized_height(self) -> int:
        """The height below which nothing can be reverted: the head's finalized block, or higher if this
        node applied a branch that finalized more and then moved to one whose state knows less."""
        return max(self.head.finalized, self.final_floor)

    def is_final(self, height: int) -> bool:
        """Is the canonical block at `height` (and everything in it) final?"""
        return height <= self.finalized_height

    def governance(self) -> consensus.Governance:
        raw = self.kv.get(consensus.K_GOVERNANCE)
        return consensus.Governance.unpack(raw) if raw is not None else consensus.Governance([], [])

    def _meter_key(self, meter_id: bytes) -> bytes | None:
        raw = self.kv.get(k_meter(meter_id))
        return Meter.unpack(raw).public if raw is not None else None

    # building ------------------------------------------------------------------------------------
    def build_block(self, txs: Iterable[Tx], timestamp_ms: int, proposer: AccountKey, difficulty: int) \
            -> tuple[BlockHeader, list[Tx], list[tuple[Tx, Rejected]]]:
        """Execute candidate transactions on the head state; returns the unmined header (nonce 0), the
        transactions included and those rejected with their reasons. Nothing is written."""
        candidates = list(txs)
        failed: list[tuple[Tx, Rejected]] = []
        for _attempt in range(MAX_BUILD_ATTEMPTS):
            try:
                header, included, rejected = self._build(candidates, timestamp_ms, proposer, difficulty)
                return header, included, rejected + failed
            except _TxFailed as exc:  # a transaction whose rule raised: leave it out and build afresh
                failed.append((exc.tx, Rejected(E.BLOCK_FAILED, exc.detail)))
                candidates = [tx for tx in candidates if tx is not exc.tx]
        header, included, rejected = self._build([], timestamp_ms, proposer, difficulty)
        return header, included, rejected + failed + [(tx, Rejected(E.BLOCK_FAILED, "not tried"))
                                                      for tx in candidates]

    def _build(self, txs: list[Tx], timestamp_ms: int, proposer: AccountKey, difficulty: int) \
            -> tuple[BlockHeader, list[Tx], list[tuple[Tx, Rejected]]]:
        st = StateOverlay(self.kv, self.head.accumulator)
        height = self.head.height + 1
        tr = Transition(st, self._context(height, timestamp_ms, proposer.public))
        included: list[Tx] = []
        rejected: list[tuple[Tx, Rejected]] = []
        seen: set[bytes] = set()
        size = BLOCK_OVERHEAD_BYTES
        for tx in txs:
            if len(included) >= self.params.max_block_txs:
                break
            if tx.txid in seen:
                continue
            tx_size = len(encode_tx(tx))
            if size + tx_size > MAX_BLOCK_BYTES:
                break  # full (stop rather than skip: a sender's later txs depend on this one)
            try:
                tr.apply(tx)
            except Rejected as exc:
                rejected.append((tx, exc))
                continue
            except Exception as exc:  # noqa: BLE001 - the overlay may be half-changed: start over without it
                raise _TxFailed(tx, f"applying it raised {exc!r}"[:300]) from None
            seen.add(tx.txid)
            included.append(tx)
            size += tx_size
        tr.end_block()
        st.commit()
        header = BlockHeader(self.chain_id, height, self.head_hash, timestamp_ms, proposer.public,
                             tx_root_of(included), st.root, difficulty, 0)
        return header, included, rejected

    def admission_context(self, now_ms: int) -> BlockContext:
        """The context a mempool judges a transaction in: the next block on the head at `now_ms`, where
        what has ended by now counts as ended (it will have by the time a block is built on it)."""
        ctx = self._context(self.head.height + 1, max(now_ms, self.head.timestamp_ms), bytes(32))
        ctx.parent_timestamp_ms = ctx.timestamp_ms
        return ctx

    def _context(self, height: int, timestamp_ms: int, proposer: bytes) -> BlockContext:
        """The context of a block on the head: its parent's time and the canonical chain as its ancestry."""
        return BlockContext(height, timestamp_ms, proposer, self.params, parent_timestamp_ms=self.head.timestamp_ms,
                            ancestor=self.canonical_hash)

    def check_tx(self, tx: Tx, now_ms: int, pending_nonce: int | None = None) -> None:
        """Mempool admission: would `tx` apply on the head state at time now_ms? Raises Rejected.
        With pending_nonce, a signed tx may follow the sender's pending ones instead of the head nonce."""
        if self.kv.get(b"x" + tx.txid) is not None:
            raise Rejected(E.DUPLICATE, "already in the chain")
        st = StateOverlay(self.kv, self.head.accumulator)
        tr = Transition(st, self.admission_context(now_ms))
        if isinstance(tx, SignedTx) and pending_nonce is not None and tx.nonce == pending_nonce:
            st.account(tx.sender_address).nonce = tx.nonce  # judge it as if its predecessors were applied
        try:
            tr.apply(tx)
        except Rejected:
            raise
        except Exception as exc:  # noqa: BLE001 - outside data must never stop the node
            raise Rejected(E.INVALID_TX, f"checking it raised {exc!r}"[:300]) from None

    # queries (committed state) ---------------------------------------------------------------------
    def account(self, addr: bytes) -> Account:
        raw = self.kv.get(k_account(addr))
        return Account.unpack(raw) if raw is not None else Account()

    def holdings(self, addr: bytes, after: bytes = b"", limit: int | None = None) -> list[tuple[bytes, int, str]]:
        """(lot_id, wh, source) an account holds, oldest first: up to `limit` lots with ids above `after`.
        Reads one LevelDB range per source the account holds, only as far as the page goes."""
        def lots(source_index: int) -> Iterator[tuple[bytes, int, str]]:
            prefix = P_HOLDING + addr + bytes([source_index])
            start = prefix + after + b"\x00" if after else None
            for key, raw in self.kv.iterate(prefix, start):
                yield key[23:], int(_unpack(raw)), SOURCES[source_index]

        out: list[tuple[bytes, int, str]] = []
        for entry in heapq.merge(*(lots(i) for i in range(len(SOURCES))), key=lambda e: e[0]):
            if limit is not None and len(out) >= limit:
                break
            out.append(entry)
        return out

    def lot(self, lot_id: bytes) -> Lot | None:
        raw = self.kv.get(k_lot(lot_id))
        return Lot.unpack(raw) if raw is not None else None

    def lot_movements(self, lot_id: bytes) -> list[list[Any]]:
        return [_unpack(v) for _k, v in self.kv.iterate(b"k" + lot_id)]

    def meter(self, meter_id: bytes) -> Meter | None:
        raw = self.kv.get(k_meter(meter_id))
        return Meter.unpack(raw) if raw is not None else None

    def meters(self) -> Iterator[tuple[bytes, Meter]]:
        for key, raw in self.kv.iterate(b"sm"):
            yield key[2:], Meter.unpack(raw)

    def offer(self, offer_id: bytes) -> Offer | None:
        raw = self.kv.get(k_offer(offer_id))
        return Offer.unpack(raw) if raw is not None else None

    def offers(self) -> Iterator[tuple[bytes, Offer]]:
        for key, raw in self.kv.iterate(b"so"):
            yield key[2:], Offer.unpack(raw)

    def trade(self, trade_id: bytes) -> Trade | None:
        raw = self.kv.get(k_trade(trade_id))
        return Trade.unpack(raw) if raw is not None else None

    def trades(self) -> Iterator[tuple[bytes, Trade]]:
        for key, raw in self.kv.iterate(b"st"):
            yield key[2:], Trade.unpack(raw)

    def unsettled_trades(self) -> Iterator[tuple[bytes, Trade]]:
        """Trades not yet settled, from the settlement schedule (a trade leaves it when its window ends and
        it settles): as many as are in flight, however many the ledger has settled in its life."""
        for key, _raw in self.kv.iterate(P_DUE):
            if key[10] == DUE_TRADE:
                trade = self.trade(key[11:])
                if trade is not None and trade.status != "settled":
                    yield key[11:], trade

    def order(self, order_id: bytes, with_lots: bool = True) -> Order | None:
        """An order; with `with_lots` its `lots` lists the lots a sell order still locks (from their entries)."""
        raw = self.kv.get(k_order(order_id))
        if raw is None:
            return None
        order = Order.unpack(raw)
        if with_lots and order.side == "sell":
            order.lots = self._order_lots(order_id)
        return order

    def orders(self, with_lots: bool = True) -> Iterator[tuple[bytes, Order]]:
        for key, raw in self.kv.iterate(b"sO"):
            order = Order.unpack(raw)
            if with_lots and order.side == "sell":
                order.lots = self._order_lots(key[2:])
            yield key[2:], order

    def _order_lots(self, order_id: bytes) -> list[list[Any]]:
        return [[key[34:], *_unpack(v)] for key, v in self.kv.iterate(P_ORDER_LOT + order_id)]

    def book_side(self, side: str, limit: int | None = None) -> list[tuple[bytes, Order]]:
        """One side's resting orders, best first (at most `limit`): a walk of its book range."""
        out: list[tuple[bytes, Order]] = []
        for _key, order_id in self.kv.iterate(P_BOOK + (BOOK_BUY if side == "buy" else BOOK_SELL)):
            if limit is not None and len(out) >= limit:
                break
            out.append((order_id, self.order(order_id, with_lots=False)))  # type: ignore[arg-type]
        return out

    def order_book(self, limit: int | None = None) -> tuple[list[tuple[bytes, Order]], list[tuple[bytes, Order]]]:
        """(buys best first, sells best first) of open orders, at most `limit` a side."""
        return self.book_side("buy", limit), self.book_side("sell", limit)

    def globals(self) -> Globals:
        raw = self.kv.get(b"sG")
        return Globals.unpack(raw) if raw is not None else Globals()

    def history(self, addr: bytes, limit: int = 100) -> list[tuple[int, bytes, str]]:
        """(height, txid, kind) newest first."""
        out = []
        for key, raw in self.kv.iterate(b"i" + addr, reverse=True):
            txid, kind = _unpack(raw)
            out.append((int.from_bytes(key[21:29], "big"), txid, kind))
            if len(out) >= limit:
                break
        return out

    def tx_location(self, txid: bytes) -> tuple[int, bytes, int] | None:
        raw = self.kv.get(b"x" + txid)
        return tuple(_unpack(raw)) if raw is not None else None  # type: ignore[return-value]

    def verify_state_root(self) -> bool:
        """Recompute the state root from every stored entry and compare with the head header."""
        acc = recompute_accumulator(self.kv)
        return acc == self.head.accumulator and root_of(acc) == self._committed_root(self.head_hash,
                                                                                      self.head_header)

    def _below_checkpoint(self, height: int) -> bool:
        """At or below a schema upgrade's checkpoint (executed under the old layout), or below the height
        undo data was pruned to: never reverted."""
        return (self.checkpoint is not None and height <= self.checkpoint[0]) or height < self.undo_floor()

    def undo_floor(self) -> int:
        """The lowest height whose undo data is kept (1 unless `prune_undo` dropped some)."""
        raw = self.kv.get(K_UNDO_FLOOR)
        return decode(raw) if raw is not None else 1

    def prune_undo(self, below_height: int, batch: int = 1000) -> int:
        """Drop the undo data of canonical blocks below `below_height` (at most the head's height): blocks
        that can no longer be reverted, e.g. below the finalized height. Undo data is what keeps growing on
        disk with every block; an archive node never calls this. Each batch of `batch` blocks is one atomic
        write that also moves the floor (`U`), so a crash leaves a consistent prefix pruned. Afterwards a
        head move below the floor is refused. Returns how many blocks' undo data it dropped."""
        floor = self.undo_floor()
        stop = min(below_height, self.head.height)
        dropped = 0
        while floor < stop:
            upto = min(stop, floor + batch)
            writes: dict[bytes, bytes | None] = {K_UNDO_FLOOR: encode(upto)}
            for height in range(floor, upto):
                bh = self.canonical_hash(height)
                if bh is not None and self.kv.get(b"u" + bh) is not None:
                    writes[b"u" + bh] = None
                    dropped += 1
            self.kv.write(writes)
            floor = upto
        return dropped

    def _committed_root(self, block_hash: bytes, header: BlockHeader) -> bytes:
        """The state root a block commits to: its header's, or for the block a schema upgrade converted
        the state at, the converted state's root (ledger/migrate.py)."""
        if self.checkpoint is not None and block_hash == self.checkpoint[1]:
            return self.checkpoint[2]
        return header.state_root

    def check(self, full: bool = True) -> list[str]:
        """What is inconsistent in the stored chain (empty if nothing): the head and the state root
        recomputed from every state entry; with `full` also the canonical index, undo data, transaction,
        history and provenance indexes against the stored blocks. Reads only; O(state), and O(chain)
        with `full` (an operator's `kwh-node --check-db`)."""
        problems: list[str] = []
        head, hh = self.head, self.head_hash
        if head is None or self.block_bytes(hh) is None:
            return [f"head {hh.hex() if hh else None} is not a stored block"]
        if head.status != ST_VALID:
            problems.append(f"head {hh.hex()} is not marked valid")
        if self.canonical_hash(head.height) != hh:
            problems.append(f"canonical index at the head height {head.height} does not name the head")
        if root_of(head.accumulator) != self._committed_root(hh, self.head_header):
            problems.append("the head's stored accumulator does not match its header's state root")
        if recompute_accumulator(self.kv) != head.accumulator:
            problems.append(f"state recomputed from the stored entries does not match the head's state root "
                            f"(height {head.height})")
        if not full:
            return problems
        problems.extend(entry_problems(self.kv))
        txs_at: dict[bytes, tuple[int, int]] = {}  # txid -> (height, index) along the canonical chain
        canonical: set[bytes] = set()
        prev = ZERO_HASH
        expected = 0
        for key, bh in self.kv.iterate(b"n"):
            height = int.from_bytes(key[1:], "big")
            if height > head.height:
                problems.append(f"canonical index has height {height} above the head ({head.height})")
                continue
            if height != expected:
                problems.append(f"canonical index skips from height {expected - 1} to {height}")
            expected = height + 1
            meta, block = self.meta(bh), self.block(bh)
            if meta is None or block is None:
                problems.append(f"canonical block {bh.hex()} at {height} is not stored")
                prev = bh
                continue
            if meta.height != height or meta.parent != prev or meta.status != ST_VALID:
                problems.append(f"canonical block {bh.hex()} at {height}: height, parent or status is wrong")
            if height > 0 and self.kv.get(b"u" + bh) is None and not self._below_checkpoint(height):
                problems.append(f"canonical block {bh.hex()} at {height} has no undo data")
            canonical.add(bh)
            for i, tx in enumerate(block.txs):
                txs_at[tx.txid] = (height, i)
            prev = bh
        if expected != head.height + 1:
            problems.append(f"canonical index ends at {expected - 1}, the head is at {head.height}")
        for key, _raw in self.kv.iterate(b"u"):
            if key[1:] not in canonical:
                problems.append(f"undo data kept for block {key[1:].hex()}, which is not canonical")
        indexed = 0
        for key, raw in self.kv.iterate(b"x"):
            height, bh, i = _unpack(raw)
            indexed += 1
            if txs_at.get(key[1:]) != (height, i) or self.canonical_hash(height) != bh:
                problems.append(f"transaction index of {key[1:].hex()} points off the canonical chain")
        if indexed != len(txs_at):
            problems.append(f"{len(txs_at)} canonical transactions but {indexed} transaction index entries")
        for prefix, skip in ((b"i", 21), (b"k", 25)):  # history / provenance: <id><height8><seq4>
            for key, raw in self.kv.iterate(prefix):
                height = int.from_bytes(key[skip:skip + 8], "big")
                txid = _unpack(raw)[0]
                if height > head.height or txid not in txs_at or txs_at[txid][0] > height:
                    problems.append(f"index entry {key.hex()} refers to a transaction off the canonical chain")
        return problems

    def state_entries(self) -> Iterator[tuple[bytes, bytes]]:
        return self.kv.iterate(STATE_PREFIX)
