"""Every bound on what others can make a node hold or check, each with the reason it is refused with.

Consensus limits (ledger): block bytes, txs per block, genesis parameters within what the decoder accepts.
Node limits (node/): mempool size and each sender's or meter's share of it, token buckets for request rates.
Decoder limits: container length, nesting depth, declared lengths (test_fuzz.py throws everything else at the
decoders). HTTP body sizes and request rates against a running node: tests/functional/test_api_limits.py."""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from ledger import errors as E
from ledger.block import BLOCK_OVERHEAD_BYTES, MAX_BLOCK_BYTES, Block, BlockHeader, Seal, decode_block, mine, \
    tx_root_of
from ledger.chain import Chain
from ledger.encoding import MAX_CONTAINER_LEN, MAX_DEPTH, U64_MAX, decode, encode
from ledger.errors import DecodeError, Rejected
from ledger.genesis import Genesis
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, Net, make_net, make_tx
from ledger.tx import COIN, SignedTx, Transfer, Tx, encode_tx, sign_tx
from node.codes import MEMPOOL_FULL, status_of
from node.mempool import Mempool
from node.peers import TokenBucket

NOW = int(time.time() * 1000)


# --------------------------------------------------------------------------------------- decoder

def test_declared_lengths_at_the_limits() -> None:
    """Exactly what the decoder's bounds name: MAX_CONTAINER_LEN items pass, one more does not; a string
    or byte string longer than the message limit is refused before its bytes are read."""
    assert len(decode(encode([b"abc"] * MAX_CONTAINER_LEN))) == MAX_CONTAINER_LEN
    with pytest.raises(DecodeError, match="max_array_len"):
        decode(encode([b"abc"] * (MAX_CONTAINER_LEN + 1)))
    with pytest.raises(DecodeError, match="exceeds"):
        decode(encode(b"x" * 2000), max_bytes=1000)
    with pytest.raises(DecodeError):
        decode(b"\xdb" + (1 << 31).to_bytes(4, "big") + b"abc")  # str32 claiming 2 GiB


def _peak_decode_bytes(data: bytes) -> tuple[int, str]:
    """Peak Python memory while decoding `data` (tracemalloc counts every object it builds), and the error."""
    import tracemalloc
    tracemalloc.start()
    try:
        decode(data)
        error = ""
    except DecodeError as exc:
        error = str(exc)
    finally:
        _now, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, error


