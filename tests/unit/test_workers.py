"""A node's helper processes end when the node is gone, also when the node died before they started
watching (a SIGKILL during startup): the watcher compares with the node's pid passed in, not with
whatever parent the worker finds when it starts."""
from __future__ import annotations

import os
import subprocess
import sys
import time

CHILD = "import sys, time; from node.workers import exit_with_parent; exit_with_parent(int(sys.argv[1])); time.sleep(30)"


def run_child(parent: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(parent)])


def test_a_worker_whose_node_is_already_gone_exits_at_once() -> None:
    child = run_child(parent=os.getpid() + 10**6)  # not its parent: as if the node died before it looked
    try:
        assert child.wait(timeout=10) == 0
    finally:
        child.kill()


def test_a_worker_stays_while_its_node_lives() -> None:
    child = run_child(parent=os.getpid())
    try:
        time.sleep(1.5)  # three watch periods
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
