"""The HTTP API (aiohttp): every route of docs/interfaces.md, plus the peer routes.

JSON for people, msgpack for peers. Every error is `{"error": CODE, "detail": "..."}` with the status the
contract gives the code (node/codes.py). Bodies are size-checked before they are read in full. No input
can crash the node: handlers raise ApiError/Rejected for bad input, and anything unexpected becomes a
logged 500 while the node goes on serving.
"""
from __future__ import annotations

import dataclasses
import hmac
import json
import re
from collections import OrderedDict
from typing import Any, Awaitable, Callable

from aiohttp import web

from ledger import errors as E
from ledger import queries
from ledger.encoding import decode, encode
from ledger.errors import Rejected
from ledger.keys import parse_address
from ledger.tx import MAX_TX_BYTES, OcmfReading, SignedTx, Tx, Vote, decode_tx

from .accounting import QUOTE_KINDS
from .access import (AUDITOR, AUTHORITY, ACCOUNT, FULL_ROLES, PEER, PUBLIC_READER, SCHEME, SESSION_COOKIE,
                     ReadGuard, ReadSessions, Reader, require_reader)
from .codes import BAD_REQUEST, INTERNAL, NOT_FOUND, RATE_LIMITED, UNAUTHORIZED, ApiError, hex_value, status_of
from .dashboard import add_dashboard
from .grid import parse_surplus
from .metrics import CONTENT_TYPE_LATEST
from .openapi import openapi_document
from .peers import MAX_BLOCK_BODY, TokenBucket, read_body, read_json
from .service import Node, now_ms
from ledger.ocmf_rules import OCMF_METER_PREFIX, OcmfMeter, load_ocmf_meter

from .views import ocmf_meter_json
from .views import (OFFER_STATUSES, ORDER_STATUSES, TRADE_STATUSES, account_json, block_json, lot_json,
                    meter_json, movement_json, offer_json, order_json, public_block_json, public_meter_json,
                    public_ocmf_meter_json, trade_json, tx_json)

MSGPACK = "application/msgpack"
MAX_TX_BODY = 4 * MAX_TX_BYTES  # hex in JSON doubles the bytes; room for the wrapper
MAX_BLOCKS_PER_PAGE = 100
MAX_PAGE_BYTES = 16 * 1024 * 1024  # a msgpack page stops early rather than grow past this
MAX_PAGE = 1000  # items in one page of a listing (`limit` above it is capped)
MAX_BOOK_DEPTH = 100  # price levels per side of GET /market/orderbook
_CURSOR = re.compile(r"(?:[0-9a-f]{2}){1,64}")
# matched with fullmatch (a `$` would let a trailing newline through)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEIGHT = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes '²', which int() refuses
_INTEGER = re.compile(r"-?[0-9]{1,20}")
JSON_TX_SHAPE = 'JSON body must be {"tx": "<hex of the canonical tx bytes>"}'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# (method, path, Api method): every route the node serves; node/openapi.py describes each of them.
ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/status", "status"),
    ("GET", "/genesis", "genesis"),
    ("GET", "/blocks", "blocks"),
    ("GET", "/blocks/{ref}", "block"),
    ("POST", "/tx", "post_tx"),
    ("GET", "/tx/{txid}", "get_tx"),
    ("GET", "/accounts/{addr}", "account"),
    ("GET", "/accounts/{addr}/lots", "account_lots"),
    ("GET", "/accounts/{addr}/history", "account_history"),
    ("GET", "/meters", "meters"),
    ("GET", "/meters/{meter_id}", "meter"),
    ("GET", "/ocmf-meters", "ocmf_meters"),
    ("GET", "/ocmf-meters/{meter_id}", "ocmf_meter"),
    ("GET", "/lots/{lot_id}", "lot"),
    ("GET", "/market/offers", "offers"),
    ("GET", "/market/offers/{offer_id}", "offer"),
    ("GET", "/market/orderbook", "orderbook"),
    ("GET", "/market/orders", "orders"),
    ("GET", "/trades", "trades"),
    ("GET", "/trades/{trade_id}", "trade"),
    ("GET", "/energy", "energy"),
    ("GET", "/energy/quote", "energy_quote"),
    ("GET", "/evidence", "evidence"),
    ("GET", "/authorities", "authorities"),
    ("GET", "/metrics", "metrics"),
    ("GET", "/openapi.json", "openapi"),
    ("POST", "/admin/grid-signal", "grid_signal"),
    ("POST", "/peer/hello", "peer_hello"),
    ("POST", "/peer/handshake", "peer_handshake"),
    ("POST", "/peer/block", "peer_block"),
    ("POST", "/peer/txs", "peer_txs"),
]


