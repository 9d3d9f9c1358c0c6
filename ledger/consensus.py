"""Finality votes (Casper FFG over every block) and authority governance: the rules and their state.

Finality (ADR 004). Every block is a checkpoint. An authority votes `source -> target`, where source is the
justified checkpoint of the chain it follows and target is its new head. Votes travel like transactions
and count once a block includes them; so finality is part of each branch's state, the same on every node
that applies the same blocks, and it survives restarts and syncs from scratch. When
`quorum(N) = floor(2N/3) + 1` of the N current authorities have voted the same link, target becomes
justified; when target is source's direct child, source becomes finalized. A vote counts only if its
source is the branch's justified checkpoint at that point, its target a block of the branch above it, its
voter a current authority, and only once per target. Two conflicting votes by one authority (two
targets at one height, or one vote surrounding another) can only both be signed by a misbehaving
authority; nodes keep them as evidence (node/finality.py). Safety: two conflicting blocks can be
finalized only if at least a third of the authorities signed such conflicting votes. Liveness: finality
advances while at least a quorum of authorities is up and connected.

Governance. A current authority votes to add or remove a key (an `AuthorityVote` transaction); once more
than half of the current set voted the same change, it is scheduled at that block's height, and it takes
effect at the end of the first block whose finalized height has reached it. Every node applying the
chain switches at the same block, and no unfinalized branch can change who signs.

State keys (part of the state root): `sJ` the finality record, `sA` the authority set (absent: the
genesis set), `sN` pending authority proposals and scheduled changes.
"""
from __future__ import annotations

from typing import Any, Callable

from . import errors as E
from .errors import Rejected
from .state import Record, StateOverlay, record
from .tx import ADD, REMOVE, AuthorityVote, SignedTx, Vote

K_FINALITY, K_AUTHORITIES, K_GOVERNANCE = b"sJ", b"sA", b"sN"
MAX_PENDING_TARGETS = 16  # link tallies kept per branch; older targets are dropped first
MAX_AUTHORITIES = 64
MAX_PROPOSALS = 32


def quorum(n: int) -> int:
    """Votes that justify a link among n authorities: more than two thirds."""
    return 2 * n // 3 + 1


def majority(n: int) -> int:
    """Votes that pass an authority change among n authorities: more than half."""
    return n // 2 + 1


@record
class Finality(Record):
    justified_height: int
    justified_hash: bytes
    finalized_height: int
    finalized_hash: bytes
    pending: list  # [[target_height, target_hash, [voter, ...]], ...] links from the justified checkpoint


@record
class Governance(Record):
    proposals: list  # [[action, key, [voter, ...]], ...] not yet passed
    scheduled: list  # [[action, key, passed_height], ...] passed, waiting for finality


def finality(st: StateOverlay, genesis_hash: bytes) -> Finality:
    """The branch's finality record (genesis is justified and finalized until a vote says more)."""
    rec = st.record(K_FINALITY, Finality)
    if rec is None:
        rec = Finality(0, genesis_hash, 0, genesis_hash, [])
        st.put(K_FINALITY, rec)
    return rec


