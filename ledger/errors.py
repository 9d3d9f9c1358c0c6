"""Rejection reasons: the one vocabulary that ledger, node API and wallet share.

Every reason is a short machine-readable code. Nodes answer HTTP errors with these codes, the wallet
prints them, tests assert on them. Adding a reason means adding it here, nowhere else.
"""
from __future__ import annotations

# Encoding and envelope
MALFORMED = "malformed"  # not canonical msgpack, wrong shape or types, trailing bytes
TOO_LARGE = "too_large"
BAD_SIGNATURE = "bad_signature"
DUPLICATE = "duplicate"

# Accounts and fees
BAD_NONCE = "bad_nonce"
FEE_TOO_LOW = "fee_too_low"
INSUFFICIENT_FUNDS = "insufficient_funds"
INSUFFICIENT_WH = "insufficient_wh"
INVALID_AMOUNT = "invalid_amount"
NOT_AUTHORITY = "not_authority"

# Meters and readings
METER_EXISTS = "meter_exists"
UNKNOWN_METER = "unknown_meter"
METER_REVOKED = "meter_revoked"
INVALID_METER = "invalid_meter"
COUNTER_NOT_INCREASING = "counter_not_increasing"
INTERVAL_MISALIGNED = "interval_misaligned"
INTERVAL_OVERLAP = "interval_overlap"
INTERVAL_IN_FUTURE = "interval_in_future"
ENERGY_EXCEEDS_RATING = "energy_exceeds_rating"
REGISTER_MISMATCH = "register_mismatch"
KIND_MISMATCH = "kind_mismatch"
INTERVAL_BEFORE_ENROLLMENT = "interval_before_enrollment"  # a stolen key cannot mint the past

# OCMF meter records (ledger/ocmf.py); unknown/revoked meter, bad signature, register mismatch, energy
# above rating, interval overlap (time not after the last accepted) and interval_in_future are shared above.
ALGORITHM_MISMATCH = "algorithm_mismatch"  # SA names another curve than the enrolled key's
PAGING_NOT_INCREASING = "paging_not_increasing"  # PG not above the last accepted of its series
PAGING_GAP = "paging_gap"  # PG skips numbers: records in between are missing
REGISTER_BACKWARDS = "register_backwards"
METER_STATUS_NOT_GOOD = "meter_status_not_good"  # ST other than G (M manipulated, X exchanged, ...)
METER_ERROR_FLAGS = "meter_error_flags"  # EF names quantities the meter says are unusable
CLOCK_NOT_SYNCHRONISED = "clock_not_synchronised"  # TM state other than S
BEFORE_ENROLLMENT = "before_enrollment"

# Redemption
EXCEEDS_CONSUMPTION = "exceeds_consumption"

# Prepaid trades
INVALID_WINDOW = "invalid_window"
INVALID_PRICE = "invalid_price"
UNKNOWN_OFFER = "unknown_offer"
OFFER_CLOSED = "offer_closed"
OFFER_INSUFFICIENT = "offer_insufficient"
SELF_TRADE = "self_trade"
UNKNOWN_TRADE = "unknown_trade"
NOT_SELLER = "not_seller"
TRADE_CLOSED = "trade_closed"
OUTSIDE_WINDOW = "outside_window"
OVER_DELIVERY = "over_delivery"

# Order book
UNKNOWN_ORDER = "unknown_order"
NOT_OWNER = "not_owner"
ORDER_CLOSED = "order_closed"
TOO_MANY_OPEN = "too_many_open"  # an account's cap on open offers or orders (ledger/fees.py)

# Blocks
BAD_HEIGHT = "bad_height"
UNKNOWN_PARENT = "unknown_parent"
WRONG_CHAIN = "wrong_chain"
BAD_TIMESTAMP = "bad_timestamp"
NOT_PROPOSER = "not_proposer"
SIGNED_RECENTLY = "signed_recently"
INSUFFICIENT_WORK = "insufficient_work"
BAD_POW = "bad_pow"
BAD_TX_ROOT = "bad_tx_root"
BAD_STATE_ROOT = "bad_state_root"
TOO_MANY_TXS = "too_many_txs"
BLOCK_TOO_LARGE = "block_too_large"  # encoded block above ledger.block.MAX_BLOCK_BYTES
INVALID_TX = "invalid_tx"
KNOWN_INVALID = "known_invalid"
SEAL_OUT_OF_BOUNDS = "seal_out_of_bounds"  # claimed hashes or energy beyond what the block allows
DIFFICULTY_TOO_HIGH = "difficulty_too_high"
FINALITY_CONFLICT = "finality_conflict"  # the block is not a descendant of the finalized block
BLOCK_FAILED = "block_failed"  # validating or applying raised something other than Rejected

# Finality votes and authority governance
NOT_VOTER = "not_voter"  # the vote's key is not in the current authority set
VOTE_SOURCE = "vote_source"  # the vote's source is not this chain's justified checkpoint
VOTE_TARGET = "vote_target"  # the vote's target is not a block of this chain above its source
ALREADY_VOTED = "already_voted"
INVALID_PROPOSAL = "invalid_proposal"


class Rejected(Exception):
    """A transaction, reading or block broke a rule; `reason` is one of the codes above."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DecodeError(Rejected):
    """Bytes that are not the one canonical encoding of a protocol object."""

    def __init__(self, detail: str) -> None:
        super().__init__(MALFORMED, detail)
