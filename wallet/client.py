"""A small synchronous HTTP client for the node's API (docs/interfaces.md); standard library only.

Every failure becomes a `NodeError` with a machine-readable code: the node's own error code for an error
answer (`{"error": CODE, "detail": ...}`), `node_unreachable` when no answer came, `bad_response` when the
answer is not what the contract says.
"""
from __future__ import annotations

import functools
import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

from ledger.keys import AccountKey
from ledger.tx import Tx, encode_tx
from node.access import CREDENTIAL_REQUIRED, credential

from .keystore import UnknownKey

DEFAULT_NODE = "http://127.0.0.1:8701"
ENV_NODE = "KWH_NODE"
ENV_NODE_KEY = "KWH_NODE_KEY"  # hex Ed25519 node key: https:// to a node's --tls-listen port, pinned to it
MAX_ANSWER_BYTES = 64 * 1024 * 1024
MAX_PAGE = 1000  # the most items a node puts in one page of a listing
MAX_LIST_ITEMS = 10_000  # a listing the wallet shows stops here unless asked for every item
MAX_PAGES = 100_000  # a node whose cursors never end cannot keep the wallet looping forever
NODE_UNREACHABLE = "node_unreachable"
BAD_RESPONSE = "bad_response"
TIMEOUT = "timeout"
BAD_NODE_URL = "bad_node_url"


