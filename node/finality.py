"""An authority's finality votes, and the pool of votes waiting for a block (ADR 004).

Voting follows the honest-validator rule of Casper FFG. When a new block becomes the head, an authority
of the head's set signs `source = the head state's justified checkpoint -> target = the head`, but only if
the target is above its last vote's target and the source not below its last vote's source: so it never
signs two votes for one height, nor one vote surrounding another, whatever reorgs it goes through. The
last vote is stored (key `Wself`, fsynced) before the vote leaves the node, so a restart cannot make it
sign a conflicting one either.

The pool holds gossiped votes until a block includes them; the producer puts them first in its block.
Every vote with a good signature by an authority is also remembered by the chain, which keeps evidence
when one contradicts another (`Chain.record_vote`), and is passed on, so every node sees the evidence.
"""
from __future__ import annotations

from collections import OrderedDict

from ledger import errors as E
from ledger.chain import Chain
from ledger.encoding import decode, encode
from ledger.errors import Rejected
from ledger.keys import AccountKey
from ledger.tx import Vote, sign_vote

K_LAST_VOTE = b"Wself"
MAX_POOL_VOTES = 1024
MAX_EARLY_VOTES = 256  # votes for a block this node has not seen yet, tried again on each new head
TARGET_AHEAD = 64  # how far above the head a vote's target may be (a peer's head can run ahead of ours)


class Voter:
    """Signs this authority's votes, never two that conflict (the last one is persisted first)."""

    def __init__(self, chain: Chain, key: AccountKey) -> None:
        self.chain = chain
        self.key = key
        raw = chain.kv.get(K_LAST_VOTE)
        self.last_source, self.last_target = decode(raw) if raw is not None else (-1, 0)

    def vote(self) -> Vote | None:
        """A vote for the current head, or None if this key may not vote now (not an authority of the
        head's set, already voted at this height or above, or the head's source is below its last one)."""
        chain = self.chain
        if self.key.public not in chain.authorities:
            return None
        fin = chain.finality()
        source = (fin["justified_height"], fin["justified_hash"])
        target = (chain.height, chain.head_hash)
        if target[0] <= max(self.last_target, source[0]) or source[0] < self.last_source:
            return None
        chain.kv.write({K_LAST_VOTE: encode([source[0], target[0]])}, sync=True)
        self.last_source, self.last_target = source[0], target[0]
        return sign_vote(self.key, chain.chain_id, source, target)


class VotePool:
    """Votes waiting for inclusion, in arrival order, bounded."""

    def __init__(self, chain: Chain, max_size: int = MAX_POOL_VOTES) -> None:
        self.chain = chain
        self.max_size = max_size
        self.votes: OrderedDict[bytes, Vote] = OrderedDict()
        self.early: OrderedDict[bytes, Vote] = OrderedDict()  # target block not here yet

    def __len__(self) -> int:
        return len(self.votes)

    def __contains__(self, txid: object) -> bool:
        return txid in self.votes

    def get(self, txid: bytes) -> Vote | None:
        return self.votes.get(txid)

    def check(self, vote: Vote) -> bool:
        """Signature and voter (an authority of the head's set): what makes a vote worth keeping as
        evidence and passing on. Returns whether it is new evidence of a conflicting vote."""
        f = vote.fields
        if vote.fields.voter not in self.chain.authorities:
            raise Rejected(E.NOT_VOTER, "the voter is not a current authority")
        if not f.source_height < f.target_height <= self.chain.height + TARGET_AHEAD:
            raise Rejected(E.VOTE_TARGET, f"target height must be above the source and at most "
                                          f"{TARGET_AHEAD} above this node's head")
        if not vote.verify():
            raise Rejected(E.BAD_SIGNATURE, "vote signature does not verify")
        return self.chain.record_vote(vote)

    def add(self, vote: Vote, now_ms: int) -> None:
        """Admit a vote that the next block on the head would count; raises Rejected otherwise."""
        if vote.txid in self.votes:
            raise Rejected(E.DUPLICATE, "vote already pending")
        try:
            self.chain.check_tx(vote, now_ms)
        except Rejected as exc:
            if exc.reason == E.VOTE_TARGET and vote.fields.target_height > self.chain.height:
                self.early[vote.txid] = vote  # its block is on the way: count it once it is here
                while len(self.early) > MAX_EARLY_VOTES:
                    self.early.popitem(last=False)
            raise
        self.votes[vote.txid] = vote
        while len(self.votes) > self.max_size:
            self.votes.popitem(last=False)

    def select(self) -> list[Vote]:
        return list(self.votes.values())

    def drop(self, txid: bytes) -> None:
        self.votes.pop(txid, None)

    def on_new_head(self) -> None:
        """Forget votes a block included or that can no longer count (their source is no longer the
        justified checkpoint, or their target is at or below it)."""
        fin = self.chain.finality()
        for txid, vote in list(self.votes.items()):
            f = vote.fields
            if f.target_height <= fin["justified_height"] or f.source_height < fin["finalized_height"] \
                    or self.chain.tx_location(txid) is not None:
                del self.votes[txid]

    def retry_early(self, now_ms: int) -> list[Vote]:
        """Votes that arrived before their target block and can count now; returns those admitted."""
        admitted = []
        for txid, vote in list(self.early.items()):
            if vote.fields.target_height > self.chain.height:
                continue
            del self.early[txid]
            try:
                self.add(vote, now_ms)
                admitted.append(vote)
            except Rejected:
                pass
        return admitted
