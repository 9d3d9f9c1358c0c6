"""Addresses with checksums, domain-separated signatures, strict P-256 signatures."""
from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ledger import errors as E
from ledger.block import BlockHeader, Seal, make_seal, seal_message, seal_valid
from ledger.encoding import to_wire
from ledger.keys import (DOMAIN_BLOCK, DOMAIN_PEER, DOMAIN_READING, DOMAIN_TX, P256_ORDER, AccountKey, MeterKey,
                         address_of, format_address, meter_id_of, meter_public_from_pem, parse_address,
                         signing_bytes, verify_ed25519, verify_p256)
from ledger.testing import CHAIN_ID, MeterState, make_net, rejection
from ledger.tx import MeterReading, ReadingFields, SignedTx, Transfer, decode_tx, encode_tx, sign_reading, sign_tx

KEY = AccountKey(bytes(range(32)))
METER = MeterKey(ec.derive_private_key(0xBEEF, ec.SECP256R1()))
ED25519_L = 2**252 + 27742317777372353535851937790883648493
HEX = "0123456789abcdef"


# ------------------------------------------------------------------------------------- addresses

def test_address_round_trip_and_form() -> None:
    text = format_address(KEY.address)
    assert text.startswith("kwh") and len(text) == 3 + 48
    assert parse_address(text) == KEY.address
    assert KEY.address_text == text
    assert KEY.address == address_of(KEY.public) and len(KEY.address) == 20


def test_every_single_character_typo_is_caught() -> None:
    text = format_address(KEY.address)
    caught = 0
    for i in range(3, len(text)):
        for c in HEX:
            if c == text[i]:
                continue
            typo = text[:i] + c + text[i + 1:]
            with pytest.raises(ValueError):
                parse_address(typo)
            caught += 1
    assert caught == 48 * 15


def test_swapped_adjacent_characters_are_caught() -> None:
    text = format_address(KEY.address)
    for i in range(3, len(text) - 1):
        if text[i] != text[i + 1]:
            swapped = text[:i] + text[i + 1] + text[i] + text[i + 2:]
            with pytest.raises(ValueError, match="checksum"):
                parse_address(swapped)


