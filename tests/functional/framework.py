"""Real `python -m node` processes on 127.0.0.1 for functional tests (node, wallet and devnet suites).

Public API (everything else is internal):

    NodeNet(tmp_path, authorities=3, observers=1, accounts=4, meters=0, block_interval_ms=500,
            min_difficulty=16, spare_observers=1, admin_token=ADMIN_TOKEN, start=True, proxied=False,
            **make_net_kwargs)
        A genesis (ledger.testing.make_net, timestamped now) with key files for every node, and one node
        per authority and observer; each dials all the others. Use as a context manager or call close().
        With proxied=True every node reaches every other through its own TCP proxy (netproxy.py: one link
        per ordered pair for --peers, one per node for the --public-url peers dial back), so a test can
        split the network: .partition([a], [b, c]) cuts every link between groups (and all dial-back
        links), .heal() restores them all; .links[(dialer name, target name)] is one link.
        .net        ledger.testing.Net: genesis, authority keys, funded account keys, meter keys
        .chain_id   the genesis chain id
        .nodes      all NodeProcess, authorities first;  .authorities / .observers: the two groups
        .spare_keys observer keys in genesis that no node uses (for tests that act as a peer)
        .start(node=None) / .stop(node) / .kill(node) / .restart(node) / .close()
        .partition(*groups) / .heal()   (proxied nets only)
        .dump_logs(nodes=None) -> str   the tail of every node's log (printed on test failure)
    NodeProcess: .name .url .port .key .data_dir .log_path .grid_file .proc .alive .returncode
        .start(wait=True) .stop(timeout) (SIGTERM, then SIGKILL) .kill() .log_text()

    wait_until(predicate, timeout, interval=0.1, message="") -> the first truthy value of predicate();
        raises TimeoutError with the message (and the last exception predicate raised) after timeout s.
    status(node) -> /status JSON;  height(node) -> int
    get(node, path, expect=200, auth=AS_AUDITOR) -> JSON (asserts the status);  request(node, method, path,
        body=None, headers=None, auth=AS_AUDITOR) -> (status, parsed JSON or bytes, headers)
        Both sign a read credential (node/access.py) as the test AUDITOR that every NodeNet genesis names;
        auth=<AccountKey> signs as that key, auth=None sends none. read_credential(node, key, method, path,
        ts_ms=None, nonce=None) makes one header (for replay and expiry tests).
    post_tx(node, tx) -> (status, JSON)  (tx: a ledger Tx object or raw bytes; sent as application/msgpack)
    sync_blocks(nodes, min_height=None, timeout=30) -> height at which every node has the same block
    transfer(net, sender_index, to_address, amount, nonce, fee=None) -> SignedTx  (a signed coin transfer)
    replica(node, net) -> ledger Chain in memory with the node's canonical blocks (to build blocks on its head)
    PeerClient(node, key, chain_id): handshake as a genesis member and post raw /peer/* messages

Fixtures (tests/functional/conftest.py): `node_net(**NodeNet kwargs)` per test and `module_node_net(...)`
shared by a module; both close their nets in teardown and print the node logs when a test fails.
Every wait has a deadline; processes are always killed at close(), also when a test fails.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from ledger.block import decode_block
from ledger.chain import Chain
from ledger.encoding import decode
from devnet.nodes import kill_process, stop_process
from ledger.keys import DOMAIN_PEER, AccountKey, signing_bytes, verify_ed25519
from netproxy import Link, ProxyHub
from ledger.testing import Net, make_net
from ledger.tx import SignedTx, Transfer, Tx, encode_tx, sign_tx
from node.access import credential
from node.keyfile import save_key

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token"
START_TIMEOUT = 30.0
T = TypeVar("T")


HISTORY_S = 12 * 3600  # how far back a test network's genesis is dated


def free_port() -> int:
    """A port that was free a moment ago (the OS picks it; we release it for the node)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.1, message: str = "") -> T:
    """Poll until predicate() is truthy (exceptions count as not yet); raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - a node still starting refuses connections
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc is not None else ""
            raise TimeoutError(f"condition not met within {timeout:.0f} s: {message}{extra}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------- HTTP


# Every test network's genesis names this auditor (it may read every route, ADR 012); the helpers read as
# it unless told otherwise, so tests of other behaviour see everything, as they did before read roles.
AUDITOR = AccountKey(hashlib.sha256(b"kwh-test/auditor").digest())
AS_AUDITOR: Any = object()  # the default `auth` of request(): sign as AUDITOR


def node_identity(node: "NodeProcess | str") -> tuple[str, bytes]:
    """(chain id, node id) a read credential for this node is bound to, from its public /status."""
    cached = getattr(node, "_identity", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    _, data, _ = request(node, "GET", "/status", auth=None)
    identity = (data["chain_id"], bytes.fromhex(data["node_key"] or data["genesis"]))
    if not isinstance(node, str):
        node._identity = identity  # type: ignore[attr-defined]
    return identity


def read_credential(node: "NodeProcess | str", key: AccountKey, method: str, path: str,
                    ts_ms: int | None = None, nonce: bytes | None = None) -> str:
    """An Authorization header that proves `key` for one request to `node`."""
    chain_id, node_id = node_identity(node)
    return credential(key, chain_id, node_id, method, path, ts_ms if ts_ms is not None else int(time.time() * 1000),
                      nonce)


def request(node: "NodeProcess | str", method: str, path: str, body: bytes | dict[str, Any] | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0,
            auth: AccountKey | None = AS_AUDITOR) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request; JSON answers are parsed, others returned as bytes. 4xx/5xx do not raise.
    `auth`: the key that signs a read credential (default the test auditor; None sends none). A request
    that already has an Authorization header is sent as it is."""
    base = node if isinstance(node, str) else node.url
    hdrs = dict(headers or {})
    if auth is not None and "Authorization" not in hdrs:
        hdrs["Authorization"] = read_credential(node, AUDITOR if auth is AS_AUDITOR else auth, method, path)
    data: bytes | None
    if isinstance(body, dict):
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    else:
        data = body
    req = urllib.request.Request(base + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, rh = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        status, raw, rh = err.code, err.read(), dict(err.headers)
    if rh.get("Content-Type", "").startswith("application/json"):
        return status, json.loads(raw), rh
    return status, raw, rh


def get(node: "NodeProcess | str", path: str, expect: int = 200, auth: AccountKey | None = AS_AUDITOR) -> Any:
    status_code, data, _ = request(node, "GET", path, auth=auth)
    assert status_code == expect, f"GET {path}: HTTP {status_code}: {data!r}"
    return data


def status(node: "NodeProcess | str") -> dict[str, Any]:
    return get(node, "/status", auth=None)


def height(node: "NodeProcess | str") -> int:
    return int(status(node)["height"])


def post_tx(node: "NodeProcess | str", tx: Tx | bytes) -> tuple[int, Any]:
    raw = tx if isinstance(tx, bytes) else encode_tx(tx)
    code, data, _ = request(node, "POST", "/tx", raw, {"Content-Type": "application/msgpack"})
    return code, data


def include_all(node: "NodeProcess", txs: list[Tx], timeout: float = 60) -> None:
    """Submit transactions (each must be accepted) and wait until every one is in a block: seeds a
    module's net with known activity."""
    for tx in txs:
        code, answer = post_tx(node, tx)
        assert code == 200, answer
    wait_until(lambda: all(get(node, f"/tx/{t.txid.hex()}")["status"] == "included" for t in txs), timeout,
               message=f"{len(txs)} txs included")


def transfer(net: Net, sender_index: int, to: bytes, amount: int, nonce: int, fee: int | None = None) -> SignedTx:
    """A signed coin transfer from funded account `sender_index` of the net."""
    return sign_tx(net.accounts[sender_index], net.genesis.chain_id, nonce,
                   fee if fee is not None else net.genesis.min_fee, Transfer(to, amount))


def replica(node: "NodeProcess | str", net: Net) -> Chain:
    """A chain in memory holding `node`'s canonical blocks, for building blocks on its head (misbehaviour
    tests sign them with keys from `net`). Blocks are checked as any node would check them."""
    chain = net.chain()
    while True:
        code, raw, _ = request(node, "GET", f"/blocks?from={chain.height + 1}&limit=100&format=msgpack")
        assert code == 200, raw
        blocks = [decode_block(b, chain.chain_id, chain.params.max_block_txs) for b in decode(raw)]
        for block in blocks:
            chain.import_block(block)
        if len(blocks) < 100:
            return chain


def sync_blocks(nodes: Iterable["NodeProcess"], min_height: int | None = None, timeout: float = 30.0) -> int:
    """Wait until every node has the same block at the lowest of their heights, that height being at least
    `min_height` (default: the highest height any of them has now). Returns that height."""
    nodes = list(nodes)
    if min_height is None:
        min_height = max(height(n) for n in nodes)

    def agreed() -> int:
        low = min(height(n) for n in nodes)
        if low < min_height:  # type: ignore[operator]
            return 0
        hashes = {get(n, f"/blocks/{low}")["hash"] for n in nodes}
        return low if len(hashes) == 1 else 0

    return wait_until(agreed, timeout, 0.1, f"nodes {[n.name for n in nodes]} agree at height >= {min_height}")


# -------------------------------------------------------------------------------------------- nodes


class NodeProcess:
    """One `python -m node` with its own data dir, key file, log file and grid-signal file."""

    def __init__(self, root: Path, name: str, genesis: Path, key: AccountKey | None, admin_token: str | None,
                 extra_args: list[str] | None = None) -> None:
        self.name = name
        self.key = key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tls_port: int | None = None  # set (before start) to also serve TLS there; peers then dial tls_url
        self.data_dir = root / name / "db"
        self.log_path = root / f"{name}.log"
        self.grid_file = root / name / "grid-signal"
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.key_path: Path | None = None
        if key is not None:
            self.key_path = root / name / "node-key.json"
            save_key(self.key_path, key)
        self.genesis = genesis
        self.admin_token = admin_token
        self.peers: list[str] = []
        self.public_url: str | None = None  # what peers dial back (a proxy in proxied nets)
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def tls_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    def args(self) -> list[str]:
        args = [sys.executable, "-m", "node", "--genesis", str(self.genesis), "--data-dir", str(self.data_dir),
                "--listen", f"127.0.0.1:{self.port}", "--grid-signal-file", str(self.grid_file),
                "--log-level", "debug", "--ban-seconds", "60"]
        if self.key_path is not None:
            args += ["--key", str(self.key_path)]
        if self.tls_port is not None:
            args += ["--tls-listen", f"127.0.0.1:{self.tls_port}"]
        if self.peers:
            args += ["--peers", ",".join(self.peers)]
        if self.public_url:
            args += ["--public-url", self.public_url]
        if self.admin_token:
            args += ["--admin-token", self.admin_token]
        return args + self.extra_args

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def start(self, wait: bool = True) -> None:
        assert not self.alive, f"{self.name} is already running"
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"--- start {time.strftime('%H:%M:%S')}: {' '.join(self.args())}\n".encode())
        self._log_file.flush()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("KWH_ADMIN_TOKEN", None)
        self.proc = subprocess.Popen(self.args(), cwd=REPO, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        def ready() -> bool:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited with {self.returncode}:\n{self.log_text()[-3000:]}")
            return request(self, "GET", "/status", timeout=2)[0] == 200
        try:
            wait_until(ready, timeout, 0.1, f"{self.name} serves /status")
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit code."""
        stop_process(self.proc, timeout)
        self._close_log()
        return self.returncode

    def kill(self) -> None:
        kill_process(self.proc)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class NodeNet:
    """A genesis, key files and one node process per authority and observer (see the module docstring)."""

    def __init__(self, tmp_path: Path, authorities: int = 3, observers: int = 1, accounts: int = 4, meters: int = 0,
                 block_interval_ms: int = 500, min_difficulty: int = 16, spare_observers: int = 1,
                 admin_token: str | None = ADMIN_TOKEN, start: bool = True, extra_args: list[str] | None = None,
                 proxied: bool = False, tls: bool = False, **make_net_kwargs: Any) -> None:
        self.root = Path(tmp_path)
        self.root.mkdir(parents=True, exist_ok=True)
        net = make_net(authorities=authorities, accounts=accounts, meters=meters, min_difficulty=min_difficulty,
                       block_interval_ms=block_interval_ms, **make_net_kwargs)
        observer_keys = [AccountKey.generate() for _ in range(observers)]
        self.spare_keys = [AccountKey.generate() for _ in range(spare_observers)]
        # dated HISTORY_S back, so readings of the last hours come after the meters' enrollment at genesis
        genesis = dataclasses.replace(net.genesis, timestamp_ms=(int(time.time()) - HISTORY_S) // 1800 * 1800 * 1000,
                                      observers=tuple(k.public for k in observer_keys + self.spare_keys),
                                      auditors=(AUDITOR.public,),
                                      meters=tuple(dataclasses.replace(m, first_start=None)
                                                   for m in net.genesis.meters))
        self.net = Net(genesis, net.authorities, net.accounts, net.meters)
        self.chain_id = genesis.chain_id
        self.genesis_path = self.root / "genesis.json"
        genesis.save(self.genesis_path)
        self.authorities = [NodeProcess(self.root, f"auth{i}", self.genesis_path, k, admin_token, extra_args)
                            for i, k in enumerate(net.authorities)]
        self.observers = [NodeProcess(self.root, f"obs{i}", self.genesis_path, k, admin_token, extra_args)
                          for i, k in enumerate(observer_keys)]
        self.nodes = self.authorities + self.observers
        self.tls = tls
        for n in self.nodes:
            if tls and n.key is not None:
                n.tls_port = free_port()
        self.hub: ProxyHub | None = None
        self.links: dict[tuple[str, str], Link] = {}  # (dialer, target) -> link
        self.back_links: dict[str, Link] = {}  # target -> the link its --public-url names
        if proxied:
            self.hub = ProxyHub()
            for n in self.nodes:
                for m in self.nodes:
                    if m is not n:
                        self.links[(n.name, m.name)] = self.hub.add(m.tls_port or m.port, f"{n.name}->{m.name}",
                                                                    tls=m.tls_port is not None)
                self.back_links[n.name] = self.hub.add(n.tls_port or n.port, f"*->{n.name}",
                                                       tls=n.tls_port is not None)
                n.public_url = self.back_links[n.name].url
            for n in self.nodes:
                n.peers = [self.links[(n.name, m.name)].url for m in self.nodes if m is not n]
        else:
            for n in self.nodes:
                n.peers = [m.tls_url if m.tls_port else m.url for m in self.nodes if m is not n]
        if start:
            self.start()

    def start(self, node: NodeProcess | None = None) -> None:
        """Start one node, or every node not running (all at once, then wait for each)."""
        targets = [node] if node is not None else [n for n in self.nodes if not n.alive]
        for n in targets:
            n.start(wait=False)
        for n in targets:
            n.wait_ready()

    def stop(self, node: NodeProcess, timeout: float = 15.0) -> int | None:
        return node.stop(timeout)

    def kill(self, node: NodeProcess) -> None:
        node.kill()

    def restart(self, node: NodeProcess) -> None:
        node.stop()
        node.start()

    def running(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n.alive]

    def partition(self, *groups: Iterable[NodeProcess]) -> None:
        """Split a proxied net: nodes in different groups cannot reach each other until heal(). Dial-back
        links are all cut too (one of them serves every dialer), the per-pair links keep each group whole."""
        assert self.hub is not None, "partition() needs NodeNet(proxied=True)"
        group_of = {n.name: i for i, g in enumerate(groups) for n in g}
        for (a, b), link in self.links.items():
            if group_of.get(a, -1) != group_of.get(b, -2):
                link.cut()
        for link in self.back_links.values():
            link.cut()

    def heal(self) -> None:
        """Restore every link of a proxied net."""
        for link in list(self.links.values()) + list(self.back_links.values()):
            link.restore()

    def close(self) -> None:
        for n in self.nodes:
            if n.alive and n.proc is not None:
                n.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for n in self.nodes:
            if n.proc is not None:
                try:
                    n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            n.kill()
        if self.hub is not None:
            self.hub.close()

    def dump_logs(self, nodes: Iterable[NodeProcess] | None = None, tail: int = 60) -> str:
        out = []
        for n in (nodes if nodes is not None else self.nodes):
            lines = n.log_text().splitlines()
            out.append(f"===== {n.name} ({n.url}) rc={n.returncode} log {n.log_path} (last {tail} lines) =====")
            out.extend(lines[-tail:])
        return "\n".join(out)

    def __enter__(self) -> "NodeNet":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -------------------------------------------------------------------------------------------- peers


class PeerClient:
    """Acts as a genesis member towards one node: handshake, then raw /peer/* posts (for misbehaviour tests)."""

    def __init__(self, node: NodeProcess | str, key: AccountKey, chain_id: str, url: str = "") -> None:
        self.node = node
        self.key = key
        self.chain_id = chain_id
        self.url = url
        self.token: str | None = None

    def handshake(self) -> tuple[int, Any]:
        """Returns (HTTP status, answer) of the step that ended it; sets .token on success."""
        mine = secrets.token_bytes(32)
        body: dict[str, Any] = {"chain_id": self.chain_id, "key": self.key.public.hex(), "challenge": mine.hex()}
        if self.url:
            body["url"] = self.url
        code, hello, _ = request(self.node, "POST", "/peer/hello", body)
        if code != 200:
            return code, hello
        their_key = bytes.fromhex(hello["key"])
        message = signing_bytes(DOMAIN_PEER, self.chain_id, ["hello", mine, self.key.public])
        assert verify_ed25519(their_key, bytes.fromhex(hello["signature"]), message), "node failed its proof"
        theirs = bytes.fromhex(hello["challenge"])
        signature = self.key.sign(signing_bytes(DOMAIN_PEER, self.chain_id, ["hello", theirs, their_key]))
        code, answer, _ = request(self.node, "POST", "/peer/handshake",
                                  {"key": self.key.public.hex(), "challenge": theirs.hex(),
                                   "signature": signature.hex()})
        if code == 200:
            self.token = answer["token"]
        return code, answer

    def post(self, path: str, raw: bytes) -> tuple[int, Any]:
        headers = {"Content-Type": "application/msgpack"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        code, data, _ = request(self.node, "POST", path, raw, headers)
        return code, data
