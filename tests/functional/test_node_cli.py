"""The `kwh-node` command: TOML config, refusals with one readable line, signals."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework import AUDITOR, REPO, NodeNet, NodeProcess, free_port, height, request, status, wait_until
from ledger.testing import make_net
from node.keyfile import save_key

pytestmark = pytest.mark.functional


def run_node(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def one_error_line(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    """Exit code 2 and one `kwh-node: error: ...` line (info log lines from before the failure aside)."""
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.strip().splitlines() if " level=info " not in line]
    assert len(lines) == 1 and lines[0].startswith("kwh-node: error:") and fragment in lines[0], result.stderr


def test_refusals_are_one_readable_line(tmp_path: Path) -> None:
    net = make_net(authorities=1, accounts=1)
    genesis = tmp_path / "genesis.json"
    net.genesis.save(genesis)
    one_error_line(run_node("--data-dir", str(tmp_path / "db")), "--genesis is required")
    one_error_line(run_node("--genesis", str(tmp_path / "nope.json"), "--data-dir", str(tmp_path / "db")),
                   "cannot read genesis")
    (tmp_path / "bad.json").write_text("{}")
    one_error_line(run_node("--genesis", str(tmp_path / "bad.json"), "--data-dir", str(tmp_path / "db")),
                   "invalid genesis")
    (tmp_path / "key.json").write_text('{"type": "ed25519"}')
    one_error_line(run_node("--genesis", str(genesis), "--data-dir", str(tmp_path / "db"), "--key",
                            str(tmp_path / "key.json")), "key file")
    # a data dir made for another genesis is refused, not mixed
    make_net(authorities=1, accounts=1).genesis.save(tmp_path / "other.json")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        one_error_line(run_node("--genesis", str(genesis), "--data-dir", str(tmp_path / "db"), "--listen",
                                f"127.0.0.1:{port}"), "cannot listen")
    one_error_line(run_node("--genesis", str(tmp_path / "other.json"), "--data-dir", str(tmp_path / "db")),
                   "different genesis")


def test_toml_config_runs_a_node_and_sigint_stops_it(tmp_path: Path) -> None:
    net = NodeNet(tmp_path, authorities=1, observers=0, start=False)
    key_path = tmp_path / "a0.json"
    save_key(key_path, net.net.authorities[0])
    port = free_port()
    config = tmp_path / "node.toml"
    config.write_text(f'genesis = "genesis.json"\ndata_dir = "toml-db"\nlisten = "127.0.0.1:{port}"\n'
                      f'key = "a0.json"\nlog_level = "info"\nadmin_token = "0123456789"\n')
    proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(config)], cwd=REPO,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: height(url) >= 2, 30, message="the configured node produces blocks")
        assert status(url)["authority"] is True
        assert (tmp_path / "toml-db").is_dir()
        # a second process on the same data dir is refused (LevelDB lock), the first goes on
        one_error_line(run_node("--config", str(config), "--listen", f"127.0.0.1:{free_port()}"), "data dir")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    events = [line.split(" event=")[1].split(" ")[0] for line in err.splitlines() if " event=" in line]
    assert events[0] == "chain_opened" and events[-2:] == ["stopping", "stopped"], events
    assert all(line.startswith("ts=") for line in err.splitlines()), err


def test_keyless_observer_follows_by_polling(tmp_path: Path) -> None:
    """A node without a member key reads block bodies only with an auditor's key (--read-key, ADR 012);
    without one it sees headers, not transactions, and does not follow."""
    with NodeNet(tmp_path, authorities=1, observers=0) as net:
        save_key(tmp_path / "auditor.json", AUDITOR)
        plain = NodeProcess(tmp_path, "plain", net.genesis_path, None, None,
                            ["--read-key", str(tmp_path / "auditor.json")])
        blind = NodeProcess(tmp_path, "blind", net.genesis_path, None, None)
        plain.peers = blind.peers = [net.authorities[0].url]
        try:
            plain.start()
            blind.start()
            target = height(net.authorities[0]) + 2
            wait_until(lambda: height(plain) >= target, 30, message="keyless observer syncs")
            s = status(plain)
            assert s["node_key"] is None and s["authority"] is False and s["peers"][0]["height"] >= target - 2
            assert height(blind) == 0 and "GET /blocks: HTTP 401" in blind.log_text()
        finally:
            plain.kill()
            blind.kill()


def test_client_request_rate_is_bounded(tmp_path: Path) -> None:
    with NodeNet(tmp_path, authorities=1, observers=0, extra_args=["--api-rate", "2"]) as net:
        node = net.authorities[0]
        answers = [request(node, "GET", "/status")[:2] for _ in range(30)]
        limited = [data for code, data in answers if code == 429]
        assert limited and limited[0] == {"error": "rate_limited", "detail": limited[0]["detail"]}
        assert any(code == 200 for code, _ in answers)
        time.sleep(1.0)  # the bucket refills
        assert request(node, "GET", "/status")[0] == 200


def test_killed_node_restarts_consistent_and_goes_on(tmp_path: Path) -> None:
    with NodeNet(tmp_path, authorities=1, observers=0, block_interval_ms=200) as net:
        node = net.authorities[0]
        wait_until(lambda: height(node) >= 5, 20, message="blocks before the kill")
        node.kill()  # SIGKILL: no shutdown code runs
        before = max(int(line.split(" height=")[1].split(" ")[0]) for line in node.log_text().splitlines()
                     if "event=block_produced" in line)
        node.start()
        assert height(node) >= before  # every produced block was committed before it was announced
        wait_until(lambda: height(node) >= before + 3, 20, message="production goes on after the restart")
        tip = height(node)
        blocks = [request(node, "GET", f"/blocks/{h}")[1] for h in range(1, tip + 1)]
        assert all(b["prev_hash"] == a["hash"] for a, b in zip(blocks, blocks[1:]))
