"""The wallet's config file: defaults people would otherwise type every time.

`~/.kwh-wallet/config.toml` (or the file named by $KWH_WALLET_CONFIG), all keys optional:

    node = "http://127.0.0.1:8701"          # default node (a --node flag or $KWH_NODE wins)
    name = "alice"                          # default key (a --name flag wins)
    fallback_nodes = ["http://127.0.0.1:8702", "http://127.0.0.1:8703"]   # tried when the node is down
    local_time = false                      # show local times instead of UTC

A missing file is no error; a file that is not valid TOML, or holds an unknown key or a wrong type, is one
(`bad_config`), so a typo never silently falls back to a default.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ENV_CONFIG = "KWH_WALLET_CONFIG"
DEFAULT_PATH = Path("~/.kwh-wallet/config.toml")
MAX_BYTES = 65536


class ConfigError(ValueError):
    """The config file cannot be used; the message is one line."""


@dataclass(frozen=True)
class Config:
    path: Path
    exists: bool = False
    node: str | None = None
    name: str | None = None
    fallback_nodes: tuple[str, ...] = field(default_factory=tuple)
    local_time: bool = False


def config_path() -> Path:
    return Path(os.environ.get(ENV_CONFIG) or DEFAULT_PATH).expanduser()


def load_config(path: Path | None = None) -> Config:
    path = path or config_path()
    try:
        raw = path.read_bytes()[:MAX_BYTES + 1]
    except FileNotFoundError:
        return Config(path)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_BYTES} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"node", "name", "fallback_nodes", "local_time"})
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)} (known: node, name, fallback_nodes, "
                          "local_time)")
    for key in ("node", "name"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{path}: {key} must be a string")
    fallbacks = data.get("fallback_nodes", [])
    if not isinstance(fallbacks, list) or not all(isinstance(u, str) for u in fallbacks):
        raise ConfigError(f"{path}: fallback_nodes must be a list of URLs")
    if not isinstance(data.get("local_time", False), bool):
        raise ConfigError(f"{path}: local_time must be true or false")
    return Config(path, True, data.get("node"), data.get("name"), tuple(fallbacks), data.get("local_time", False))
