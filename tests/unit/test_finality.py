"""Finality votes (Casper FFG over every block), the fork choice around them, conflicting-vote evidence
and authority governance, on real chains in memory: every rule here is consensus."""
from __future__ import annotations

import dataclasses

import pytest

from ledger import errors as E
from ledger.block import Block
from ledger.chain import Chain
from ledger.consensus import quorum
from ledger.errors import Rejected
from ledger.keys import AccountKey
from ledger.testing import Net, extend, make_net, make_tx, next_block, rejection, try_extend
from ledger.tx import ADD, COIN, REMOVE, AuthorityVote, Transfer, Vote, sign_vote


@pytest.fixture
def net() -> Net:
    return make_net(authorities=4, accounts=2, authority_coin=10 * COIN)


def votes_for_head(chain: Chain, voters: list[AccountKey]) -> list[Vote]:
    """What honest authorities sign when the head is new: justified checkpoint -> head."""
    fin = chain.finality()
    source = (fin["justified_height"], fin["justified_hash"])
    return [sign_vote(v, chain.chain_id, source, (chain.height, chain.head_hash)) for v in voters]


def vote_round(chain: Chain, net: Net, voters: list[AccountKey] | None = None) -> Block:
    """A quorum (or `voters`) votes for the head; the next block includes the votes. (A vote arriving
    after its link is justified has a stale source and is left out: `test_vote_rules`.)"""
    if voters is None:
        voters = net.authorities[:quorum(len(chain.authorities))]
    return extend(chain, net, votes_for_head(chain, voters))


def test_quorum_is_more_than_two_thirds() -> None:
    assert [quorum(n) for n in (1, 3, 4, 6, 7, 10)] == [1, 3, 3, 5, 5, 7]


def test_two_rounds_of_votes_finalize_a_block(net: Net) -> None:
    chain = net.chain()
    extend(chain, net)
    b1 = chain.head_hash
    vote_round(chain, net)  # block 2 includes votes 0 -> 1: block 1 justified
    assert (chain.finality()["justified_height"], chain.finality()["finalized_height"]) == (1, 0)
    assert chain.head.justified == 1 and not chain.is_final(1)
    vote_round(chain, net)  # block 3 includes votes 1 -> 2: 2 justified, 1 (its parent) finalized
    fin = chain.finality()
    assert (fin["justified_height"], fin["finalized_height"], fin["finalized_hash"]) == (2, 1, b1)
    assert chain.head.finalized == 1 and chain.is_final(1) and not chain.is_final(2)


def test_a_minority_of_votes_justifies_nothing(net: Net) -> None:
    chain = net.chain()
    extend(chain, net)
    vote_round(chain, net, net.authorities[:2])  # 2 of 4: below the quorum of 3
    assert chain.finality()["justified_height"] == 0
    vote_round(chain, net, net.authorities[2:3])  # a third vote for the same link, one block later
    assert chain.finality()["justified_height"] == 0, "the votes are for block 1, the third for block 2"


@pytest.mark.parametrize("case", ["outsider", "bad_signature", "stale_source", "unknown_target", "future_target",
                                  "counted_twice"])
def test_vote_rules(net: Net, case: str) -> None:
    chain = net.chain()
    extend(chain, net)
    extend(chain, net)
    good = votes_for_head(chain, net.authorities[:1])[0]
    vote, reason = good, ""
    if case == "outsider":
        vote, reason = votes_for_head(chain, [AccountKey.generate()])[0], E.NOT_VOTER
    elif case == "bad_signature":
        vote, reason = dataclasses.replace(good, signature=bytes(64)), E.BAD_SIGNATURE
    elif case == "stale_source":
        vote = sign_vote(net.authorities[0], chain.chain_id, (1, chain.canonical_hash(1)), (2, chain.head_hash))
        reason = E.VOTE_SOURCE
    elif case == "unknown_target":
        vote, reason = sign_vote(net.authorities[0], chain.chain_id, (0, chain.canonical_hash(0)), (2, b"\x07" * 32)), \
            E.VOTE_TARGET
    elif case == "future_target":
        vote, reason = sign_vote(net.authorities[0], chain.chain_id, (0, chain.canonical_hash(0)), (3, b"\x07" * 32)), \
            E.VOTE_TARGET
    elif case == "counted_twice":
        extend(chain, net, [good])
        reason = E.ALREADY_VOTED
    rej = rejection(chain, net, vote)
    assert rej is not None and rej.reason == reason


