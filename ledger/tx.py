"""Transactions and meter readings: the protocol objects that change the ledger.

Two envelopes exist. `SignedTx` is signed by an account (Ed25519) and pays a fee; its nonce makes it
replay-proof. `MeterReading` is signed by an enrolled meter (P-256) and may be relayed by anyone; the
meter's strictly increasing counter and interval rules make it replay-proof, so it carries no fee.

A transaction id is the hash of what was signed (domain, chain id, content) and not of the signature,
so a re-encoded or malleated signature can never make one transaction look like two.

Units: coin amounts are integers of base units (1 coin = 10**9 units); energy is integer Wh; prices are
coin units per Wh, so every cost is an exact integer product with no rounding anywhere.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Union

from . import errors
from . import ocmf
from .encoding import MAX_MESSAGE_BYTES, blob, decode, encode, field, fixed, from_wire, text, to_wire, uint, wire
from .errors import DecodeError, Rejected
from .keys import DOMAIN_READING, DOMAIN_TX, DOMAIN_VOTE, AccountKey, MeterKey, address_of, signing_bytes, verify_ed25519, \
    verify_p256

COIN = 10**9
WH_PER_KWH = 1000
MAX_TX_BYTES = 4096

# Meter kinds
GENERATION, CONSUMPTION, BOTH = "generation", "consumption", "both"
METER_KINDS = (GENERATION, CONSUMPTION, BOTH)
INTERVALS = (900, 1800)
SOURCES = ("solar", "wind", "hydro", "biomass", "geothermal", "storage", "grid", "other")
BUY, SELL = "buy", "sell"


# --------------------------------------------------------------------------------------------- bodies


@wire
@dataclass(frozen=True)
class Transfer:
    """Send coin to another account."""
    to: bytes = field(fixed(20))
    amount: int = field(uint())


@wire
@dataclass(frozen=True)
class TransferWh:
    """Send Wh tokens; lots are split oldest first, so provenance travels with every Wh."""
    to: bytes = field(fixed(20))
    wh: int = field(uint())


@wire
@dataclass(frozen=True)
class EnrollMeter:
    """An authority binds a meter's P-256 key to an owner account."""
    meter_public: bytes = field(fixed(33))
    owner: bytes = field(fixed(20))
    kind: str = field(text(16))
    rated_w: int = field(uint())
    interval_s: int = field(uint())
    source: str = field(text(16))
    export_register: int = field(uint())
    import_register: int = field(uint())


# A meter may be enrolled with its first interval up to this long before the enrollment (a genesis meter:
# before genesis), named explicitly by the authority that enrolls it: the day between installing a meter
# and enrolling it. Without one, the first interval is the first whole one after the enrollment block, so
# a stolen key can never mint the time before a meter joined.
MAX_METER_BACKFILL_S = 86_400


@wire
@dataclass(frozen=True)
class EnrollMeterSince:
    """EnrollMeter with an explicit start of the meter's first interval (at most MAX_METER_BACKFILL_S
    before the enrollment block, on an interval boundary)."""
    meter_public: bytes = field(fixed(33))
    owner: bytes = field(fixed(20))
    kind: str = field(text(16))
    rated_w: int = field(uint())
    interval_s: int = field(uint())
    source: str = field(text(16))
    export_register: int = field(uint())
    import_register: int = field(uint())
    first_start: int = field(uint())  # unix seconds


@wire
@dataclass(frozen=True)
class RevokeMeter:
    """An authority revokes a meter (lost, tampered, key compromised); it mints nothing after this."""
    meter_id: bytes = field(fixed(16))


@wire
@dataclass(frozen=True)
class Redeem:
    """Burn Wh against the sender's own metered consumption not yet covered."""
    wh: int = field(uint())


@wire
@dataclass(frozen=True)
class PostOffer:
    """Offer Wh for delivery in a window at a price; buyers prepay when they accept."""
    wh: int = field(uint())
    price_per_wh: int = field(uint())
    window_start: int = field(uint())  # unix seconds
    window_end: int = field(uint())
    source: str = field(text(16))  # "" = any source


@wire
@dataclass(frozen=True)
class AcceptOffer:
    """Accept (part of) an offer: the full price of `wh` is locked in escrow as a new trade."""
    offer_id: bytes = field(fixed(32))
    wh: int = field(uint())


@wire
@dataclass(frozen=True)
class Deliver:
    """The seller moves Wh lots into a trade; escrow is released to the seller pro rata."""
    trade_id: bytes = field(fixed(32))
    wh: int = field(uint())