def authorities(st: StateOverlay, genesis_set: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """The current authority set, in proposer order (the in-turn proposer of height h is set[h % N])."""
    raw = st.value(K_AUTHORITIES)
    return tuple(raw) if raw is not None else genesis_set


def apply_vote(st: StateOverlay, vote: Vote, height: int, ancestor: Callable[[int], bytes | None],
               genesis_set: tuple[bytes, ...], verified: bool) -> None:
    """Count one finality vote in a block at `height`; raises Rejected and changes nothing if it breaks a rule."""
    f = vote.fields
    auths = authorities(st, genesis_set)
    if f.voter not in auths:
        raise Rejected(E.NOT_VOTER, "the voter is not a current authority")
    if not verified and not vote.verify():
        raise Rejected(E.BAD_SIGNATURE, "vote signature does not verify")
    fin = finality(st, ancestor(0) or b"")
    if (f.source_height, f.source_hash) != (fin.justified_height, fin.justified_hash):
        raise Rejected(E.VOTE_SOURCE, f"source must be the justified checkpoint at {fin.justified_height}")
    if not f.source_height < f.target_height < height or ancestor(f.target_height) != f.target_hash:
        raise Rejected(E.VOTE_TARGET, "target must be a block of this chain above the source")
    entry = next((e for e in fin.pending if e[0] == f.target_height), None)
    if entry is not None and f.voter in entry[2]:
        raise Rejected(E.ALREADY_VOTED, "this authority's vote for that target is already counted")
    if entry is None:
        if len(fin.pending) >= MAX_PENDING_TARGETS:
            fin.pending.pop(0)  # sorted by target height: the oldest link can no longer help
        entry = [f.target_height, f.target_hash, []]
        fin.pending.append(entry)
        fin.pending.sort(key=lambda e: e[0])
    entry[2].append(f.voter)
    if sum(v in auths for v in entry[2]) >= quorum(len(auths)):
        if f.target_height == fin.justified_height + 1:
            fin.finalized_height, fin.finalized_hash = fin.justified_height, fin.justified_hash
        fin.justified_height, fin.justified_hash = f.target_height, f.target_hash
        fin.pending = []


def apply_authority_vote(st: StateOverlay, tx: SignedTx, body: AuthorityVote, height: int,
                         genesis_set: tuple[bytes, ...]) -> None:
    """Record an authority's vote on adding or removing a key; schedule the change when a majority agrees."""
    auths = authorities(st, genesis_set)
    if tx.sender not in auths:
        raise Rejected(E.NOT_AUTHORITY, "only a current authority votes on the authority set")
    if body.action not in (ADD, REMOVE):
        raise Rejected(E.INVALID_PROPOSAL, "action must be add or remove")
    if body.action == ADD and body.key in auths:
        raise Rejected(E.INVALID_PROPOSAL, "that key is already an authority")
    if body.action == REMOVE and body.key not in auths:
        raise Rejected(E.INVALID_PROPOSAL, "that key is not an authority")
    if body.action == ADD and len(auths) >= MAX_AUTHORITIES:
        raise Rejected(E.INVALID_PROPOSAL, f"at most {MAX_AUTHORITIES} authorities")
    if body.action == REMOVE and len(auths) <= 1:
        raise Rejected(E.INVALID_PROPOSAL, "the last authority cannot be removed")
    gov = governance(st)
    if any(s[0] == body.action and s[1] == body.key for s in gov.scheduled):
        raise Rejected(E.INVALID_PROPOSAL, "that change has passed and waits for finality")
    entry = next((p for p in gov.proposals if p[0] == body.action and p[1] == body.key), None)
    if entry is not None and tx.sender in entry[2]:
        raise Rejected(E.ALREADY_VOTED, "this authority already voted for that change")
    if entry is None:
        if len(gov.proposals) >= MAX_PROPOSALS:
            raise Rejected(E.INVALID_PROPOSAL, f"at most {MAX_PROPOSALS} open proposals")
        entry = [body.action, body.key, []]
        gov.proposals.append(entry)
    entry[2].append(tx.sender)
    if sum(v in auths for v in entry[2]) >= majority(len(auths)):
        gov.proposals.remove(entry)
        gov.scheduled.append([body.action, body.key, height])


def governance(st: StateOverlay) -> Governance:
    rec = st.record(K_GOVERNANCE, Governance)
    if rec is None:
        rec = Governance([], [])
        st.put(K_GOVERNANCE, rec)
    return rec


def end_block(st: StateOverlay, genesis_hash: bytes, genesis_set: tuple[bytes, ...]) -> None:
    """Apply scheduled authority changes whose block is now finalized (the same block on every node)."""
    gov = st.record(K_GOVERNANCE, Governance)
    if gov is None or not gov.scheduled:
        return
    finalized = finality(st, genesis_hash).finalized_height
    due = [s for s in gov.scheduled if s[2] <= finalized]
    if not due:
        return
    auths = list(authorities(st, genesis_set))
    for action, key, _height in due:
        if action == ADD and key not in auths:
            auths.append(key)
        elif action == REMOVE and key in auths and len(auths) > 1:
            auths.remove(key)
    gov.scheduled = [s for s in gov.scheduled if s[2] > finalized]
    # proposals by keys no longer in the set stop counting (they are filtered when counted)
    st.put(K_AUTHORITIES, auths)


def summary(fin: Finality | None, genesis_hash: bytes) -> dict[str, Any]:
    """Plain numbers for metadata and views."""
    if fin is None:
        return {"justified_height": 0, "justified_hash": genesis_hash, "finalized_height": 0,
                "finalized_hash": genesis_hash}
    return {"justified_height": fin.justified_height, "justified_hash": fin.justified_hash,
            "finalized_height": fin.finalized_height, "finalized_hash": fin.finalized_hash}
