"""Benchmarks through a real node over HTTP on 127.0.0.1: http_submit and sync (filled in with the node)."""
from __future__ import annotations

from typing import Any


def run(quick: bool, transfer_apply_per_s: float) -> dict[str, Any]:
    return {}
