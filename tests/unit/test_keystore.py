"""wallet.keystore: encrypted key files in real temporary directories."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ledger.keys import AccountKey
from wallet import keystore as ks
from wallet.keystore import BadKeyFile, BadName, KeyExists, Keystore, UnknownKey, WrongPassphrase

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ks.ENV_FAST_KDF, "1")


@pytest.fixture
def store(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "keys")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip(store: Keystore) -> None:
    key = AccountKey.generate()
    info = store.create("alice", "correct horse", key)
    assert info.address == key.address_text and info.public == key.public
    unlocked = store.unlock("alice", "correct horse")
    assert unlocked.seed == key.seed and unlocked.address == key.address
    # the clear part is readable without the passphrase, the seed is not in the file
    assert store.info("alice").address == key.address_text
    raw = info.path.read_text()
    assert key.seed.hex() not in raw
    data = json.loads(raw)
    assert data["kdf"]["name"] == "argon2id" and data["cipher"] == "xsalsa20poly1305"
    assert data["address"] == key.address_text and data["public"] == key.public.hex()


def test_generated_keys_are_distinct_and_listed(store: Keystore) -> None:
    a = store.create("a", "pw")
    b = store.create("b", "pw")
    assert a.address != b.address
    assert [k.name for k in store.list()] == ["a", "b"]


def test_unicode_passphrase_is_normalised(store: Keystore) -> None:
    store.create("u", "caf\u00e9")  # precomposed
    assert store.unlock("u", "cafe\u0301").address_text == store.info("u").address  # decomposed


def test_wrong_passphrase(store: Keystore) -> None:
    store.create("alice", "right")
    with pytest.raises(WrongPassphrase, match="wrong passphrase for key 'alice'"):
        store.unlock("alice", "wrong")
    with pytest.raises(WrongPassphrase):
        store.unlock("alice", "")


def test_empty_passphrase_refused_for_new_keys(store: Keystore) -> None:
    with pytest.raises(ks.KeystoreError, match="must not be empty"):
        store.create("alice", "")
    assert not store.path_of("alice").exists()


def test_unknown_key_names_the_known_ones(store: Keystore) -> None:
    store.create("alice", "pw")
    with pytest.raises(UnknownKey, match="no key named 'bob'.*alice"):
        store.unlock("bob", "pw")


@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "-x", "x" * 65, "sp ace"])
def test_bad_names(store: Keystore, name: str) -> None:
    with pytest.raises(BadName):
        store.create(name, "pw")


def test_permissions_0600_in_0700_directory(store: Keystore) -> None:
    old_umask = os.umask(0o022)  # a permissive umask must not leak into the key file
    try:
        info = store.create("alice", "pw")
    finally:
        os.umask(old_umask)
    assert mode(info.path) == 0o600
    assert mode(store.dir) == 0o700
    store.change_passphrase("alice", "pw", "new")
    assert mode(info.path) == 0o600


def test_never_overwrites_an_existing_key(store: Keystore) -> None:
    first = store.create("alice", "pw")
    before = first.path.read_bytes()
    with pytest.raises(KeyExists):
        store.create("alice", "pw2")
    assert first.path.read_bytes() == before


def test_write_atomic_without_overwrite_refuses_a_file_that_appeared(tmp_path: Path) -> None:
    """The race: the name was free when checked, a concurrent writer took it before our rename."""
    target = tmp_path / "k.json"
    target.write_bytes(b"theirs")
    with pytest.raises(KeyExists):
        ks.write_atomic(target, b"ours", overwrite=False)
    assert target.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]  # our temporary file is gone


def test_change_passphrase(store: Keystore) -> None:
    info = store.create("alice", "old")
    store.change_passphrase("alice", "old", "new")
    assert store.unlock("alice", "new").address_text == info.address
    with pytest.raises(WrongPassphrase):
        store.unlock("alice", "old")
    with pytest.raises(WrongPassphrase):
        store.change_passphrase("alice", "old", "newer")


def test_failed_replace_leaves_the_old_file_intact(store: Keystore, monkeypatch: pytest.MonkeyPatch) -> None:
    info = store.create("alice", "old")
    before = info.path.read_bytes()

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ks.os, "fsync", disk_full)
    with pytest.raises(OSError):
        store.change_passphrase("alice", "old", "new")
    monkeypatch.undo()
    assert info.path.read_bytes() == before
    assert store.unlock("alice", "old").address_text == info.address
    assert sorted(p.name for p in store.dir.iterdir()) == ["alice.json"]  # no temporary file left behind


@pytest.mark.parametrize("crash_at", ["write", "fsync", "replace"])
def test_process_killed_mid_write_leaves_the_old_file_intact(store: Keystore, crash_at: str) -> None:
    """A real process dies (os._exit: no cleanup, no finally) in the middle of rewriting a key file."""
    info = store.create("alice", "old")
    before = info.path.read_bytes()
    script = textwrap.dedent(f"""
        import io, os, sys
        from wallet import keystore as ks
        crash_at = {crash_at!r}
        if crash_at == "write":  # half of the new file is on disk, then the power goes
            real_fdopen = os.fdopen
            def fdopen(fd, *a, **k):
                f = real_fdopen(fd, *a, **k)
                real_write = f.write
                def write(data):
                    real_write(data[: len(data) // 2]); f.flush(); os._exit(9)
                f.write = write
                return f
            ks.os.fdopen = fdopen
        elif crash_at == "fsync":
            ks.os.fsync = lambda fd: os._exit(9)
        else:
            ks.os.replace = lambda a, b: os._exit(9)
        ks.Keystore(sys.argv[1]).change_passphrase("alice", "old", "new")
        os._exit(0)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script, str(store.dir)], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr.decode()
    assert info.path.read_bytes() == before
    assert store.unlock("alice", "old").address_text == info.address
    leftovers = [p.name for p in store.dir.iterdir() if p.name != "alice.json"]
    assert leftovers and all(n.startswith(".alice.json.") and n.endswith(".tmp") for n in leftovers)
    # the torn temporary file is not mistaken for a key, and the keystore keeps working
    assert [k.name for k in store.list()] == ["alice"]
    store.change_passphrase("alice", "old", "new")
    assert store.unlock("alice", "new").address_text == info.address


def test_tampered_file_is_refused(store: Keystore) -> None:
    info = store.create("alice", "pw")
    other = AccountKey.generate()
    data = json.loads(info.path.read_text())
    data["public"] = other.public.hex()  # claims another identity; the address no longer matches
    info.path.write_text(json.dumps(data))
    with pytest.raises(BadKeyFile, match="address does not belong"):
        store.unlock("alice", "pw")
    data["address"] = other.address_text  # consistent clear part, but the sealed seed is alice's
    info.path.write_text(json.dumps(data))
    with pytest.raises(BadKeyFile, match="does not match the public key"):
        store.unlock("alice", "pw")


def test_flipped_ciphertext_byte_is_not_a_key(store: Keystore) -> None:
    info = store.create("alice", "pw")
    data = json.loads(info.path.read_text())
    ct = bytearray(bytes.fromhex(data["ciphertext"]))
    ct[-1] ^= 1
    data["ciphertext"] = ct.hex()
    info.path.write_text(json.dumps(data))
    with pytest.raises(WrongPassphrase):  # the MAC cannot tell a flipped bit from a wrong passphrase
        store.unlock("alice", "pw")


@pytest.mark.parametrize("kdf", [{"opslimit": 2**40}, {"memlimit": 2**45}, {"opslimit": 0}, {"salt": "00"},
                                 {"name": "scrypt"}])
def test_hostile_kdf_parameters_are_refused(store: Keystore, kdf: dict[str, object]) -> None:
    """A file must not make an unlock burn terabytes of memory or years of CPU."""
    info = store.create("alice", "pw")
    data = json.loads(info.path.read_text())
    data["kdf"].update(kdf)
    info.path.write_text(json.dumps(data))
    with pytest.raises(BadKeyFile):
        store.unlock("alice", "pw")


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'{"version": 2}', b"x" * 20_000])
def test_broken_files_are_clear_errors_and_not_listed(store: Keystore, content: bytes) -> None:
    store.create("good", "pw")
    (store.dir / "broken.json").write_bytes(content)
    with pytest.raises(BadKeyFile):
        store.unlock("broken", "pw")
    assert [k.name for k in store.list()] == ["good"]


def test_moderate_kdf_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ks.ENV_FAST_KDF)
    import nacl.pwhash
    assert ks.kdf_limits() == (nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE)
    monkeypatch.setenv(ks.ENV_FAST_KDF, "1")
    assert ks.kdf_limits() == (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)


def test_directory_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ks.ENV_DIR, str(tmp_path / "env"))
    assert ks.resolve_dir(tmp_path / "flag") == tmp_path / "flag"
    assert ks.resolve_dir(None) == tmp_path / "env"
    monkeypatch.delenv(ks.ENV_DIR)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ks.resolve_dir(None) == tmp_path / "home" / ".kwh-wallet"
