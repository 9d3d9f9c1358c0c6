"""The devnet directory and its index, `devnet.json`: which nodes, keys, meters and wallets exist, where.

Layout of a devnet directory (all paths in devnet.json are relative to it):

    devnet.json            this index (nodes, meters, wallets, seed, site, admin token)
    genesis.json           the chain's genesis (ledger/genesis.py format)
    keys/nodes/NAME.json   node keys (authorities and observers), node key file format, mode 0600
    keys/wallets/NAME.json funded account keys, same format (`kwh-wallet import-key` reads them)
    meters/NAME.pem        meter P-256 private keys (PKCS#8 PEM), mode 0600
    nodes/NAME/            each node's LevelDB data dir
    logs/NAME.log          each node's log (one structured line per event)
    devnet.pid             pids of a running `kwh-devnet up` and its nodes (gone after a clean stop)
    summary.json           what the last run sent, what the chain minted and settled, tamper results

Everything a test or a wallet needs to act on the devnet is reachable from devnet.json; the private keys
are files next to it so a key can be handed to another tool without parsing the index.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ledger.genesis import Genesis
from ledger.keys import AccountKey, MeterKey
from node.keyfile import load_key, write_private

from .profiles import Profile, Site

INDEX = "devnet.json"
PID_FILE = "devnet.pid"
SUMMARY = "summary.json"
FORMAT_VERSION = 1
AUTHORITY, OBSERVER = "authority", "observer"


class LayoutError(ValueError):
    """A devnet directory that cannot be used; the message is one readable line."""


TLS_PORT_OFFSET = 100  # a node's TLS port: its API port + this


@dataclass
class NodeSpec:
    name: str
    role: str  # AUTHORITY or OBSERVER
    public: str  # Ed25519 public key, hex
    host: str
    port: int
    key_file: str
    data_dir: str
    log_file: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tls_port(self) -> int:
        """Where the node serves TLS with its node-key certificate; peers dial it (ADR 012)."""
        return self.port + TLS_PORT_OFFSET

    @property
    def tls_listen(self) -> str:
        return f"{self.host}:{self.tls_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.host}:{self.tls_port}"


@dataclass
class WalletSpec:
    name: str
    role: str  # producer, consumer, prosumer, trader (market agents); person (for people, no agent)
    address: str
    key_file: str
    coin: int  # genesis allocation, base units


@dataclass
class MeterSpec:
    name: str
    meter_id: str  # hex
    public: str  # compressed P-256, hex
    key_file: str
    owner: str  # address text
    owner_wallet: str  # name of the WalletSpec owning it
    kind: str  # ledger kind: generation, consumption, both
    profile: str  # solar, household, prosumer
    source: str
    rated_w: int
    interval_s: int
    pv_w: int
    load_scale: float
    home: str  # name of the node its gateway posts to first

    def energy_profile(self) -> Profile:
        return Profile(self.profile, self.rated_w, self.pv_w, self.load_scale)


@dataclass
class Devnet:
    """A devnet directory and everything in its index."""
    root: Path
    chain_id: str
    seed: int
    admin_token: str
    site: Site
    nodes: list[NodeSpec]
    wallets: list[WalletSpec]
    meters: list[MeterSpec]
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    # paths ---------------------------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel

    @property
    def genesis_path(self) -> Path:
        return self.root / "genesis.json"

    @property
    def pid_path(self) -> Path:
        return self.root / PID_FILE

    @property
    def summary_path(self) -> Path:
        return self.root / SUMMARY

    # derived -------------------------------------------------------------------------------------
    def genesis(self) -> Genesis:
        return Genesis.load(self.genesis_path)

    @property
    def authorities(self) -> list[NodeSpec]:
        return [n for n in self.nodes if n.role == AUTHORITY]

    @property
    def observers(self) -> list[NodeSpec]:
        return [n for n in self.nodes if n.role == OBSERVER]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def wallet(self, name: str) -> WalletSpec:
        for w in self.wallets:
            if w.name == name:
                return w
        raise KeyError(name)

    def node_key(self, name: str) -> AccountKey:
        return load_key(self.path(self.node(name).key_file))

    def wallet_key(self, name: str) -> AccountKey:
        return load_key(self.path(self.wallet(name).key_file))

    def meter_key(self, spec: MeterSpec) -> MeterKey:
        return MeterKey.from_pem(self.path(spec.key_file).read_bytes())

    def set_ports(self, base_port: int, host: str = "127.0.0.1") -> None:
        """Renumber the nodes from `base_port` (genesis does not depend on ports, so this is always safe)."""
        for i, n in enumerate(self.nodes):
            n.host, n.port = host, base_port + i

    # files ---------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION, "chain_id": self.chain_id, "created": self.created, "seed": self.seed,
            "genesis": "genesis.json", "admin_token": self.admin_token, "site": self.site.to_json(),
            "nodes": [dict(asdict(n), url=n.url) for n in self.nodes],
            "wallets": [asdict(w) for w in self.wallets],
            "meters": [asdict(m) for m in self.meters],
            **self.extra,
        }

    def save(self) -> None:
        write_private(self.root / INDEX, (json.dumps(self.to_json(), indent=2) + "\n").encode())

    @classmethod
    def load(cls, root: str | Path) -> "Devnet":
        root = Path(root)
        index = root / INDEX
        try:
            data = json.loads(index.read_text())
        except FileNotFoundError:
            raise LayoutError(f"{root} is not a devnet directory (no {INDEX}); run `kwh-devnet up --dir {root}`") \
                from None
        except (OSError, ValueError) as exc:
            raise LayoutError(f"cannot read {index}: {exc}") from None
        try:
            if data.get("version") != FORMAT_VERSION:
                raise LayoutError(f"{index}: unsupported version {data.get('version')!r}")
            known = {"version", "chain_id", "created", "seed", "genesis", "admin_token", "site", "nodes", "wallets",
                     "meters"}
            return cls(
                root=root, chain_id=data["chain_id"], seed=int(data["seed"]), admin_token=data["admin_token"],
                site=Site.from_json(data["site"]),
                nodes=[NodeSpec(**{k: v for k, v in n.items() if k != "url"}) for n in data["nodes"]],
                wallets=[WalletSpec(**w) for w in data["wallets"]],
                meters=[MeterSpec(**m) for m in data["meters"]],
                created=data.get("created", ""),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, LayoutError):
                raise
            raise LayoutError(f"{index} is damaged: {exc!r}") from None


