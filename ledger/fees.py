"""The fee schedule: whoever makes the state bigger pays for it.

A signed transaction pays at least `min_fee` (genesis) for each state entry it may add that lives on after
it: `required_fee(min_fee, body) = min_fee * (1 + extra_entries(body))`. The counts come from the body's
kind alone, so a wallet knows the fee before it signs and a node checks it before running the rule:

| kind | entries it adds | fee |
|---|---|---|
| PostOffer | the offer and its expiry on the schedule | 3 x min_fee |
| AcceptOffer | the trade and its settlement on the schedule | 3 x min_fee |
| PlaceOrder | the order and its place in the book | 3 x min_fee |
| every other kind | at most one: a lot split off, or a new account | 1 x min_fee |

A transfer moves whole lots and splits at most the last one, and the split keeps its lot id, so sending
the same lot to the same holder again adds up instead of adding an entry.

Meter readings pay nothing: each mints one lot, and a meter may report one interval at a time
(`interval_s` apart), so a meter's entries grow with time, not with anyone's spending.

On top of fees, an account may keep at most MAX_OPEN_OFFERS offers and MAX_OPEN_ORDERS orders open at
once (`too_many_open`): spam then needs many funded accounts, each paying its own fees. Per-entry state
(schema 2) means no entry makes another transaction slower: what state growth costs a node is disk.
"""
from __future__ import annotations

from .tx import AcceptOffer, PlaceOrder, PostOffer

MAX_OPEN_OFFERS = 256
MAX_OPEN_ORDERS = 256
_EXTRA_ENTRIES: dict[type, int] = {PostOffer: 2, AcceptOffer: 2, PlaceOrder: 2}


def extra_entries(body: object) -> int:
    """State entries a transaction of this kind may add beyond the one its base fee pays for."""
    return _EXTRA_ENTRIES.get(type(body), 0)


def required_fee(min_fee: int, body: object) -> int:
    """The smallest fee a signed transaction with this body may pay."""
    return min_fee * (1 + extra_entries(body))
