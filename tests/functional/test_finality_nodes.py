"""Finality with real node processes on 127.0.0.1: four authorities vote, blocks finalize, and nothing
finalized comes back, whatever one authority, a partition, a restart or a fresh sync does. Authorities
are added and removed by vote; conflicting votes become evidence on every node; a seal claim that used to
overflow the totals is refused while the chain goes on; a backfilled or unfinished reading mints nothing.

Each of these failed on the main before finality: there, one authority's single block of high difficulty
on an old parent reverted every block after it, and a seal claim of 2^64 - 1 hashes stopped every node.
"""
from __future__ import annotations

import shutil
import time
from typing import Any

import pytest

from framework import (NodeNet, NodeProcess, PeerClient, get, height, post_tx, replica, request, status,
                       sync_blocks, transfer, wait_until)
from ledger.block import mine, seal_block
from ledger.chain import Chain
from ledger.encoding import encode
from ledger.keys import AccountKey
from ledger.testing import MeterState
from ledger.tx import ADD, COIN, REMOVE, AuthorityVote, Tx, sign_tx, sign_vote

pytestmark = pytest.mark.functional

INTERVAL_MS = 500


def finalized(node: NodeProcess) -> int:
    return int(status(node)["finalized_height"])


def include(node: NodeProcess, tx: Tx, timeout: float = 20) -> dict[str, Any]:
    code, answer = post_tx(node, tx)
    assert code == 200, answer
    return wait_until(lambda: (lambda s: s if s["status"] == "included" else None)(get(node, f"/tx/{tx.txid.hex()}")),
                      timeout, message=f"{tx.txid.hex()[:12]} included")


def wait_final(nodes: list[NodeProcess], at_height: int, timeout: float = 60) -> None:
    wait_until(lambda: all(finalized(n) >= at_height for n in nodes), timeout,
               message=f"{[n.name for n in nodes]} finalize height {at_height}")


def signer(net: NodeNet, public_hex: str) -> AccountKey:
    return next(a for a in net.net.authorities if a.public.hex() == public_hex)


def fork_block(chain: Chain, net: NodeNet, parent_height: int, difficulty: int) -> Any:
    """A block on the canonical block at `parent_height` of `chain`, by an authority that may sign it
    there (not one of the last floor(N/2) signers), out of turn, with the given difficulty."""
    parent_hash = chain.canonical_hash(parent_height)
    meta = chain.meta(parent_hash)
    recent = set(chain.recent_signers(parent_hash))
    proposer = next(a for a in net.net.authorities
                    if a.public not in recent and not chain.in_turn(parent_height + 1, a.public))
    ts = chain.earliest_timestamp(meta, parent_height + 1, proposer.public)
    # a branch of its own: build it on a chain that has exactly the blocks up to the parent
    branch = net.net.chain()
    for h in range(1, parent_height + 1):
        branch.import_block(chain.block_at(h))
    header, included, _rej = branch.build_block([], max(ts, int(time.time() * 1000) - 5000), proposer, difficulty)
    return mine(proposer, header, included)


@pytest.fixture(scope="module")
def net(module_node_net: Any) -> NodeNet:
    return module_node_net(authorities=4, observers=1, accounts=4, meters=2, meter_kind="generation",
                           block_interval_ms=INTERVAL_MS, authority_coin=100 * COIN, spare_observers=3)


def test_blocks_finalize_within_a_few_intervals(net: NodeNet) -> None:
    wait_until(lambda: min(height(n) for n in net.nodes) >= 3, 30, message="blocks on every node")
    tx = transfer(net.net, 0, net.net.accounts[1].address, 3 * COIN, nonce=0)
    included = include(net.authorities[0], tx)
    wait_final(net.nodes, included["height"])
    for node in net.nodes:
        answer = get(node, f"/tx/{tx.txid.hex()}")
        assert answer["status"] == "included" and answer["final"] is True
        s = status(node)
        assert s["finalized_height"] >= included["height"] and s["finality_lag_blocks"] >= 0
        assert s["justified_height"] >= s["finalized_height"]
        assert get(node, f"/blocks/{s['finalized_height']}")["hash"] == s["finalized_hash"]
    metrics = request(net.observers[0], "GET", "/metrics")[1].decode()
    assert "kwh_finalized_height" in metrics and "kwh_finality_lag_blocks" in metrics