@wire
@dataclass(frozen=True)
class CancelOffer:
    """Withdraw the part of an offer nobody accepted yet."""
    offer_id: bytes = field(fixed(32))


@wire
@dataclass(frozen=True)
class PlaceOrder:
    """A limit order: buy locks coin at the limit price, sell locks Wh lots."""
    side: str = field(text(4))
    wh: int = field(uint())
    price_per_wh: int = field(uint())


@wire
@dataclass(frozen=True)
class CancelOrder:
    """Cancel the unfilled rest of an order; what it locked comes back."""
    order_id: bytes = field(fixed(32))


ADD, REMOVE = "add", "remove"


@wire
@dataclass(frozen=True)
class AuthorityVote:
    """An authority votes to add or remove an authority key; a majority of the current set passes it, and
    it takes effect once the block where it passed is finalized (ledger/consensus.py)."""
    action: str = field(text(8))  # "add" | "remove"
    key: bytes = field(fixed(32))


@wire
@dataclass(frozen=True)
class EnrollOcmfMeter:
    """An authority binds an OCMF meter (by its serial) and the key its vendor published to an owner.
    `mint_register` (an export register, 2.8.x) mints Wh, `consume_register` (import, 1.8.x) records
    consumption; either may be "" (the meter's kind follows: generation, consumption or both)."""
    meter_spki: bytes = field(blob(256))  # DER SubjectPublicKeyInfo; the curve follows from it
    serial: str = field(text(64))
    owner: bytes = field(fixed(20))
    mint_register: str = field(text(16))  # canonical C.D.E, e.g. "2.8.0"
    consume_register: str = field(text(16))  # e.g. "1.8.0"
    rated_w: int = field(uint())
    source: str = field(text(16))


Body = Union[Transfer, TransferWh, EnrollMeter, RevokeMeter, Redeem, PostOffer, AcceptOffer, Deliver,
             CancelOffer, PlaceOrder, CancelOrder, EnrollOcmfMeter, AuthorityVote, EnrollMeterSince]

BODY_TYPES: dict[int, type] = {
    1: Transfer, 2: TransferWh, 3: EnrollMeter, 4: RevokeMeter, 5: Redeem, 6: PostOffer, 7: AcceptOffer,
    8: Deliver, 9: CancelOffer, 10: PlaceOrder, 11: CancelOrder, 12: EnrollOcmfMeter, 20: AuthorityVote,
    21: EnrollMeterSince,
}
BODY_TAGS: dict[type, int] = {cls: tag for tag, cls in BODY_TYPES.items()}
BODY_NAMES: dict[type, str] = {
    Transfer: "transfer", TransferWh: "transfer_wh", EnrollMeter: "enroll_meter", RevokeMeter: "revoke_meter",
    Redeem: "redeem", PostOffer: "post_offer", AcceptOffer: "accept_offer", Deliver: "deliver",
    CancelOffer: "cancel_offer", PlaceOrder: "place_order", CancelOrder: "cancel_order",
    EnrollOcmfMeter: "enroll_ocmf_meter", AuthorityVote: "authority_vote", EnrollMeterSince: "enroll_meter",
}


def body_to_wire(body: Body) -> list[Any]:
    return [BODY_TAGS[type(body)], to_wire(body)]


def body_from_wire(value: Any) -> Body:
    if type(value) is not list or len(value) != 2 or type(value[0]) is not int:
        raise DecodeError("body: expected [kind, fields]")
    cls = BODY_TYPES.get(value[0])
    if cls is None:
        raise DecodeError(f"body: unknown kind {value[0]}")
    return from_wire(cls, value[1])


# ------------------------------------------------------------------------------------------ envelopes


@dataclass(frozen=True)
class SignedTx:
    """An account's transaction. `txid` is fixed by content and chain, not by the signature bytes."""
    sender: bytes  # Ed25519 public key, 32 bytes
    nonce: int
    fee: int
    body: Body
    signature: bytes
    chain_id: str

    @property
    def sender_address(self) -> bytes:
        cached = self.__dict__.get("_sender_address")
        if cached is None:
            cached = address_of(self.sender)
            object.__setattr__(self, "_sender_address", cached)
        return cached

    @property
    def kind(self) -> str:
        return BODY_NAMES[type(self.body)]

    def signed_payload(self) -> list[Any]:
        return [self.sender, self.nonce, self.fee, body_to_wire(self.body)]

    def message(self) -> bytes:
        cached = self.__dict__.get("_message")
        if cached is None:
            cached = signing_bytes(DOMAIN_TX, self.chain_id, self.signed_payload())
            object.__setattr__(self, "_message", cached)
        return cached

    @property
    def txid(self) -> bytes:
        cached = self.__dict__.get("_txid")
        if cached is None:
            cached = hashlib.sha256(self.message()).digest()
            object.__setattr__(self, "_txid", cached)
        return cached

    def verify(self) -> bool:
        return verify_ed25519(self.sender, self.signature, self.message())

    def to_wire(self) -> list[Any]:
        return [1, [self.sender, self.nonce, self.fee, body_to_wire(self.body), self.signature]]


