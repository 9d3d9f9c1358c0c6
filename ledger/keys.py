"""Keys, addresses and domain-separated signatures.

Accounts and authorities sign with Ed25519 (pynacl); meters sign with ECDSA P-256 over SHA-256
(cryptography), as real smart meters do. Every signed message is `encode([domain, chain_id, payload])`,
so a signature made for one purpose or one chain never verifies for another.
"""
from __future__ import annotations

import functools
import hashlib
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .encoding import encode

# Signature domains: one per purpose.
DOMAIN_TX = "kwh/tx/v1"
DOMAIN_READING = "kwh/reading/v1"
DOMAIN_BLOCK = "kwh/block/v1"
DOMAIN_PEER = "kwh/peer/v1"
DOMAIN_VOTE = "kwh/vote/v1"
DOMAIN_READ = "kwh/read/v1"  # signed read credentials (node/access.py)

ADDRESS_PREFIX = "kwh"
ADDRESS_BYTES = 20
CHECKSUM_BYTES = 4
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def signing_bytes(domain: str, chain_id: str, payload: Any) -> bytes:
    """The exact bytes signed for `payload` in `domain` on chain `chain_id`."""
    return encode([domain, chain_id, payload])


# ------------------------------------------------------------------------------------------ addresses


def address_of(public_key: bytes) -> bytes:
    """20-byte account address of an Ed25519 public key."""
    return hashlib.sha256(b"kwh/address" + public_key).digest()[:ADDRESS_BYTES]


def format_address(address: bytes) -> str:
    """Human form: 'kwh' + hex of address and a 4-byte checksum, so a mistyped character is caught."""
    checksum = hashlib.sha256(address).digest()[:CHECKSUM_BYTES]
    return ADDRESS_PREFIX + (address + checksum).hex()


def parse_address(value: str) -> bytes:
    """Inverse of format_address; raises ValueError with a readable message on any typo."""
    if not isinstance(value, str) or not value.startswith(ADDRESS_PREFIX):
        raise ValueError(f"address must start with '{ADDRESS_PREFIX}'")
    body = value[len(ADDRESS_PREFIX):]
    if len(body) != 2 * (ADDRESS_BYTES + CHECKSUM_BYTES):
        raise ValueError("address has the wrong length")
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raise ValueError("address is not hexadecimal") from None
    address, checksum = raw[:ADDRESS_BYTES], raw[ADDRESS_BYTES:]
    if hashlib.sha256(address).digest()[:CHECKSUM_BYTES] != checksum:
        raise ValueError("address checksum does not match (typo?)")
    return address


# ---------------------------------------------------------------------------------------- ed25519


class AccountKey:
    """An Ed25519 key pair for an account or an authority node."""

    def __init__(self, seed: bytes) -> None:
        self._signing = nacl.signing.SigningKey(seed)
        self.seed = seed
        self.public = bytes(self._signing.verify_key)
        self.address = address_of(self.public)

    @classmethod
    def generate(cls) -> "AccountKey":
        return cls(bytes(nacl.signing.SigningKey.generate()))

    def sign(self, message: bytes) -> bytes:
        return self._signing.sign(message).signature

    def sign_for(self, domain: str, chain_id: str, payload: Any) -> bytes:
        return self.sign(signing_bytes(domain, chain_id, payload))

    @property
    def address_text(self) -> str:
        return format_address(self.address)


def verify_ed25519(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True if `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        return False


# ------------------------------------------------------------------------------------------- P-256


def meter_id_of(meter_public: bytes) -> bytes:
    """16-byte meter id derived from the meter's compressed P-256 public key."""
    return hashlib.sha256(b"kwh/meter" + meter_public).digest()[:16]


class MeterKey:
    """A smart meter's P-256 key; the private half lives inside the meter (or the simulator)."""

    def __init__(self, private: ec.EllipticCurvePrivateKey) -> None:
        self._private = private
        self.public = private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        self.meter_id = meter_id_of(self.public)

    @classmethod
    def generate(cls) -> "MeterKey":
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes) -> "MeterKey":
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("not a P-256 private key")
        return cls(key)

    def private_pem(self) -> bytes:
        return self._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())

    def public_pem(self) -> bytes:
        return self._private.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, message: bytes) -> bytes:
        """DER signature normalised to low-S, the one form the ledger accepts."""
        r, s = decode_dss_signature(self._private.sign(message, ec.ECDSA(hashes.SHA256())))
        if s > P256_ORDER // 2:
            s = P256_ORDER - s
        return encode_dss_signature(r, s)


def meter_public_from_pem(pem: bytes) -> bytes:
    """Compressed point of a PEM P-256 public key (what enrollment records)."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not a P-256 public key")
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)


@functools.lru_cache(maxsize=65536)
def _load_p256(public: bytes) -> ec.EllipticCurvePublicKey | None:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    except (ValueError, TypeError):
        return None


def valid_meter_public(public: bytes) -> bool:
    return len(public) == 33 and _load_p256(public) is not None


def verify_p256(public: bytes, signature: bytes, message: bytes) -> bool:
    """True for a valid, canonical (strict DER, low-S) ECDSA P-256/SHA-256 signature."""
    key = _load_p256(public)
    if key is None:
        return False
    try:
        r, s = decode_dss_signature(signature)
    except (ValueError, TypeError):
        return False
    if not (0 < s <= P256_ORDER // 2) or encode_dss_signature(r, s) != signature:
        return False  # high-S or non-minimal DER would give one reading two encodings
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False