def test_one_authority_cannot_revert_a_payment_with_hashing(net: NodeNet) -> None:
    """A lone authority's out-of-turn block of high difficulty on an old parent is refused where it would
    cut below the finalized block, and loses the fork choice where it would not: the payment stays."""
    payment = transfer(net.net, 2, net.net.accounts[3].address, 7 * COIN, nonce=0)
    at = include(net.authorities[1], payment)["height"]
    wait_final(net.nodes, at)
    node = net.authorities[0]

    def with_an_in_turn_block_above() -> tuple[Chain, int] | None:
        """A replica whose chain has an in-turn block above the payment's (its parent is forked below)."""
        chain = replica(node, net.net)
        tops = [h for h in range(chain.height, at, -1) if chain.in_turn(h, chain.block_at(h).header.proposer)]
        return (chain, tops[0]) if tops else None
    chain, top = wait_until(with_an_in_turn_block_above, 30, 0.5, "an in-turn block above the payment's")
    peer = PeerClient(node, net.spare_keys[0], net.chain_id)
    assert peer.handshake()[0] == 200
    below_final = fork_block(chain, net, at - 1, difficulty=1 << 16)
    code, answer = peer.post("/peer/block", below_final.encode())
    assert code == 400 and answer["error"] == "finality_conflict", answer
    # above the finalized block: heavier in hashes than everything after it, lighter in signatures
    head = height(node)
    # a parent whose canonical child came in turn (weight 2): the fork block, out of turn, weighs 1 less.
    # (Against an out-of-turn child it would tie, and `tie_rank` would decide, whatever its hash.)
    recent = fork_block(chain, net, top - 1, difficulty=1 << 16)
    peer2 = PeerClient(net.authorities[2], net.spare_keys[0], net.chain_id)
    assert peer2.handshake()[0] == 200
    peer2.post("/peer/block", recent.encode())
    wait_until(lambda: height(net.authorities[2]) > head, 20, message="the chain goes on")
    assert get(net.authorities[2], f"/blocks/{top}")["hash"] != recent.hash.hex()
    for n in net.nodes:
        assert get(n, f"/tx/{payment.txid.hex()}")["final"] is True
        assert get(n, f"/blocks/{at}")["hash"] == chain.canonical_hash(at).hex()


def test_an_overflowing_seal_claim_is_refused_and_the_chain_goes_on(net: NodeNet) -> None:
    node = net.authorities[3]
    chain = replica(node, net.net)
    proposer = next(a for a in net.net.authorities if chain.in_turn(chain.height + 1, a.public)
                    and a.public not in chain.recent_signers(chain.head_hash))
    ts = max(chain.earliest_timestamp(chain.head, chain.height + 1, proposer.public), int(time.time() * 1000))
    header, included, _rej = chain.build_block([], ts, proposer, chain.params.min_difficulty)
    honest = mine(proposer, header, included)
    claim = (1 << 64) - 1 - chain.head.cum_hashes
    lying = seal_block(proposer, honest.header, honest.header.nonce, honest.txs, claim, 0)
    peer = PeerClient(node, net.spare_keys[1], net.chain_id)
    assert peer.handshake()[0] == 200
    code, answer = peer.post("/peer/block", lying.encode())
    assert code == 400 and answer["error"] == "seal_out_of_bounds", answer
    before = height(node)
    wait_until(lambda: height(node) >= before + 3, 20, message="blocks keep coming")
    assert status(node)["finalized_height"] > 0


