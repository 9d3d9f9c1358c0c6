"""Peers over HTTP: handshake, sessions, gossip, sync, bans.

Handshake (both sides prove their node key; only genesis authorities and observers are accepted):
  1. dialer -> `POST /peer/hello {chain_id, key, url, challenge}`; the listener answers
     `{chain_id, key, challenge, signature}` where signature signs [dialer's challenge, dialer's key];
  2. dialer checks that signature and that the listener's key is a member, then
     `POST /peer/handshake {key, challenge, signature}` signing [listener's challenge, listener's key];
  3. the listener answers `{token}`: a session for `/peer/*` (header `Authorization: Bearer <token>`).
Signatures use `ledger.keys.DOMAIN_PEER` and the chain id, and each binds the fresh challenge to the key
of the node it is meant for, so a member cannot replay another node's proof to a third node.
The listener then dials back the URL it was given, so both directions have a session and either side
can push. A node without a member key still syncs from peers' public routes, it just gets no pushes.

Gossip: new blocks (`POST /peer/block`, canonical bytes) and batches of txs (`POST /peer/txs`, msgpack
list of tx bytes), deduplicated by seen-sets, through a bounded queue per peer.
Sync: each peer's `/status` is polled; when it reports more total work (or sends a block whose parent is
unknown) blocks are fetched in batches with `GET /blocks?from=H&limit=100&format=msgpack`, signed with a read
credential of the node key or --read-key (node/access.py; the next batch is fetched while the current one is
imported) and imported in order; reorgs happen in Chain.import_block.
A peer that sends an invalid block or garbage is disconnected and banned for `ban_seconds`.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from ledger import errors as E
from ledger.block import Block, decode_block
from ledger.chain import MAX_FUTURE_DRIFT_MS
from ledger.encoding import MAX_MESSAGE_BYTES, decode, encode
from ledger.errors import Rejected
from ledger.keys import DOMAIN_PEER, signing_bytes, verify_ed25519
from ledger.tx import Tx, decode_tx, encode_tx

from . import tls
from .access import credential
from .codes import BAD_REQUEST, RATE_LIMITED, UNAUTHORIZED, ApiError, hex_value
from .service import LRU, now_ms

if TYPE_CHECKING:
    from aiohttp import web

    from .service import Node

SYNC_BATCH = 100
MAX_BLOCK_BODY = MAX_MESSAGE_BYTES + 1024
MAX_TXS_BODY = 4 * 1024 * 1024
MAX_TXS_PER_PUSH = 2000
MAX_BLOCKS_RESPONSE = 32 * 1024 * 1024
MAX_JSON_BODY = 16 * 1024
CHALLENGE_TTL_S = 30.0
MAX_CHALLENGES = 1024
MAX_PEERS = 64
PEER_QUEUE_BLOCKS = 256
PEER_QUEUE_TXS = 20_000
JSON_TYPES = ("application/json",)


class TokenBucket:
    """`rate` requests per second with a burst of `burst`; rate 0 means unlimited."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate * 5)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def allow(self, cost: float = 1.0) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


@dataclass
class Session:
    """An inbound session: a member that proved its key to us."""
    key: bytes
    url: str
    bucket: TokenBucket
    created: float = field(default_factory=time.monotonic)


@dataclass
class Peer:
    """A node we dial: its URL, what it told us, our session with it and what we still have to send it."""
    url: str
    static: bool  # from --peers: dialed forever; learned ones are forgotten after long failure
    key: bytes | None = None
    token: str | None = None
    height: int = 0
    total_work: int = 0
    justified: int = 0
    head: str = ""
    last_ok: float = 0.0
    failures: int = 0
    refused_until: float = 0.0
    polled: bool = False
    blocks: list[bytes] = field(default_factory=list)
    txs: list[bytes] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    poke: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def ident(self) -> str:
        return self.key.hex() if self.key is not None else self.url

    @property
    def connected(self) -> bool:
        return self.token is not None and self.failures == 0


class PeerError(Exception):
    """A peer answered something we cannot use."""


def _peer_message(chain_id: str, challenge: bytes, verifier: bytes) -> bytes:
    return signing_bytes(DOMAIN_PEER, chain_id, ["hello", challenge, verifier])