def test_decoder_memory_stays_proportional_to_the_input() -> None:
    """Messages within every length and depth limit but made of the cheapest-to-send, dearest-to-build
    items (empty lists, small ints and byte strings) are refused by the item budget, having built at most
    a small multiple of their own size; an 8 MiB one of empty lists used to build 582 MiB."""
    hostile = [
        b"\xdc" + (83).to_bytes(2, "big") + (b"\xdd" + (100_000).to_bytes(4, "big") + b"\x90" * 100_000) * 83,
        encode([[257 + i % 1000 for i in range(MAX_CONTAINER_LEN)]] * 20),  # uint16: 3 bytes, an int object
        encode([[bytes([i % 256]) for i in range(MAX_CONTAINER_LEN)]] * 20),  # bin8 of one byte: 3 bytes
    ]
    for data in hostile:
        peak, error = _peak_decode_bytes(data)
        assert "items in" in error
        assert peak <= 12 * len(data), (len(data), peak)
    # protocol messages are far inside the budget: a full block of 50 readings and 50 transfers decodes
    net = make_net(accounts=2, meters=1)
    chain = net.chain()
    meter = MeterState(net.meters[0], GENESIS_MS // 1000 - 100 * 900)
    txs: list[Tx] = [meter.read(CHAIN_ID, 5) for _ in range(50)]
    txs += [make_tx(chain, net.accounts[0], Transfer(net.accounts[1].address, 1), nonce=i) for i in range(50)]
    header, included, _rejected = chain.build_block(txs, GENESIS_MS + 2000, net.authorities[1], 1)
    raw = mine(net.authorities[1], header, included).encode()
    assert decode_block(raw, CHAIN_ID, 1000).txs == tuple(included)


def test_nesting_depth_limit_is_exact() -> None:
    """MAX_DEPTH lists inside lists decode, one more does not (msgpack alone would allow 1024), and no
    protocol object comes near the bound."""
    ok = b"\x91" * MAX_DEPTH + b"\x00"
    assert encode(decode(ok)) == ok
    with pytest.raises(DecodeError, match=f"nested more than {MAX_DEPTH} deep"):
        decode(b"\x91" * (MAX_DEPTH + 1) + b"\x00")
    wide_then_deep: Any = 0  # depth counted along every branch, not just the first
    for _ in range(MAX_DEPTH):
        wide_then_deep = [1, 2, wide_then_deep]
    with pytest.raises(DecodeError, match="nested"):
        decode(encode([[], wide_then_deep]))
    net = make_net(accounts=2, meters=1)
    chain = net.chain()
    deepest = _block_with(chain, net, _fake_transfers(net, 1) + [MeterState(net.meters[0], 0).read(CHAIN_ID, 1)])
    assert _depth(decode(deepest.encode())) < MAX_DEPTH // 2  # the deepest protocol object is far from the bound


def _depth(value: Any) -> int:
    return 1 + max((_depth(v) for v in value), default=0) if type(value) is list else 0


# ------------------------------------------------------------------------------------ block size

def _fake_transfers(net: Net, count: int) -> list[Tx]:
    """Distinct, well-formed txs with dummy signatures: the size rule comes before signatures are checked,
    so a block of them reaches it cheaply."""
    key, to = net.accounts[0], net.accounts[1].address
    return [SignedTx(key.public, n, 1000, Transfer(to, 1), bytes(64), net.genesis.chain_id) for n in range(count)]


def _block_with(chain: Chain, net: Net, txs: list[Tx]) -> Block:
    """The next in-turn block (valid header, seal and proof of work) carrying `txs` with a matching tx root."""
    proposer = next(a for a in net.authorities if chain.in_turn(chain.height + 1, a.public))
    ts = chain.earliest_timestamp(chain.head, chain.height + 1, proposer.public)
    header, _included, _rejected = chain.build_block([], ts, proposer, 1)
    return mine(proposer, dataclasses.replace(header, tx_root=tx_root_of(txs)), txs)


def _reason(chain: Chain, block: Block) -> str:
    with pytest.raises(Rejected) as info:
        chain.import_block(block)
    return info.value.reason


def test_block_over_max_bytes_is_refused_with_its_own_reason() -> None:
    """MAX_BLOCK_BYTES is a consensus rule: a block above it is invalid however many txs genesis allows,
    and one at the limit is judged on its other rules (here: a duplicate tx, checked next)."""
    net = make_net(accounts=2, max_block_txs=MAX_CONTAINER_LEN)
    chain = net.chain()
    txs = _fake_transfers(net, MAX_BLOCK_BYTES // 100)
    room = MAX_BLOCK_BYTES - _block_with(chain, net, []).size - 4  # the tx list's header grows to array32
    count = 0
    while room >= len(encode_tx(txs[count])):
        room -= len(encode_tx(txs[count]))
        count += 1
    head = chain.head_hash
    big = _block_with(chain, net, txs[:count + 1])
    assert big.size > MAX_BLOCK_BYTES and len(big.txs) <= net.genesis.max_block_txs
    assert _reason(chain, big) == E.BLOCK_TOO_LARGE
    at_limit = _block_with(chain, net, txs[:count - 1] + txs[:1])  # as big as fits, one tx twice
    assert MAX_BLOCK_BYTES - 200 < at_limit.size <= MAX_BLOCK_BYTES
    assert _reason(chain, at_limit) == E.DUPLICATE
    assert chain.head_hash == head and chain.height == 0
    assert decode_block(big.encode(), net.genesis.chain_id, MAX_CONTAINER_LEN).size == big.size  # still decodable


def test_builder_stops_before_the_block_is_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    """The producer never builds a block its peers would refuse: with room for three txs it takes three,
    and stops (rather than skipping) so a sender's later nonces are not left behind as rejected."""
    net = make_net(accounts=2)
    chain = net.chain()
    txs = [make_tx(chain, net.accounts[0], Transfer(net.accounts[1].address, COIN), nonce=n) for n in range(5)]
    room = BLOCK_OVERHEAD_BYTES + sum(len(encode_tx(t)) for t in txs[:3])
    monkeypatch.setattr("ledger.chain.MAX_BLOCK_BYTES", room)
    proposer = next(a for a in net.authorities if chain.in_turn(1, a.public))
    header, included, rejected = chain.build_block(txs, chain.earliest_timestamp(chain.head, 1, proposer.public),
                                                   proposer, 1)
    assert included == txs[:3] and rejected == []
    block = mine(proposer, header, included)
    assert block.size <= room
    assert chain.import_block(block).status == "head"


def test_block_overhead_bound_covers_the_largest_header_and_seal() -> None:
    """BLOCK_OVERHEAD_BYTES must hold the biggest possible header and seal, or the builder could overshoot."""
    header = BlockHeader("\U0010ffff" * 64, U64_MAX, b"\xff" * 32, U64_MAX, b"\xff" * 32, b"\xff" * 32,
                         b"\xff" * 32, U64_MAX, U64_MAX)
    block = Block(header, Seal(U64_MAX, U64_MAX, True, b"\xff" * 64), ())
    assert len(encode(block.to_wire())) + 5 <= BLOCK_OVERHEAD_BYTES  # + the tx list's array32 header


def test_genesis_max_block_txs_stays_within_the_decoder() -> None:
    """A block with more txs than one msgpack array may hold could never be decoded by a peer."""
    net = make_net(authorities=1)
    assert dataclasses.replace(net.genesis, max_block_txs=MAX_CONTAINER_LEN).max_block_txs == MAX_CONTAINER_LEN
    with pytest.raises(ValueError, match="max_block_txs"):
        dataclasses.replace(net.genesis, max_block_txs=MAX_CONTAINER_LEN + 1)
    data = net.genesis.to_json()
    data["max_block_txs"] = MAX_CONTAINER_LEN + 1
    with pytest.raises(ValueError, match="max_block_txs"):
        Genesis.from_json(data)


def test_txs_per_block_bound_is_checked_before_signatures() -> None:
    """max_block_txs from genesis: one tx over it is `too_many_txs`; at it, the txs' signatures are checked."""
    net = make_net(accounts=2, max_block_txs=50)
    chain = net.chain()
    assert _reason(chain, _block_with(chain, net, _fake_transfers(net, 51))) == E.TOO_MANY_TXS
    assert _reason(chain, _block_with(chain, net, _fake_transfers(net, 50))) == E.INVALID_TX


# --------------------------------------------------------------------------------------- mempool

def _transfer(net: Net, sender: int, nonce: int, fee: int = 1000) -> SignedTx:
    to = net.accounts[(sender + 1) % len(net.accounts)].address
    return sign_tx(net.accounts[sender], net.genesis.chain_id, nonce, fee, Transfer(to, COIN))


def _refused(pool: Mempool, tx: Tx) -> Rejected:
    with pytest.raises(Rejected) as info:
        pool.add(tx, NOW)
    return info.value


def test_one_sender_cannot_hold_more_than_its_share() -> None:
    net = make_net(accounts=3)
    pool = Mempool(net.chain(), max_size=100, per_sender=3)
    for n in range(3):
        pool.add(_transfer(net, 0, n), NOW)
    exc = _refused(pool, _transfer(net, 0, 3, fee=10**6))  # paying more does not buy a bigger share
    assert exc.reason == MEMPOOL_FULL and "limit 3" in exc.detail and status_of(exc.reason) == 409
    pool.add(_transfer(net, 1, 0), NOW)  # others are not affected
    assert len(pool) == 4 and [t.nonce for t in pool.pending_of(net.accounts[0].address)] == [0, 1, 2]
    pool.add(_transfer(net, 0, 2, fee=5000), NOW)  # replacing a pending tx is not a new slot
    assert len(pool.pending_of(net.accounts[0].address)) == 3


def test_full_pool_keeps_what_it_has_unless_outbid() -> None:
    net = make_net(accounts=4)
    pool = Mempool(net.chain(), max_size=2, per_sender=5)
    first, second = _transfer(net, 0, 0, fee=2000), _transfer(net, 1, 0, fee=3000)
    pool.add(first, NOW)
    pool.add(second, NOW)
    exc = _refused(pool, _transfer(net, 2, 0, fee=2000))  # equal to the cheapest: refused
    assert exc.reason == MEMPOOL_FULL and "2000" in exc.detail
    assert set(pool.entries) == {first.txid, second.txid}
    rich = _transfer(net, 3, 0, fee=2001)
    pool.add(rich, NOW)
    assert set(pool.entries) == {second.txid, rich.txid} and pool.signed_count == 2
    assert pool.dropped[first.txid].reason == MEMPOOL_FULL


def test_readings_are_bounded_per_meter_and_in_total() -> None:
    net = make_net(accounts=2, meters=2, meter_kind="generation")
    pool = Mempool(net.chain(), max_size=100, per_sender=2, max_readings=3)
    start = ((GENESIS_MS // 1000) // 900 - 8) * 900
    a, b = MeterState(net.meters[0], start), MeterState(net.meters[1], start)
    cid = net.genesis.chain_id
    pool.add(a.read(cid, 100), NOW)
    pool.add(a.read(cid, 100), NOW)
    exc = _refused(pool, a.read(cid, 100))
    assert exc.reason == MEMPOOL_FULL and "meter" in exc.detail
    pool.add(b.read(cid, 50), NOW)
    exc = _refused(pool, b.read(cid, 50))
    assert exc.reason == MEMPOOL_FULL and "3 readings" in exc.detail
    assert pool.reading_count == 3 and pool.signed_count == 0
    pool.add(_transfer(net, 0, 0), NOW)  # readings and signed txs have separate room
    assert len(pool) == 4


def test_dropped_memory_is_bounded() -> None:
    net = make_net(accounts=2)
    pool = Mempool(net.chain(), remember_dropped=5)
    for n in range(20):
        pool.remember(_transfer(net, 0, n), E.BAD_NONCE, "test")
    assert len(pool.dropped) == 5 and [d.tx.nonce for d in pool.dropped.values()] == list(range(15, 20))


# ----------------------------------------------------------------------------------- rate buckets

def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=20.0, burst=5.0)
    assert [bucket.allow() for _ in range(6)] == [True] * 5 + [False]
    time.sleep(0.2)  # 20/s for 0.2 s: about 4 tokens back
    assert bucket.allow()
    assert TokenBucket(0.0).allow() and all(TokenBucket(0.0).allow() for _ in range(1000))  # 0 = unlimited


def _cheapest_last_of_run(pool: Mempool, exclude: bytes) -> Any:
    """The eviction victim by a scan of every sender (what the heap must agree with)."""
    best = None
    for sender, pend in pool.by_sender.items():
        entry = pool.entries[pend[max(pend)]]
        if sender != exclude and (best is None or (entry.tx.fee, -entry.seq) < (best.tx.fee, -best.seq)):
            best = entry
    return best


def test_eviction_at_capacity_takes_what_a_scan_of_every_sender_would() -> None:
    """At capacity, admissions, replacements, evictions and drops in random order: every eviction takes
    the cheapest (then newest) last-of-run tx of another sender, found in the heap without a scan."""
    import random
    rnd = random.Random(11)
    net = make_net(accounts=24)
    pool = Mempool(net.chain(), max_size=40, per_sender=4)
    nonces = [0] * len(net.accounts)
    evictions = refusals = 0
    for _step in range(400):
        sender = rnd.randrange(len(net.accounts))
        addr = net.accounts[sender].address
        if rnd.random() < 0.1 and pool.by_sender.get(addr):  # a drop takes a run's tail with it
            pend = pool.by_sender[addr]
            gone = pool.drop(pend[rnd.choice(sorted(pend))], E.BAD_NONCE, "test")
            nonces[sender] -= len(gone)
            continue
        if len(pool.by_sender.get(addr, {})) >= 4:
            continue
        tx = _transfer(net, sender, nonces[sender], fee=rnd.choice([1000, 2000, 3000, 5000]))
        full = pool.signed_count >= pool.max_size
        expected = _cheapest_last_of_run(pool, addr) if full else None
        try:
            pool.add(tx, NOW)
        except Rejected as exc:
            assert full and exc.reason == MEMPOOL_FULL
            assert expected is None or expected.tx.fee >= tx.fee
            refusals += 1
            continue
        nonces[sender] += 1
        if full:
            assert expected is not None and expected.tx.fee < tx.fee
            assert expected.tx.txid not in pool.entries and pool.dropped[expected.tx.txid].reason == MEMPOOL_FULL
            evictions += 1
            victim = expected.tx.sender_address
            nonces[[a.address for a in net.accounts].index(victim)] -= 1
        assert pool.signed_count <= pool.max_size
        assert len(pool._evictable) <= 2 * len(pool.by_sender) + 64 + 1
    assert evictions > 10 and refusals > 10