def test_a_heavier_fork_cannot_revert_a_finalized_block(net: Net) -> None:
    """A lone authority's fork from before the finalized block is refused, however it is built."""
    chain = net.chain()
    fork = net.chain()
    extend(chain, net)
    payment = make_tx(chain, net.accounts[0], Transfer(net.accounts[1].address, 5 * COIN))
    extend(chain, net, [payment])
    vote_round(chain, net)
    vote_round(chain, net)
    assert chain.is_final(2) and chain.tx_location(payment.txid) is not None
    fork.import_block(chain.block_at(1))
    blocks = [extend(fork, net) for _ in range(8)]  # far heavier than the 4 blocks above block 1
    with pytest.raises(Rejected) as info:
        chain.import_block(blocks[0])
    assert info.value.reason == E.FINALITY_CONFLICT
    assert chain.height == 4 and chain.tx_location(payment.txid) is not None


def test_a_heavier_branch_wins_over_one_that_justified_more_but_nothing_final(net: Net) -> None:
    """Fork choice is weight above the finalized block. A node whose own branch justified a checkpoint the
    others never saw (a partition, or an authority feeding it a block with votes) follows the heavier
    branch when it learns of it; before, it compared justified heights, knew only a lower bound of the
    other branch's, and stayed behind for good."""
    chain = net.chain()
    extend(chain, net)
    other = net.chain()
    other.import_block(chain.block_at(1))
    long_ = [extend(other, net) for _ in range(4)]  # weight 2 + 8, nothing justified
    vote_round(chain, net)  # height 2, with votes justifying block 1: weight 4
    assert chain.head.justified == 1 and chain.head.finalized == 0
    for blk in long_:
        chain.import_block(blk)
    assert chain.head_hash == long_[-1].hash


def test_conflicting_votes_are_kept_as_evidence(net: Net) -> None:
    chain = net.chain()
    extend(chain, net)
    side = next_block(chain, net, proposer=net.authorities[3])  # another block at height 2 (out of turn)
    extend(chain, net)
    chain.import_block(side)
    cheat = net.authorities[0]
    genesis = (0, chain.canonical_hash(0))
    first = sign_vote(cheat, chain.chain_id, genesis, (2, chain.canonical_hash(2)))
    double = sign_vote(cheat, chain.chain_id, genesis, (2, side.hash))
    assert not chain.record_vote(first)
    assert chain.record_vote(double)
    honest = sign_vote(net.authorities[1], chain.chain_id, genesis, (2, chain.canonical_hash(2)))
    assert not chain.record_vote(honest)
    # a vote surrounding another: source below the other's source, target above its target
    inner = sign_vote(net.authorities[2], chain.chain_id, (1, chain.canonical_hash(1)), (2, chain.canonical_hash(2)))
    outer = sign_vote(net.authorities[2], chain.chain_id, genesis, (3, b"\x05" * 32))
    assert not chain.record_vote(inner)
    assert chain.record_vote(outer)
    evidence = {(e["voter"], e["kind"]) for e in chain.vote_evidence()}
    assert evidence == {(cheat.public, "double_vote"), (net.authorities[2].public, "surround_vote")}
    kept = next(e for e in chain.vote_evidence() if e["voter"] == cheat.public)
    assert len(kept["votes"]) == 2  # both signed votes, so anyone can check them


