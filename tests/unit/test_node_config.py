"""Node key files and settings (flags, TOML, defaults, refusals)."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ledger.keys import AccountKey
from node.config import ConfigError, load_config
from node.keyfile import KeyFileError, load_key, save_key
from node.log import format_event


def test_key_file_round_trip_is_0600(tmp_path: Path) -> None:
    key = AccountKey.generate()
    path = tmp_path / "keys" / "node.json"
    save_key(path, key)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data == {"type": "ed25519", "public": key.public.hex(), "seed": key.seed.hex()}
    assert load_key(path).public == key.public
    save_key(path, AccountKey.generate())  # overwrite in place, atomically
    assert [p.name for p in path.parent.iterdir()] == ["node.json"]


@pytest.mark.parametrize("content, fragment", [
    ("not json", "not JSON"),
    ("[]", "JSON object"),
    ('{"type": "rsa", "public": "", "seed": ""}', "type"),
    ('{"type": "ed25519", "public": "zz", "seed": "00"}', "hex"),
    ('{"type": "ed25519", "public": "00", "seed": "00"}', "32 bytes"),
])
def test_bad_key_files_are_refused_readably(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "k.json"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=fragment):
        load_key(path)


def test_key_file_with_foreign_public_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    a, b = AccountKey.generate(), AccountKey.generate()
    path.write_text(json.dumps({"type": "ed25519", "public": b.public.hex(), "seed": a.seed.hex()}))
    with pytest.raises(KeyFileError, match="does not belong"):
        load_key(path)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key(tmp_path / "missing.json")


def test_flags_override_toml_and_paths_are_relative_to_it(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "node.toml"
    cfg.parent.mkdir()
    cfg.write_text('genesis = "genesis.json"\ndata_dir = "db"\nlisten = "127.0.0.1:9000"\n'
                   'peers = ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]\npower_cap_w = 30\n'
                   'log-level = "warning"\n')
    c = load_config(["--config", str(cfg), "--listen", "127.0.0.1:9100"])
    assert c.genesis == cfg.parent / "genesis.json" and c.data_dir == cfg.parent / "db"
    assert c.listen == "127.0.0.1:9100" and c.port == 9100 and c.advertised_url == "http://127.0.0.1:9100"
    assert c.peers == ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
    assert c.power_cap_w == 30.0 and c.log_level == "warning" and c.watts_per_core == 15.0
    c = load_config(["--genesis", "g.json", "--data-dir", "d", "--peers", "http://a:1, http://b:2"])
    assert c.peers == ["http://a:1", "http://b:2"] and c.key is None


@pytest.mark.parametrize("toml, flags, fragment", [
    ("", [], "--genesis is required"),
    ('genesis = "g"\ndata_dir = "d"\nlisen = "x"\n', [], "unknown key 'lisen'"),
    ('genesis = "g"\ndata_dir = "d"\npower_cap_w = "lots"\n', [], "must be a number"),
    ('genesis = "g"\ndata_dir = "d"\n', ["--listen", "localhost"], "HOST:PORT"),
    ('genesis = "g"\ndata_dir = "d"\n', ["--peers", "ftp://x"], "peer URL"),
    ('genesis = "g"\ndata_dir = "d"\n', ["--admin-token", "short"], "at least 8"),
    ("not = [toml", [], "not valid TOML"),
])
def test_bad_settings_are_refused(tmp_path: Path, toml: str, flags: list[str], fragment: str) -> None:
    cfg = tmp_path / "n.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        load_config(["--config", str(cfg), *flags])


def test_log_lines_are_logfmt() -> None:
    line = format_event("info", "block_imported", {"height": 12, "hash": b"\xab" * 32, "note": "two words",
                                                   "ok": True}, ts=0)
    assert line == ('ts=1970-01-01T00:00:00.000Z level=info event=block_imported height=12 '
                    'hash=abababababababab note="two words" ok=true')
