"""`kwh-devnet authority add/remove` on a running devnet of four authorities: a new node process joins,
syncs and proposes in its turn once the vote that added it is final; an authority voted out stops being
accepted, and the chain goes on (and finalizes) without it."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devnet.genesis import create_devnet
from devnet.governance import extra_nodes, stop_extra_nodes
from devnet.layout import Devnet
from devnet.nodes import Supervisor, pid_alive
from framework import wait_until
from test_devnet import free_base_port

pytestmark = pytest.mark.functional
REPO = Path(__file__).resolve().parents[2]


def get(url: str, path: str) -> Any:
    with urllib.request.urlopen(url + path, timeout=5) as resp:
        return json.loads(resp.read())


def devnet_cli(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devnet", *args, "--dir", str(directory)], cwd=REPO,
                          capture_output=True, text=True, timeout=200, stdin=subprocess.DEVNULL)


def test_an_authority_joins_and_one_leaves_a_running_devnet(tmp_path: Path) -> None:
    devnet = create_devnet(tmp_path / "devnet", authorities=4, observers=0, meters=0, traders=0, persons=0,
                           block_interval_ms=500, min_difficulty=16, base_port=free_base_port(6))
    sup = Supervisor(devnet)
    url = devnet.nodes[0].url
    try:
        sup.start_all(timeout=60)
        wait_until(lambda: get(url, "/status")["finalized_height"] >= 2, 40, message="finality on the devnet")
        added = devnet_cli(devnet.root, "authority", "add", "--name", "auth4")
        assert added.returncode == 0, added.stderr
        assert "auth4 is an authority" in added.stdout
        auth4 = Devnet.load(devnet.root).node("auth4")  # the index names the new node
        assert auth4.public in get(url, "/authorities")["authorities"]

        def proposed_by(key: str) -> bool:
            top = get(url, "/status")["height"]
            return any(get(url, f"/blocks/{h}")["proposer"] == key for h in range(max(1, top - 10), top + 1))
        wait_until(lambda: proposed_by(auth4.public), 60, message="the new authority proposes in its turn")
        assert get(auth4.url, "/status")["authority"] is True

        removed = devnet_cli(devnet.root, "authority", "remove", "auth3")
        assert removed.returncode == 0, removed.stderr
        gone = devnet.node("auth3").public
        assert gone not in get(url, "/authorities")["authorities"]
        after = get(url, "/status")["height"]
        wait_until(lambda: get(url, "/status")["finalized_height"] > after, 60,
                   message="the chain goes on and finalizes without the removed authority")
        top = get(url, "/status")["height"]
        assert all(get(url, f"/blocks/{h}")["proposer"] != gone for h in range(after + 1, top + 1))
        refused = devnet_cli(devnet.root, "authority", "remove", "nobody")
        assert refused.returncode != 0 and "no node named nobody" in refused.stderr
    finally:
        stop_extra_nodes(devnet)
        sup.stop_all()
    deadline = time.monotonic() + 20
    while any(pid_alive(int(i["pid"])) for i in extra_nodes(devnet).values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(pid_alive(int(i["pid"])) for i in extra_nodes(devnet).values())