class NodeError(Exception):
    """An error answer from the node, or no usable answer at all."""

    def __init__(self, code: str, detail: str = "", status: int | None = None) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.status = status


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise NodeError(BAD_NODE_URL, f"node URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NodeError(BAD_NODE_URL, f"node URL {url!r} must look like http://host:port")
    return url


class _PinnedConnection(http.client.HTTPSConnection):
    """HTTPS to a node's --tls-listen port: no CA, the certificate's key must be the pinned node key."""

    def __init__(self, *args: Any, pin: bytes, **kwargs: Any) -> None:
        from node.tls import client_context
        kwargs["context"] = client_context()
        super().__init__(*args, **kwargs)
        self.pin = pin

    def connect(self) -> None:
        from node.tls import certificate_key
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        key = certificate_key(self.sock.getpeercert(binary_form=True))
        if key != self.pin:
            self.sock.close()
            raise ssl.SSLError(f"the node's TLS key {key.hex()[:16] if key else 'none'}... is not the pinned "
                               f"{ENV_NODE_KEY} {self.pin.hex()[:16]}...")


class _PinnedHandler(urllib.request.HTTPSHandler):
    def __init__(self, pin: bytes) -> None:
        super().__init__()
        self.pin = pin

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(functools.partial(_PinnedConnection, pin=self.pin), req)


class NodeClient:
    """Talks to one node; `timeout` bounds each request."""

    def __init__(self, url: str, timeout: float = 10.0, fallbacks: tuple[str, ...] | list[str] = (),
                 reader: Callable[[], AccountKey] | None = None,
                 key_for: Callable[[str], AccountKey | None] | None = None, node_key: bytes | None = None) -> None:
        """`reader` gives the key that signs reads of personal data (node/access.py); it is called the first
        time the node asks for a credential (so public reads never unlock a key), then every read is signed."""
        self.url = normalize_url(url)
        self.fallbacks = [normalize_url(u) for u in fallbacks if normalize_url(u) != self.url]
        self.timeout = timeout
        self.reader = reader
        self._opener = urllib.request.build_opener(_PinnedHandler(node_key)) if node_key else None
        self.key_for = key_for  # the wallet's key of an address, if it holds one: its meters are read signed
        self._key: AccountKey | None = None
        self._identity: tuple[str, str, bytes] | None = None  # (node URL, chain id, node id)
        self._chain_id: str | None = None
        self._genesis: dict[str, Any] | None = None

    def sign_as(self, key: AccountKey) -> None:
        """Sign every request from now on with `key`."""
        self._key = key

    def _credential(self, method: str, path: str) -> str:
        if self._identity is None or self._identity[0] != self.url:
            data = self._request_once("GET", "/status", signed=False)
            node_id = data.get("node_key") or data.get("genesis") if isinstance(data, dict) else None
            if not isinstance(node_id, str) or not isinstance(data.get("chain_id"), str):
                raise NodeError(BAD_RESPONSE, "GET /status has no chain_id, node_key or genesis")
            self._identity = (self.url, data["chain_id"], bytes.fromhex(node_id))
        assert self._key is not None
        return credential(self._key, self._identity[1], self._identity[2], method, path, int(time.time() * 1000))

    def sign_in_link(self, key: AccountKey) -> str:
        """A dashboard sign-in link for `key`: a credential for POST /dashboard/session in the URL fragment
        (a browser never sends a fragment to a server, so it stays out of every log); good for one use
        within a minute (node/access.py)."""
        previous, self._key = self._key, key
        try:
            auth = self._credential("POST", "/dashboard/session")
        finally:
            self._key = previous
        return f"{self.url}/#/signin/{urllib.parse.quote(auth, safe='')}"

    # transport ------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None = None,
                 content_type: str | None = None) -> Any:
        """One request; when the node cannot be reached, the next fallback node (config file) becomes the node."""
        while True:
            try:
                return self._request_once(method, path, body, content_type)
            except NodeError as exc:
                if exc.code == CREDENTIAL_REQUIRED and self._key is None and self.reader is not None:
                    self._key = self.reader()
                    continue
                if exc.code != NODE_UNREACHABLE or not self.fallbacks:
                    raise
                self.url = self.fallbacks.pop(0)

    def _request_once(self, method: str, path: str, body: bytes | None = None,
                      content_type: str | None = None, signed: bool = True) -> Any:
        auth = self._credential(method, path) if signed and self._key is not None else None
        try:
            req = urllib.request.Request(self.url + path, data=body, method=method)
            req.add_header("Accept", "application/json")
            if auth:
                req.add_header("Authorization", auth)
            if content_type:
                req.add_header("Content-Type", content_type)
            opened = self._opener.open(req, timeout=self.timeout) if self._opener is not None \
                else urllib.request.urlopen(req, timeout=self.timeout)
            with opened as resp:
                raw = resp.read(MAX_ANSWER_BYTES)
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw = exc.read(MAX_ANSWER_BYTES) if exc.fp is not None else b""
            raise self._error_from(exc.code, raw) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            text = getattr(reason, "strerror", None) or str(reason)
            raise NodeError(NODE_UNREACHABLE, f"cannot reach node at {self.url}: {text}") from None
        except (socket.timeout, TimeoutError):
            raise NodeError(NODE_UNREACHABLE, f"node at {self.url} did not answer within {self.timeout:g} s") \
                from None
        except (ConnectionError, OSError) as exc:
            raise NodeError(NODE_UNREACHABLE, f"cannot reach node at {self.url}: {exc.strerror or exc}") \
                from None
        except ValueError as exc:  # http.client.InvalidURL: a port that is not a number, ...
            raise NodeError(BAD_NODE_URL, f"node URL {self.url!r}: {exc}") from None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise NodeError(BAD_RESPONSE, f"{method} {path} answered {status} with something that is not JSON") \
                from None

    def _error_from(self, status: int, raw: bytes) -> NodeError:
        try:
            data = json.loads(raw)
            if isinstance(data, dict) and isinstance(data.get("error"), str):
                return NodeError(data["error"], str(data.get("detail", "")), status)
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
        text = raw[:200].decode("utf-8", "replace").strip().replace("\n", " ")
        return NodeError(BAD_RESPONSE, f"HTTP {status} from {self.url} is not a kwhledger node's answer"
                                       + (f": {text}" if text else ""), status)

    def get(self, path: str, **query: Any) -> Any:
        q = {k: v for k, v in query.items() if v is not None}
        if q:
            path += "?" + urllib.parse.urlencode(q)
        return self._request("GET", path)

    def _object(self, path: str, **query: Any) -> dict[str, Any]:
        data = self.get(path, **query)
        if not isinstance(data, dict):
            raise NodeError(BAD_RESPONSE, f"GET {path}: expected a JSON object")
        return data

    def _list(self, path: str, field: str, max_items: int | None = MAX_LIST_ITEMS, **query: Any) \
            -> list[dict[str, Any]]:
        """A listing's items, following the node's `next` cursors page by page (at most `max_items`; None:
        every item). A node that does not page answers one page without `next`."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            data = self._object(path, **query, cursor=cursor)
            page = data.get(field)
            if not isinstance(page, list):
                raise NodeError(BAD_RESPONSE, f"GET {path}: expected a list {field!r}")
            items.extend(page)
            nxt = data.get("next")
            if nxt is None or (max_items is not None and len(items) >= max_items):
                break
            if not isinstance(nxt, str) or nxt == cursor:
                raise NodeError(BAD_RESPONSE, f"GET {path}: bad next cursor {str(nxt)[:40]!r}")
            cursor = nxt
        return items[:max_items] if max_items is not None else items

    # chain ----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self._object("/status")

    def genesis(self) -> dict[str, Any]:
        if self._genesis is None:
            self._genesis = self._object("/genesis")
        return self._genesis

    def chain_id(self) -> str:
        if self._chain_id is None:
            chain_id = self.status().get("chain_id")
            if not isinstance(chain_id, str):
                raise NodeError(BAD_RESPONSE, "GET /status has no chain_id")
            self._chain_id = chain_id
        return self._chain_id

    def fee_for(self, body: object) -> int:
        """The smallest fee a transaction with this body may pay: the chain's minimum times the state
        entries its kind adds (ledger/fees.py)."""
        from ledger.fees import required_fee
        return required_fee(self.min_fee(), body)

    def min_fee(self) -> int:
        fee = self.genesis().get("min_fee", 0)
        try:
            return int(fee)
        except (TypeError, ValueError):
            raise NodeError(BAD_RESPONSE, f"GET /genesis: min_fee {fee!r} is not an integer") from None

    # accounts -------------------------------------------------------------------------------------
    def account(self, address: str) -> dict[str, Any]:
        return self._object(f"/accounts/{address}")

    def lots(self, address: str) -> list[dict[str, Any]]:
        return self._list(f"/accounts/{address}/lots", "lots")

    def history(self, address: str, limit: int | None = 50) -> list[dict[str, Any]]:
        """The newest `limit` entries (None: all of them)."""
        page = min(limit, MAX_PAGE) if limit is not None else MAX_PAGE
        return self._list(f"/accounts/{address}/history", "history", max_items=limit, limit=page)

    def next_nonce(self, address: str) -> int:
        return int(self.account(address)["next_nonce"])

    # meters and market ----------------------------------------------------------------------------
    def _mine_hidden(self, meters: list[dict[str, Any]]) -> bool:
        """True if some meter came without its readings (the public view) although it is ours: then the
        request is repeated signed (node/access.py)."""
        if self.key_for is None:
            return False
        hidden = sorted({str(m.get("owner")) for m in meters if "counter" not in m})
        for owner in hidden:
            if self._key is not None and self._key.address_text == owner:
                continue
            key = self.key_for(owner)
            if key is not None:
                self._key = key
                return True
        return False

    def meter(self, meter_id: str) -> dict[str, Any]:
        m = self._object(f"/meters/{meter_id}")
        return self._object(f"/meters/{meter_id}") if self._mine_hidden([m]) else m

    def meters(self) -> list[dict[str, Any]]:
        items = self._list("/meters", "meters")
        return self._list("/meters", "meters") if self._mine_hidden(items) else items

    def offers(self, status: str | None = "open", seller: str | None = None) -> list[dict[str, Any]]:
        return self._list("/market/offers", "offers", status=status, seller=seller)

    def orderbook(self) -> dict[str, Any]:
        return self._object("/market/orderbook")

    def orders(self, owner: str) -> list[dict[str, Any]]:
        return self._list("/market/orders", "orders", owner=owner)

    def trade(self, trade_id: str) -> dict[str, Any]:
        return self._object(f"/trades/{trade_id}")

    def trades(self, party: str) -> list[dict[str, Any]]:
        return self._list("/trades", "trades", party=party)

    # transactions ---------------------------------------------------------------------------------
    def submit(self, tx: Tx) -> dict[str, Any]:
        """POST /tx with the canonical bytes; NodeError with the ledger's reason if refused."""
        data = self._request("POST", "/tx", encode_tx(tx), "application/msgpack")
        if not isinstance(data, dict) or "txid" not in data:
            raise NodeError(BAD_RESPONSE, "POST /tx: expected {txid, status}")
        return data

    def tx(self, txid: str) -> dict[str, Any]:
        """Where a tx is; its body and a rejection's reason come only to its signer (ADR 012): without them,
        ask again signed with the wallet's key, if it has one key to choose."""
        data = self._object(f"/tx/{txid}")
        if "tx" in data or self._key is not None or self.reader is None:
            return data
        try:
            self._key = self.reader()
        except UnknownKey:  # several keys and no --name: the public answer is what we have
            return data
        return self._object(f"/tx/{txid}")

    def wait_tx(self, txid: str, timeout: float, poll: float = 0.2, final: bool = False) -> dict[str, Any]:
        """Poll GET /tx until the tx is included (with `final`: in a finalized block, which no fork can
        take back) or rejected; NodeError(timeout) after `timeout` seconds. A tx a reorg takes out of its
        block is pending again, and the wait goes on."""
        deadline = time.monotonic() + timeout
        last = "pending"
        while True:
            try:
                info = self.tx(txid)
                last = str(info.get("status"))
                if last == "included" and final and not info.get("final"):
                    last = "included, not final yet"
                elif last in ("included", "rejected"):
                    return info
            except NodeError as exc:
                if exc.code != "not_found":
                    raise
                last = "unknown to the node"
            if time.monotonic() >= deadline:
                raise NodeError(TIMEOUT, f"transaction {txid} still {last} after {timeout:g} s")
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