def valid_url(url: Any) -> bool:
    if not isinstance(url, str) or len(url) > 256:
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. "http://[::1": an unclosed IPv6 literal
        return False


class PeerManager:
    def __init__(self, node: "Node") -> None:
        self.node = node
        self.chain = node.chain
        self.chain_id = node.chain.chain_id
        self.log = node.log
        self.peers: dict[str, Peer] = {}
        self.sessions: dict[str, Session] = {}
        self.challenges: OrderedDict[bytes, tuple[bytes, str, float]] = OrderedDict()
        self.bans: dict[str, float] = {}
        self.seen_txs = LRU(200_000)
        self.syncing = False
        self.initial_done = asyncio.Event()
        # https peers: TLS 1.3, the certificate's key pinned against genesis in _pin (node/tls.py)
        self.connector = tls.PinnedConnector(lambda: node.members)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, sock_connect=3, sock_read=30),
                                          connector=self.connector)
        interval_s = node.chain.params.block_interval_ms / 1000
        self.poll_s = min(5.0, max(0.25, interval_s))

    # lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        for url in self.node.config.peers:
            self.add_peer(url.rstrip("/"), static=True)
        if not self.peers:
            self.initial_done.set()

    async def stop(self) -> None:
        tasks = [t for p in self.peers.values() for t in p.tasks]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.http.close()

    def add_peer(self, url: str, static: bool) -> Peer | None:
        known = self.peers.get(url)
        if known is not None:
            known.static = known.static or static
            return known
        if url == self.node.config.advertised_url or len(self.peers) >= MAX_PEERS or self.node.stopping.is_set():
            return None
        peer = Peer(url, static)
        self.peers[url] = peer
        peer.tasks.append(asyncio.create_task(self._poll_loop(peer), name=f"peer-poll {url}"))
        peer.tasks.append(asyncio.create_task(self._send_loop(peer), name=f"peer-send {url}"))
        return peer

    def _drop_peer(self, peer: Peer) -> None:
        self.peers.pop(peer.url, None)
        for t in peer.tasks:
            if t is not asyncio.current_task():
                t.cancel()

    def _check_initial(self) -> None:
        if all(p.polled for p in self.peers.values() if p.static):
            self.initial_done.set()

    # bans -----------------------------------------------------------------------------------------
    def banned(self, ident: str) -> float:
        """Seconds left on a ban (0 if none)."""
        until = self.bans.get(ident)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self.bans[ident]
            return 0.0
        return left

    def ban(self, ident: str, reason: str) -> None:
        """Disconnect a misbehaving peer (sessions both ways) and refuse it for `ban_seconds`."""
        seconds = self.node.config.ban_seconds
        self.bans[ident] = time.monotonic() + seconds
        for token in [t for t, s in self.sessions.items() if s.key.hex() == ident or s.url == ident]:
            del self.sessions[token]
        for peer in self.peers.values():
            if peer.ident == ident or peer.url == ident:
                peer.token = None
                peer.blocks.clear()
                peer.txs.clear()
        self.node.metrics.peer_bans.inc()
        self.log.warning("peer_banned", peer=ident, seconds=seconds, reason=reason)

    # handshake: listener side ---------------------------------------------------------------------
    async def handle_hello(self, request: "web.Request") -> dict[str, Any]:
        body = await read_json(request)
        if body.get("chain_id") != self.chain_id:
            raise ApiError(E.WRONG_CHAIN, f"this node is on chain {self.chain_id!r}")
        key = hex_value(body.get("key"), 32, "key")
        challenge = hex_value(body.get("challenge"), 32, "challenge")
        url = body.get("url")
        if url is not None and not valid_url(url):
            raise ApiError(BAD_REQUEST, "url must be http(s)://host:port")
        me = self.node.key
        if me is None or not self.node.member:
            raise ApiError(UNAUTHORIZED, "this node has no member key and takes no peers")
        if key not in self.node.members:
            raise ApiError(UNAUTHORIZED, "key is not an authority or observer in genesis")
        if key == me.public:
            raise ApiError(UNAUTHORIZED, "that is this node's own key (two nodes must not share a key)")
        left = self.banned(key.hex())
        if left:
            raise ApiError(UNAUTHORIZED, f"banned for another {left:.0f} s")
        mine = secrets.token_bytes(32)
        self.challenges[mine] = (key, url or "", time.monotonic() + CHALLENGE_TTL_S)
        while len(self.challenges) > MAX_CHALLENGES:
            self.challenges.popitem(last=False)
        return {"chain_id": self.chain_id, "key": me.public.hex(), "challenge": mine.hex(),
                "signature": me.sign(_peer_message(self.chain_id, challenge, key)).hex()}

    async def handle_handshake(self, request: "web.Request") -> dict[str, Any]:
        body = await read_json(request)
        key = hex_value(body.get("key"), 32, "key")
        challenge = hex_value(body.get("challenge"), 32, "challenge")
        signature = hex_value(body.get("signature"), 64, "signature")
        entry = self.challenges.pop(challenge, None)
        if entry is None or entry[0] != key or entry[2] < time.monotonic():
            raise ApiError(UNAUTHORIZED, "unknown or expired challenge; start again with /peer/hello")
        me = self.node.key
        assert me is not None
        if not verify_ed25519(key, signature, _peer_message(self.chain_id, challenge, me.public)):
            raise ApiError(E.BAD_SIGNATURE, "handshake signature does not verify")
        if self.banned(key.hex()):
            raise ApiError(UNAUTHORIZED, "banned")
        url = entry[1]
        for t in [t for t, s in self.sessions.items() if s.key == key]:
            del self.sessions[t]  # a restarted peer: its old session goes
        token = secrets.token_urlsafe(24)
        self.sessions[token] = Session(key, url, TokenBucket(self.node.config.peer_rate))
        self.log.info("peer_accepted", key=key.hex()[:16], url=url)
        if url and url != self.node.config.advertised_url:
            known = self.peers.get(url)
            if known is None:
                self.add_peer(url, static=False)
            elif known.token is None:
                known.poke.set()
        return {"token": token, "key": me.public.hex()}

    def session_of(self, request: "web.Request") -> Session:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else ""
        session = self.sessions.get(token)
        if session is None:
            raise ApiError(UNAUTHORIZED, "no peer session: handshake with /peer/hello first")
        if self.banned(session.key.hex()):
            self.sessions.pop(token, None)
            raise ApiError(UNAUTHORIZED, "banned")
        if not session.bucket.allow():
            raise ApiError(RATE_LIMITED, "too many requests from this peer")
        return session

    def session_key(self, request: "web.Request") -> Session | None:
        """The session a request carries, if any (public routes count it against that peer's rate)."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        return self.sessions.get(auth[7:].strip())

    # gossip: receiving ----------------------------------------------------------------------------
    async def handle_block(self, request: "web.Request") -> tuple[int, dict[str, Any]]:
        session = self.session_of(request)
        ident = session.key.hex()
        raw = await read_body(request, MAX_BLOCK_BODY)
        try:
            block = decode_block(raw, self.chain_id, self.chain.params.max_block_txs)
        except Rejected as exc:
            self.ban(ident, f"undecodable block: {exc.detail}")
            raise
        if block.hash in self.node.seen_blocks and self.chain.meta(block.hash) is not None:
            return 200, {"status": "known", "hash": block.hash.hex(), "height": block.height}
        if block.header.timestamp_ms > now_ms() + MAX_FUTURE_DRIFT_MS:
            raise ApiError(E.BAD_TIMESTAMP, "block is from the future (clocks apart?)")  # no ban: clock skew
        try:
            result = await self.node.import_block(block, origin=ident)
        except Rejected as exc:
            if exc.reason == E.UNKNOWN_PARENT:
                self._sync_soon(session)
                raise
            self.ban(ident, f"invalid block {block.hash.hex()[:16]} at {block.height}: {exc.reason}: {exc.detail}")
            raise
        return 200, {"status": result.status, "hash": block.hash.hex(), "height": block.height}

    def _sync_soon(self, session: Session) -> None:
        for peer in self.peers.values():
            if peer.key == session.key or peer.url == session.url:
                peer.poke.set()
                return

    async def handle_txs(self, request: "web.Request") -> dict[str, Any]:
        session = self.session_of(request)
        ident = session.key.hex()
        raw = await read_body(request, MAX_TXS_BODY)
        try:
            items = decode(raw, MAX_TXS_BODY)
            if type(items) is not list or len(items) > MAX_TXS_PER_PUSH or any(type(i) is not bytes for i in items):
                raise Rejected(E.MALFORMED, f"expected a list of at most {MAX_TXS_PER_PUSH} tx byte strings")
            txs = [decode_tx(i, self.chain_id) for i in items]
        except Rejected as exc:
            self.ban(ident, f"garbage transactions: {exc.reason}: {exc.detail}")
            raise
        accepted = 0
        for tx in txs:
            if tx.txid in self.seen_txs:
                continue
            try:
                self.node.submit_tx(tx, origin=ident)
                accepted += 1
            except Rejected:
                pass  # state-dependent (nonce, funds...): a correct peer may have seen another state
        return {"accepted": accepted, "received": len(txs)}

    # gossip: sending ------------------------------------------------------------------------------
    def gossip_block(self, block: Block, exclude: str | None = None) -> None:
        raw = block.encode()
        for peer in self.peers.values():
            if peer.token is None or peer.ident == exclude:
                continue
            if len(peer.blocks) >= PEER_QUEUE_BLOCKS:
                peer.blocks.pop(0)  # a slow peer catches up by syncing
            peer.blocks.append(raw)
            peer.wake.set()

    def gossip_tx(self, tx: Tx, exclude: str | None = None) -> None:
        self.seen_txs.add(tx.txid)
        raw = encode_tx(tx)
        for peer in self.peers.values():
            if peer.token is None or peer.ident == exclude or len(peer.txs) >= PEER_QUEUE_TXS:
                continue
            peer.txs.append(raw)
            peer.wake.set()

    async def _send_loop(self, peer: Peer) -> None:
        while True:
            await peer.wake.wait()
            peer.wake.clear()
            try:
                while peer.blocks and peer.token is not None:
                    raw = peer.blocks.pop(0)
                    await self._push(peer, "/peer/block", raw)
                while peer.txs and peer.token is not None:
                    batch, peer.txs = peer.txs[:MAX_TXS_PER_PUSH], peer.txs[MAX_TXS_PER_PUSH:]
                    await self._push(peer, "/peer/txs", encode(batch))
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, PeerError) as exc:
                self.log.debug("peer_push_failed", peer=peer.url, error=_short(exc))
                peer.blocks.clear()
                peer.txs.clear()
                if not isinstance(exc, PeerError):
                    peer.token = None  # unreachable: the poll loop handshakes again once it answers
            except Exception as exc:  # noqa: BLE001 - a bug here must not end gossip to this peer for good
                self.log.error("peer_push_error", peer=peer.url, error=repr(exc))
            await asyncio.sleep(0.02)  # lets a burst of txs gather into one batch

    async def _push(self, peer: Peer, path: str, body: bytes) -> None:
        headers = {"Content-Type": "application/msgpack", "Authorization": f"Bearer {peer.token}"}
        async with self.http.post(peer.url + path, data=body, headers=headers) as resp:
            if resp.status == 403:
                peer.token = None  # the peer restarted or dropped us: handshake again
                peer.poke.set()
                raise PeerError(f"{path}: session refused")
            if resp.status >= 500:
                raise PeerError(f"{path}: HTTP {resp.status}")
            if resp.status >= 400:
                detail = await resp.text()
                self.log.debug("peer_push_refused", peer=peer.url, path=path, status=resp.status,
                               answer=detail[:200])

    # dialing and polling --------------------------------------------------------------------------
    async def _poll_loop(self, peer: Peer) -> None:
        while self.peers.get(peer.url) is peer:
            wait = self.poll_s
            try:
                if self.banned(peer.ident):
                    wait = max(wait, min(self.banned(peer.ident), 5.0))
                else:
                    await self._poll(peer)
                    if peer.failures:
                        self.log.info("peer_reachable", peer=peer.url)
                    peer.failures = 0
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, PeerError, ValueError, KeyError,
                    TypeError) as exc:
                peer.failures += 1
                if peer.failures == 1 or peer.failures % 60 == 0:
                    self.log.info("peer_unreachable", peer=peer.url, error=_short(exc), failures=peer.failures)
                wait = min(10.0, self.poll_s * min(peer.failures, 8))
                if not peer.static and peer.failures > 100:
                    self.log.info("peer_forgotten", peer=peer.url)
                    self._drop_peer(peer)
                    return
            except Exception as exc:  # noqa: BLE001 - a bug must not stop polling this peer for good
                peer.failures += 1
                self.log.error("peer_poll_error", peer=peer.url, error=repr(exc))
                wait = 5.0
            peer.polled = True
            self._check_initial()
            peer.poke.clear()
            try:
                await asyncio.wait_for(peer.poke.wait(), timeout=wait)
            except asyncio.TimeoutError:
                pass

    async def _poll(self, peer: Peer) -> None:
        node = self.node
        if node.member and peer.token is None and time.monotonic() >= peer.refused_until:
            await self._handshake(peer)
            if self.peers.get(peer.url) is not peer:
                return  # it was ourselves, or a second URL of a connected peer
        status = await self._get_json(peer, "/status")
        if status.get("chain_id") != self.chain_id or status.get("genesis") != self.chain.genesis_block.hash.hex():
            peer.refused_until = time.monotonic() + 300
            raise PeerError(f"peer is on another chain ({status.get('chain_id')!r})")
        peer.height = int(status["height"])
        peer.total_work = int(status["total_work"])
        peer.justified = int(status.get("justified_height", 0))
        peer.head = str(status["head"])
        if peer.key is None and isinstance(status.get("node_key"), str):
            try:
                key = bytes.fromhex(status["node_key"])
                if key in node.members:
                    peer.key = key
            except ValueError:
                pass
        peer.last_ok = time.monotonic()
        head = self.chain.head
        if peer.total_work > head.total_work or (peer.total_work == head.total_work and
                                                 peer.head != self.chain.head_hash.hex()):
            # an equally heavy head we lack is fetched too: the chain's tie rule decides, once stored
            if self.chain.meta(bytes.fromhex(peer.head)) is None:
                await self.sync_from(peer)

    def _pin(self, peer: Peer, resp: aiohttp.ClientResponse, expected: bytes | None) -> bytes | None:
        """On an https peer: the key of its TLS certificate, which must be a genesis member and, once the
        peer's key is known, that key. Anything else refuses the peer (a relay or an impostor). None on http."""
        if not peer.url.startswith("https://"):
            return None
        key = self.connector.response_key(resp)
        if key is None or key not in self.node.members or (expected is not None and key != expected):
            peer.refused_until = time.monotonic() + 300
            self.log.info("peer_tls_refused", peer=peer.url, cert_key=key.hex()[:16] if key else None)
            raise PeerError("peer's TLS certificate is not of its genesis node key")
        return key

    def _refused(self, peer: Peer, status: int, data: dict[str, Any]) -> None:
        """The peer answered our handshake with an error: try it again in a while."""
        peer.refused_until = time.monotonic() + 30
        self.log.info("peer_refused", peer=peer.url, status=status, error=data.get("error"), detail=data.get("detail"))

    async def _handshake(self, peer: Peer) -> None:
        me = self.node.key
        assert me is not None
        mine = secrets.token_bytes(32)
        hello = {"chain_id": self.chain_id, "key": me.public.hex(), "url": self.node.config.advertised_url,
                 "challenge": mine.hex()}
        async with self.http.post(peer.url + "/peer/hello", json=hello) as resp:
            cert_key = self._pin(peer, resp, None)
            data = await _json_answer(resp)
            if resp.status != 200:
                self._refused(peer, resp.status, data)
                return
        their_key = bytes.fromhex(data["key"])
        theirs = bytes.fromhex(data["challenge"])
        signature = bytes.fromhex(data["signature"])
        if their_key == me.public:
            self.log.info("peer_is_self", peer=peer.url)
            self._drop_peer(peer)
            return
        if their_key not in self.node.members:
            peer.refused_until = time.monotonic() + 300
            raise PeerError("peer's key is not an authority or observer in genesis")
        if cert_key is not None and cert_key != their_key:
            peer.refused_until = time.monotonic() + 300
            raise PeerError("peer's TLS certificate and handshake name different keys")
        if not verify_ed25519(their_key, signature, _peer_message(self.chain_id, mine, me.public)):
            self.ban(peer.url, "peer failed to prove its key in the handshake")
            raise PeerError("peer's handshake signature does not verify")
        if len(theirs) != 32:
            raise PeerError("bad challenge")
        answer = {"key": me.public.hex(), "challenge": theirs.hex(),
                  "signature": me.sign(_peer_message(self.chain_id, theirs, their_key)).hex()}
        async with self.http.post(peer.url + "/peer/handshake", json=answer) as resp:
            self._pin(peer, resp, their_key)
            data = await _json_answer(resp)
            if resp.status != 200:
                self._refused(peer, resp.status, data)
                return
        for other in list(self.peers.values()):  # one outbound session per key (one node under two URLs)
            if other is not peer and other.key == their_key and other.token is not None:
                if peer.static and not other.static:  # the operator's --peers URL wins over a learned one
                    self._drop_peer(other)
                    continue
                self._drop_peer(peer)
                return
        peer.key = their_key
        peer.token = str(data["token"])
        self.log.info("peer_connected", peer=peer.url, key=their_key.hex()[:16])

    async def _get_json(self, peer: Peer, path: str) -> dict[str, Any]:
        async with self.http.get(peer.url + path, headers=self._auth(peer)) as resp:
            self._pin(peer, resp, peer.key)
            if resp.status != 200:
                raise PeerError(f"GET {path}: HTTP {resp.status}")
            raw = await _read_limited(resp, 1024 * 1024)
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise PeerError(f"GET {path}: not a JSON object")
        return data

    def _auth(self, peer: Peer, path: str = "") -> dict[str, str]:
        """For a read of `path` (block bodies, ADR 012): a read credential signed with --read-key (a follower
        that is not a member reads as an auditor) or our node key (a member, or an authority voted in after
        genesis that our own chain does not know yet: the peer's does). It does not depend on the session,
        which one node dialing us under two URLs may have replaced. Else our session, if any."""
        read_key, node_key = self.node.read_key or self.node.key, peer.key
        if path and read_key is not None and node_key is not None:
            return {"Authorization": credential(read_key, self.chain_id, node_key, "GET", path, now_ms())}
        return {"Authorization": f"Bearer {peer.token}"} if peer.token else {}

    # sync -----------------------------------------------------------------------------------------
    async def sync_from(self, peer: Peer) -> None:
        """Catch up with a peer that has more work; one sync at a time."""
        if self.syncing:
            return
        self.syncing = True
        self.node.metrics.syncing.set(1)
        try:
            await self._sync(peer)
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, PeerError) as exc:
            self.log.info("sync_interrupted", peer=peer.url, error=_short(exc), height=self.chain.height)
        finally:
            self.syncing = False
            self.node.metrics.syncing.set(0)

    async def _fetch(self, peer: Peer, start: int, limit: int = SYNC_BATCH) -> list[Block]:
        """Blocks start.. from the peer; garbage (undecodable, not a chain) bans it."""
        path = f"/blocks?from={start}&limit={limit}&format=msgpack"
        async with self.http.get(peer.url + path, headers=self._auth(peer, path)) as resp:
            self._pin(peer, resp, peer.key)
            if resp.status != 200:
                raise PeerError(f"GET /blocks: HTTP {resp.status}")
            raw = await _read_limited(resp, MAX_BLOCKS_RESPONSE)
        try:
            items = decode(raw, MAX_BLOCKS_RESPONSE)
            if type(items) is not list or any(type(i) is not bytes for i in items):
                raise Rejected(E.MALFORMED, "expected a msgpack list of block bytes")
            blocks = [decode_block(i, self.chain_id, self.chain.params.max_block_txs) for i in items]
            for i, b in enumerate(blocks):
                if b.height != start + i or (i and b.header.prev_hash != blocks[i - 1].hash):
                    raise Rejected(E.MALFORMED, "blocks are not consecutive")
        except Rejected as exc:
            self.ban(peer.ident, f"garbage in /blocks: {exc.detail}")
            raise PeerError("garbage blocks") from None
        return blocks

    async def _sync(self, peer: Peer) -> None:
        chain = self.chain
        start = max(1, min(chain.height + 1, peer.height))
        back = 0
        while True:  # find where the peer's chain joins ours, stepping back 1, 2, 4... with one-block probes
            blocks = await self._fetch(peer, start, SYNC_BATCH if back == 0 else 1)
            if not blocks:
                return
            if chain.meta(blocks[0].header.prev_hash) is not None:
                break
            if start <= 1:
                raise PeerError("peer's chain does not join ours at genesis")
            back = max(1, back * 2)
            start = max(1, start - back)
        target = peer.height
        self.log.info("sync_started", peer=peer.url, start=start, target=target, height=chain.height)
        began = last_log = time.monotonic()
        count = 0
        while blocks:
            ahead = asyncio.create_task(self._fetch(peer, blocks[-1].height + 1))
            ahead.add_done_callback(_consume)
            try:
                imported = await self._import_batch(peer, blocks)
            except BaseException:
                ahead.cancel()
                raise
            count += imported
            if imported < len(blocks):
                ahead.cancel()
                return
            now = time.monotonic()
            if now - last_log >= 1.0 or len(blocks) < SYNC_BATCH:
                last_log = now
                self.log.info("sync_progress", peer=peer.url, height=chain.height, target=max(target, chain.height),
                              blocks=count, blocks_per_s=round(count / max(now - began, 1e-6), 1))
            try:
                blocks = await ahead
            except PeerError:
                return
        self.log.info("sync_done", peer=peer.url, height=chain.height, blocks=count,
                      seconds=round(time.monotonic() - began, 2))
        if count:
            self.gossip_block(chain.block(chain.head_hash), exclude=peer.ident)  # type: ignore[arg-type]

    async def _import_batch(self, peer: Peer, blocks: list[Block]) -> int:
        """Import fetched blocks in order; returns how many, stopping early on a bad block or shutdown."""
        for i, block in enumerate(blocks):
            if self.node.stopping.is_set():
                return i
            try:
                await self.node.import_block(block, origin=peer.ident, gossip=False, quiet=True,
                                             durable=i == len(blocks) - 1)
            except Rejected as exc:
                if exc.reason != E.UNKNOWN_PARENT:  # unknown parent: the peer reorganised under us; poll again
                    self.ban(peer.ident, f"invalid block {block.height} in sync: {exc.reason}: {exc.detail}")
                return i
            await asyncio.sleep(0)  # keep the API answering
        return len(blocks)

    # status ---------------------------------------------------------------------------------------
    def status_list(self) -> list[dict[str, Any]]:
        return [{"url": p.url, "key": p.key.hex() if p.key else None, "height": p.height,
                 "connected": p.token is not None and p.failures == 0}
                for p in self.peers.values()]

    def connected_count(self) -> int:
        return sum(1 for p in self.peers.values() if p.token is not None and p.failures == 0)