def test_backfilled_and_unfinished_readings_mint_nothing(net: NodeNet) -> None:
    node = net.authorities[0]
    genesis_s = net.net.genesis.timestamp_ms // 1000
    meter = net.net.meters[0]
    owner = net.net.accounts[0].address_text
    before = get(node, f"/accounts/{owner}")["wh"]
    backfill = MeterState(meter, (genesis_s // 900 - 4) * 900).read(net.chain_id, 500)  # before enrollment
    code, answer = post_tx(node, backfill)
    assert code == 400 and answer["error"] == "interval_before_enrollment", answer
    now = int(time.time())
    unfinished = MeterState(meter, now // 900 * 900).read(net.chain_id, 500)  # ends in the future
    code, answer = post_tx(node, unfinished)
    assert code == 400 and answer["error"] == "interval_in_future", answer
    honest = MeterState(meter, (now // 900 - 2) * 900).read(net.chain_id, 500)
    include(node, honest)
    assert get(node, f"/accounts/{owner}")["wh"] == before + 500


def test_conflicting_votes_are_evidence_on_every_node(net: NodeNet) -> None:
    cheat = net.net.authorities[3]
    node = net.authorities[0]
    s = status(node)
    h = s["justified_height"]
    genesis = (0, bytes.fromhex(get(node, "/blocks/0")["hash"]))
    target = (h, bytes.fromhex(get(node, f"/blocks/{h}")["hash"]))
    first = sign_vote(cheat, net.chain_id, genesis, target)
    second = sign_vote(cheat, net.chain_id, genesis, (h, b"\x42" * 32))  # another block at that height
    for vote in (first, second):
        post_tx(node, vote)  # refused for the head (a stale source), but signed: kept and passed on
    wait_until(lambda: all(any(e["voter"] == cheat.public.hex() for e in get(n, "/evidence")["votes"])
                           for n in net.nodes), 20, message="the conflicting vote is evidence on every node")
    kept = next(e for e in get(net.observers[0], "/evidence")["votes"] if e["voter"] == cheat.public.hex())
    # the cheat's own honest vote at that height (or one it surrounds) beside a forged one
    assert kept["kind"] in ("double_vote", "surround_vote") and len(kept["votes"]) == 2
    assert {encode(v.to_wire()).hex() for v in (first, second)} & set(kept["votes"])


def test_a_restarted_and_a_fresh_node_end_on_the_finalized_chain(net: NodeNet) -> None:
    obs = net.observers[0]
    mark = finalized(obs)
    mark_hash = get(obs, f"/blocks/{mark}")["hash"]
    net.restart(obs)
    assert finalized(obs) >= mark and get(obs, f"/blocks/{mark}")["hash"] == mark_hash  # at once, from disk
    net.stop(obs)
    shutil.rmtree(obs.data_dir)
    net.start(obs)  # from scratch: syncs every block and every vote in them
    wait_final([obs], mark, timeout=60)
    assert get(obs, f"/blocks/{mark}")["hash"] == mark_hash
    sync_blocks(net.nodes, timeout=30)


def test_the_wallet_waits_for_finality_and_votes_on_authorities(net: NodeNet, tmp_path: Any) -> None:
    from test_wallet import WalletCli, import_key
    cli = WalletCli(tmp_path / "keystore", net.authorities[1].url)
    import_key(cli, tmp_path, "payer", net.net.accounts[3])
    import_key(cli, tmp_path, "auth2", net.net.authorities[2])
    sent = cli.ok("--final", "send", "1", net.net.accounts[0].address_text, name="payer")
    assert sent["status"] == "included" and sent["final"] is True
    assert get(net.authorities[1], f"/tx/{sent['txid']}")["final"] is True
    waited = cli.ok("--wait", "send", "1", net.net.accounts[0].address_text, name="payer")
    assert waited["status"] == "included" and "final" in waited
    listed = cli.ok("authority", "list")
    assert listed["authorities"] == [a.public.hex() for a in net.net.authorities]
    candidate = AccountKey.generate().public.hex()
    proposal = cli.ok("--wait", "authority", "add", candidate, name="auth2")
    assert proposal["status"] == "included"
    assert {"action": "add", "key": candidate, "votes": [net.net.authorities[2].public.hex()]} in \
        [{k: p[k] for k in ("action", "key", "votes")} for p in cli.ok("authority", "list")["proposals"]]
    cli.fails("authority", "add", "zz", code="bad_key", name="auth2")
    cli.fails("authority", "add", candidate, code="not_authority", name="payer")


def test_authorities_are_added_and_removed_by_vote(net: NodeNet) -> None:
    node = net.authorities[0]
    newcomer_key = AccountKey.generate()
    voters = net.net.authorities[:3]  # a majority of four
    nonces = {a.public: get(node, f"/accounts/{a.address_text}")["next_nonce"] for a in voters}
    # the operator starts the new node first (it syncs over the public routes and waits), then votes it in:
    # with five authorities and four of them running, every vote would be needed for finality
    newcomer = NodeProcess(net.root, "newcomer", net.genesis_path, newcomer_key, None)
    newcomer.peers = [n.url for n in net.nodes]
    net.nodes.append(newcomer)  # closed with the net
    newcomer.start()
    assert status(newcomer)["authority"] is False
    for a in voters:
        code, answer = post_tx(node, sign_tx(a, net.chain_id, nonces[a.public], net.net.genesis.min_fee,
                                             AuthorityVote(ADD, newcomer_key.public)))
        assert code == 200, answer
    wait_until(lambda: newcomer_key.public.hex() in get(node, "/authorities")["authorities"], 90,
               message="the newcomer is an authority once its vote's block is final")
    wait_until(lambda: any(get(node, f"/blocks/{h}")["proposer"] == newcomer_key.public.hex()
                           for h in range(max(1, height(node) - 8), height(node) + 1)), 60,
               message="the newcomer proposes in its turn")
    gone = net.net.authorities[3]
    for a in voters:
        nonce = get(node, f"/accounts/{a.address_text}")["next_nonce"]
        code, answer = post_tx(node, sign_tx(a, net.chain_id, nonce, net.net.genesis.min_fee,
                                             AuthorityVote(REMOVE, gone.public)))
        assert code == 200, answer
    wait_until(lambda: gone.public.hex() not in get(node, "/authorities")["authorities"], 90,
               message="the removed authority leaves the set at finality")
    chain = replica(node, net.net)
    header, included, _rej = chain.build_block([], max(int(time.time() * 1000), chain.head.timestamp_ms + 2000),
                                               gone, chain.params.min_difficulty)
    block = mine(gone, header, included)
    peer = PeerClient(node, net.spare_keys[2], net.chain_id)
    assert peer.handshake()[0] == 200
    code, answer = peer.post("/peer/block", block.encode())
    assert code == 400 and answer["error"] == "not_proposer", answer
    before = height(node)
    wait_until(lambda: height(node) >= before + 4 and finalized(node) > before, 40,
               message="the chain goes on and finalizes without it")
    assert status(net.authorities[3])["authority"] is False


def test_a_minority_partition_cannot_finalize_and_healing_loses_nothing(node_net: Any) -> None:
    net: NodeNet = node_net(authorities=4, observers=0, accounts=2, block_interval_ms=INTERVAL_MS, proxied=True)
    lone, majority = net.authorities[0], net.authorities[1:]
    wait_final(net.nodes, 2)
    net.partition([lone], majority)
    mark = max(finalized(n) for n in majority)
    # votes cast before the cut may still finalize a block or two on the lone side once its own blocks
    # carry them; a quorum's later votes never reach it, so by now its finality has stopped for good
    wait_final(majority, mark + 4)  # three of four: a quorum goes on finalizing
    lone_final = finalized(lone)
    lone_final_hash = get(lone, f"/blocks/{lone_final}")["hash"]
    wait_final(majority, max(finalized(n) for n in majority) + 4)
    assert finalized(lone) == lone_final, "one of four authorities cannot finalize alone"
    assert lone_final < min(finalized(n) for n in majority)
    payment = transfer(net.net, 0, net.net.accounts[1].address, 2 * COIN, nonce=0)
    at = include(majority[0], payment)["height"]
    wait_final(majority, at)
    net.heal()
    sync_blocks(net.nodes, timeout=40)
    wait_final([lone], at, timeout=40)
    for n in net.nodes:
        assert get(n, f"/blocks/{lone_final}")["hash"] == lone_final_hash
        assert get(n, f"/tx/{payment.txid.hex()}")["final"] is True


def test_undo_data_below_the_finalized_height_is_dropped_unless_archive(net: NodeNet) -> None:
    """Nothing below the finalized block can be reverted, so its undo data goes (every 64 finalized
    blocks): disk stops growing with undo data. The observer here prunes; an archive node would not."""
    from ledger.store import LevelKV
    from node.service import PRUNE_EVERY
    obs = net.observers[0]
    wait_final([obs], PRUNE_EVERY + 2, timeout=90)
    net.stop(obs)
    kv = LevelKV(obs.data_dir)
    try:
        chain = Chain(kv, net.net.genesis)
        floor = chain.undo_floor()
        assert PRUNE_EVERY <= floor <= chain.head.finalized
        assert all(kv.get(b"u" + chain.canonical_hash(h)) is None for h in range(1, floor))
        assert kv.get(b"u" + chain.head_hash) is not None  # what can still be reverted keeps its undo data
        assert chain.check(full=True) == []
    finally:
        kv.close()
    net.start(obs)
    sync_blocks(net.nodes, timeout=30)
