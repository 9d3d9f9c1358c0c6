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

    def __len__(self) -> int:
        return len(self.votes)

    def __contains__(self, txid: object) -> bool:
        return txid in self.votes

    def get(self, txid: bytes) -> Vote | None:
        return self.votes.get(txid)

    def check(self, vote: Vote) -> bool:
        """Signature and voter (an authority of the head's set): what makes a vote worth keeping as
        evidence and passing on. Returns whether it is new evidence of a conflicting vote."""
        if vote.fields.voter not in self.chain.authorities:
            raise Rejected(E.NOT_VOTER, "the voter is not a current authority")
        if not vote.verify():
            raise Rejected(E.BAD_SIGNATURE, "vote signature does not verify")
        return self.chain.record_vote(vote)

    def add(self, vote: Vote, now_ms: int) -> None:
        """Admit a vote that the next block on the head would count; raises Rejected otherwise."""
        if vote.txid in self.votes:
            raise Rejected(E.DUPLICATE, "vote already pending")
        self.chain.check_tx(vote, now_ms)
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
        justified = self.chain.finality()["justified_height"]
        for txid, vote in list(self.votes.items()):
            f = vote.fields
            if f.target_height <= justified or f.source_height != justified \
                    or self.chain.tx_location(txid) is not None:
                del self.votes[txid]
