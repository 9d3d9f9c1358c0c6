"""Upgrading a stopped devnet's node data dirs from an older database schema, all at one block.

A reused devnet directory may hold data dirs written by an older build; `kwh-devnet up` upgrades them
together (ledger.migrate.upgrade_together: at the nodes' last common block) before it starts the nodes.
"""
from __future__ import annotations

from ledger.migrate import UpgradeError, upgrade_together
from ledger.store import LevelKV

from .layout import Devnet


def upgrade_data_dirs(devnet: Devnet) -> str | None:
    """Upgrade the nodes' data dirs if they need it; a line for people saying what was done, or None.
    Raises UpgradeError (or OSError) if they cannot be upgraded together."""
    dirs = [devnet.path(n.data_dir) for n in devnet.nodes]
    kvs = [LevelKV(d) for d in dirs if (d / "CURRENT").exists()]
    try:
        height = upgrade_together(kvs)  # type: ignore[arg-type]
    finally:
        for kv in kvs:
            kv.close()
    if height is None:
        return None
    return f"upgraded {len(kvs)} node data dirs to the current database schema at block {height}"


__all__ = ["UpgradeError", "upgrade_data_dirs"]