@wire
@dataclass(frozen=True)
class ReadingFields:
    """What a meter measured over one interval; signed inside the meter."""
    meter_id: bytes = field(fixed(16))
    interval_start: int = field(uint())  # unix seconds, aligned to interval_s
    interval_s: int = field(uint())
    export_wh: int = field(uint())
    import_wh: int = field(uint())
    export_register: int = field(uint())  # cumulative Wh exported, after this interval
    import_register: int = field(uint())
    counter: int = field(uint())  # strictly increasing per meter


class _SignedFields:
    """An envelope of signed wire fields (a reading, a vote): the signed bytes and the id, computed once.
    Subclasses are frozen dataclasses with `fields` and `chain_id` and name their DOMAIN."""
    DOMAIN = ""
    fields: Any
    chain_id: str

    def message(self) -> bytes:
        cached = self.__dict__.get("_message")
        if cached is None:
            cached = signing_bytes(self.DOMAIN, self.chain_id, to_wire(self.fields))
            object.__setattr__(self, "_message", cached)
        return cached

    @property
    def txid(self) -> bytes:
        cached = self.__dict__.get("_txid")
        if cached is None:
            cached = hashlib.sha256(self.message()).digest()
            object.__setattr__(self, "_txid", cached)
        return cached


@dataclass(frozen=True)
class MeterReading(_SignedFields):
    """A reading with the meter's DER signature; anyone (a gateway) may submit it."""
    DOMAIN = DOMAIN_READING
    fields: ReadingFields
    signature: bytes
    chain_id: str

    @property
    def kind(self) -> str:
        return "reading"

    def verify(self, meter_public: bytes) -> bool:
        return verify_p256(meter_public, self.signature, self.message())

    def to_wire(self) -> list[Any]:
        return [2, [to_wire(self.fields), self.signature]]


@wire
@dataclass(frozen=True)
class VoteFields:
    """A finality vote (Casper FFG link): `voter` attests that checkpoint `target` follows the justified
    checkpoint `source` on its chain. Conflicting pairs (two targets at one height, or one vote surrounding
    another) are evidence of misbehaviour."""
    voter: bytes = field(fixed(32))  # authority's Ed25519 public key
    source_height: int = field(uint())
    source_hash: bytes = field(fixed(32))
    target_height: int = field(uint())
    target_hash: bytes = field(fixed(32))


@dataclass(frozen=True)
class Vote(_SignedFields):
    """An authority's signed finality vote; it pays no fee (only current authorities' votes count, each
    once per target) and anyone may relay it."""
    DOMAIN = DOMAIN_VOTE
    fields: VoteFields
    signature: bytes
    chain_id: str

    @property
    def kind(self) -> str:
        return "vote"

    def verify(self) -> bool:
        return verify_ed25519(self.fields.voter, self.signature, self.message())

    def to_wire(self) -> list[Any]:
        return [4, [to_wire(self.fields), self.signature]]


@dataclass(frozen=True)
class OcmfReading:
    """A record a real meter signed in OCMF (ledger/ocmf.py), forwarded by anyone, verified with the
    enrolled key. Its id hashes the chain id and the signed payload, not the signature section, so a
    re-encoded signature (hex case, base64, SA) cannot make one record count twice."""
    record: bytes  # UTF-8 text of the record exactly as the meter sent it
    parsed: ocmf.Record
    chain_id: str

    @classmethod
    def from_text(cls, text: str, chain_id: str) -> "OcmfReading":
        """Parse a record; raises DecodeError (malformed) with the parser's detail."""
        try:
            return cls(text.encode("utf-8"), ocmf.parse(text), chain_id)
        except (ocmf.OcmfError, UnicodeEncodeError) as exc:
            raise DecodeError(f"ocmf: {exc}") from None

    @property
    def kind(self) -> str:
        return "ocmf_reading"

    @property
    def meter_id(self) -> bytes:
        cached = self.__dict__.get("_meter_id")
        if cached is None:
            cached = ocmf.meter_id_of_serial(self.parsed.serial)
            object.__setattr__(self, "_meter_id", cached)
        return cached

    @property
    def signature(self) -> bytes:
        """The signature section's bytes: with the txid (header and payload) they fix the whole record."""
        return self.record.rsplit(b"|", 1)[1]

    @property
    def txid(self) -> bytes:
        cached = self.__dict__.get("_txid")
        if cached is None:
            cached = hashlib.sha256(signing_bytes(DOMAIN_OCMF, self.chain_id, self.parsed.payload)).digest()
            object.__setattr__(self, "_txid", cached)
        return cached

    def to_wire(self) -> list[Any]:
        return [3, [self.record]]