@pytest.mark.parametrize("bad,match", [
    ("xyz" + "00" * 24, "start with"),
    ("kwh" + "00" * 23, "wrong length"),
    ("kwh" + "00" * 25, "wrong length"),
    ("kwh" + "zz" * 24, "not hexadecimal"),
    ("", "start with"),
])
def test_malformed_addresses(bad: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_address(bad)


def test_parse_address_rejects_non_strings() -> None:
    with pytest.raises(ValueError):
        parse_address(KEY.address)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- domain separation

def test_signing_bytes_differ_by_domain_and_chain() -> None:
    payload = [b"x", 1]
    msgs = {signing_bytes(d, c, payload) for d in (DOMAIN_TX, DOMAIN_READING, DOMAIN_BLOCK, DOMAIN_PEER)
            for c in (CHAIN_ID, "other")}
    assert len(msgs) == 8


def test_tx_signature_verifies_only_as_a_tx_on_its_chain() -> None:
    payload = [KEY.public, 0, 1000, [1, [bytes(20), 5]]]
    sig = KEY.sign_for(DOMAIN_TX, CHAIN_ID, payload)
    assert verify_ed25519(KEY.public, sig, signing_bytes(DOMAIN_TX, CHAIN_ID, payload))
    for domain in (DOMAIN_READING, DOMAIN_BLOCK, DOMAIN_PEER):
        assert not verify_ed25519(KEY.public, sig, signing_bytes(domain, CHAIN_ID, payload))
    assert not verify_ed25519(KEY.public, sig, signing_bytes(DOMAIN_TX, "kwh-other", payload))


def test_signed_tx_does_not_verify_on_another_chain() -> None:
    tx = sign_tx(KEY, CHAIN_ID, 0, 1000, Transfer(bytes(20), 5))
    assert tx.verify()
    assert not dataclasses.replace(tx, chain_id="kwh-other").verify()
    assert not decode_tx(encode_tx(tx), "kwh-other").verify()


def test_tx_signature_is_not_a_block_seal() -> None:
    """An authority's signature over the seal payload in the tx domain does not seal a block."""
    header = BlockHeader(CHAIN_ID, 1, bytes(32), 1, KEY.public, bytes(32), bytes(32), 1, 0)
    payload = [header.hash, 1, 0, True]
    tx_sig = KEY.sign_for(DOMAIN_TX, CHAIN_ID, payload)
    assert not seal_valid(header, Seal(1, 0, True, tx_sig))
    good = make_seal(KEY, header, 1, 0, True)
    assert seal_valid(header, good)
    assert seal_message(header, 1, 0, True) == signing_bytes(DOMAIN_BLOCK, CHAIN_ID, payload)
    # the seal binds hashes, energy and whether it was estimated
    assert not seal_valid(header, dataclasses.replace(good, energy_mj=1))
    assert not seal_valid(header, dataclasses.replace(good, energy_estimated=False))
    assert not seal_valid(header, dataclasses.replace(good, hashes=2))


def test_meter_signature_in_the_tx_domain_is_not_a_reading() -> None:
    fields = ReadingFields(METER.meter_id, 0, 900, 1, 0, 1, 0, 1)
    wrong_domain = METER.sign(signing_bytes(DOMAIN_TX, CHAIN_ID, to_wire(fields)))
    assert not MeterReading(fields, wrong_domain, CHAIN_ID).verify(METER.public)
    wrong_chain = sign_reading(METER, "kwh-other", fields)
    assert not MeterReading(fields, wrong_chain.signature, CHAIN_ID).verify(METER.public)
    assert sign_reading(METER, CHAIN_ID, fields).verify(METER.public)


def test_tx_signed_for_another_chain_is_rejected_by_the_chain() -> None:
    net = make_net(accounts=1)
    chain = net.chain()
    foreign = sign_tx(net.accounts[0], "kwh-other", 0, 1000, Transfer(net.accounts[0].address, 1))
    relabelled = SignedTx(foreign.sender, 0, 1000, foreign.body, foreign.signature, CHAIN_ID)
    assert rejection(chain, net, relabelled).reason == E.BAD_SIGNATURE


# ------------------------------------------------------------------------------------------ ed25519

def test_ed25519_rejects_malleated_and_malformed_signatures() -> None:
    msg = b"message"
    sig = KEY.sign(msg)
    assert verify_ed25519(KEY.public, sig, msg)
    s = int.from_bytes(sig[32:], "little")
    malleated = sig[:32] + (s + ED25519_L).to_bytes(32, "little")  # same point equation, non-canonical S
    assert not verify_ed25519(KEY.public, malleated, msg)
    assert not verify_ed25519(KEY.public, sig[:63], msg)
    assert not verify_ed25519(KEY.public[:31], sig, msg)
    assert not verify_ed25519(KEY.public, bytes(64), msg)
    assert not verify_ed25519(bytes(32), sig, msg)
    assert not verify_ed25519(KEY.public, sig, msg + b"!")


def test_account_key_from_seed_is_deterministic() -> None:
    again = AccountKey(KEY.seed)
    assert again.public == KEY.public and again.address == KEY.address
    assert again.sign(b"m") == KEY.sign(b"m")
    assert AccountKey.generate().public != KEY.public


# -------------------------------------------------------------------------------------------- P-256

def _der_int(x: int, pad: bool = False) -> bytes:
    body = x.to_bytes((x.bit_length() + 8) // 8, "big")
    if pad:
        body = b"\x00" + body
    return b"\x02" + bytes([len(body)]) + body


def test_p256_accepts_low_s_der_only() -> None:
    msg = b"reading"
    sig = METER.sign(msg)
    assert verify_p256(METER.public, sig, msg)
    r, s = decode_dss_signature(sig)
    assert 0 < s <= P256_ORDER // 2
    high_s = encode_dss_signature(r, P256_ORDER - s)  # mathematically valid, second encoding
    assert not verify_p256(METER.public, high_s, msg)


def test_p256_rejects_non_der_encodings() -> None:
    msg = b"reading"
    sig = METER.sign(msg)
    r, s = decode_dss_signature(sig)
    body = _der_int(r, pad=True) + _der_int(s)
    padded_int = b"\x30" + bytes([len(body)]) + body
    long_form_len = b"\x30\x81" + bytes([len(sig) - 2]) + sig[2:]
    for bad in (padded_int, long_form_len, sig + b"\x00", sig[:-1], b"", b"\x30\x00", bytes(72)):
        assert not verify_p256(METER.public, bad, msg), bad.hex()


def test_p256_rejects_out_of_range_values_and_wrong_key() -> None:
    msg = b"reading"
    r, s = decode_dss_signature(METER.sign(msg))
    for rr, ss in ((0, s), (r, 0), (P256_ORDER + r, s), (r, s + P256_ORDER)):
        assert not verify_p256(METER.public, encode_dss_signature(rr, ss), msg)
    other = MeterKey(ec.derive_private_key(0xF00D, ec.SECP256R1()))
    assert not verify_p256(other.public, METER.sign(msg), msg)
    assert not verify_p256(b"\x02" + bytes(32), METER.sign(msg), msg)  # not a point on the curve
    assert not verify_p256(METER.public[:32], METER.sign(msg), msg)


def test_high_s_reading_is_rejected_by_the_chain() -> None:
    net = make_net(accounts=1, meters=1)
    chain = net.chain()
    meter = MeterState(net.meters[0], start=net.genesis.timestamp_ms // 1000 - 900)
    good = meter.read(CHAIN_ID, 100)
    r, s = decode_dss_signature(good.signature)
    high = MeterReading(good.fields, encode_dss_signature(r, P256_ORDER - s), CHAIN_ID)
    assert high.txid == good.txid
    assert rejection(chain, net, high).reason == E.BAD_SIGNATURE
    assert rejection(chain, net, good) is None


def test_meter_key_pem_round_trip() -> None:
    again = MeterKey.from_pem(METER.private_pem())
    assert again.public == METER.public and again.meter_id == METER.meter_id == meter_id_of(METER.public)
    assert meter_public_from_pem(METER.public_pem()) == METER.public
    assert len(METER.public) == 33 and METER.public[0] in (2, 3)
    ed_pem = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n" \
             b"-----END PRIVATE KEY-----\n"
    with pytest.raises(ValueError):
        MeterKey.from_pem(ed_pem)
