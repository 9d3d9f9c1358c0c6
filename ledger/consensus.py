"""Finality votes (Casper FFG over every block) and authority governance: the rules and their state.

Finality (ADR 004). Every block is a checkpoint. An authority votes `source -> target`, where source is the
justified checkpoint of the chain it follows and target is its new head. Votes travel like transactions
and count once a block includes them; so finality is part of each branch's state, the same on every node
that applies the same blocks, and it survives restarts and syncs from scratch. When
`quorum(N) = floor(2N/3) + 1` of the N current authorities have voted the same link, target becomes
justified. A checkpoint is finalized when a quorum voted a link from it to a later checkpoint and every
block between the two is justified too (Gasper's k-finality, here with k <= MAX_FINALITY_SPAN; k = 1 is
FFG's "target is the source's child"): votes that arrive a block late still finalize, one block later.
A vote counts only if its source is a justified checkpoint of the branch (at or above the finalized
one), its target a block of the branch above it, its voter a current authority, and only once per
target height. Two conflicting votes by one authority (two
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
MAX_LINKS = 32  # link tallies, justified checkpoints and quorum links kept per branch (oldest dropped first)
MAX_FINALITY_SPAN = 8  # a quorum link finalizes its source if it spans at most this many blocks, all justified
MAX_AUTHORITIES = 64
MAX_OPEN_PER_AUTHORITY = 4  # open proposals one authority has voted for: no one can fill the list alone
PROPOSAL_TTL = 50_000  # blocks an open proposal lives (about a day at 2 s blocks)


def quorum(n: int) -> int:
    """Votes that justify a link among n authorities: more than two thirds."""
    return 2 * n // 3 + 1


def majority(n: int) -> int:
    """Votes that pass an authority change among n authorities: more than half."""
    return n // 2 + 1


@record
class Finality(Record):
    justified_height: int  # the highest justified checkpoint (fork choice, honest votes' source)
    justified_hash: bytes
    finalized_height: int
    finalized_hash: bytes
    checkpoints: list  # [[height, hash], ...] justified checkpoints above the finalized one, ascending
    links: list  # [[source_height, target_height, target_hash, [voter, ...]], ...] tallies below quorum
    quorum_links: list  # [[source_height, target_height], ...] links that reached a quorum (for finality)


@record
class Governance(Record):
    proposals: list  # [[action, key, [voter, ...], opened_height], ...] not yet passed
    scheduled: list  # [[action, key, passed_height], ...] passed, waiting for finality


def finality(st: StateOverlay, genesis_hash: bytes) -> Finality:
    """The branch's finality record (genesis is justified and finalized until a vote says more). It is
    not written here: a rule writes it back (`st.put`) only once all its checks passed."""
    rec = st.record(K_FINALITY, Finality)
    return rec if rec is not None else Finality(0, genesis_hash, 0, genesis_hash, [], [], [])


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
    justified = {fin.finalized_height: fin.finalized_hash, **{h: bh for h, bh in fin.checkpoints}}
    if justified.get(f.source_height) != f.source_hash:
        raise Rejected(E.VOTE_SOURCE, f"source must be a justified checkpoint at or above the finalized one "
                                      f"({fin.finalized_height}); the latest is {fin.justified_height}")
    if not f.source_height < f.target_height < height or ancestor(f.target_height) != f.target_hash:
        raise Rejected(E.VOTE_TARGET, "target must be a block of this chain above the source")
    if any(link[1] == f.target_height and f.voter in link[3] for link in fin.links):
        raise Rejected(E.ALREADY_VOTED, "this authority's vote for that target height is already counted")
    entry = next((e for e in fin.links if e[0] == f.source_height and e[1] == f.target_height), None)
    if entry is None:
        if f.target_height in justified:
            raise Rejected(E.ALREADY_VOTED, "that target is already justified")
        entry = [f.source_height, f.target_height, f.target_hash, []]
        fin.links.append(entry)
        fin.links.sort(key=lambda e: (e[1], e[0]))
        del fin.links[:-MAX_LINKS]  # the oldest targets can no longer help
    entry[3].append(f.voter)
    if sum(v in auths for v in entry[3]) >= quorum(len(auths)):
        _justify(fin, entry)
    st.put(K_FINALITY, fin)


def _justify(fin: Finality, link: list[Any]) -> None:
    """A link reached a quorum: its target is justified; finalize the highest source whose quorum link
    spans only justified blocks; forget what lies below the finalized checkpoint."""
    source, target, target_hash, _voters = link
    fin.links.remove(link)
    fin.checkpoints = sorted(fin.checkpoints + [[target, target_hash]])[-MAX_LINKS:]
    if target > fin.justified_height:
        fin.justified_height, fin.justified_hash = target, target_hash
    fin.quorum_links = (fin.quorum_links + [[source, target]])[-MAX_LINKS:]
    justified = {fin.finalized_height: fin.finalized_hash, **{h: bh for h, bh in fin.checkpoints}}
    final = [s for s, t in fin.quorum_links
             if s > fin.finalized_height and t - s <= MAX_FINALITY_SPAN and all(h in justified for h in range(s, t + 1))]
    if not final:
        return
    fin.finalized_height = max(final)
    fin.finalized_hash = justified[fin.finalized_height]
    keep = fin.finalized_height
    fin.checkpoints = [c for c in fin.checkpoints if c[0] > keep]
    fin.links = [e for e in fin.links if e[0] >= keep]
    fin.quorum_links = [q for q in fin.quorum_links if q[0] >= keep]


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
    if body.action == ADD and len(auths) + sum(s[0] == ADD for s in gov.scheduled) >= MAX_AUTHORITIES:
        raise Rejected(E.INVALID_PROPOSAL, f"at most {MAX_AUTHORITIES} authorities, counting passed changes")
    live = [p for p in gov.proposals if height - p[3] < PROPOSAL_TTL]  # expired proposals are forgotten
    entry = next((p for p in live if p[0] == body.action and p[1] == body.key), None)
    if entry is not None and tx.sender in entry[2]:
        raise Rejected(E.ALREADY_VOTED, "this authority already voted for that change")
    if sum(tx.sender in p[2] for p in live) >= MAX_OPEN_PER_AUTHORITY:
        raise Rejected(E.INVALID_PROPOSAL, f"this authority already backs {MAX_OPEN_PER_AUTHORITY} open proposals")
    if entry is None:
        entry = [body.action, body.key, [], height]
        live.append(entry)
    entry[2].append(tx.sender)
    if sum(v in auths for v in entry[2]) >= majority(len(auths)):
        live.remove(entry)
        gov.scheduled.append([body.action, body.key, height])
    gov.proposals = live
    st.put(K_GOVERNANCE, gov)


def governance(st: StateOverlay) -> Governance:
    """The governance record (not written here; a rule puts it back once its checks passed)."""
    rec = st.record(K_GOVERNANCE, Governance)
    return rec if rec is not None else Governance([], [])


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
    st.put(K_GOVERNANCE, gov)


def summary(fin: Finality | None, genesis_hash: bytes) -> dict[str, Any]:
    """Plain numbers for metadata and views."""
    if fin is None:
        return {"justified_height": 0, "justified_hash": genesis_hash, "finalized_height": 0,
                "finalized_hash": genesis_hash}
    return {"justified_height": fin.justified_height, "justified_hash": fin.justified_hash,
            "finalized_height": fin.finalized_height, "finalized_hash": fin.finalized_hash}