DOMAIN_OCMF = "kwh/ocmf/v1"  # only for the txid: the meter's signature covers the payload alone

Tx = Union[SignedTx, MeterReading, OcmfReading, Vote]


def tx_from_wire(value: Any, chain_id: str) -> Tx:
    """Check the shape of a plain tx value and build the object (signatures are checked later)."""
    if type(value) is not list or len(value) != 2 or type(value[0]) is not int or type(value[1]) is not list:
        raise DecodeError("tx: expected [type, fields]")
    tag, inner = value
    if tag == 1:
        if len(inner) != 5:
            raise DecodeError("signed tx: expected 5 fields")
        sender, nonce, fee, body, sig = inner
        if type(sender) is not bytes or len(sender) != 32:
            raise DecodeError("signed tx: sender must be a 32-byte public key")
        for name, v in (("nonce", nonce), ("fee", fee)):
            if type(v) is not int or v < 0 or v >= 1 << 64:
                raise DecodeError(f"signed tx: {name} must be an unsigned 64-bit integer")
        if type(sig) is not bytes or len(sig) != 64:
            raise DecodeError("signed tx: signature must be 64 bytes")
        return SignedTx(sender, nonce, fee, body_from_wire(body), sig, chain_id)
    if tag == 2:
        if len(inner) != 2:
            raise DecodeError("reading: expected [fields, signature]")
        fields, sig = inner
        if type(sig) is not bytes or not 8 <= len(sig) <= 72:
            raise DecodeError("reading: signature must be 8..72 bytes of DER")
        return MeterReading(from_wire(ReadingFields, fields), sig, chain_id)
    if tag == 4:
        if len(inner) != 2:
            raise DecodeError("vote: expected [fields, signature]")
        fields, sig = inner
        if type(sig) is not bytes or len(sig) != 64:
            raise DecodeError("vote: signature must be 64 bytes")
        return Vote(from_wire(VoteFields, fields), sig, chain_id)
    if tag == 3:
        if len(inner) != 1 or type(inner[0]) is not bytes:
            raise DecodeError("ocmf reading: expected [record bytes]")
        try:
            text_ = inner[0].decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("ocmf reading: record is not UTF-8") from None
        return OcmfReading.from_text(text_, chain_id)
    raise DecodeError(f"tx: unknown type {tag}")


def encode_tx(tx: Tx) -> bytes:
    return encode(tx.to_wire())


def decode_tx(data: bytes, chain_id: str) -> Tx:
    """Canonical bytes -> transaction object; raises Rejected(malformed|too_large)."""
    if len(data) > MAX_TX_BYTES:
        raise Rejected(errors.TOO_LARGE, f"transaction of {len(data)} bytes exceeds {MAX_TX_BYTES}")
    return tx_from_wire(decode(data, MAX_MESSAGE_BYTES), chain_id)


# -------------------------------------------------------------------------------------------- builders


def sign_tx(key: AccountKey, chain_id: str, nonce: int, fee: int, body: Body) -> SignedTx:
    """Build and sign an account transaction."""
    unsigned = SignedTx(key.public, nonce, fee, body, b"", chain_id)
    return SignedTx(key.public, nonce, fee, body, key.sign(unsigned.message()), chain_id)


def sign_reading(meter: MeterKey, chain_id: str, fields: ReadingFields) -> MeterReading:
    """What a meter does at the end of each interval."""
    unsigned = MeterReading(fields, b"", chain_id)
    return MeterReading(fields, meter.sign(unsigned.message()), chain_id)


def sign_vote(key: AccountKey, chain_id: str, source: tuple[int, bytes], target: tuple[int, bytes]) -> Vote:
    """What an authority does when a new block becomes its head (node/finality.py decides when)."""
    fields = VoteFields(key.public, source[0], source[1], target[0], target[1])
    unsigned = Vote(fields, b"", chain_id)
    return Vote(fields, key.sign(unsigned.message()), chain_id)


def cost(wh: int, price_per_wh: int) -> int:
    """Exact coin cost of `wh` at `price_per_wh` (no rounding: prices are per Wh)."""
    return wh * price_per_wh
