"""Three consensus rules of governance and finality, each at the level where its input can be set:
a proposal's lifetime (PROPOSAL_TTL) at the height the rule is given, the authority cap counting passed
additions on a real chain, and the last guard that never reverts a finalized block, on LevelDB."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from ledger import errors as E
from ledger.chain import Chain
from ledger.consensus import (MAX_AUTHORITIES, PROPOSAL_TTL, Governance, apply_authority_vote, governance,
                              majority)
from ledger.errors import Rejected
from ledger.keys import AccountKey
from ledger.state import StateOverlay
from ledger.store import LevelKV
from ledger.testing import Net, extend, make_net, make_tx, next_block, rejection
from ledger.tx import ADD, COIN, REMOVE, AuthorityVote

from test_finality import extend_by_anyone, vote_round


@pytest.fixture
def net() -> Net:
    return make_net(authorities=4, accounts=1, authority_coin=10 * COIN)


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[LevelKV]:
    store = LevelKV(tmp_path / "db")
    yield store
    store.close()


# PROPOSAL_TTL -------------------------------------------------------------------------------------
def test_a_proposal_expires_proposal_ttl_blocks_after_it_was_opened(net: Net, kv: LevelKV) -> None:
    """The rule sees the height of the block that includes a vote (Transition passes ctx.height), so it
    is called here with heights 50,000 blocks apart, on the head state of a chain in LevelDB. Among 4
    authorities a change passes with 3 votes: a third vote that still counted the first would pass it."""
    chain = Chain(kv, net.genesis)
    st = StateOverlay(chain.kv, chain.head.accumulator)
    genesis_set = chain.params.authorities
    new_key = AccountKey.generate().public
    a0, a1, a2 = net.authorities[:3]
    assert majority(len(genesis_set)) == 3

    def vote(key: AccountKey, height: int) -> Governance:
        apply_authority_vote(st, make_tx(chain, key, AuthorityVote(ADD, new_key)), AuthorityVote(ADD, new_key),
                             height, genesis_set)
        return governance(st)

    opened = 7
    assert vote(a0, opened).proposals == [[ADD, new_key, [a0.public], opened]]
    last_live = opened + PROPOSAL_TTL - 1
    gov = vote(a1, last_live)  # one block before expiry: joins the open proposal
    assert gov.proposals == [[ADD, new_key, [a0.public, a1.public], opened]] and gov.scheduled == []
    expired = opened + PROPOSAL_TTL
    gov = vote(a2, expired)  # at expiry: the old proposal is forgotten, this vote opens a new one alone
    assert gov.scheduled == [], "votes cast before the proposal expired were counted"
    assert gov.proposals == [[ADD, new_key, [a2.public], expired]]
    gov = vote(a0, expired + 1)  # a0's old vote no longer counts: it may vote again, and 2 of 3 do not pass
    assert gov.proposals == [[ADD, new_key, [a2.public, a0.public], expired]] and gov.scheduled == []
    gov = vote(a1, expired + PROPOSAL_TTL - 1)  # the third vote within the new proposal's lifetime passes it
    assert gov.proposals == [] and gov.scheduled == [[ADD, new_key, expired + PROPOSAL_TTL - 1]]


def test_blocks_give_the_rule_their_own_height(net: Net, kv: LevelKV, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rule through blocks: a proposal records the height of the block that opened it and expires
    by block heights. The rule reads PROPOSAL_TTL at call time, so a lifetime of 3 blocks stands in."""
    from ledger import consensus
    monkeypatch.setattr(consensus, "PROPOSAL_TTL", 3)
    chain = Chain(kv, net.genesis)
    new_key = AccountKey.generate().public
    a0, a1, a2 = net.authorities[:3]
    extend(chain, net, [make_tx(chain, a0, AuthorityVote(ADD, new_key))])  # block 1 opens it
    extend(chain, net)
    extend(chain, net, [make_tx(chain, a1, AuthorityVote(ADD, new_key))])  # block 3: 2 blocks on, still open
    assert chain.governance().proposals == [[ADD, new_key, [a0.public, a1.public], 1]]
    extend(chain, net, [make_tx(chain, a2, AuthorityVote(ADD, new_key))])  # block 4: expired, a2 starts anew
    assert chain.governance().proposals == [[ADD, new_key, [a2.public], 4]] and chain.governance().scheduled == []


