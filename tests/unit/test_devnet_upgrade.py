"""A reused devnet directory whose node data dirs an older build wrote keeps working: `kwh-devnet up`
upgrades them together before it starts the nodes (devnet/upgrade.py)."""
from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from devnet.genesis import create_devnet
from devnet.upgrade import upgrade_data_dirs
from ledger.migrate import schema_version
from ledger.store import LevelKV

DATA = Path(__file__).parent / "data"


def test_reused_devnet_data_dirs_are_upgraded_once(tmp_path: Path) -> None:
    devnet = create_devnet(tmp_path / "devnet", authorities=2, observers=1, meters=1, traders=0, seed=1)
    assert upgrade_data_dirs(devnet) is None  # fresh: no data dirs yet
    with tarfile.open(DATA / "schema1-chain.tar.gz") as tar:
        tar.extractall(tmp_path / "v1", filter="data")
    for node in devnet.nodes:
        shutil.copytree(tmp_path / "v1" / "db", devnet.path(node.data_dir))
    line = upgrade_data_dirs(devnet)
    assert line is not None and "3 node data dirs" in line
    for node in devnet.nodes:
        kv = LevelKV(devnet.path(node.data_dir))
        assert schema_version(kv) == 2
        kv.close()
    assert upgrade_data_dirs(devnet) is None