def error_response(code: str, detail: str, status: int | None = None) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status or status_of(code))


def ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data, separators=(",", ":")).encode(), status=status,
                        content_type="application/json")


def _address(value: str) -> bytes:
    try:
        return parse_address(value)
    except ValueError as exc:
        raise ApiError(BAD_REQUEST, f"bad address {value[:60]!r}: {exc}") from None


def _int_query(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter: absent gives the default, above `hi` is capped, anything else that is
    not a decimal integer >= lo (also an empty value) is a bad request."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise ApiError(BAD_REQUEST, f"{name} must be a decimal integer")
    value = int(raw)
    if value < lo:
        raise ApiError(BAD_REQUEST, f"{name} must be at least {lo}")
    return min(value, hi)


def _cursor_query(request: web.Request) -> bytes | None:
    """The `cursor` a listing continues from: the `next` of the page before, as it was given."""
    raw = request.query.get("cursor")
    if raw is None:
        return None
    if not _CURSOR.fullmatch(raw):
        raise ApiError(BAD_REQUEST, "cursor must be the `next` value of an earlier page")
    return bytes.fromhex(raw)


def _page_query(request: web.Request, default: int = MAX_PAGE) -> tuple[bytes | None, int]:
    return _cursor_query(request), _int_query(request, "limit", default, 1, MAX_PAGE)


def _paged(key: str, items: list[Any], next_cursor: bytes | None, **extra: Any) -> web.Response:
    """A page of a listing: its items under `key`, and `next` (the cursor of the next page, or null)."""
    return ok({key: items, **extra, "next": next_cursor.hex() if next_cursor is not None else None})


def _address_query(request: web.Request, name: str) -> bytes | None:
    """An optional address filter; present but empty is a typo, not 'no filter'."""
    raw = request.query.get(name)
    return None if raw is None else _address(raw)


def _status_query(request: web.Request, allowed: tuple[str, ...]) -> str | None:
    """An optional status filter; an unknown status is an error rather than a silently empty list."""
    raw = request.query.get("status")
    if raw is not None and raw not in allowed:
        raise ApiError(BAD_REQUEST, f"status must be one of {', '.join(allowed)}")
    return raw


def _json_body(body: bytes) -> Any:
    """Parse a JSON request body; malformed or absurdly nested JSON is a bad request, not a crash."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(BAD_REQUEST, "body is not JSON (or is nested too deeply)") from None


def _wants_msgpack(request: web.Request) -> bool:
    """`format=msgpack|json` decides; without it, an Accept header that starts with msgpack."""
    fmt = request.query.get("format")
    if fmt is None:
        return request.headers.get("Accept", "").startswith(MSGPACK)
    if fmt not in ("json", "msgpack"):
        raise ApiError(BAD_REQUEST, "format must be json or msgpack")
    return fmt == "msgpack"


class Api:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.chain = node.chain
        self.log = node.log
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        node_id = node.key.public if node.key is not None else self.chain.genesis_block.hash
        self.guard = ReadGuard(self.chain.chain_id, node_id, self._role_of)
        self.sessions = ReadSessions()  # dashboard sign-ins (node/access.py)

    # app ------------------------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Handler]]:
        return [(method, path, getattr(self, name)) for method, path, name in ROUTES]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BLOCK_BODY, middlewares=[self._metered, self._errors,
                                                                                self._rate_limit, self._reader])
        for method, path, handler in self.routes():
            app.router.add_route(method, path, handler)
        add_dashboard(app, self.node, self.sessions)  # the browser dashboard at / (node/dashboard.py)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.reason, exc.detail, exc.status)
        except Rejected as exc:
            return error_response(exc.reason, exc.detail)
        except web.HTTPException as exc:
            if exc.status == 404:
                return error_response(NOT_FOUND, f"no route {request.method} {request.path}")
            if exc.status == 405:
                return error_response(BAD_REQUEST, f"method {request.method} not allowed on {request.path}", 405)
            if exc.status == 413:
                return error_response(E.TOO_LARGE, "request body too large")
            if exc.status < 400:
                raise
            return error_response(BAD_REQUEST, exc.reason or str(exc), exc.status)
        except (ConnectionResetError, ConnectionError):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must not take the node down; log it loudly
            self.log.error("request_failed", method=request.method, path=request.path, error=repr(exc))
            return error_response(INTERNAL, "internal error (logged)", 500)

    @web.middleware
    async def _metered(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The CPU time of serving a request counts as API serving, or peer traffic on /peer/* routes
        (node/accounting.py); what the handler does in timed sections (admission, import) counts there."""
        category = "peer" if request.path.startswith("/peer/") else "api"
        timeline = self.node.energy.timeline
        timeline.request_started(category)
        try:
            return await handler(request)
        finally:
            timeline.request_ended(category)

    @web.middleware
    async def _rate_limit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A request with a peer session counts against that peer's bucket (the /peer/* handlers charge it
        themselves); any other request against its client address's bucket."""
        session = self.node.peers.session_key(request)
        if session is not None:
            if not request.path.startswith("/peer/") and not session.bucket.allow():
                raise ApiError(RATE_LIMITED, "too many requests from this peer")
            return await handler(request)
        rate = self.node.config.api_rate
        if rate > 0:
            remote = request.remote or "?"
            bucket = self._buckets.get(remote)
            if bucket is None:
                bucket = self._buckets[remote] = TokenBucket(rate, burst=max(rate, 10.0))
                while len(self._buckets) > 10_000:
                    self._buckets.popitem(last=False)
            if not bucket.allow():
                raise ApiError(RATE_LIMITED, "too many requests; slow down")
        return await handler(request)

    # read roles (node/access.py, docs/adr/adr-012-read-roles.md) -------------------------------------------
    def _role_of(self, key: bytes) -> str:
        genesis = self.node.genesis
        if key in self.chain.authorities:
            return AUTHORITY
        if key in genesis.auditors:
            return AUDITOR
        if key in genesis.observers:
            return PEER  # a member node follows the chain
        return ACCOUNT  # a genesis authority voted out too: it loses the full read with the role (ADR 012)

    @web.middleware
    async def _reader(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Who asks: a KWH-Sig credential (checked, used up), a peer session or a dashboard sign-in cookie;
        public otherwise. A bad, expired or replayed credential is refused on every route, also where none
        is needed."""
        auth = request.headers.get("Authorization", "")
        if auth.startswith(SCHEME + " ") and not request.path.startswith(("/peer/", "/admin/")):
            request["reader"] = self.guard.check(auth, request.method, request.raw_path, now_ms(),
                                                 request.remote or "?")
        elif (session := self.node.peers.session_key(request)) is not None:
            # a session of a key that lost its role (a genesis authority voted out) reads only as that key
            role = self._role_of(session.key)
            request["reader"] = Reader(PEER) if role in FULL_ROLES else Reader(role, session.key)
        elif (key := self.sessions.key_of(request.cookies.get(SESSION_COOKIE, ""), now_ms())) is not None:
            request["reader"] = Reader(self._role_of(key), key)  # a dashboard sign-in
        else:
            request["reader"] = PUBLIC_READER
        return await handler(request)

    @staticmethod
    def _require(request: web.Request, what: str, *owners: bytes | None) -> Reader:
        return require_reader(request, what, *owners)

    # chain ----------------------------------------------------------------------------------------
    async def status(self, request: web.Request) -> web.Response:
        node, chain = self.node, self.chain
        fin = chain.finality()
        return ok({"chain_id": chain.chain_id, "genesis": chain.genesis_block.hash.hex(), "height": chain.height,
                   "head": chain.head_hash.hex(), "total_work": chain.head.total_work, "time_ms": now_ms(),
                   "head_time_ms": chain.head.timestamp_ms,
                   "justified_height": fin["justified_height"], "justified_hash": fin["justified_hash"].hex(),
                   "finalized_height": fin["finalized_height"], "finalized_hash": fin["finalized_hash"].hex(),
                   "finality_lag_blocks": chain.height - fin["finalized_height"],
                   "node_key": node.key.public.hex() if node.key else None, "authority": node.authority,
                   "syncing": node.peers.syncing, "mempool": len(node.mempool),
                   "peers": node.peers.status_list()})

    async def genesis(self, request: web.Request) -> web.Response:
        return ok(self.node.genesis.to_json())

    async def block(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        if _HEIGHT.fullmatch(ref):
            block_hash = self.chain.canonical_hash(int(ref))
        elif _HEX64.fullmatch(ref):
            block_hash = bytes.fromhex(ref)
        else:
            raise ApiError(BAD_REQUEST, "give a height (decimal) or a block hash (64 hex characters)")
        raw = self.chain.block_bytes(block_hash) if block_hash is not None else None
        if raw is None:
            raise ApiError(NOT_FOUND, f"no block {ref}")
        full = request["reader"].full
        if _wants_msgpack(request):
            self._require(request, "a block body (raw transactions)")
            return web.Response(body=raw, content_type=MSGPACK)
        block = self.chain.block(block_hash)  # type: ignore[arg-type]
        return ok(block_json(block) if full else public_block_json(block))  # type: ignore[arg-type]

    async def blocks(self, request: web.Request) -> web.Response:
        start = _int_query(request, "from", 1, 0, 1 << 62)
        cursor = _cursor_query(request)
        if cursor is not None:  # the `next` of an earlier page: the height to go on from
            start = int.from_bytes(cursor, "big")
        limit = _int_query(request, "limit", MAX_BLOCKS_PER_PAGE, 1, MAX_BLOCKS_PER_PAGE)
        msgpack = _wants_msgpack(request)
        if msgpack:
            self._require(request, "block bodies (raw transactions)")
        shown = block_json if request["reader"].full else public_block_json
        out: list[Any] = []
        size = 0
        for height in range(start, min(start + limit, self.chain.height + 1)):
            block_hash = self.chain.canonical_hash(height)
            raw = self.chain.block_bytes(block_hash) if block_hash is not None else None
            if raw is None:
                break
            if out and size + len(raw) > MAX_PAGE_BYTES:
                break
            size += len(raw)
            out.append(raw if msgpack else shown(self.chain.block(block_hash)))  # type: ignore[arg-type]
        if msgpack:
            return web.Response(body=encode(out), content_type=MSGPACK)
        after = start + len(out)
        more = after <= self.chain.height and after < (1 << 62)
        return _paged("blocks", out, after.to_bytes(8, "big") if more else None)

    async def evidence(self, request: web.Request) -> web.Response:
        """Double-signed blocks, then conflicting finality votes with both signed votes (hex of their
        canonical tx bytes, which POST /tx and any verifier take as they are); paged (queries.evidence)."""
        cursor, limit = _page_query(request)
        try:
            page = queries.evidence(self.chain.kv, cursor, limit)
        except ValueError as exc:
            raise ApiError(BAD_REQUEST, str(exc)) from None
        blocks = [{"proposer": e["proposer"].hex(), "height": e["height"], "blocks": [b.hex() for b in e["blocks"]]}
                  for e in page.items if "blocks" in e]
        votes = [{"voter": e["voter"].hex(), "target_height": e["target_height"], "kind": e["kind"],
                  "votes": [v.hex() for v in e["votes"]]} for e in page.items if "votes" in e]
        return _paged("evidence", blocks, page.next, votes=votes)

    async def authorities(self, request: web.Request) -> web.Response:
        """The authority set that signs the next block, proposals not yet passed, and changes that passed
        and wait for their block to be finalized."""
        chain = self.chain
        gov = chain.governance()
        return ok({"authorities": [a.hex() for a in chain.authorities],
                   "proposals": [{"action": action, "key": key.hex(), "votes": [v.hex() for v in voters],
                                  "opened_height": opened} for action, key, voters, opened in gov.proposals],
                   "scheduled": [{"action": action, "key": key.hex(), "passed_height": height}
                                 for action, key, height in gov.scheduled]})

    # transactions ---------------------------------------------------------------------------------
    async def post_tx(self, request: web.Request) -> web.Response:
        body = await read_body(request, MAX_TX_BODY)
        if request.content_type == "application/json" or (request.content_type != MSGPACK and body[:1] == b"{"):
            data = _json_body(body)
            if not isinstance(data, dict) or not isinstance(data.get("tx"), str):
                raise ApiError(BAD_REQUEST, JSON_TX_SHAPE)
            try:
                raw = bytes.fromhex(data["tx"])
            except ValueError:
                raise ApiError(BAD_REQUEST, f"{JSON_TX_SHAPE}: tx is not hex") from None
        else:
            raw = body
        tx = decode_tx(raw, self.chain.chain_id)
        self.node.submit_tx(tx)
        return ok({"txid": tx.txid.hex(), "status": "pending"})

    async def get_tx(self, request: web.Request) -> web.Response:
        txid = hex_value(request.match_info["txid"], 32, "txid")
        loc = self.chain.tx_location(txid)
        if loc is not None:
            height, block_hash, index = loc
            block = self.chain.block(block_hash)
            assert block is not None
            return ok(self._tx_answer(request, block.txs[index], {
                "txid": txid.hex(), "status": "included", "height": height, "block": block_hash.hex(),
                "index": index, "final": self.chain.is_final(height)}, height=height))
        pending = self.node.mempool.get(txid) or self.node.votes.get(txid)
        if pending is not None:
            return ok(self._tx_answer(request, pending, {"txid": txid.hex(), "status": "pending"}))
        dropped = self.node.mempool.dropped.get(txid)
        if dropped is not None:
            return ok(self._tx_answer(request, dropped.tx, {"txid": txid.hex(), "status": "rejected"},
                                      {"reason": dropped.reason, "detail": dropped.detail}))
        raise ApiError(NOT_FOUND, f"unknown transaction {txid.hex()}")

    def _in_history(self, addr: bytes, height: int, txid: bytes) -> bool:
        """True if the tx at `height` is in the history of `addr` (the index entries of that one block)."""
        for _key, raw in self.chain.kv.iterate(b"i" + addr + height.to_bytes(8, "big")):
            if decode(raw)[0] == txid:
                return True
        return False

    def _tx_answer(self, request: web.Request, tx: Tx, where: dict[str, Any],
                   why: dict[str, Any] | None = None, height: int | None = None) -> dict[str, Any]:
        """Where a transaction is (status, block, finality) is public: whoever knows a txid can follow it, as a
        gateway follows the readings it relays. Its body, and why it was rejected, only for the readers that
        may see it (_require_tx)."""
        try:
            self._require_tx(request, tx, height)
        except ApiError:
            return where
        return {**where, **(why or {}), "tx": tx_json(tx)}

    def _require_tx(self, request: web.Request, tx: Tx, height: int | None = None) -> None:
        """A transaction is readable by its signer and the accounts it names, once included by every account
        whose history it is in (a seller reads the accept of its offer), a reading by its meter's owner, a vote
        by anyone (votes are consensus data, public like headers), everything by the full-read roles."""
        if isinstance(tx, Vote):
            return
        if isinstance(tx, SignedTx):
            reader: Reader = request.get("reader", PUBLIC_READER)
            named = [v for v in (getattr(tx.body, f.name) for f in dataclasses.fields(tx.body))
                     if isinstance(v, bytes) and len(v) == 20]
            if reader.address is not None and height is not None and not reader.full \
                    and self._in_history(reader.address, height, tx.txid):
                return
            self._require(request, "a transaction", tx.sender_address, *named)
            return
        meter_id = tx.meter_id if isinstance(tx, OcmfReading) else tx.fields.meter_id  # type: ignore[union-attr]
        meter = self.chain.meter(meter_id)
        ocmf = load_ocmf_meter(self.chain.kv, meter_id) if meter is None else None
        owner = meter.owner if meter is not None else ocmf.owner if ocmf is not None else None
        self._require(request, "a meter reading", owner)

    # accounts -------------------------------------------------------------------------------------
    async def account(self, request: web.Request) -> web.Response:
        addr = _address(request.match_info["addr"])
        self._require(request, "an account's balances", addr)
        return ok(account_json(addr, self.chain.account(addr), self.node.mempool.next_nonce(addr)))

    async def account_lots(self, request: web.Request) -> web.Response:
        addr = _address(request.match_info["addr"])
        self._require(request, "an account's lots", addr)
        cursor, limit = _page_query(request)
        if cursor is not None and len(cursor) != 24:
            raise ApiError(BAD_REQUEST, "cursor must be the `next` value of an earlier page")
        held = self.chain.holdings(addr, after=cursor or b"", limit=limit + 1)
        more = len(held) > limit
        held = held[:limit]
        return _paged("lots", [lot_json(lot_id, self.chain.lot(lot_id), wh, source) for lot_id, wh, source in held],
                      held[-1][0] if more else None)

    async def account_history(self, request: web.Request) -> web.Response:
        addr = _address(request.match_info["addr"])
        self._require(request, "an account's history", addr)
        cursor, limit = _page_query(request, 50)
        page = queries.history(self.chain.kv, addr, cursor, limit)
        return _paged("history", [{"height": h, "txid": txid.hex(), "kind": kind, "final": self.chain.is_final(h)}
                                  for h, txid, kind in page.items], page.next)

    # meters and lots ------------------------------------------------------------------------------
    async def meters(self, request: web.Request) -> web.Response:
        reader: Reader = request["reader"]
        cursor, limit = _page_query(request)
        page = queries.meters(self.chain.kv, cursor, limit)
        return _paged("meters", [meter_json(meter_id, m) if reader.owns(m.owner) else public_meter_json(meter_id, m)
                                 for meter_id, m in page.items], page.next)

    async def meter(self, request: web.Request) -> web.Response:
        meter_id = hex_value(request.match_info["meter_id"], 16, "meter_id")
        m = self.chain.meter(meter_id)
        if m is None:
            raise ApiError(NOT_FOUND, f"no meter {meter_id.hex()}")
        return ok(meter_json(meter_id, m) if request["reader"].owns(m.owner) else public_meter_json(meter_id, m))

    async def ocmf_meters(self, request: web.Request) -> web.Response:
        reader: Reader = request["reader"]
        cursor, limit = _page_query(request)
        page = queries.walk(self.chain.kv, OCMF_METER_PREFIX, cursor, limit,
                            lambda meter_id, raw: (meter_id, OcmfMeter.unpack(raw)))
        return _paged("meters", [ocmf_meter_json(meter_id, m) if reader.owns(m.owner)
                                 else public_ocmf_meter_json(meter_id, m) for meter_id, m in page.items], page.next)

    async def ocmf_meter(self, request: web.Request) -> web.Response:
        meter_id = hex_value(request.match_info["meter_id"], 16, "meter_id")
        m = load_ocmf_meter(self.chain.kv, meter_id)
        if m is None:
            raise ApiError(NOT_FOUND, f"no OCMF meter {meter_id.hex()}")
        shown = ocmf_meter_json if request["reader"].owns(m.owner) else public_ocmf_meter_json
        return ok(shown(meter_id, m))

    async def lot(self, request: web.Request) -> web.Response:
        lot_id = hex_value(request.match_info["lot_id"], 24, "lot_id")
        lot = self.chain.lot(lot_id)
        if lot is None:
            raise ApiError(NOT_FOUND, f"no lot {lot_id.hex()}")
        cursor, limit = _page_query(request)
        page = queries.lot_movements(self.chain.kv, lot_id, cursor, limit)
        reader: Reader = request["reader"]
        parties = {lot.producer} | {m[1] for m in page.items} | {m[2] for m in page.items}
        # provenance (meter, producer, source, interval) is public; who held the Wh afterwards is not, nor
        # how much it minted: a lot id is its interval and meter id, so that would be the meter's export
        # reading of every interval to anyone who counts through them
        party = reader.owns(*parties)
        movements = [movement_json(m) for m in page.items] if party else []
        shown = lot_json(lot_id, lot)
        if not party:
            del shown["minted_wh"]
        return _paged("movements", movements, page.next if movements else None, lot=shown)

    # market ---------------------------------------------------------------------------------------
    async def offers(self, request: web.Request) -> web.Response:
        status = _status_query(request, OFFER_STATUSES)
        seller = _address_query(request, "seller")
        cursor, limit = _page_query(request)
        page = queries.offers(self.chain.kv, cursor, limit, status, seller)
        return _paged("offers", [offer_json(offer_id, o) for offer_id, o in page.items], page.next)

    async def offer(self, request: web.Request) -> web.Response:
        offer_id = hex_value(request.match_info["offer_id"], 32, "offer_id")
        o = self.chain.offer(offer_id)
        if o is None:
            raise ApiError(NOT_FOUND, f"no offer {offer_id.hex()}")
        return ok(offer_json(offer_id, o))

    async def orderbook(self, request: web.Request) -> web.Response:
        """The best `limit` orders of each side and the best `depth` price levels (orders summed)."""
        limit = _int_query(request, "limit", 100, 1, MAX_PAGE)
        depth = _int_query(request, "depth", 20, 1, MAX_BOOK_DEPTH)
        buys, sells = self.chain.order_book(limit)
        kv = self.chain.kv
        (buy_levels, buys_cut), (sell_levels, sells_cut) = (queries.book_levels(kv, "buy", depth),
                                                             queries.book_levels(kv, "sell", depth))
        return ok({"buys": [order_json(i, o) for i, o in buys if o is not None],
                   "sells": [order_json(i, o) for i, o in sells if o is not None],
                   "levels": {"buys": buy_levels, "sells": sell_levels, "partial": buys_cut or sells_cut}})

    async def orders(self, request: web.Request) -> web.Response:
        owner = _address_query(request, "owner")
        self._require(request, "orders" if owner is None else "an account's orders",
                      *(() if owner is None else (owner,)))
        status = _status_query(request, ORDER_STATUSES)
        cursor, limit = _page_query(request)
        page = queries.orders(self.chain.kv, cursor, limit, status, owner)
        finalized = self.chain.finalized_height
        return _paged("orders", [order_json(order_id, o, finalized) for order_id, o in page.items], page.next)

    async def trades(self, request: web.Request) -> web.Response:
        party = _address_query(request, "party")
        self._require(request, "trades" if party is None else "an account's trades",
                      *(() if party is None else (party,)))
        status = _status_query(request, TRADE_STATUSES)
        cursor, limit = _page_query(request)
        page = queries.trades(self.chain.kv, cursor, limit, status, party)
        finalized = self.chain.finalized_height
        return _paged("trades", [trade_json(trade_id, t, finalized) for trade_id, t in page.items], page.next)

    async def trade(self, request: web.Request) -> web.Response:
        trade_id = hex_value(request.match_info["trade_id"], 32, "trade_id")
        t = self.chain.trade(trade_id)
        if t is None:
            raise ApiError(NOT_FOUND, f"no trade {trade_id.hex()}")
        self._require(request, "a trade", t.seller, t.buyer)
        return ok(trade_json(trade_id, t, self.chain.finalized_height))

    # energy and operations ------------------------------------------------------------------------
    async def energy(self, request: web.Request) -> web.Response:
        limit = _int_query(request, "limit", 20, 1, 100)
        chain = self.chain
        blocks = []
        for height in range(chain.height, max(0, chain.height - limit), -1):
            block = chain.block_at(height)
            if block is None:
                break
            blocks.append({"height": height, "hash": block.hash.hex(), "hashes": block.seal.hashes,
                           "energy_j": block.seal.energy_mj / 1000, "estimated": block.seal.energy_estimated,
                           "difficulty": block.header.difficulty, "proposer": block.header.proposer.hex(),
                           "txs": len(block.txs)})
        head = chain.head
        g = chain.globals()
        energy_kwh = head.cum_energy_mj / 3.6e9
        settled_kwh = g.settled_wh / 1000
        return ok({"blocks": blocks,
                   "total": {"blocks": head.height, "hashes": head.cum_hashes, "energy_j": head.cum_energy_mj / 1000,
                             "energy_kwh": energy_kwh},
                   "minted_wh": g.minted_wh, "settled_wh": g.settled_wh, "redeemed_wh": g.redeemed_wh,
                   "consumed_wh": g.consumed_wh,
                   "ledger_kwh_per_settled_kwh": energy_kwh / settled_kwh if settled_kwh else None,
                   "grid": self.node.grid_snapshot(),
                   "node": self.node.energy.report(self.node.validators(), limit)})

    async def energy_quote(self, request: web.Request) -> web.Response:
        """What verifying one transaction of a kind costs the network now, in Wh and as a fraction of the
        energy it moves (`wh`, default: the average the node has seen for that kind)."""
        kind = request.query.get("type")
        if kind is None or kind not in QUOTE_KINDS:
            raise ApiError(BAD_REQUEST, f"type must be one of {', '.join(QUOTE_KINDS)}")
        wh = _int_query(request, "wh", 0, 1, 10**15) if "wh" in request.query else None
        return ok(self.node.energy.quote(kind, self.node.validators(), wh))

    async def metrics(self, request: web.Request) -> web.Response:
        node = self.node
        node._update_gauges()
        node.update_escrow_gauge()
        node.metrics.peers.set(node.peers.connected_count())
        snap = node.grid_snapshot()
        node.metrics.difficulty.set(snap["difficulty"])
        node.metrics.surplus_w.set(snap["surplus_w"])
        if node.miner is not None:
            node.metrics.hash_rate.set(node.miner.hash_rate())
        by_category, estimated = node.energy.totals()
        for category, joules in by_category.items():
            node.metrics.node_energy.labels(category).set(joules)
        node.metrics.node_energy_estimated.set(1 if estimated else 0)
        resp = web.Response(body=node.metrics.render())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def openapi(self, request: web.Request) -> web.Response:
        return ok(openapi_document())

    async def grid_signal(self, request: web.Request) -> web.Response:
        token = self.node.config.admin_token
        auth = request.headers.get("Authorization", "")
        if not auth:
            raise ApiError(UNAUTHORIZED, "send Authorization: Bearer <admin token>")
        if token is None:
            raise ApiError(UNAUTHORIZED, "the admin API is off (start the node with --admin-token)")
        # header bytes that are not UTF-8 arrive as surrogates: compare bytes, never crash on them
        given = auth[7:].strip().encode("utf-8", "surrogateescape")
        if not auth.startswith("Bearer ") or not hmac.compare_digest(given, token.encode()):
            raise ApiError(UNAUTHORIZED, "wrong admin token")
        body = await read_json(request)
        if "surplus_w" not in body:
            raise ApiError(BAD_REQUEST, 'body must be {"surplus_w": <integer watts>}')
        try:
            surplus = parse_surplus(body["surplus_w"])
        except ValueError as exc:
            raise ApiError(BAD_REQUEST, str(exc)) from None
        if abs(surplus) > 10**12:
            raise ApiError(BAD_REQUEST, "surplus_w is out of range")
        return ok(self.node.set_grid_signal(surplus, "api"))

    # peers ----------------------------------------------------------------------------------------
    def _require_tls_for_peers(self, request: web.Request) -> None:
        """A node that serves TLS (--tls-listen) takes peers only there: no session token in the clear."""
        if self.node.config.tls_listen and (request.transport is None
                                            or request.transport.get_extra_info("ssl_object") is None):
            raise ApiError(UNAUTHORIZED,
                           f"this node takes peers over TLS only: dial https://{self.node.config.tls_listen}")

    async def peer_hello(self, request: web.Request) -> web.Response:
        self._require_tls_for_peers(request)
        return ok(await self.node.peers.handle_hello(request))

    async def peer_handshake(self, request: web.Request) -> web.Response:
        self._require_tls_for_peers(request)
        return ok(await self.node.peers.handle_handshake(request))

    async def peer_block(self, request: web.Request) -> web.Response:
        status, data = await self.node.peers.handle_block(request)
        return ok(data, status)

    async def peer_txs(self, request: web.Request) -> web.Response:
        return ok(await self.node.peers.handle_txs(request))