# ----------------------------------------------------------------------------------------- helpers


def _consume(task: "asyncio.Task[Any]") -> None:
    """Mark a background task's outcome as seen (a prefetch nobody awaits must not warn)."""
    if not task.cancelled():
        task.exception()


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    if resp.content_length is not None and resp.content_length > limit:
        raise PeerError(f"answer of {resp.content_length} bytes exceeds {limit}")
    data = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > limit:
            raise PeerError(f"answer exceeds {limit} bytes")
    return bytes(data)


async def _json_answer(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    raw = await _read_limited(resp, MAX_JSON_BODY)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise PeerError(f"HTTP {resp.status}: answer is not JSON") from None
    if not isinstance(data, dict):
        raise PeerError(f"HTTP {resp.status}: answer is not a JSON object")
    return data


async def read_body(request: "web.Request", limit: int) -> bytes:
    """The request body, refusing (413 too_large) more than `limit` bytes without reading them all."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(E.TOO_LARGE, f"body of {request.content_length} bytes exceeds {limit}")
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > limit:
            raise ApiError(E.TOO_LARGE, f"body exceeds {limit} bytes")
    return bytes(data)


async def read_json(request: "web.Request", limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    raw = await read_body(request, limit)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." 16 KiB deep
        raise ApiError(BAD_REQUEST, "body is not JSON (or is nested too deeply)") from None
    if not isinstance(data, dict):
        raise ApiError(BAD_REQUEST, "body must be a JSON object")
    return data