def test_an_expired_proposal_no_longer_counts_against_its_voters_limit(net: Net, kv: LevelKV) -> None:
    """MAX_OPEN_PER_AUTHORITY counts live proposals only: an authority whose proposals expired may back
    new ones (otherwise four stale proposals would silence it for good)."""
    from ledger.consensus import MAX_OPEN_PER_AUTHORITY
    chain = Chain(kv, net.genesis)
    st = StateOverlay(chain.kv, chain.head.accumulator)
    voter = net.authorities[0]
    for i in range(MAX_OPEN_PER_AUTHORITY):
        body = AuthorityVote(ADD, bytes([i + 1]) * 32)
        apply_authority_vote(st, make_tx(chain, voter, body), body, 10 + i, chain.params.authorities)
    fresh = AuthorityVote(ADD, b"\x77" * 32)
    with pytest.raises(Rejected) as info:
        apply_authority_vote(st, make_tx(chain, voter, fresh), fresh, 10 + PROPOSAL_TTL - 1, chain.params.authorities)
    assert info.value.reason == E.INVALID_PROPOSAL
    apply_authority_vote(st, make_tx(chain, voter, fresh), fresh, 10 + PROPOSAL_TTL, chain.params.authorities)
    assert [p[1] for p in governance(st).proposals] == [bytes([i + 1]) * 32 for i in range(1, 4)] + [b"\x77" * 32]


# MAX_AUTHORITIES counts scheduled additions -------------------------------------------------------------
def test_the_authority_cap_counts_additions_that_passed_and_wait_for_finality(kv: LevelKV) -> None:
    """62 authorities and two passed additions make 64: a third addition is refused before any of them
    takes effect; with one passed addition (63) a new one is still accepted, and a passed removal takes
    no slot. Removals stay possible at the cap."""
    base = MAX_AUTHORITIES - 2
    net = make_net(authorities=base, accounts=1, authority_coin=10 * COIN, seed=12)
    chain = Chain(kv, net.genesis)
    first, second, third = (AccountKey.generate().public for _ in range(3))
    leaving = net.authorities[-1].public
    backers = net.authorities[:majority(base)]

    extend(chain, net, [make_tx(chain, a, AuthorityVote(ADD, first)) for a in backers])
    extend(chain, net, [make_tx(chain, a, AuthorityVote(REMOVE, leaving)) for a in backers])
    assert [s[:2] for s in chain.governance().scheduled] == [[ADD, first], [REMOVE, leaving]]
    assert len(chain.authorities) == base
    assert rejection(chain, net, make_tx(chain, net.authorities[0], AuthorityVote(ADD, third))) is None, \
        f"{base} authorities + 1 passed addition is one below the cap"

    extend(chain, net, [make_tx(chain, a, AuthorityVote(ADD, second)) for a in backers])
    assert [s[:2] for s in chain.governance().scheduled] == [[ADD, first], [REMOVE, leaving], [ADD, second]]
    assert len(chain.authorities) == base, "nothing is finalized: every change is only scheduled"
    rej = rejection(chain, net, make_tx(chain, net.authorities[0], AuthorityVote(ADD, third)))
    assert rej is not None and rej.reason == E.INVALID_PROPOSAL and "counting passed changes" in rej.detail
    assert rejection(chain, net, make_tx(chain, net.authorities[0],
                                         AuthorityVote(REMOVE, net.authorities[-2].public))) is None


# _revert_head never reverts a finalized block -----------------------------------------------------------
def all_entries(kv: LevelKV) -> list[tuple[bytes, bytes]]:
    return list(kv.iterate(b""))