def extend_by_anyone(chain: Chain, net: Net) -> Block:
    """The next block by the in-turn authority, or (when it signed too recently, as after a change of the
    set) by any authority that may sign now, out of turn."""
    recent = chain.recent_signers(chain.head_hash)
    allowed = [a for a in net.authorities if a.public in chain.authorities and a.public not in recent]
    in_turn = [a for a in allowed if chain.in_turn(chain.height + 1, a.public)]
    block = next_block(chain, net, proposer=(in_turn or allowed)[0])
    chain.import_block(block)
    return block


def test_an_authority_added_by_majority_takes_effect_at_finality(net: Net) -> None:
    chain = net.chain()
    new = AccountKey.generate()
    auths = net.authorities
    extend(chain, net, [make_tx(chain, a, AuthorityVote(ADD, new.public)) for a in auths[:2]])
    assert chain.governance().proposals and chain.authorities == tuple(a.public for a in auths)
    extend(chain, net, [make_tx(chain, auths[2], AuthorityVote(ADD, new.public))])  # 3 of 4: passes
    passed_at = chain.height
    assert chain.governance().scheduled == [[ADD, new.public, passed_at]]
    assert new.public not in chain.authorities  # not before that block is final
    while chain.head.finalized < passed_at:
        vote_round(chain, net)
    assert chain.authorities[-1] == new.public and len(chain.authorities) == 5
    assert chain.governance().scheduled == []
    net.authorities.append(new)
    for _ in range(6):  # the new authority proposes in its turn
        extend_by_anyone(chain, net)
    assert new.public in {chain.block_at(h).header.proposer for h in range(chain.height - 4, chain.height + 1)}


def test_a_removed_authority_is_no_longer_accepted(net: Net) -> None:
    chain = net.chain()
    gone = net.authorities[3]
    extend(chain, net, [make_tx(chain, a, AuthorityVote(REMOVE, gone.public)) for a in net.authorities[:3]])
    while gone.public in chain.authorities:
        vote_round(chain, net, net.authorities[:3])
    assert len(chain.authorities) == 3
    rej = rejection(chain, net, make_tx(chain, gone, Transfer(net.accounts[0].address, 1)))
    assert rej is None  # still an account
    height = chain.height + 1
    block = next_block(chain, Net(net.genesis, [gone], net.accounts), proposer=gone) \
        if not chain.in_turn(height, gone.public) else None
    assert block is not None
    with pytest.raises(Rejected) as info:
        chain.import_block(block)
    assert info.value.reason == E.NOT_PROPOSER
    late = votes_for_head(chain, [gone])[0]
    assert rejection(chain, Net(net.genesis, net.authorities[:3], net.accounts), late).reason == E.NOT_VOTER


@pytest.mark.parametrize("body,reason", [
    (AuthorityVote("promote", bytes(32)), E.INVALID_PROPOSAL),
    (AuthorityVote(ADD, b"A" * 32), None),
    (AuthorityVote(REMOVE, bytes(32)), E.INVALID_PROPOSAL),
])
def test_authority_vote_rules(net: Net, body: AuthorityVote, reason: str | None) -> None:
    chain = net.chain()
    rej = rejection(chain, net, make_tx(chain, net.authorities[0], body))
    assert (rej.reason if rej else None) == reason
    outsider = make_tx(chain, net.accounts[0], AuthorityVote(ADD, b"A" * 32))
    assert rejection(chain, net, outsider).reason == E.NOT_AUTHORITY
    if reason is None:
        extend(chain, net, [make_tx(chain, net.authorities[0], body)])
        again = make_tx(chain, net.authorities[0], body)
        assert rejection(chain, net, again).reason == E.ALREADY_VOTED


def test_finality_survives_a_reopen(net: Net, tmp_path: object) -> None:
    from ledger.store import LevelKV
    kv = LevelKV(str(tmp_path))
    chain = Chain(kv, net.genesis)
    extend(chain, net)
    vote_round(chain, net)
    vote_round(chain, net)
    assert chain.head.finalized == 1
    kv.close()
    kv = LevelKV(str(tmp_path))
    again = Chain(kv, net.genesis)
    assert again.head.finalized == 1 and again.finality()["finalized_height"] == 1
    kv.close()


