"""Read credentials (node/access.py) and genesis auditors, without a node process."""
from __future__ import annotations

import dataclasses
import secrets

import pytest

from ledger.chain import genesis_digest
from ledger.genesis import Genesis
from ledger.keys import AccountKey
from ledger.testing import make_net
from node import access
from node.access import (ACCOUNT, AUDITOR, MAX_SKEW_MS, ReadGuard, ReadSessions, credential, parse_credential)
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


def test_one_client_s_nonces_are_bounded_and_freed_when_they_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    """One client address holds at most MAX_REMEMBERED_PER_CLIENT owners' nonces (others and the full-read
    roles go on); its share comes back once its credentials expire."""
    monkeypatch.setattr(access, "MAX_REMEMBERED_PER_CLIENT", 3)
    auditor = AccountKey.generate()
    guard, key = _guard(auditor.public), AccountKey.generate()

    def ask(signer: AccountKey, client: str, now: int = NOW) -> str:
        try:
            return guard.check(credential(signer, "kwh-test", NODE, "GET", "/a", now), "GET", "/a", now, client).role
        except ApiError as exc:
            return exc.reason
    assert [ask(key, "10.0.0.1") for _ in range(4)] == [ACCOUNT] * 3 + ["rate_limited"]
    assert ask(key, "10.0.0.2") == ACCOUNT and ask(auditor, "10.0.0.1") == AUDITOR
    later = NOW + 2 * MAX_SKEW_MS + 1
    assert ask(key, "10.0.0.1", later) == ACCOUNT  # the first three expired and were forgotten


def test_a_key_keeps_a_few_sessions_and_cannot_push_others_out() -> None:
    sessions, mine, theirs = ReadSessions(), b"a" * 32, b"b" * 32
    other, _ = sessions.open(theirs, NOW)
    tokens = [sessions.open(mine, NOW)[0] for _ in range(access.MAX_SESSIONS_PER_KEY + 5)]
    assert len(sessions) == access.MAX_SESSIONS_PER_KEY + 1
    assert sessions.key_of(other, NOW) == theirs and sessions.key_of(tokens[-1], NOW) == mine
    assert sessions.key_of(tokens[0], NOW) is None  # its own oldest went
    sessions.close(tokens[-1])
    assert sessions.key_of(tokens[-1], NOW) is None and len(sessions) == access.MAX_SESSIONS_PER_KEY
