"""Schema 1 -> 2: a LevelDB chain written by the schema-1 build (tests/unit/data, made by
make_schema1_chain.py) is refused by name, upgraded in place, and goes on: same balances, lots, orders,
book and schedule as one entry each, consistent, and new blocks apply on it (fills of a migrated sell
order's lots, expiry of migrated offers and trades)."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ledger.chain import Chain
from ledger.encoding import decode
from ledger.migrate import K_CHECKPOINT, UpgradeError, schema_version, upgrade_v1_to_v2
from ledger.state import P_DUE
from ledger.store import LevelKV
from ledger.testing import GENESIS_MS, Net, extend, gap_until, make_net, make_tx
from ledger.tx import BUY, PlaceOrder, TransferWh

DATA = Path(__file__).parent / "data"
EXPECTED: dict[str, Any] = json.loads((DATA / "schema1-chain.json").read_text())
GENESIS_S = GENESIS_MS // 1000


def the_net() -> Net:
    return make_net(accounts=4, meters=2, rated_w=100_000, seed=EXPECTED["seed"], meter_history_s=None)  # as v1 made it


@pytest.fixture
def v1_dir(tmp_path: Path) -> Path:
    with tarfile.open(DATA / "schema1-chain.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "db"


def test_schema1_is_refused_with_the_command_that_upgrades_it(v1_dir: Path) -> None:
    kv = LevelKV(v1_dir)
    try:
        assert schema_version(kv) == 1
        with pytest.raises(ValueError, match="--upgrade-db"):
            Chain(kv, the_net().genesis)
    finally:
        kv.close()


def test_upgrade_keeps_every_balance_lot_order_and_expiry_and_the_chain_goes_on(v1_dir: Path) -> None:
    net = the_net()
    kv = LevelKV(v1_dir)
    done = upgrade_v1_to_v2(kv)
    assert (done["height"], done["head"], done["reverted"]) == (EXPECTED["height"], EXPECTED["head"], 0)
    with pytest.raises(UpgradeError, match="version is 2"):
        upgrade_v1_to_v2(kv)
    chain = Chain(kv, net.genesis)
    assert chain.check(full=True) == [] and chain.verify_state_root()
    assert not any(True for _ in kv.iterate(b"sl")) and kv.get(b"sB") is None and kv.get(b"sS") is None
    for k in net.accounts:
        addr = k.address.hex()
        assert [[lot.hex(), wh, src] for lot, wh, src in chain.holdings(k.address)] == EXPECTED["holdings"][addr]
        acct = chain.account(k.address).as_dict()
        assert {n: acct[n] for n in EXPECTED["accounts"][addr]} == EXPECTED["accounts"][addr]
    assert {i.hex(): [o.status, o.remaining, [[lot.hex(), wh, src] for lot, wh, src in o.lots]]
            for i, o in chain.orders()} == EXPECTED["orders"]
    assert [[i.hex() for i, _o in side] for side in chain.order_book()] == EXPECTED["book"]
    due = [[int.from_bytes(key[2:10], "big"), key[10], key[11:].hex()] for key, _v in kv.iterate(P_DUE)]
    assert due == EXPECTED["schedule"]
    open_orders = sum(chain.account(k.address).open_orders for k in net.accounts)
    assert open_orders == sum(len(side) for side in EXPECTED["book"])
    assert sum(chain.account(k.address).open_offers for k in net.accounts) == \
        sum(1 for s in EXPECTED["offers"].values() if s == "open")
    assert decode(kv.get(K_CHECKPOINT))[0] == EXPECTED["height"]

    a, b, c, d = net.accounts
    sell_id = next(bytes.fromhex(i) for i, (st, _r, lots) in EXPECTED["orders"].items() if st == "open" and
                   lots and chain.order(bytes.fromhex(i)).owner == c.address)
    extend(chain, net, [make_tx(chain, d, PlaceOrder(BUY, 120, 9)),  # b's 50 left at 7, then 70 of c's at 9
                        make_tx(chain, c, TransferWh(a.address, 30))])
    assert chain.order(sell_id).remaining == 300 - 70 and chain.order_book()[1][0][0] == sell_id
    assert chain.account(d.address).wh == EXPECTED["accounts"][d.address.hex()]["wh"] + 120
    end = max(e for e, _k, _i in EXPECTED["schedule"])
    extend(chain, net, gap_ms=gap_until(chain, net, end * 1000))  # every migrated offer and trade expires
    assert not any(True for _ in kv.iterate(P_DUE))
    assert all(t.status == "settled" for _i, t in chain.trades())
    assert sum(chain.account(k.address).open_offers for k in net.accounts) == 0
    assert chain.check(full=True) == [] and chain.verify_state_root()
    kv.close()


def test_upgrade_at_a_lower_height_reverts_to_it_first(v1_dir: Path) -> None:
    kv = LevelKV(v1_dir)
    try:
        with pytest.raises(UpgradeError, match="below"):
            upgrade_v1_to_v2(kv, to_height=EXPECTED["height"] + 1)
        assert schema_version(kv) == 1
        done = upgrade_v1_to_v2(kv, to_height=EXPECTED["height"] - 2)
        assert (done["height"], done["reverted"]) == (EXPECTED["height"] - 2, 2)
        chain = Chain(kv, the_net().genesis)
        assert chain.height == EXPECTED["height"] - 2 and chain.check(full=True) == []
    finally:
        kv.close()


def test_node_command_upgrades_and_a_node_refuses_schema1(v1_dir: Path, tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.json"
    the_net().genesis.save(genesis)
    node = [sys.executable, "-m", "node", "--genesis", str(genesis), "--data-dir", str(v1_dir)]
    run = subprocess.run([*node, "--listen", "127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--upgrade-db" in run.stderr, run.stderr
    run = subprocess.run([*node, "--upgrade-db"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and f"at height {EXPECTED['height']}" in run.stdout, (run.stdout, run.stderr)
    run = subprocess.run([*node, "--upgrade-db"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "already at schema version 2" in run.stdout
    run = subprocess.run([*node, "--check-db"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "consistent" in run.stdout, (run.stdout, run.stderr)


def test_nodes_of_one_network_upgrade_together_at_their_last_common_block(tmp_path: Path) -> None:
    """Three nodes stopped at different heads (one behind by two blocks): all convert at the lower one, to
    the same state root; a second run changes nothing."""
    from ledger.migrate import _revert_to, upgrade_together
    dirs = []
    for name in ("a", "b", "c"):
        with tarfile.open(DATA / "schema1-chain.tar.gz") as tar:
            tar.extractall(tmp_path / name, filter="data")
        dirs.append(tmp_path / name / "db")
    kvs = [LevelKV(d) for d in dirs]
    try:
        assert _revert_to(kvs[1], EXPECTED["height"] - 2) == 2  # node b stopped two blocks behind
        assert upgrade_together(kvs) == EXPECTED["height"] - 2
        chains = [Chain(kv, the_net().genesis) for kv in kvs]
        assert {c.height for c in chains} == {EXPECTED["height"] - 2}
        assert len({c.head.accumulator for c in chains}) == 1 and all(c.check(full=True) == [] for c in chains)
        assert upgrade_together(kvs) is None
    finally:
        for kv in kvs:
            kv.close()
