"""`kwh-devnet up` writes its summary however it stops, and its piped view is plain text with the clock.

Each test runs the real command (`python -m devnet up`) on a small devnet: stopped by SIGTERM while its
output pipe's reader has gone away (`make devnet | tee`, then Ctrl-C kills tee first), by SIGINT while
the nodes are still starting, and by the end of --sim-hours with the whole output read (the piped view).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devnet.nodes import pid_alive
from framework import REPO, wait_until
from test_readme import free_base_port

pytestmark = pytest.mark.functional

SMALL = ["--nodes", "2", "--observers", "0", "--meters", "2", "--traders", "1", "--persons", "1",
         "--block-interval-ms", "500", "--min-difficulty", "16", "--window", "6"]


def up(directory: Path, *args: str, stdout: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "devnet", "up", "--dir", str(directory), "--base-port",
                             str(free_base_port(2)), *SMALL, *args], cwd=REPO, stdout=stdout,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))


def node_pids(directory: Path) -> list[int]:
    return [n["pid"] for n in json.loads((directory / "devnet.pid").read_text())["nodes"].values()]


def finish(proc: subprocess.Popen[bytes], pids: list[int]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_with_the_pipe_reader_gone_still_writes_the_summary(tmp_path: Path) -> None:
    directory = tmp_path / "dn"
    proc = up(directory, "--speed", "600")
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        wait_until(lambda: (directory / "devnet.pid").exists(), 60, 0.2, "nodes started")
        pids = node_pids(directory)
        first = proc.stdout.read1(200)  # type: ignore[attr-defined]
        assert first
        proc.stdout.close()  # the reader goes away, like tee killed by Ctrl-C
        wait_until(lambda: (directory / "logs/devnet.log").exists(), 30, 0.2, "the run began")
        time.sleep(12)  # progress lines keep coming (every 10 s) into the broken pipe
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, proc.stderr.read().decode() if proc.stderr else ""
        summary = json.loads((directory / "summary.json").read_text())
        assert summary["stopped_by"] == "signal"
        assert summary["checks"]["nodes_agree"] is True, summary["agreement"]
        assert summary["agreement"]["height"] >= 1 and len(set(summary["agreement"]["hashes"].values())) == 1
        assert not any(pid_alive(p) for p in pids) and not (directory / "devnet.pid").exists()
    finally:
        finish(proc, pids)


def node_processes(directory: Path) -> list[int]:
    """Live node processes of this devnet directory, found by command line (no pid file needed)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if " -m node " in cmd and f"{directory}/genesis.json" in cmd and pid_alive(int(entry.name)):
                out.append(int(entry.name))
    return out


@pytest.mark.parametrize("delay_s", [0.0, 0.001, 0.003, 0.01, 0.02, 0.05, 0.3, 1.5])  # the spawn window is short
def test_sigint_while_the_nodes_start_writes_a_summary_and_leaves_no_node(tmp_path: Path, delay_s: float) -> None:
    directory = tmp_path / "dn"
    proc = up(directory, "--speed", "600")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while b"starting" not in line:
            assert line, "up ended before starting nodes"
            line = proc.stdout.readline()
        time.sleep(delay_s)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches `up`'s group (the nodes have their own sessions)
        proc.wait(timeout=60)
        summary = json.loads((directory / "summary.json").read_text())
        assert summary["stopped_by"] in ("signal", "error") and "chain_id" in summary, summary
        assert not node_processes(directory), "a node outlived `kwh-devnet up`"
    finally:
        finish(proc, node_processes(directory))


def test_piped_view_is_plain_text_with_the_simulated_clock(tmp_path: Path) -> None:
    directory = tmp_path / "dn"
    proc = up(directory, "--speed", "2400", "--sim-hours", "8", "--check")
    try:
        out, err = proc.communicate(timeout=240)
        text = out.decode()
        assert proc.returncode == 0, text + err.decode()
        progress = [line for line in text.splitlines() if line.startswith("[")]
        assert progress, text
        for line in progress:
            assert "simulated" in line and " UTC (" in line and "at the site" in line, line
            assert "{" not in line and "Counter(" not in line and "'" not in line, line  # no Python reprs
        assert "night: no solar" in progress[0], progress[0]  # the simulation starts at the site's midnight
        summary = json.loads((directory / "summary.json").read_text())
        assert summary["stopped_by"] == "sim-hours" and summary["checks"]["nodes_agree"] is True
        assert "stopped by: sim-hours" in text and "checks: minted_equals_sent=yes" in text
        assert "trades {" not in text and "accepted {" not in text
    finally:
        finish(proc, [])