def test_a_rule_that_raises_refuses_the_block_and_the_producer_leaves_the_tx_out(
        net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    """No input may stop a node: if checking a block raises something other than Rejected (a bug reachable
    from outside data), the block is refused as `block_failed` and marked invalid, and a producer builds
    its block without the transaction whose rule raised (instead of looping on `production_failed`)."""
    from ledger.chain import ST_INVALID
    from ledger.transition import Transition
    chain = net.chain()
    other = net.chain()
    extend(chain, net)
    other.import_block(chain.block_at(1))
    poison = make_tx(chain, net.accounts[0], Transfer(net.accounts[1].address, 1))
    fine = make_tx(chain, net.accounts[1], Transfer(net.accounts[0].address, 1))
    block = next_block(chain, net, [poison, fine])  # built while the rule still works

    original = Transition._transfer

    def raising(self: Transition, tx: object, body: Transfer) -> None:
        if tx is poison or getattr(tx, "txid", None) == poison.txid:
            raise ZeroDivisionError("a bug that outside data reaches")
        original(self, tx, body)  # type: ignore[arg-type]
    monkeypatch.setattr(Transition, "_transfer", raising)
    with pytest.raises(Rejected) as info:
        other.import_block(block)
    assert info.value.reason == E.BLOCK_FAILED and "ZeroDivisionError" in info.value.detail
    assert other.meta(block.hash).status == ST_INVALID and other.height == 1
    header, included, rejected = chain.build_block([poison, fine], chain.earliest_timestamp(
        chain.head, 2, net.authorities[2].public), net.authorities[2], 1)
    assert included == [fine] and [(t.txid, r.reason) for t, r in rejected] == [(poison.txid, E.BLOCK_FAILED)]


def test_votes_a_block_late_still_finalize(net: Net) -> None:
    """Two of four authorities' votes always reach the next proposer one block late. Before, each late
    quorum skipped a height and nothing was ever finalized; with k-finality the source of a quorum link
    is finalized once every block it spans is justified."""
    chain = net.chain()
    extend(chain, net)
    prompt, late = net.authorities[:2], net.authorities[2:]
    waiting: list[Vote] = []
    for _ in range(12):
        fresh = votes_for_head(chain, prompt + late)
        _block, rejected = try_extend(chain, net, fresh[:2] + waiting)
        assert {r.reason for _t, r in rejected} <= {E.ALREADY_VOTED}  # a late vote a quorum made redundant
        waiting = fresh[2:]
    assert chain.head.finalized >= chain.height - 8 and chain.head.finalized > 0


def test_a_refused_vote_leaves_no_trace_in_the_block_its_proposer_builds(net: Net) -> None:
    """A vote that breaks a rule must not change the builder's state (before, the finality record was
    written before the checks, and the proposer sealed a state root no validator reached)."""
    chain = net.chain()
    extend(chain, net)
    stale = sign_vote(net.authorities[0], chain.chain_id, (0, chain.canonical_hash(0)), (1, b"\x01" * 32))
    block, rejected = try_extend(chain, net, [stale])
    assert [r.reason for _t, r in rejected] == [E.VOTE_TARGET] and block.txs == ()
    other = net.chain()
    other.import_block(chain.block_at(1))
    assert other.import_block(block).status == "head"


def test_one_authority_cannot_fill_the_proposal_list(net: Net) -> None:
    from ledger.consensus import MAX_OPEN_PER_AUTHORITY
    chain = net.chain()
    spammer = net.authorities[0]
    junk = [make_tx(chain, spammer, AuthorityVote(ADD, bytes([i]) * 32), nonce=i)
            for i in range(MAX_OPEN_PER_AUTHORITY)]
    extend(chain, net, junk)
    more = make_tx(chain, spammer, AuthorityVote(ADD, b"\x77" * 32))
    assert rejection(chain, net, more).reason == E.INVALID_PROPOSAL
    extend(chain, net, [make_tx(chain, a, AuthorityVote(REMOVE, spammer.public)) for a in net.authorities[1:]])
    assert chain.governance().scheduled[0][:2] == [REMOVE, spammer.public]


def test_what_an_authority_can_make_nodes_remember_of_its_votes_is_bounded(net: Net) -> None:
    """One kept vote per authority and target height; more for that height is evidence, not storage."""
    chain = net.chain()
    extend(chain, net)
    cheat = net.authorities[1]
    genesis = (0, chain.canonical_hash(0))
    for i in range(50):
        chain.record_vote(sign_vote(cheat, chain.chain_id, genesis, (1, bytes([i]) * 32)))
    assert len(list(chain.kv.iterate(b"W" + cheat.public))) == 1
    assert [e["kind"] for e in chain.vote_evidence()] == ["double_vote"]
    assert chain.prune_votes(2) == 1 and not list(chain.kv.iterate(b"W" + cheat.public))


def test_a_vote_far_above_the_head_is_refused_by_the_pool(net: Net) -> None:
    from node.finality import VotePool
    chain = net.chain()
    pool = VotePool(chain)
    absurd = sign_vote(net.authorities[0], chain.chain_id, ((1 << 64) - 2, b"\x00" * 32), ((1 << 64) - 1, b"\x00" * 32))
    with pytest.raises(Rejected) as info:
        pool.check(absurd)
    assert info.value.reason == E.VOTE_TARGET


def test_a_third_block_of_an_equivocating_proposer_at_one_height_is_not_stored(net: Net) -> None:
    chain = net.chain()
    extend(chain, net)
    proposer = net.authorities[3]
    blocks = [next_block(chain, net, proposer=proposer, gap_ms=i) for i in range(3)]
    extend(chain, net)  # the in-turn block at height 2 is the head
    assert chain.import_block(blocks[0]).status == "side"
    assert chain.import_block(blocks[1]).status == "side"  # the second is kept: it is the evidence
    with pytest.raises(Rejected) as info:
        chain.import_block(blocks[2])
    assert info.value.reason == E.DUPLICATE and chain.meta(blocks[2].hash) is None


def test_evidence_is_read_in_pages_blocks_first_then_votes(net: Net) -> None:
    """An authority that misbehaves at every height adds evidence at every height: /evidence pages it
    (queries.evidence), and the pages together hold every entry once, in order, whatever the page size."""
    from ledger import queries
    chain = net.chain()
    for _ in range(3):  # a double-signed block at each of three heights, then the chain goes on
        first = next_block(chain, net)
        chain.import_block(next_block(chain, net, gap_ms=1))
        chain.import_block(first)
        extend(chain, net)
    genesis = (0, chain.canonical_hash(0))
    for voter in net.authorities[:2]:  # and two double votes
        chain.record_vote(sign_vote(voter, chain.chain_id, genesis, (1, chain.canonical_hash(1))))
        chain.record_vote(sign_vote(voter, chain.chain_id, genesis, (1, b"\x09" * 32)))
    everything = chain.evidence() + chain.vote_evidence()
    assert [len(chain.evidence()), len(chain.vote_evidence())] == [3, 2]
    for limit in (1, 2, 3, 4, 5, 6):
        pages = []
        cursor = None
        while True:
            page = queries.evidence(chain.kv, cursor, limit)
            assert len(page.items) <= limit
            pages.append(page.items)
            if page.next is None:
                break
            cursor = page.next
        assert [e for p in pages for e in p] == everything, limit
        assert len(pages) == -(-len(everything) // limit), limit  # no empty page at a list's end
    with pytest.raises(ValueError):
        queries.evidence(chain.kv, b"x", 3)