def test_the_last_guard_refuses_to_revert_a_finalized_block_and_writes_nothing(net: Net, kv: LevelKV) -> None:
    """Block 3 finalizes block 1. Reverting 3 and 2 is allowed (above the finalized height), and loads
    heads whose own records say less (block 2 knows no finalized block): the floor must still remember
    block 1. Asking to revert block 1 then raises and leaves every key in LevelDB as it was."""
    chain = Chain(kv, net.genesis)
    extend(chain, net)
    vote_round(chain, net)
    vote_round(chain, net)
    assert chain.height == 3 and chain.head.finalized == 1 and chain.final_floor == 1
    block1 = chain.canonical_hash(1)
    assert chain._revert_head().height == 3
    assert chain._revert_head().height == 2
    assert chain.height == 1 and chain.head.finalized == 0, "the head's own record knows no finalized block"
    before = all_entries(kv)
    with pytest.raises(Rejected) as info:
        chain._revert_head()
    assert info.value.reason == E.FINALITY_CONFLICT
    assert all_entries(kv) == before
    assert chain.head_hash == block1 and chain.canonical_hash(1) == block1 and chain.height == 1


def test_a_branch_from_below_the_floor_is_refused_after_a_reorg_and_after_a_restart(net: Net, tmp_path: Path) -> None:
    """Block 3 finalizes block 1; then a heavier branch from block 2 whose blocks carry no votes becomes
    the head: allowed (it descends from block 1), but its own record knows no finalized block. A heavier
    branch from genesis must still be refused at import, before anything is reverted, and still after
    the node restarts. Before, import checked the head's record only: the move began, reverted down to
    block 1, stopped at the last guard with the head stranded there, and after a restart (the floor was
    kept in memory only) resumed the journaled move and reverted the finalized block."""
    path = tmp_path / "db"
    kv = LevelKV(path)
    chain = Chain(kv, net.genesis)
    low = net.chain()  # a branch from genesis without votes, built beside it
    extend(chain, net)
    block1 = chain.head_hash
    vote_round(chain, net)
    vote_round(chain, net)
    assert chain.head.finalized == 1
    side = net.chain()
    for height in (1, 2):
        side.import_block(chain.block_at(height))
    out_of_turn = next(a for a in net.authorities if not side.in_turn(3, a.public)
                       and a.public not in side.recent_signers(side.head_hash))
    branch = [next_block(side, net, proposer=out_of_turn)]
    side.import_block(branch[0])
    branch += [extend_by_anyone(side, net), extend_by_anyone(side, net)]
    for block in branch:
        chain.import_block(block)
    assert chain.head_hash == branch[-1].hash and chain.head.finalized == 0 and chain.final_floor == 1
    assert chain.is_final(1) and chain.finalized_height == 1  # what the API says: it cannot be reverted

    conflicting = [extend(low, net, gap_ms=1)] + [extend(low, net) for _ in range(7)]
    assert low.head.total_work > chain.head.total_work and conflicting[0].hash != block1
    head = chain.head_hash

    def refused_everywhere(chain: Chain) -> None:
        """Every block of the conflicting branch is refused (its first for the conflict, the rest then lack
        their parent), or stored on the side; none moves the head."""
        reasons = []
        for block in conflicting:
            try:
                chain.import_block(block)
                reasons.append("")
            except Rejected as exc:
                reasons.append(exc.reason)
            assert chain.head_hash == head and chain.canonical_hash(1) == block1, \
                f"importing block {block.height} of the conflicting branch moved the head"
        assert E.FINALITY_CONFLICT in reasons and set(reasons) <= {"", E.FINALITY_CONFLICT, E.UNKNOWN_PARENT}

    refused_everywhere(chain)
    kv.close()
    kv = LevelKV(path)
    try:
        again = Chain(kv, net.genesis)
        assert again.final_floor == 1 and again.head_hash == head and again.canonical_hash(1) == block1
        refused_everywhere(again)
        assert again.check() == []
    finally:
        kv.close()
