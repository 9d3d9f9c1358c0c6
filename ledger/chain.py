"""The chain: genesis, block validation, fork choice, atomic apply/revert, and read-only queries.

`Chain.import_block` is the single entry point for blocks from anywhere (own producer or peers).
Header rules follow Clique (EIP-225) adapted to a small proof of work:
  * only genesis authorities propose; the in-turn proposer of height h is authorities[h % N];
  * an in-turn block may come `block_interval` after its parent, an out-of-turn one only after twice that,
    and its work counts once where an in-turn block's counts twice (Clique's difficulty 2 vs 1);
  * a proposer may not sign again within floor(N/2) blocks of its last block, so no single authority
    (fewer than half of them) can build a chain alone;
  * the header hash must be below 2**256 / difficulty, with difficulty >= the genesis minimum.
Fork choice: most total work, ties to the lower block hash. Every block applied or reverted is one
atomic batch that also moves the head pointer, so the database is consistent after a crash at any point.
A head move that takes several batches (applying a stored side branch, a reorg) is journaled: the batch
that starts it names its target under `R`, the batch that ends it deletes `R`, and opening the chain
resumes a move a crash interrupted. A block that fails validation is marked invalid together with the
stored blocks of its branch built on it, so nothing built on an invalid block is executed again.

Key layout besides the state (b"s..."):
    V              schema version              G            genesis hash
    H              head hash                   b<hash>      block bytes
    m<hash>        block meta                  n<height8>   canonical hash at height
    u<hash>        undo data of an applied block
    x<txid>        [height, block hash, index] of a canonical transaction
    i<addr><height8><seq4>   account history   k<lot_id><height8><seq4>   lot provenance movements
    P<proposer><height8>     first block seen  E<proposer><height8>       equivocation evidence
    R              target of a head move in progress (absent when none is)
    U              lowest height whose undo data is kept (absent: 1)   M   schema upgrade checkpoint
    j<addr><kind><height8><seq4>   an account's offers, trades, orders (ledger/queries.py)
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Callable, Container, Iterable, Iterator, Sequence

from . import errors as E
from .block import (BLOCK_OVERHEAD_BYTES, MAX_BLOCK_BYTES, ZERO_HASH, Block, BlockHeader, Seal, decode_block,
                    meets_difficulty, merkle_root, seal_valid, tx_root_of)
from .encoding import decode, encode
from .errors import Rejected
from .genesis import Genesis
from .keys import AccountKey
from .state import (ACC_BYTES, BOOK_BUY, BOOK_SELL, K_PARAMS, P_BOOK, P_HOLDING, P_ORDER_LOT, STATE_PREFIX, Account,
                    Globals, Lot, Meter, Offer, Order, StateOverlay, Trade, k_account, k_lot, k_meter, k_offer,
                    k_order, k_trade, entry_problems, recompute_accumulator, root_of, _unpack)
from .tx import SOURCES
from .store import KV
from .transition import BlockContext, Params, Transition
from .tx import SignedTx, Tx, encode_tx

SCHEMA_VERSION = 2  # 2: one state entry per lot held, resting order and scheduled expiry
MAX_FUTURE_DRIFT_MS = 15_000
K_TARGET = b"R"  # journal of a head move in progress (see the module docstring)
K_UNDO_FLOOR = b"U"  # undo data is kept from this height up (Chain.prune_undo)
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
    work: int

    def pack(self) -> bytes:
        return encode([self.height, self.total_work.to_bytes(32, "big"), self.parent, self.status,
                       self.accumulator.to_bytes(ACC_BYTES, "big"), self.cum_hashes, self.cum_energy_mj,
                       self.proposer, self.timestamp_ms, self.work])

    @classmethod
    def unpack(cls, raw: bytes) -> "BlockMeta":
        v = _unpack(raw)
        return cls(v[0], int.from_bytes(v[1], "big"), v[2], v[3], int.from_bytes(v[4], "big"), v[5], v[6], v[7],
                   v[8], v[9])


@dataclass
class ImportResult:
    """What importing a block did: `status` is 'head', 'side', 'reorg' or 'known'."""
    status: str
    block_hash: bytes
    height: int
    reverted: list[Block] = field(default_factory=list)  # blocks taken off the canonical chain
    applied: list[Block] = field(default_factory=list)  # blocks put on it (in order)


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
            tr.enroll_meter(m.public, m.owner, m.kind, m.rated_w, m.interval_s, m.source)
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

    def in_turn(self, height: int, proposer: bytes) -> bool:
        auths = self.params.authorities
        return auths[height % len(auths)] == proposer

    def recent_signers(self, parent_hash: bytes) -> list[bytes]:
        """Proposers of the last floor(N/2) blocks ending at parent (they may not sign the next one)."""
        limit = len(self.params.authorities) // 2
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
        factor = 1 if self.in_turn(height, proposer) else 2
        return parent.timestamp_ms + factor * self.params.block_interval_ms

    # validation ----------------------------------------------------------------------------------
    def validate_header(self, block: Block, parent: BlockMeta, now_ms: int | None) -> int:
        """Check a block against its parent without touching state; returns its work."""
        h = block.header
        p = self.params
        if h.chain_id != p.chain_id:
            raise Rejected(E.WRONG_CHAIN, h.chain_id)
        if h.height != parent.height + 1:
            raise Rejected(E.BAD_HEIGHT, f"height {h.height} on parent at {parent.height}")
        if h.proposer not in p.authorities:
            raise Rejected(E.NOT_PROPOSER, "proposer is not an authority")
        if h.timestamp_ms < self.earliest_timestamp(parent, h.height, h.proposer):
            raise Rejected(E.BAD_TIMESTAMP, "block is earlier than its proposer may time it")
        if now_ms is not None and h.timestamp_ms > now_ms + MAX_FUTURE_DRIFT_MS:
            raise Rejected(E.BAD_TIMESTAMP, "block is from the future")
        if h.proposer in self.recent_signers(h.prev_hash):
            raise Rejected(E.SIGNED_RECENTLY, "proposer signed one of the last N/2 blocks")
        if h.difficulty < p.min_difficulty:
            raise Rejected(E.INSUFFICIENT_WORK, f"difficulty {h.difficulty} below minimum {p.min_difficulty}")
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
        return h.difficulty * (2 if self.in_turn(h.height, h.proposer) else 1)

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
        work = self.validate_header(block, parent, now_ms)
        meta = BlockMeta(block.height, parent.total_work + work, block.header.prev_hash, ST_STORED, 0,
                         parent.cum_hashes + block.seal.hashes, parent.cum_energy_mj + block.seal.energy_mj,
                         block.header.proposer, block.header.timestamp_ms, work)
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
        self.kv.write(writes, sync=durable)
        if not heavier:
            return ImportResult("side", bh, block.height)
        return self._move_head(bh)

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
        """Recorded double signings: proposer, height and the two block hashes."""
        out = []
        for key, raw in self.kv.iterate(b"E"):
            first, second = _unpack(raw)
            out.append({"proposer": key[1:33], "height": int.from_bytes(key[33:41], "big"),
                        "blocks": [first, second]})
        return out

    def _heavier(self, meta: BlockMeta, block_hash: bytes) -> bool:
        if meta.total_work != self.head.total_work:
            return meta.total_work > self.head.total_work
        return block_hash < self.head_hash

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
        ctx = BlockContext(block.height, block.header.timestamp_ms, block.header.proposer, self.params)
        tr = Transition(st, ctx)
        verified = self.verifier(block.txs, self._meter_key)
        for i, tx in enumerate(block.txs):
            try:
                tr.apply(tx, verified=tx.txid in verified)
            except Rejected as exc:
                raise Rejected(E.INVALID_TX, f"tx {i} ({tx.txid.hex()}): {exc.reason}: {exc.detail}") from None
        tr.end_block()
        writes, undo = st.commit()
        if root_of(st.accumulator) != block.header.state_root:
            raise Rejected(E.BAD_STATE_ROOT, "state root does not match the header")
        bh = block.hash
        hb = block.height.to_bytes(8, "big")
        for i, tx in enumerate(block.txs):
            key = b"x" + tx.txid
            writes[key] = encode([block.height, bh, i])
            undo.append([key, None])
        for key, value in ctx.index.items():
            writes[key] = value
            undo.append([key, None])
        meta.status = ST_VALID
        meta.accumulator = st.accumulator
        writes[b"m" + bh] = meta.pack()
        writes[b"u" + bh] = encode(undo)
        writes[b"n" + hb] = bh
        writes[b"H"] = bh
        if stored:
            writes = {**stored, **writes}
        self.kv.write(writes, sync=durable)
        self.head_hash, self.head, self._head_header = bh, meta, block.header

    def _revert_head(self, extra: dict[bytes, bytes | None] | None = None) -> Block:
        """Undo the head block in one atomic batch (with the `extra` writes); returns it."""
        bh = self.head_hash
        block = self.block(bh)
        assert block is not None and block.height > 0
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

    def _meter_key(self, meter_id: bytes) -> bytes | None:
        raw = self.kv.get(k_meter(meter_id))
        return Meter.unpack(raw).public if raw is not None else None

    # building ------------------------------------------------------------------------------------
    def build_block(self, txs: Iterable[Tx], timestamp_ms: int, proposer: AccountKey, difficulty: int) \
            -> tuple[BlockHeader, list[Tx], list[tuple[Tx, Rejected]]]:
        """Execute candidate transactions on the head state; returns the unmined header (nonce 0), the
        transactions included and those rejected with their reasons. Nothing is written."""
        st = StateOverlay(self.kv, self.head.accumulator)
        height = self.head.height + 1
        ctx = BlockContext(height, timestamp_ms, proposer.public, self.params)
        tr = Transition(st, ctx)
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
            seen.add(tx.txid)
            included.append(tx)
            size += tx_size
        tr.end_block()
        st.commit()
        header = BlockHeader(self.chain_id, height, self.head_hash, timestamp_ms, proposer.public,
                             tx_root_of(included), st.root, difficulty, 0)
        return header, included, rejected

    def check_tx(self, tx: Tx, now_ms: int, pending_nonce: int | None = None) -> None:
        """Mempool admission: would `tx` apply on the head state at time now_ms? Raises Rejected.
        With pending_nonce, a signed tx may follow the sender's pending ones instead of the head nonce."""
        if self.kv.get(b"x" + tx.txid) is not None:
            raise Rejected(E.DUPLICATE, "already in the chain")
        st = StateOverlay(self.kv, self.head.accumulator)
        ctx = BlockContext(self.head.height + 1, max(now_ms, self.head.timestamp_ms), bytes(32), self.params)
        tr = Transition(st, ctx)
        if isinstance(tx, SignedTx) and pending_nonce is not None and tx.nonce == pending_nonce:
            st.account(tx.sender_address).nonce = tx.nonce  # judge it as if its predecessors were applied
        tr.apply(tx)

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
