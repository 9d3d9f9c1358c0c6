"""The browser dashboard every node serves at `/`: one HTML page, one script and one style sheet from
node/static/ (no CDN: it works with no internet), reading the node's JSON views.

Besides the public single-object routes (`/status`, `/blocks/{ref}`, `/tx/{id}`, `/accounts/{addr}`,
`/meters/{id}`, `/lots/{id}`, `/trades/{id}`, `/energy`), the pages use the bounded aggregate views
under `/dashboard/api/`: each answers one page (`limit` capped, a `next` cursor where there is more),
and none scans the chain per request: series come from node/dashboard_index.py's digest.
Read-only. They show what the reader may see under ADR 012, like the API: public data to anyone, an
account's own data once its owner signs in (`/dashboard/session`, node/access.py), everything to the
full-read roles.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from ledger.keys import address_of, format_address, parse_address
from ledger.state import Account
from ledger.tx import Vote

from .access import (CREDENTIAL_REQUIRED, FORBIDDEN, PUBLIC_READER, SCHEME, SESSION_COOKIE, SESSION_TTL_MS, Reader,
                     ReadSessions, require_reader)
from .codes import BAD_REQUEST, NOT_FOUND, ApiError, hex_value
from .dashboard_index import DashboardIndex
from .service import Node, now_ms
from .views import lot_json, offer_json, order_json, trade_json, tx_json

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html", ".js": "application/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_STATIC_NAME = re.compile(r"[a-z0-9_-]{1,40}\.(js|css|svg|html)")
_INTEGER = re.compile(r"[0-9]{1,19}")
_POSITION = re.compile(r"([0-9]{1,19})(?:\.([0-9]{1,9}))?")
MAX_PAGE = 50  # rows of a list page
MAX_HISTORY_SCAN = 10_000  # history entries a paged history request looks through
# the page loads nothing but the node's own script, style and JSON, and cannot be framed
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
MAX_TX_SCAN_BLOCKS = 200  # blocks a recent-transactions page may look through
MAX_HOURS = 168
MAX_BLOCK_POINTS = 500
MAX_DEPTH_LEVELS = 100
MAX_BOOK_ORDERS = 500  # orders of each side read for the depth chart


def _query_int(request: web.Request, name: str, default: int | None, hi: int | None = None) -> int | None:
    """A non-negative decimal query parameter; absent gives `default`, above `hi` is capped."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise ApiError(BAD_REQUEST, f"{name} must be a non-negative decimal integer")
    value = int(raw)
    return min(value, hi) if hi is not None else value


def _limit(request: web.Request, default: int, hi: int) -> int:
    value = _query_int(request, "limit", default, hi)
    assert value is not None
    if value < 1:
        raise ApiError(BAD_REQUEST, "limit must be at least 1")
    return value


def _address(value: str) -> bytes:
    try:
        return parse_address(value)
    except ValueError as exc:
        raise ApiError(BAD_REQUEST, f"bad address {value[:60]!r}: {exc}") from None


def _reader_json(reader: Reader) -> dict[str, Any]:
    return {"role": reader.role, "full": reader.full, "key": reader.key.hex() if reader.key else None,
            "address": format_address(reader.address) if reader.address is not None else None}


def _json(data: Any) -> web.Response:
    return web.json_response(data, headers={"Cache-Control": "no-store"})


