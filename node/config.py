"""The node's settings: command-line flags, a TOML file with the same keys, defaults.

Precedence: flag > TOML file (`--config`) > environment (`KWH_ADMIN_TOKEN` only) > default. TOML keys
are the flag names with `_` for `-` (`data_dir`, `power_cap_w`, ...); `peers` is a list of URLs or one
comma-separated string. Relative paths in a TOML file are relative to that file's directory. Unknown keys
are an error, so a typo does not silently fall back to a default.
"""
from __future__ import annotations

import argparse
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

from .log import LEVELS


class ConfigError(ValueError):
    """A setting that cannot be used; one readable line."""


@dataclass
class Config:
    genesis: Path
    data_dir: Path
    listen: str = "127.0.0.1:8701"
    key: Path | None = None
    peers: list[str] = field(default_factory=list)
    admin_token: str | None = None
    watts_per_core: float = 15.0
    power_cap_w: float = 50.0
    log_level: str = "info"
    grid_signal_file: Path | None = None
    public_url: str | None = None  # the URL peers dial back (default: http://<listen>)
    ban_seconds: float = 60.0
    mine_workers: int = 1
    verify_workers: int = 0  # 0: check block signatures in the node process
    mempool_size: int = 20_000
    mempool_per_sender: int = 128
    peer_rate: float = 200.0  # requests per second per peer session (burst: 5 s worth)
    api_rate: float = 5000.0  # requests per second per client address on public routes; 0 = unlimited
    archive: bool = False  # keep the undo data of finalized blocks (by default it is dropped: nothing reverts them)
    read_key: Path | None = None  # a follower without a member key fetches blocks signed with this key
    tls_listen: str | None = None  # HOST:PORT for the same API over TLS 1.3 with the node-key certificate

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def advertised_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        listen = self.tls_listen or self.listen  # with TLS, peers dial the TLS port back
        host, port = listen.rsplit(":", 1)
        if host in ("", "0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"
        return f"{'https' if self.tls_listen else 'http'}://{host}:{port}"


_PATHS = {"genesis", "data_dir", "key", "grid_signal_file", "read_key"}
_FLOATS = {"watts_per_core", "power_cap_w", "ban_seconds", "peer_rate", "api_rate"}
_INTS = {"mine_workers", "verify_workers", "mempool_size", "mempool_per_sender"}
_STRS = {"listen", "admin_token", "log_level", "public_url", "tls_listen"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kwh-node", description="Run a kwhledger node: HTTP API, peers, mempool and (for authorities) "
                                     "block production with metered proof of work.")
    p.add_argument("--config", type=Path, help="TOML file with the same keys as the flags (data_dir, ...)")
    p.add_argument("--genesis", type=Path, help="genesis JSON file")
    p.add_argument("--data-dir", type=Path, help="LevelDB directory of this node (created if missing)")
    p.add_argument("--listen", help="HOST:PORT to serve the HTTP API on (default 127.0.0.1:8701)")
    p.add_argument("--tls-listen", help="HOST:PORT to serve the API over TLS 1.3 with a certificate of the node "
                                        "key, which peers pin against genesis (needs --key; ADR 012)")
    p.add_argument("--read-key", type=Path, help="key file of an auditor: a node without a member key fetches "
                                                 "block bodies from peers signed with it (ADR 012)")
    p.add_argument("--key", type=Path, help="node key file; an authority key makes this node a block producer")
    p.add_argument("--peers", help="comma-separated peer URLs to dial (http://host:port)")
    p.add_argument("--admin-token", help="bearer token for /admin/* (or env KWH_ADMIN_TOKEN)")
    p.add_argument("--watts-per-core", type=float, help="power of one busy core for energy estimates (W)")
    p.add_argument("--power-cap-w", type=float, help="most power mining may draw on a grid surplus (W)")
    p.add_argument("--log-level", choices=list(LEVELS), help="debug, info, warning or error")
    p.add_argument("--grid-signal-file", type=Path, help="file with the grid surplus in W, polled every second")
    p.add_argument("--public-url", help="URL peers use to reach this node (default http://<listen>)")
    p.add_argument("--ban-seconds", type=float, help="how long a misbehaving peer is banned (default 60)")
    p.add_argument("--mine-workers", type=int, help="proof-of-work worker processes (default 1)")
    p.add_argument("--verify-workers", type=int, help="signature-checking worker processes for big blocks")
    p.add_argument("--mempool-size", type=int, help="most pending transactions (default 20000)")
    p.add_argument("--mempool-per-sender", type=int, help="most pending transactions of one sender (128)")
    p.add_argument("--peer-rate", type=float, help="requests/s allowed per peer session (default 200)")
    p.add_argument("--api-rate", type=float, help="requests/s per client address on public routes (0: off)")
    p.add_argument("--archive", action="store_const", const=True, default=None,
                   help="keep every block's undo data (by default a node drops it below the finalized height)")
    p.add_argument("--check-db", action="store_true",
                   help="check the data dir's consistency (state root, indexes, undo data) and exit: 0 if "
                        "consistent, 1 if not; the node must not be running")
    p.add_argument("--upgrade-db", action="store_true",
                   help="upgrade a stopped node's data dir from schema 1 to 2 and exit (every node of a network "
                        "at the same block: see --upgrade-height)")
    p.add_argument("--upgrade-height", type=int, metavar="H",
                   help="with --upgrade-db: first revert the head to height H (the lowest head of the network)")
    return p


def _coerce(name: str, value: Any, base: Path | None) -> Any:
    if value is None:
        return None
    if name in _PATHS:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{name} must be a path")
        path = Path(value).expanduser()
        return (base / path) if base is not None and not path.is_absolute() else path
    if name in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number")
        return float(value)
    if name in _INTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer")
        return value
    if name in _STRS:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string")
        return value
    if name == "archive":
        if not isinstance(value, bool):
            raise ConfigError("archive must be true or false")
        return value
    if name == "peers":
        if isinstance(value, str):
            return [u.strip() for u in value.split(",") if u.strip()]
        if isinstance(value, list) and all(isinstance(u, str) for u in value):
            return [u.strip() for u in value if u.strip()]
        raise ConfigError("peers must be a list of URLs or a comma-separated string")
    raise ConfigError(f"unknown setting {name!r}")


def load_config(argv: Sequence[str] | None = None) -> Config:
    """Parse flags and the optional TOML file into a checked Config; raises ConfigError."""
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    known = {f.name for f in fields(Config)}
    if args.config is not None:
        try:
            data = tomllib.loads(args.config.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {args.config}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config {args.config} is not valid TOML: {exc}") from None
        base = args.config.resolve().parent
        for raw_name, value in data.items():
            name = raw_name.replace("-", "_")
            if name not in known:
                raise ConfigError(f"config {args.config}: unknown key {raw_name!r}")
            values[name] = _coerce(name, value, base)
    env_token = os.environ.get("KWH_ADMIN_TOKEN")
    if env_token and "admin_token" not in values:
        values["admin_token"] = env_token
    for name in known:
        flag = getattr(args, name, None)
        if flag is not None:
            values[name] = _coerce(name, flag, None)
    for required in ("genesis", "data_dir"):
        if values.get(required) is None:
            raise ConfigError(f"--{required.replace('_', '-')} is required (flag or config key {required})")
    config = Config(**{k: v for k, v in values.items() if v is not None})
    check_config(config)
    return config


def check_config(c: Config) -> None:
    host, sep, port = c.listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen must be HOST:PORT, got {c.listen!r}")
    if c.tls_listen is not None:
        host, sep, port = c.tls_listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"--tls-listen must be HOST:PORT, got {c.tls_listen!r}")
        if c.key is None:
            raise ConfigError("--tls-listen needs --key: the certificate is made of the node key")
    for url in c.peers + ([c.public_url] if c.public_url else []):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"peer URL must look like http://host:port, got {url!r}")
    if c.log_level not in LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LEVELS)}")
    for name in ("watts_per_core",):
        if not (getattr(c, name) > 0 and math.isfinite(getattr(c, name))):
            raise ConfigError(f"{name} must be a positive number")
    for name in ("power_cap_w", "ban_seconds", "peer_rate", "api_rate"):
        if not (getattr(c, name) >= 0 and math.isfinite(getattr(c, name))):
            raise ConfigError(f"{name} must be a number >= 0")
    if c.mine_workers < 1 or c.verify_workers < 0 or c.mempool_size < 1 or c.mempool_per_sender < 1:
        raise ConfigError("mine_workers >= 1, verify_workers >= 0, mempool_size >= 1, mempool_per_sender >= 1")
    if c.admin_token is not None and len(c.admin_token) < 8:
        raise ConfigError("admin_token must be at least 8 characters")
