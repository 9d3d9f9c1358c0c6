"""Encrypted keystore: one JSON file per Ed25519 account key, sealed with a passphrase.

The seed is encrypted with a key stretched from the passphrase by Argon2id (pynacl, libsodium) and sealed
with SecretBox (XSalsa20-Poly1305), so a stolen file costs an attacker a memory-hard guess per passphrase
and a wrong passphrase is detected by the MAC, never mistaken for another key. The name, address and
public key stay readable, so listing keys and showing addresses needs no passphrase.

Files are mode 0600 in a 0700 directory and written crash-safe (temporary file, fsync, rename, fsync of the
directory): a crash or a full disk leaves either the old file or the new one, never half of one.

File format (version 1):
    {"version": 1, "type": "ed25519", "name": "alice", "address": "kwh...", "public": "<hex32>",
     "kdf": {"name": "argon2id", "salt": "<hex16>", "opslimit": 3, "memlimit": 268435456},
     "cipher": "xsalsa20poly1305", "ciphertext": "<hex of nonce + sealed seed>"}
"""
from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from ledger.keys import AccountKey, address_of, format_address
from node.keyfile import KeyFileError, read_json_object, write_private

VERSION = 1
KEY_TYPE = "ed25519"
KDF_NAME = "argon2id"
CIPHER = "xsalsa20poly1305"
SUFFIX = ".json"
MAX_FILE_BYTES = 16_384
ENV_DIR = "KWH_WALLET_DIR"
ENV_FAST_KDF = "KWH_WALLET_FAST_KDF"
DEFAULT_DIR = Path("~/.kwh-wallet")
_ARGON = nacl.pwhash.argon2id
# A file may not make us spend more than the "sensitive" profile (1 GiB) on one unlock.
_MAX_OPSLIMIT = _ARGON.OPSLIMIT_SENSITIVE
_MAX_MEMLIMIT = _ARGON.MEMLIMIT_SENSITIVE
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class KeystoreError(Exception):
    """A keystore problem with a machine-readable `code` and a one-line message."""

    code = "keystore_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class WrongPassphrase(KeystoreError):
    code = "wrong_passphrase"


class UnknownKey(KeystoreError):
    code = "unknown_key"


class KeyExists(KeystoreError):
    code = "key_exists"


class BadKeyFile(KeystoreError):
    code = "bad_key_file"


class BadName(KeystoreError):
    code = "bad_name"


@dataclass(frozen=True)
class KeyInfo:
    """What a key file says in the clear."""
    name: str
    address: str
    public: bytes
    path: Path


def kdf_limits() -> tuple[int, int]:
    """(opslimit, memlimit) for new files: moderate (about 1 s, 256 MiB), or the minimum for tests."""
    if os.environ.get(ENV_FAST_KDF, "") not in ("", "0"):
        return _ARGON.OPSLIMIT_MIN, _ARGON.MEMLIMIT_MIN
    return _ARGON.OPSLIMIT_MODERATE, _ARGON.MEMLIMIT_MODERATE


def resolve_dir(explicit: str | Path | None = None) -> Path:
    """--keystore DIR, else $KWH_WALLET_DIR, else ~/.kwh-wallet."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return DEFAULT_DIR.expanduser()


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise BadName(f"key name {name!r} must be 1-64 letters, digits, '.', '_' or '-' "
                            "and start with a letter or digit")
    return name


def _passphrase_bytes(passphrase: str) -> bytes:
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return _ARGON.kdf(nacl.secret.SecretBox.KEY_SIZE, _passphrase_bytes(passphrase), salt,
                      opslimit=opslimit, memlimit=memlimit)


def seal(name: str, key: AccountKey, passphrase: str) -> dict[str, Any]:
    """The key file's JSON for `key` under `passphrase` (fresh salt and nonce)."""
    if not passphrase:
        raise KeystoreError("the passphrase must not be empty")
    opslimit, memlimit = kdf_limits()
    salt = nacl.utils.random(_ARGON.SALTBYTES)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
    return {"version": VERSION, "type": KEY_TYPE, "name": name, "address": key.address_text,
            "public": key.public.hex(),
            "kdf": {"name": KDF_NAME, "salt": salt.hex(), "opslimit": opslimit, "memlimit": memlimit},
            "cipher": CIPHER, "ciphertext": bytes(box.encrypt(key.seed)).hex()}


def write_atomic(path: Path, data: bytes, overwrite: bool) -> None:
    """Write a key file with mode 0600 so that a crash leaves the old file or the new one, whole.
    With overwrite=False an existing file is never replaced (KeyExists), even by a concurrent writer."""
    try:
        write_private(path, data, overwrite)
    except FileExistsError:
        raise KeyExists(f"a key file {path} already exists") from None