class Dashboard:
    def __init__(self, node: Node, sessions: ReadSessions) -> None:
        self.node = node
        self.sessions = sessions
        self.chain = node.chain
        self.index = DashboardIndex(node.chain)
        self._task: asyncio.Task[None] | None = None

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self.page)
        r.add_get("/dashboard/static/{name}", self.static)
        r.add_get("/dashboard/api/blocks", self.blocks)
        r.add_get("/dashboard/api/txs", self.txs)
        r.add_get("/dashboard/api/energy", self.energy)
        r.add_get("/dashboard/api/meters/{meter_id}/readings", self.meter_readings)
        r.add_get("/dashboard/api/accounts/{addr}/history", self.history)
        r.add_get("/dashboard/api/accounts/{addr}/lots", self.lots)
        r.add_get("/dashboard/api/market", self.market)
        r.add_get("/dashboard/api/search", self.search)
        r.add_get("/dashboard/openapi.json", self.openapi)
        r.add_get("/dashboard/session", self.session)
        r.add_post("/dashboard/session", self.sign_in)
        r.add_delete("/dashboard/session", self.sign_out)
        app.on_cleanup.append(self._stop)

    # the digest follows the head ------------------------------------------------------------------
    def _follow_from_now(self) -> None:
        """Start keeping the digest at the first visit: a node nobody looks at (a busy authority, a
        benchmark) spends nothing on it; from then on it follows every new head."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow(), name="dashboard-index")

    async def _stop(self, _app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _follow(self) -> None:
        """After every new head: note the grid signal it came under, then extend the digest."""
        node = self.node
        started = True
        while not node.stopping.is_set():
            changed = node.head_event
            # the head at start, and blocks fetched while catching up, came before this signal
            if not started and not node.peers.syncing:
                self.index.note_surplus(self.chain.height, node.grid.surplus_w)
            started = False
            try:
                await self.index.refresh()
            except Exception as exc:  # noqa: BLE001 - the dashboard must never take the node down
                node.log.error("dashboard_index_failed", error=repr(exc))
            await changed.wait()

    # pages ----------------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        self._follow_from_now()
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache",
                                                                "Content-Security-Policy": CSP,
                                                                "X-Content-Type-Options": "nosniff"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if not _STATIC_NAME.fullmatch(name) or not path.is_file():
            raise ApiError(NOT_FOUND, f"no dashboard file {name[:60]!r}")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                                               "Content-Type": CONTENT_TYPES[path.suffix]})

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(OPENAPI)

    # sign-in (node/access.py ReadSessions) ----------------------------------------------------------
    async def session(self, request: web.Request) -> web.Response:
        """Who the page reads as: its role, and the key and address of a signed-in reader."""
        return _json(_reader_json(request.get("reader", PUBLIC_READER)))

    async def sign_in(self, request: web.Request) -> web.Response:
        """Trade one read credential signed for this route (made by `kwh-wallet dashboard`) for a session
        cookie: the browser never holds the key, and the credential was good for this one request."""
        reader: Reader = request.get("reader", PUBLIC_READER)
        if not request.headers.get("Authorization", "").startswith(SCHEME + " ") or reader.key is None:
            raise ApiError(CREDENTIAL_REQUIRED, f"sign in with a {SCHEME} credential for POST /dashboard/session "
                                                "(kwh-wallet dashboard prints a sign-in link)", 401)
        if not reader.full and self.chain.account(address_of(reader.key)) == Account():
            # any key can be made in a moment: only keys with an account here (or a full-read role) hold a
            # session, so the table's bound costs an attacker accounts, not keys (node/access.py)
            raise ApiError(FORBIDDEN, "only a key with an account on this chain, an authority, an auditor or a "
                                      "member node signs in to the dashboard", 403)
        token, until = self.sessions.open(reader.key, now_ms())
        response = _json({**_reader_json(reader), "expires_ms": until})
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_TTL_MS // 1000, path="/", httponly=True,
                            samesite="Strict", secure=request.secure)
        return response

    async def sign_out(self, request: web.Request) -> web.Response:
        self.sessions.close(request.cookies.get(SESSION_COOKIE, ""))
        response = _json(_reader_json(PUBLIC_READER))
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # chain ----------------------------------------------------------------------------------------
    async def blocks(self, request: web.Request) -> web.Response:
        """Block summaries newest first, from `before` (exclusive; default: above the head) down."""
        limit = _limit(request, 20, MAX_PAGE)
        top = self.chain.height
        before = _query_int(request, "before", top + 1)
        assert before is not None
        out = []
        height = min(before, top + 1) - 1
        while height >= 0 and len(out) < limit:
            block = self.chain.block_at(height)
            if block is None:
                break
            h, s = block.header, block.seal
            out.append({"height": height, "hash": block.hash.hex(), "timestamp_ms": h.timestamp_ms,
                        "proposer": h.proposer.hex(), "txs": len(block.txs), "difficulty": h.difficulty,
                        "hashes": s.hashes, "energy_mj": s.energy_mj})
            height -= 1
        return _json({"head": top, "blocks": out, "next": height + 1 if height >= 0 and out else None})

    async def txs(self, request: web.Request) -> web.Response:
        """Recent transactions newest first, strictly before the position `before` ("H" for below block
        H, "H.I" for below tx I of block H), looking through at most MAX_TX_SCAN_BLOCKS blocks; `next` is
        the position to continue from (also after a quiet stretch with no transactions)."""
        limit = _limit(request, 20, MAX_PAGE)
        top = self.chain.height
        raw = request.query.get("before")
        m = _POSITION.fullmatch(raw) if raw is not None else None
        if raw is not None and m is None:
            raise ApiError(BAD_REQUEST, "before must be a height H or a position H.I")
        height, below = (int(m.group(1)), int(m.group(2)) if m.group(2) else 0) if m else (top + 1, 0)
        if height > top:
            height, below = top + 1, 0
        if below == 0:
            height -= 1
        full = request.get("reader", PUBLIC_READER).full  # others see where a tx is, not what it says
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        for _scan in range(MAX_TX_SCAN_BLOCKS):
            block = self.chain.block_at(height) if height >= 0 else None
            if block is None:
                break
            end = min(below, len(block.txs)) if below else len(block.txs)
            for index in range(end - 1, -1, -1):
                tx = block.txs[index]
                row = tx_json(tx) if full or isinstance(tx, Vote) else {"txid": tx.txid.hex(), "kind": tx.kind}
                row.pop("signature", None)
                row.pop("sender_key", None)
                row.update(height=height, index=index)
                out.append(row)
                if len(out) >= limit:
                    cursor = f"{height}.{index}" if index > 0 else (str(height) if height > 0 else None)
                    break
            if cursor is not None or len(out) >= limit:
                break
            below = 0
            height -= 1
        else:
            cursor = str(height + 1)
        return _json({"txs": out, "next": cursor, "pending": len(self.node.mempool)})

    async def search(self, request: web.Request) -> web.Response:
        """Where a block height or hash, txid, address, meter id or lot id leads: {kind, ref}."""
        q = request.query.get("q", "").strip()
        if not q:
            raise ApiError(BAD_REQUEST, "give q: a block height or hash, a txid, an address, a meter id or a lot id")
        found = self._find(q)
        if found is None:
            raise ApiError(NOT_FOUND, f"nothing on this chain matches {q[:80]!r}")
        kind, ref = found
        return _json({"kind": kind, "ref": ref})

    def _find(self, q: str) -> tuple[str, str] | None:
        chain = self.chain
        if _INTEGER.fullmatch(q):
            return ("block", str(int(q))) if int(q) <= chain.height else None
        if q.lower().startswith("kwh"):
            return "account", format_address(_address(q))
        try:
            raw = bytes.fromhex(q)
        except ValueError:
            return None
        key = raw.hex()
        if len(raw) == 32:
            if chain.meta(raw) is not None:
                return "block", key
            if chain.tx_location(raw) is not None or self.node.mempool.get(raw) is not None \
                    or self.node.mempool.dropped.get(raw) is not None:
                return "tx", key
        elif len(raw) == 24 and chain.lot(raw) is not None:
            return "lot", key
        elif len(raw) == 16 and chain.meter(raw) is not None:
            return "meter", key
        return None

    # energy ---------------------------------------------------------------------------------------
    async def energy(self, request: web.Request) -> web.Response:
        """One page of hourly series (`hours`, `before` an hour's unix time), the last `blocks` blocks'
        mining energy with the grid signal, and the ledger's totals."""
        hours = _query_int(request, "hours", 48, MAX_HOURS) or 1
        before = _query_int(request, "before", None)
        n_blocks = _query_int(request, "blocks", 200, MAX_BLOCK_POINTS) or 1
        self._follow_from_now()
        await self.index.current()
        idx = self.index
        settled, settled_next = idx.hours(idx.by_block_hour, hours, before)
        metered, metered_next = idx.hours(idx.by_interval_hour, hours, before)
        chain = self.chain
        head, g = chain.head, chain.globals()
        energy_kwh = head.cum_energy_mj / 3.6e9
        return _json({
            "head": chain.height, "indexed_from": idx.low_height, "indexed_to": idx.top_height,
            "by_block_hour": [{"hour": h, "minted_wh": r[0], "consumed_wh": r[1], "redeemed_wh": r[2],
                               "settled_wh": r[3], "energy_j": r[4] / 1000} for h, r in settled],
            "by_interval_hour": [{"hour": h, "export_wh": r[0], "import_wh": r[1]} for h, r in metered],
            "next": {"by_block_hour": settled_next, "by_interval_hour": metered_next},
            "blocks": [{"height": p.height, "timestamp_ms": p.timestamp_ms, "hashes": p.hashes,
                        "energy_j": p.energy_mj / 1000, "estimated": p.estimated, "difficulty": p.difficulty,
                        "txs": p.txs, "surplus_w": idx.surplus.get(p.height)} for p in idx.recent_blocks(n_blocks)],
            "totals": {"minted_wh": g.minted_wh, "consumed_wh": g.consumed_wh, "redeemed_wh": g.redeemed_wh,
                       "settled_wh": g.settled_wh, "blocks": head.height, "hashes": head.cum_hashes,
                       "energy_j": head.cum_energy_mj / 1000, "energy_kwh": energy_kwh,
                       "ledger_kwh_per_settled_kwh": energy_kwh / (g.settled_wh / 1000) if g.settled_wh else None},
            "grid": self.node.grid_snapshot()})

    async def meter_readings(self, request: web.Request) -> web.Response:
        meter_id = hex_value(request.match_info["meter_id"], 16, "meter_id")
        meter = self.chain.meter(meter_id)
        if meter is None:
            raise ApiError(NOT_FOUND, f"no meter {meter_id.hex()}")
        require_reader(request, "a meter's readings", meter.owner)  # a household's load curve (ADR 012)
        limit = _limit(request, 96, self.index.readings_per_meter)
        self._follow_from_now()
        await self.index.current()
        return _json({"meter_id": meter_id.hex(), "indexed_from": self.index.low_height,
                      "readings": [{"interval_start": p.interval_start, "interval_s": p.interval_s,
                                    "export_wh": p.export_wh, "import_wh": p.import_wh, "height": p.height,
                                    "txid": p.txid} for p in self.index.meter_readings(meter_id, limit)]})

    # accounts -------------------------------------------------------------------------------------
    async def history(self, request: web.Request) -> web.Response:
        """An account's history newest first, below height `before`; `next` continues."""
        addr = _address(request.match_info["addr"])
        require_reader(request, "an account's history", addr)
        limit = _limit(request, 20, MAX_PAGE)
        before = _query_int(request, "before", None)
        entries = self.chain.history(addr, MAX_HISTORY_SCAN) if before is not None else \
            self.chain.history(addr, limit + 1)
        if before is not None:
            entries = [e for e in entries if e[0] < before]
        page = entries[:limit]
        more = len(entries) > limit
        # a page ends at a height boundary, so the cursor never splits one block's entries
        if more and page and entries[limit][0] == page[-1][0]:
            last = page[-1][0]
            trimmed = [e for e in page if e[0] != last]
            page = trimmed or page
        rows = [{"height": h, "txid": txid.hex(), "kind": kind} for h, txid, kind in page]
        return _json({"history": rows, "next": page[-1][0] if more and page else None})

    async def lots(self, request: web.Request) -> web.Response:
        """One page of an account's Wh lots, with provenance (meter, interval, reading)."""
        addr = _address(request.match_info["addr"])
        require_reader(request, "an account's lots", addr)
        limit = _limit(request, 20, MAX_PAGE)
        offset = _query_int(request, "offset", 0) or 0
        holdings = self.chain.holdings(addr)
        page = holdings[offset:offset + limit]
        return _json({"total": len(holdings), "lots": [lot_json(lot_id, self.chain.lot(lot_id), wh, source)
                                                       for lot_id, wh, source in page],
                      "next": offset + limit if offset + limit < len(holdings) else None})

    # market ---------------------------------------------------------------------------------------
    async def market(self, request: web.Request) -> web.Response:
        """Order book depth by price level, the best orders, open offers and the most recent trades: each
        one page, read by id (the book's first orders; the digest's last offers and trades)."""
        limit = _limit(request, 20, MAX_PAGE)
        reader: Reader = request.get("reader", PUBLIC_READER)
        self._follow_from_now()
        await self.index.current()
        chain = self.chain
        buys, sells = _book(chain)
        depth = {"buys": _levels(buys), "sells": _levels(sells)}
        book = {"buys": [order_json(i, o) for i, o in buys[:limit]],
                "sells": [order_json(i, o) for i, o in sells[:limit]]}
        offers = []
        for offer_id in reversed(self.index.offers):
            o = chain.offer(offer_id)
            if o is not None and o.status == "open":
                offers.append(offer_json(offer_id, o))
                if len(offers) >= limit:
                    break
        counts: dict[str, int] = {}
        trades = []
        for trade_id in reversed(self.index.trades):
            t = chain.trade(trade_id)
            if t is None:
                continue
            counts[t.status] = counts.get(t.status, 0) + 1
            if len(trades) < limit and reader.owns(t.seller, t.buyer):  # counts are public, trades personal
                trades.append(trade_json(trade_id, t))
        return _json({"depth": depth, "book": book, "offers": offers, "trades": trades,
                      "recent_trade_counts": counts, "recent_trades_counted": sum(counts.values())})


def _book(chain: Any) -> tuple[list[tuple[bytes, Any]], list[tuple[bytes, Any]]]:
    """The best MAX_BOOK_ORDERS open orders of each side (best first): the book's price-time keys are read
    in order, as far as needed (Chain.order_book)."""
    return chain.order_book(MAX_BOOK_ORDERS)


def _levels(orders: list[tuple[bytes, Any]]) -> list[dict[str, int]]:
    """Cumulative Wh by price level, best price first (at most MAX_DEPTH_LEVELS levels)."""
    levels: list[dict[str, int]] = []
    total = 0
    for _id, o in orders:
        if levels and levels[-1]["price_per_wh"] == o.price_per_wh:
            total += o.remaining
            levels[-1]["wh"] += o.remaining
            levels[-1]["cum_wh"] = total
        elif len(levels) < MAX_DEPTH_LEVELS:
            total += o.remaining
            levels.append({"price_per_wh": o.price_per_wh, "wh": o.remaining, "cum_wh": total})
        else:
            break
    return levels


def _q(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _p(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _get(summary: str, required: list[str], params: list[dict[str, Any]]) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"type": "object", "required": ["error", "detail"]}}}}
    ok = {"description": "one page", "content": {"application/json": {"schema": {
        "type": "object", "required": required}}}}
    return {"get": {"summary": summary, "parameters": params, "tags": ["dashboard"],
                    "responses": {"200": ok, "400": {"description": "bad parameter", **error},
                                  "401": {"description": "personal data: sign in (ADR 012)", **error},
                                  "403": {"description": "personal data of another account", **error},
                                  "404": {"description": "not found", **error},
                                  "429": {"description": "rate limited", **error}}}}


