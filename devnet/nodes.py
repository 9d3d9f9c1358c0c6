"""Node processes of a devnet: start, wait until they serve, stop cleanly, and the pid file.

Each node is `python -m node` (the interpreter running the devnet) in its own session, so a Ctrl-C on the
terminal reaches the devnet supervisor only, and the supervisor stops the nodes in order: SIGTERM, wait,
SIGKILL whatever did not stop in time. Node output goes to `logs/NAME.log` in the devnet directory.

The pid file (`devnet.pid`, JSON) names the supervisor and every node, so `kwh-devnet down` can stop a
devnet started in another terminal, or its orphaned nodes if the supervisor itself was killed. A pid is
only signalled after checking (via /proc) that it still runs the command we started, so a recycled pid
is never hit.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, Iterator

from node.keyfile import write_private

from .layout import Devnet, NodeSpec

REPO = Path(__file__).resolve().parents[1]
STOP_TIMEOUT_S = 15.0


class NodeStartError(RuntimeError):
    """A node did not come up; the message names it and carries its log's tail."""


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def cmdline(pid: int) -> str:
    """The command line of a running process ('' if it is gone or not readable)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@contextlib.contextmanager
def signals_deferred(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Hold stop signals while a node process is spawned, then deliver them: a handler that raises (Ctrl-C
    in `kwh-devnet up`) must not fire inside Popen, where the child would run on without anyone holding its
    pid to stop it. Handlers are per process and reset by exec, so the child is unaffected."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum)) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for sig in caught:
            signal.raise_signal(sig)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop a node process the way an operator would: SIGTERM, wait, SIGKILL if it does not stop."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_process(proc)


def kill_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL and reap."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


class NodeProc:
    """One node process of the devnet."""

    def __init__(self, devnet: Devnet, spec: NodeSpec, log_level: str = "info", extra_args: list[str] | None = None,
                 python: str = sys.executable) -> None:
        self.devnet = devnet
        self.spec = spec
        self.log_level = log_level
        self.extra_args = list(extra_args or [])
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def data_dir(self) -> Path:
        return self.devnet.path(self.spec.data_dir).resolve()

    @property
    def log_path(self) -> Path:
        return self.devnet.path(self.spec.log_file)

    def args(self) -> list[str]:
        # node to node over TLS pinned to the genesis keys; the plain port serves local tools and wallets
        peers = [n.peer_url for n in self.devnet.nodes if n.name != self.spec.name]
        args = [self.python, "-m", "node", "--genesis", str(self.devnet.genesis_path.resolve()),
                "--data-dir", str(self.data_dir), "--listen", self.spec.listen, "--tls-listen", self.spec.tls_listen,
                "--key", str(self.devnet.path(self.spec.key_file).resolve()),
                "--admin-token", self.devnet.admin_token, "--log-level", self.log_level]
        if peers:
            args += ["--peers", ",".join(peers)]
        return args + self.extra_args

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def start(self) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = open(self.log_path, "ab")
        self._log.write(f"--- devnet start {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(self.args())}\n"
                        .encode())
        self._log.flush()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env.pop("KWH_ADMIN_TOKEN", None)
        with signals_deferred():
            self.proc = subprocess.Popen(self.args(), cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            self.starts += 1

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/status", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive:
                raise NodeStartError(f"node {self.name} exited with code {self.returncode} while starting; "
                                     f"log {self.log_path}:\n{self.log_tail()}")
            if self.ready():
                return
            if time.monotonic() > deadline:
                raise NodeStartError(f"node {self.name} did not serve {self.url}/status within {timeout:.0f} s; "
                                     f"log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit code."""
        stop_process(self.proc, timeout)
        self._close_log()
        return self.returncode

    def kill(self) -> None:
        """SIGKILL: what a power cut does to a node."""
        kill_process(self.proc)
        self._close_log()

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class Supervisor:
    """All node processes of a devnet, and its pid file."""

    def __init__(self, devnet: Devnet, log_level: str = "info", extra_args: list[str] | None = None) -> None:
        self.devnet = devnet
        self.procs = [NodeProc(devnet, spec, log_level, extra_args) for spec in devnet.nodes]

    def proc(self, name: str) -> NodeProc:
        for p in self.procs:
            if p.name == name:
                return p
        raise KeyError(name)

    def busy_ports(self) -> list[str]:
        return [listen for p in self.procs for listen, port in ((p.spec.listen, p.spec.port),
                                                                 (p.spec.tls_listen, p.spec.tls_port))
                if not port_free(p.spec.host, port)]

    def start_all(self, timeout: float = 60.0) -> None:
        """Start every node not running, then wait for each; on failure stop them all and raise."""
        targets = [p for p in self.procs if not p.alive]
        for p in targets:
            p.start()
        self.write_pid_file()
        try:
            deadline = time.monotonic() + timeout
            for p in targets:
                p.wait_ready(max(1.0, deadline - time.monotonic()))
        except NodeStartError:
            self.stop_all()
            raise

    def restart(self, name: str, wait: bool = True) -> None:
        p = self.proc(name)
        p.stop()
        p.start()
        self.write_pid_file()
        if wait:
            p.wait_ready()

    def stop_all(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every node at once, wait for all (SIGKILL at the deadline), remove the pid file."""
        for p in self.procs:
            if p.alive and p.proc is not None:
                p.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.stop(max(0.1, deadline - time.monotonic()))
        self.remove_pid_file()

    def dead(self) -> list[NodeProc]:
        """Nodes that were started and are not running any more."""
        return [p for p in self.procs if p.proc is not None and not p.alive]

    # pid file -------------------------------------------------------------------------------------
    def write_pid_file(self) -> None:
        data = {"supervisor": os.getpid(), "supervisor_cmd": cmdline(os.getpid()),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "nodes": {p.name: {"pid": p.pid, "url": p.url, "data_dir": str(p.data_dir)}
                          for p in self.procs if p.alive}}
        write_private(self.devnet.pid_path, (json.dumps(data, indent=2) + "\n").encode())

    def remove_pid_file(self) -> None:
        try:
            data = json.loads(self.devnet.pid_path.read_text())
        except (OSError, ValueError):
            return
        if data.get("supervisor") == os.getpid():
            self.devnet.pid_path.unlink(missing_ok=True)


def read_pid_file(devnet: Devnet) -> dict[str, Any] | None:
    try:
        return json.loads(devnet.pid_path.read_text())
    except (OSError, ValueError):
        return None


def running_supervisor(devnet: Devnet) -> int | None:
    """The pid of a live `kwh-devnet up` of this directory, if any."""
    data = read_pid_file(devnet)
    if not data:
        return None
    pid = int(data.get("supervisor") or 0)
    if pid and pid != os.getpid() and pid_alive(pid) and cmdline(pid) == data.get("supervisor_cmd"):
        return pid
    return None


def running_nodes(devnet: Devnet) -> dict[str, int]:
    """Node processes of this directory still running (checked against their command line)."""
    data = read_pid_file(devnet) or {}
    out = {}
    for name, info in (data.get("nodes") or {}).items():
        pid = int(info.get("pid") or 0)
        cmd = cmdline(pid) if pid else ""
        if pid and pid_alive(pid) and " -m node " in cmd and str(info.get("data_dir")) in cmd:
            out[name] = pid
    return out


def stop_devnet(devnet: Devnet, timeout: float = 30.0) -> tuple[bool, list[str]]:
    """Stop a running devnet: its supervisor (which stops its nodes), then any node left over.
    Returns (something was running, names of nodes that had to be killed)."""
    found = False
    sup = running_supervisor(devnet)
    if sup is not None:
        found = True
        os.kill(sup, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(sup) and time.monotonic() < deadline:
            time.sleep(0.1)
    nodes = running_nodes(devnet)
    killed: list[str] = []
    if nodes:
        found = True
        for pid in nodes.values():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(pid_alive(p) for p in nodes.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for name, pid in nodes.items():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                killed.append(name)
    if running_supervisor(devnet) is None and not running_nodes(devnet):
        devnet.pid_path.unlink(missing_ok=True)
    return found, killed