class Keystore:
    """The key files in one directory."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def path_of(self, name: str) -> Path:
        return self.dir / (check_name(name) + SUFFIX)

    def _ensure_dir(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise KeystoreError(f"cannot create keystore directory {self.dir}: {exc.strerror or exc}") from None

    # reading ------------------------------------------------------------------------------------
    def _read(self, name: str) -> tuple[dict[str, Any], Path]:
        path = self.path_of(name)
        if not path.exists():
            known = ", ".join(k.name for k in self.list()) or "none"
            raise UnknownKey(f"no key named {name!r} in {self.dir} (keys: {known}); "
                             "create one with 'kwh-wallet new'")
        try:
            return read_json_object(path, MAX_FILE_BYTES), path
        except KeyFileError as exc:
            raise BadKeyFile(str(exc)) from None

    @staticmethod
    def _info(data: dict[str, Any], path: Path) -> KeyInfo:
        try:
            if data["version"] != VERSION or data["type"] != KEY_TYPE:
                raise BadKeyFile(f"key file {path}: unsupported version {data.get('version')!r} "
                                 f"or type {data.get('type')!r}")
            public = bytes.fromhex(data["public"])
            address = str(data["address"])
        except (KeyError, TypeError, ValueError):
            raise BadKeyFile(f"key file {path}: missing or malformed 'public' or 'address'") from None
        if len(public) != 32 or format_address(address_of(public)) != address:
            raise BadKeyFile(f"key file {path}: address does not belong to the public key")
        return KeyInfo(str(data.get("name", path.stem)), address, public, path)

    def info(self, name: str) -> KeyInfo:
        data, path = self._read(name)
        return self._info(data, path)

    def list(self) -> list[KeyInfo]:
        """Every readable key file, by name; temporary files of interrupted writes are ignored."""
        if not self.dir.is_dir():
            return []
        out = []
        for path in sorted(self.dir.glob("*" + SUFFIX)):
            if path.name.startswith(".") or not _NAME.match(path.stem):
                continue
            try:
                out.append(self.info(path.stem))
            except KeystoreError:
                continue  # a foreign or broken file is not a key; 'unlock' on it says why
        return out

    def unlock(self, name: str, passphrase: str) -> AccountKey:
        """Decrypt a key; WrongPassphrase if the MAC does not verify."""
        data, path = self._read(name)
        info = self._info(data, path)
        try:
            kdf = data["kdf"]
            if kdf["name"] != KDF_NAME or data["cipher"] != CIPHER:
                raise BadKeyFile(f"key file {path}: unsupported kdf {kdf['name']!r} or cipher {data['cipher']!r}")
            salt = bytes.fromhex(kdf["salt"])
            opslimit, memlimit = int(kdf["opslimit"]), int(kdf["memlimit"])
            sealed = bytes.fromhex(data["ciphertext"])
        except (KeyError, TypeError, ValueError):
            raise BadKeyFile(f"key file {path}: missing or malformed kdf or ciphertext") from None
        if len(salt) != _ARGON.SALTBYTES or not _ARGON.OPSLIMIT_MIN <= opslimit <= _MAX_OPSLIMIT \
                or not _ARGON.MEMLIMIT_MIN <= memlimit <= _MAX_MEMLIMIT:
            raise BadKeyFile(f"key file {path}: kdf parameters out of range")
        box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
        try:
            seed = box.decrypt(sealed)
        except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, ValueError):
            raise WrongPassphrase(f"wrong passphrase for key {name!r}") from None
        if len(seed) != 32:
            raise BadKeyFile(f"key file {path}: the sealed seed is not 32 bytes")
        key = AccountKey(seed)
        if key.public != info.public:
            raise BadKeyFile(f"key file {path}: the sealed seed does not match the public key")
        return key

    # writing ------------------------------------------------------------------------------------
    def create(self, name: str, passphrase: str, key: AccountKey | None = None) -> KeyInfo:
        """Store a new key (generated unless given); never overwrites an existing name."""
        path = self.path_of(name)
        if path.exists():
            raise KeyExists(f"a key named {name!r} already exists in {self.dir}")
        key = key if key is not None else AccountKey.generate()
        self._ensure_dir()
        data = seal(name, key, passphrase)
        write_atomic(path, (json.dumps(data, indent=2) + "\n").encode(), overwrite=False)
        return KeyInfo(name, key.address_text, key.public, path)

    def change_passphrase(self, name: str, old: str, new: str) -> KeyInfo:
        """Re-seal a key under a new passphrase, replacing its file atomically."""
        key = self.unlock(name, old)
        path = self.path_of(name)
        data = seal(name, key, new)
        write_atomic(path, (json.dumps(data, indent=2) + "\n").encode(), overwrite=True)
        return KeyInfo(name, key.address_text, key.public, path)