_LIMIT = _q("limit", {"type": "integer", "minimum": 1}, f"rows, at most {MAX_PAGE} (more is capped)")
_HEIGHT = {"type": "integer", "minimum": 0, "maximum": 10**19 - 1}  # what _INTEGER takes: 19 digits
_ADDR = _p("addr", {"type": "string", "pattern": "^kwh[0-9a-f]{48}$"}, "account address")
# The dashboard's own views, described apart from GET /openapi.json (tests fuzz them with schemathesis).
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "kwhledger node: dashboard views", "version": "1"},
    "paths": {
        "/dashboard/api/blocks": _get("Block summaries, newest first, below height `before`",
                                      ["head", "blocks", "next"],
                                      [_q("before", _HEIGHT, "exclusive upper height"), _LIMIT]),
        "/dashboard/api/txs": _get("Recent transactions, newest first, before a position H or H.I",
                                   ["txs", "next", "pending"],
                                   [_q("before", {"type": "string", "pattern": r"^[0-9]{1,19}(\.[0-9]{1,9})?$"},
                                       "position: block height, or height.index"), _LIMIT]),
        "/dashboard/api/energy": _get("Hourly energy series, mining energy per block, totals",
                                      ["by_block_hour", "by_interval_hour", "blocks", "totals", "grid", "next"],
                                      [_q("hours", {"type": "integer", "minimum": 0}, f"at most {MAX_HOURS}"),
                                       _q("before", _HEIGHT, "hours before this unix time"),
                                       _q("blocks", {"type": "integer", "minimum": 0},
                                          f"at most {MAX_BLOCK_POINTS}")]),
        "/dashboard/api/meters/{meter_id}/readings": _get(
            "A meter's last readings", ["meter_id", "readings"],
            [_p("meter_id", {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"}, "16-byte meter id"), _LIMIT]),
        "/dashboard/api/accounts/{addr}/history": _get("An account's history, newest first", ["history", "next"],
                                                       [_ADDR, _q("before", _HEIGHT, "below this height"), _LIMIT]),
        "/dashboard/api/accounts/{addr}/lots": _get("A page of an account's lots", ["total", "lots", "next"],
                                                    [_ADDR, _q("offset", {"type": "integer", "minimum": 0},
                                                               "lots to skip"), _LIMIT]),
        "/dashboard/api/market": _get("Depth, best orders, open offers, recent trades",
                                      ["depth", "book", "offers", "trades", "recent_trade_counts"], [_LIMIT]),
        "/dashboard/api/search": _get("Where a height, hash, txid, address, meter id or lot id leads",
                                      ["kind", "ref"], [_q("q", {"type": "string", "minLength": 1},
                                                           "what to look for", required=True)]),
    },
}


def add_dashboard(app: web.Application, node: Node, sessions: ReadSessions) -> None:
    """Serve the dashboard and its views on the API's app (node/api.py calls this)."""
    Dashboard(node, sessions).register(app)
