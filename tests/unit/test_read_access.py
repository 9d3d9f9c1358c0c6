"""Read credentials (node/access.py) and genesis auditors, without a node process."""
from __future__ import annotations

import dataclasses
import secrets

import pytest

from ledger.chain import genesis_digest
from ledger.genesis import Genesis
from ledger.keys import AccountKey
from ledger.testing import make_net
from node.access import (ACCOUNT, AUDITOR, MAX_SKEW_MS, ReadGuard, credential, parse_credential)
from node.codes import ApiError

NODE = secrets.token_bytes(32)
NOW = 1_800_000_000_000


def _guard(auditor: bytes = b"") -> ReadGuard:
    return ReadGuard("kwh-test", NODE, lambda key: AUDITOR if key == auditor else ACCOUNT)


def _refused(guard: ReadGuard, header: str, path: str = "/a", now: int = NOW) -> str:
    with pytest.raises(ApiError) as info:
        guard.check(header, "GET", path, now)
    assert info.value.status in (401, 429)
    return info.value.reason


def test_a_credential_proves_its_key_once_within_the_window() -> None:
    key, guard = AccountKey.generate(), _guard()
    header = credential(key, "kwh-test", NODE, "GET", "/a?x=1", NOW)
    reader = guard.check(header, "GET", "/a?x=1", NOW + MAX_SKEW_MS)
    assert (reader.role, reader.key, reader.address) == (ACCOUNT, key.public, key.address)
    assert reader.owns(key.address) and not reader.owns(AccountKey.generate().address) and not reader.full
    assert _refused(guard, header, "/a?x=1", NOW) == "credential_replayed"


def test_a_credential_for_anything_else_is_refused_with_its_reason() -> None:
    key, guard = AccountKey.generate(), _guard()
    assert _refused(guard, credential(key, "kwh-test", NODE, "GET", "/a", NOW - MAX_SKEW_MS - 1)) == \
        "credential_expired"
    assert _refused(guard, credential(key, "kwh-test", NODE, "GET", "/a", NOW + MAX_SKEW_MS + 1)) == \
        "credential_expired"
    for other in (credential(key, "kwh-test", NODE, "GET", "/b", NOW),
                  credential(key, "kwh-test", NODE, "POST", "/a", NOW),
                  credential(key, "kwh-other", NODE, "GET", "/a", NOW),
                  credential(key, "kwh-test", secrets.token_bytes(32), "GET", "/a", NOW)):
        assert _refused(guard, other) == "bad_credential"


@pytest.mark.parametrize("header", ["KWH-Sig", "KWH-Sig key=00", "KWH-Sig key=zz, ts=1, nonce=00, sig=00",
                                    "KWH-Sig key=" + "00" * 32 + ", key=" + "00" * 32, "KWH-Sig ts=-1",
                                    "KWH-Sig key=" + "0" * 63 + ", ts=1, nonce=" + "00" * 16 + ", sig=" + "00" * 64])
def test_a_malformed_header_is_a_bad_credential(header: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_credential(header)
    assert (info.value.reason, info.value.status) == ("bad_credential", 401)


def test_an_auditor_key_reads_everything() -> None:
    auditor = AccountKey.generate()
    reader = _guard(auditor.public).check(credential(auditor, "kwh-test", NODE, "GET", "/a", NOW), "GET", "/a", NOW)
    assert reader.full and reader.owns(AccountKey.generate().address)


def test_genesis_auditors_are_optional_and_leave_old_digests_alone() -> None:
    genesis = make_net(authorities=1, accounts=1).genesis
    data = genesis.to_json()
    assert "auditors" not in data and Genesis.from_json(data) == genesis
    auditor = AccountKey.generate().public
    with_auditor = dataclasses.replace(genesis, auditors=(auditor,))
    assert Genesis.from_json(with_auditor.to_json()).auditors == (auditor,)
    assert genesis_digest(with_auditor) != genesis_digest(genesis)
    assert genesis_digest(Genesis.from_json(data)) == genesis_digest(genesis)
    with pytest.raises(ValueError):
        Genesis.from_json({**data, "auditors": ["00"]})


def test_a_node_certificate_carries_the_node_key() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from node.tls import certificate_key, node_certificate
    key = AccountKey.generate()
    cert_pem, _ = node_certificate(key)
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    assert certificate_key(der) == key.public
    assert certificate_key(b"not a certificate") is None and certificate_key(None) is None
