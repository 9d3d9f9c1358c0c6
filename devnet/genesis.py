"""Make a devnet: keys for every node, meter and wallet, a genesis that funds and enrolls them, the index.

`create_devnet` writes a new directory (see devnet/layout.py for what goes where). Keys are fresh random
keys: a devnet is for development only, but its keys are real keys, stored like a node stores them. The
seed only drives the simulation (ratings, weather, loads, agents' choices), so two devnets made with the
same seed simulate the same sky over different keys.
"""
from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

from ledger.genesis import Genesis, GenesisMeter
from ledger.keys import AccountKey, MeterKey, address_of, format_address
from ledger.tx import BOTH, COIN, CONSUMPTION, GENERATION, INTERVALS

from node.keyfile import save_key, write_private

from .layout import AUTHORITY, INDEX, OBSERVER, Devnet, LayoutError, MeterSpec, NodeSpec, WalletSpec
from .profiles import HOUSEHOLD, PROSUMER, SOLAR, Site, make_profile

DEFAULT_CHAIN_ID = "kwh-devnet"
DEFAULT_BASE_PORT = 8701
DEFAULT_COIN = 10_000 * COIN  # per wallet
AUTHORITY_COIN = 1_000 * COIN  # authorities pay fees for enrolling and revoking meters
# The meter mix repeats every eight meters: three rooftops, three households, two prosumers (the first
# three meters are one of each, so even a tiny devnet has every kind).
MIX = (SOLAR, HOUSEHOLD, PROSUMER, HOUSEHOLD, SOLAR, HOUSEHOLD, PROSUMER, SOLAR)
LEDGER_KIND = {SOLAR: GENERATION, HOUSEHOLD: CONSUMPTION, PROSUMER: BOTH}
SOURCE = {SOLAR: "solar", HOUSEHOLD: "grid", PROSUMER: "solar"}
WALLET_ROLE = {SOLAR: "producer", HOUSEHOLD: "consumer", PROSUMER: "prosumer"}
PERSON = "person"  # a funded wallet for people at the keyboard: no meter, and no market agent touches it
DEFAULT_AUTHORITIES = 4  # one may fail and blocks still finalize
DEFAULT_PERSONS = 3
INTERVAL_MODES = ("900", "1800", "mixed")


# How far back a new devnet's genesis is dated: the simulated clock starts at yesterday's local midnight
# (at most 48 h ago), and a meter mints nothing from before its enrollment at genesis.
HISTORY_S = 2 * 86400 + 3600

def interval_for(index: int, mode: str) -> int:
    """15-minute meters (next generation), 30-minute meters (today's Japanese meters), or a mix: every
    fourth meter reads every 30 minutes."""
    if mode == "mixed":
        return 1800 if index % 4 == 3 else 900
    value = int(mode)
    if value not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS} or 'mixed'")
    return value


