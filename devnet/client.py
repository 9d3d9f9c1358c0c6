"""An asynchronous client for a set of nodes' HTTP APIs, with failover (aiohttp).

Gateways and agents prefer one node (their "home") and move to the next live one when it does not
answer; a node that failed is skipped for a few seconds, then tried again. HTTP error answers (4xx) are
answers, not failures: the ledger's reason is in `{"error": ...}`.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from ledger.keys import AccountKey
from node.access import credential

MSGPACK = "application/msgpack"


class NodeUnavailable(Exception):
    """No node (or not the one asked for) answered."""


class NodePool:
    def __init__(self, urls: list[str], timeout_s: float = 5.0, down_s: float = 2.0,
                 reader: AccountKey | None = None) -> None:
        """`reader`: the key that signs every request (node/access.py); the devnet reads with an authority's
        key, so its views and agents see what they need of every account."""
        if not urls:
            raise ValueError("no node URLs")
        self.urls = list(urls)
        self.reader = reader
        self._identity: dict[int, tuple[str, bytes]] = {}
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.down_s = down_s
        self.down_until = [0.0] * len(urls)
        self.failures = 0  # requests that found a node down
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "NodePool":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout,
                                                  connector=aiohttp.TCPConnector(limit=64, limit_per_host=16))
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def is_up(self, i: int) -> bool:
        return time.monotonic() >= self.down_until[i]

    def order(self, prefer: int) -> list[int]:
        """Node indexes to try, starting at `prefer`, live ones first."""
        n = len(self.urls)
        ring = [(prefer + k) % n for k in range(n)]
        return [i for i in ring if self.is_up(i)] + [i for i in ring if not self.is_up(i)]

    async def call(self, i: int, method: str, path: str, body: bytes | None = None,
                   content_type: str | None = None) -> tuple[int, Any]:
        """One request to node i: (status, parsed JSON or raw bytes). Raises NodeUnavailable."""
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            if self.reader is not None:
                chain_id, node_id = await self._node_identity(i)
                headers["Authorization"] = credential(self.reader, chain_id, node_id, method, path,
                                                      int(time.time() * 1000))
            async with self.session.request(method, self.urls[i] + path, data=body, headers=headers) as resp:
                raw = await resp.read()
                if resp.content_type == "application/json":
                    return resp.status, json.loads(raw)
                return resp.status, raw
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            self.down_until[i] = time.monotonic() + self.down_s
            self.failures += 1
            raise NodeUnavailable(f"{self.urls[i]}: {exc!r}") from None

    async def _node_identity(self, i: int) -> tuple[str, bytes]:
        """(chain id, node id) that node i's read credentials are bound to, from its public /status."""
        if i not in self._identity:
            async with self.session.get(self.urls[i] + "/status") as resp:
                data = json.loads(await resp.read())
            self._identity[i] = (data["chain_id"], bytes.fromhex(data["node_key"] or data["genesis"]))
        return self._identity[i]

    async def get(self, path: str, prefer: int = 0) -> tuple[int, Any]:
        """GET from the first node that answers 2xx/4xx; returns (node index, JSON). Raises NodeUnavailable."""
        last = ""
        for i in self.order(prefer):
            try:
                status, data = await self.call(i, "GET", path)
            except NodeUnavailable as exc:
                last = str(exc)
                continue
            if status >= 500:
                last = f"{self.urls[i]}: HTTP {status}"
                continue
            return i, data
        raise NodeUnavailable(f"no node answered GET {path} ({last})")

    async def get_ok(self, path: str, prefer: int = 0) -> Any:
        """GET that must succeed with 200; returns the JSON."""
        i, data = await self.get(path, prefer)
        if isinstance(data, dict) and "error" in data:
            raise NodeUnavailable(f"GET {path} from {self.urls[i]}: {data['error']}: {data.get('detail', '')}")
        return data

    async def post_tx(self, raw: bytes, prefer: int = 0, failover: bool = True) -> tuple[int, int, Any]:
        """POST /tx; returns (node index, HTTP status, JSON). Raises NodeUnavailable."""
        targets = self.order(prefer) if failover else [prefer]
        last = ""
        for i in targets:
            try:
                status, data = await self.call(i, "POST", "/tx", raw, MSGPACK)
            except NodeUnavailable as exc:
                last = str(exc)
                continue
            if status >= 500 or status == 429:
                last = f"{self.urls[i]}: HTTP {status}"
                continue
            return i, status, data
        raise NodeUnavailable(f"no node took the transaction ({last})")


def reason_of(status: int, data: Any) -> str:
    """The ledger's reason of a refusal ("ok" for 2xx)."""
    if 200 <= status < 300:
        return "ok"
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return f"http_{status}"
