"""Node and authority key files: `{"type": "ed25519", "public": "<hex32>", "seed": "<hex32>"}`, mode 0600.

The seed is stored unencrypted, like other validators' keys (see SECURITY.md): a node must restart
unattended. The file is written to a temporary name, synced and renamed, so a crash never leaves a
half-written key behind, and the public key is checked against the seed on load so a corrupted or
hand-edited file is refused instead of signing as somebody else.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ledger.keys import AccountKey

KEY_TYPE = "ed25519"
MAX_KEY_FILE_BYTES = 4096


class KeyFileError(ValueError):
    """A key file that cannot be used; the message says why in one line."""


def read_json_object(path: str | Path, max_bytes: int) -> dict[str, Any]:
    """A small JSON object from a file (key files, keystore entries); KeyFileError says why not."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {p}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise KeyFileError(f"key file {p} is larger than {max_bytes} bytes")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise KeyFileError(f"key file {p} is not JSON") from None
    if not isinstance(data, dict):
        raise KeyFileError(f"key file {p}: expected a JSON object")
    return data


def load_key(path: str | Path) -> AccountKey:
    """Read a key file; raises KeyFileError (a ValueError) with a readable reason."""
    p = Path(path)
    data = read_json_object(p, MAX_KEY_FILE_BYTES)
    if data.get("type") != KEY_TYPE:
        raise KeyFileError(f"key file {p}: type must be {KEY_TYPE!r}, got {data.get('type')!r}")
    try:
        seed = bytes.fromhex(data["seed"])
        public = bytes.fromhex(data["public"])
    except (KeyError, TypeError, ValueError):
        raise KeyFileError(f"key file {p}: 'seed' and 'public' must be hex strings") from None
    if len(seed) != 32 or len(public) != 32:
        raise KeyFileError(f"key file {p}: 'seed' and 'public' must be 32 bytes each")
    key = AccountKey(seed)
    if key.public != public:
        raise KeyFileError(f"key file {p}: public key does not belong to the seed")
    return key


def key_json(key: AccountKey) -> dict[str, str]:
    return {"type": KEY_TYPE, "public": key.public.hex(), "seed": key.seed.hex()}


def save_key(path: str | Path, key: AccountKey) -> None:
    """Write a key file with mode 0600, atomically."""
    write_private(Path(path), (json.dumps(key_json(key)) + "\n").encode())


def write_private(path: Path, data: bytes, overwrite: bool = True) -> None:
    """Write a file only its owner may read (keys, tokens, devnet indexes) so that a crash leaves the old
    file or the new one, whole: temp file in the same directory, fsync, rename, fsync the directory.
    With overwrite=False an existing file is never replaced (FileExistsError), even by a concurrent writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic, and refuses to replace an existing file
            os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