def create_devnet(root: str | Path, authorities: int = DEFAULT_AUTHORITIES, observers: int = 1, meters: int = 24,
                  traders: int = 2, persons: int = DEFAULT_PERSONS,
                  chain_id: str = DEFAULT_CHAIN_ID, seed: int | None = None, block_interval_ms: int = 2000,
                  min_difficulty: int = 256, min_fee: int = 1000, base_port: int = DEFAULT_BASE_PORT,
                  host: str = "127.0.0.1", interval: str = "mixed", wallet_coin: int = DEFAULT_COIN,
                  authority_coin: int = AUTHORITY_COIN, site: Site = Site(),
                  timestamp_ms: int | None = None, meters_from_s: int | None = None) -> Devnet:
    """Write a new devnet directory and return its index. Refuses a directory that already has one.
    Genesis is dated HISTORY_S back by default, so the simulated history (yesterday from local midnight)
    comes after every meter's enrollment; `meters_from_s` lets the genesis meters start earlier (at most
    ledger.genesis.MAX_GENESIS_BACKFILL_S before genesis)."""
    root = Path(root)
    if (root / INDEX).exists():
        raise LayoutError(f"{root} already holds a devnet ({INDEX}); reuse it or choose another --dir")
    if authorities < 1 or observers < 0 or meters < 0 or traders < 0 or persons < 0:
        raise LayoutError("need at least one authority; observers, meters, traders and persons cannot be negative")
    if interval not in INTERVAL_MODES:
        raise LayoutError(f"interval must be one of {', '.join(INTERVAL_MODES)}")
    if seed is None:
        seed = secrets.randbelow(2**31)
    root.mkdir(parents=True, exist_ok=True)

    nodes: list[NodeSpec] = []
    node_keys: list[AccountKey] = []
    for i in range(authorities + observers):
        role = AUTHORITY if i < authorities else OBSERVER
        name = f"auth{i}" if role == AUTHORITY else f"obs{i - authorities}"
        key = AccountKey.generate()
        key_file = f"keys/nodes/{name}.json"
        save_key(root / key_file, key)
        node_keys.append(key)
        nodes.append(NodeSpec(name, role, key.public.hex(), host, base_port + i, key_file, f"nodes/{name}",
                              f"logs/{name}.log"))

    wallets: list[WalletSpec] = []
    wallet_keys: list[AccountKey] = []

    def add_wallet(name: str, role: str) -> WalletSpec:
        key = AccountKey.generate()
        key_file = f"keys/wallets/{name}.json"
        save_key(root / key_file, key)
        spec = WalletSpec(name, role, key.address_text, key_file, wallet_coin)
        wallets.append(spec)
        wallet_keys.append(key)
        return spec

    meter_specs: list[MeterSpec] = []
    genesis_meters: list[GenesisMeter] = []
    for i in range(meters):
        kind = MIX[i % len(MIX)]
        name = f"{kind}-{i:02d}"
        owner = add_wallet(name, WALLET_ROLE[kind])
        mkey = MeterKey.generate()
        key_file = f"meters/{name}.pem"
        write_private(root / key_file, mkey.private_pem())
        profile = make_profile(kind, seed, name)
        interval_s = interval_for(i, interval)
        spec = MeterSpec(name=name, meter_id=mkey.meter_id.hex(), public=mkey.public.hex(), key_file=key_file,
                         owner=owner.address, owner_wallet=owner.name, kind=LEDGER_KIND[kind], profile=kind,
                         source=SOURCE[kind], rated_w=profile.rated_w, interval_s=interval_s, pv_w=profile.pv_w,
                         load_scale=profile.load_scale, home=nodes[i % len(nodes)].name)
        meter_specs.append(spec)
        first_start = None if meters_from_s is None else -(-meters_from_s // interval_s) * interval_s
        genesis_meters.append(GenesisMeter(mkey.public, wallet_keys[-1].address, spec.kind, spec.rated_w,
                                           interval_s, spec.source, first_start))
    for i in range(traders):
        add_wallet(f"trader-{i:02d}", "trader")
    for i in range(persons):
        add_wallet(f"person-{i + 1:02d}", PERSON)

    allocations = [(k.address, wallet_coin) for k in wallet_keys]
    if authority_coin:
        allocations += [(k.address, authority_coin) for k in node_keys[:authorities]]
    if timestamp_ms is None:
        timestamp_ms = (int(time.time()) - HISTORY_S) // 1800 * 1800 * 1000
    genesis = Genesis(chain_id=chain_id, timestamp_ms=timestamp_ms,
                      authorities=tuple(k.public for k in node_keys[:authorities]),
                      observers=tuple(k.public for k in node_keys[authorities:]),
                      allocations=tuple(sorted(allocations)), min_difficulty=min_difficulty,
                      block_interval_ms=block_interval_ms, min_fee=min_fee, meters=tuple(genesis_meters))
    genesis.save(root / "genesis.json")
    for d in ("logs", "nodes"):
        (root / d).mkdir(exist_ok=True)
    devnet = Devnet(root=root, chain_id=chain_id, seed=seed, admin_token=secrets.token_hex(16), site=site,
                    nodes=nodes, wallets=wallets, meters=meter_specs,
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    devnet.save()
    return devnet


def genesis_total_coin(genesis: Genesis) -> int:
    return sum(v for _a, v in genesis.allocations)


def coin_holders(devnet: Devnet) -> list[str]:
    """Every address that can hold coin on a devnet: funded wallets and authorities (they collect fees)."""
    genesis = devnet.genesis()
    addrs = {format_address(a) for a, _v in genesis.allocations}
    addrs |= {w.address for w in devnet.wallets}
    addrs |= {format_address(address_of(a)) for a in genesis.authorities}
    return sorted(addrs)
