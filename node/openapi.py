"""The OpenAPI 3.0 description of the node's HTTP API, as data (served at GET /openapi.json).

Kept beside the routes it describes: a test checks that every route the node serves is described here.
The shapes follow docs/interfaces.md, which stays the contract.
"""
from __future__ import annotations

import copy
from typing import Any

from .accounting import QUOTE_KINDS
from .views import OFFER_STATUSES, ORDER_STATUSES, TRADE_STATUSES

INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
NUM_OR_NULL = {"type": "number", "nullable": True}
HEX = {"type": "string", "pattern": "^[0-9a-f]*$", "description": "lowercase hex"}
ADDR = {"type": "string", "pattern": "^kwh[0-9a-f]{48}$", "description": "account address with checksum"}


def _hex_id(size: int, what: str) -> dict[str, Any]:
    """A path parameter of exactly `size` bytes in hex (either case is accepted)."""
    return {"type": "string", "pattern": f"^[0-9a-fA-F]{{{2 * size}}}$", "description": f"{what}, {size} bytes hex"}


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    out["required"] = list(props) if required is None else required
    out.update(extra)
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str, key: str) -> dict[str, Any]:
    return _obj({key: {"type": "array", "items": _ref(name)}})


NEXT = {"type": "string", "pattern": "^([0-9a-f]{2}){1,64}$", "nullable": True,
        "description": "cursor of the next page (pass it as `cursor`); null at the end. Opaque."}


def _page(name: str, key: str, **more: Any) -> dict[str, Any]:
    """A page of a listing: its items and the `next` cursor."""
    return _obj({key: {"type": "array", "items": _ref(name)}, **more, "next": NEXT})


SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": {"type": "string", "description": "machine-readable reason (ledger/errors.py, "
                                                             "not_found, bad_request, unauthorized, rate_limited, "
                                                             "mempool_full, credential_required, bad_credential, "
                                                             "credential_expired, credential_replayed, forbidden)"},
                   "detail": STR}, additionalProperties=False),
    "Tx": _obj({"txid": HEX, "kind": {"type": "string", "description": "transfer, transfer_wh, enroll_meter, "
                                      "revoke_meter, redeem, post_offer, accept_offer, deliver, cancel_offer, "
                                      "place_order, cancel_order, enroll_ocmf_meter, reading or "
                                      "ocmf_reading"},
                "sender": ADDR, "sender_key": HEX, "nonce": INT, "fee": INT, "signature": HEX},
               required=["txid", "kind"], additionalProperties=True,
               description="Signed txs carry sender, sender_key, nonce, fee and the body's fields (addresses as "
                           "text, bytes as hex; EnrollMeter's kind is meter_kind); readings carry the reading "
                           "fields (meter_id, interval_start, interval_s, export_wh, import_wh, export_register, "
                           "import_register, counter); OCMF readings carry meter_id, serial, paging, time_ms "
                           "and the raw record."),
    "Block": _obj({"hash": HEX, "height": INT, "prev_hash": HEX, "timestamp_ms": INT, "proposer": HEX,
                   "tx_root": HEX, "state_root": HEX, "difficulty": INT, "nonce": INT, "hashes": INT,
                   "energy_mj": INT, "energy_estimated": BOOL, "txs": {"type": "array", "items": _ref("Tx")},
                   "tx_count": INT},
                  required=["hash", "height", "prev_hash", "timestamp_ms", "proposer", "tx_root", "state_root",
                            "difficulty", "nonce", "hashes", "energy_mj", "energy_estimated", "txs"],
                  description="Readers without the full-read role get txs [] and tx_count (ADR 012)"),
    "Peer": _obj({"url": STR, "key": {**HEX, "nullable": True}, "height": INT, "connected": BOOL},
                 required=["url", "key", "height"]),
    "Status": _obj({"chain_id": STR, "genesis": HEX, "height": INT, "head": HEX, "total_work": INT,
                    "time_ms": INT, "head_time_ms": INT, "justified_height": INT, "justified_hash": HEX,
                    "finalized_height": INT, "finalized_hash": HEX, "finality_lag_blocks": INT,
                    "node_key": {**HEX, "nullable": True}, "authority": BOOL, "syncing": BOOL,
                    "mempool": INT, "peers": {"type": "array", "items": _ref("Peer")}}),
    "TxStatus": _obj({"txid": HEX, "status": {"type": "string", "enum": ["pending", "included", "rejected"]},
                      "height": INT, "block": HEX, "index": INT, "final": BOOL, "reason": STR, "detail": STR,
                      "tx": _ref("Tx")},
                     required=["txid", "status"],
                     description="tx, reason and detail only for the signer (a reading: the meter's owner), "
                                 "authorities, auditors and peers (ADR 012); anyone may follow a txid's status"),
    "Account": _obj({"address": ADDR, "coin": INT, "nonce": INT, "next_nonce": INT, "wh": INT, "locked_coin": INT,
                     "locked_wh": INT, "consumed_wh": INT, "redeemed_wh": INT, "open_offers": INT,
                     "open_orders": INT}),
    "Lot": _obj({"lot_id": HEX, "wh": INT, "source": STR, "meter_id": HEX, "producer": ADDR,
                 "interval_start": INT, "interval_s": INT, "minted_wh": INT, "height": INT, "reading_id": HEX},
                required=["lot_id", "source"]),
    "Movement": _obj({"txid": HEX, "from": {**ADDR, "nullable": True}, "to": {**ADDR, "nullable": True},
                      "wh": INT, "kind": STR}),
    "Meter": _obj({"meter_id": HEX, "public": HEX, "owner": ADDR, "kind": STR, "rated_w": INT, "interval_s": INT,
                   "source": STR, "active": BOOL, "counter": INT, "next_start": INT, "export_register": INT,
                   "import_register": INT, "minted_wh": INT, "consumed_wh": INT, "enrolled_height": INT},
                  required=["meter_id", "public", "owner", "kind", "rated_w", "interval_s", "source", "active",
                            "enrolled_height"],
                  description="counter, registers, next_start, minted_wh and consumed_wh only for the owner, "
                              "authorities and auditors (ADR 012)"),
    "OcmfMeter": _obj({"meter_id": HEX, "serial": STR, "public_key": HEX, "curve": STR, "owner": ADDR, "kind": STR,
                       "mint_register": STR, "consume_register": STR, "rated_w": INT, "source": STR,
                       "active": BOOL, "enrolled_ms": INT, "enrolled_height": INT, "last_paging_t": INT,
                       "last_paging_f": INT, "last_time_ms": INT, "mint_register_mwh": INT,
                       "consume_register_mwh": INT, "minted_wh": INT, "consumed_wh": INT, "records": INT,
                       "last_reading": STR},
                      required=["meter_id", "serial", "public_key", "curve", "owner", "kind", "rated_w", "source",
                                "active", "enrolled_ms", "enrolled_height"],
                      description="registers, paging and readings only for the owner, authorities and auditors"),
    "Offer": _obj({"offer_id": HEX, "seller": ADDR, "wh": INT, "remaining": INT, "price_per_wh": INT,
                   "window_start": INT, "window_end": INT, "source": STR, "status": STR, "height": INT}),
    "Order": _obj({"order_id": HEX, "owner": ADDR, "side": {"type": "string", "enum": ["buy", "sell"]},
                   "price_per_wh": INT, "wh": INT, "remaining": INT, "filled_wh": INT, "paid_coin": INT,
                   "status": STR, "seq": INT, "height": INT, "updated_height": INT, "final": BOOL},
                  required=["order_id", "owner", "side", "price_per_wh", "wh", "remaining", "filled_wh",
                            "paid_coin", "status", "seq", "height", "updated_height"]),
    "Trade": _obj({"trade_id": HEX, "offer_id": HEX, "seller": ADDR, "buyer": ADDR, "wh": INT, "price_per_wh": INT,
                   "escrow": INT, "delivered": INT, "released": INT, "refunded": INT, "window_start": INT,
                   "window_end": INT, "source": STR, "status": STR, "height": INT, "updated_height": INT,
                   "final": BOOL},
                  required=["trade_id", "offer_id", "seller", "buyer", "wh", "price_per_wh", "escrow", "delivered",
                            "released", "refunded", "window_start", "window_end", "source", "status", "height",
                            "updated_height"]),
    "Grid": _obj({"surplus_w": INT, "power_w": NUM, "difficulty": INT, "power_cap_w": NUM},
                 required=["surplus_w", "difficulty", "power_cap_w"]),
    "Energy": _obj({
        "blocks": {"type": "array", "items": _obj({"height": INT, "hash": HEX, "hashes": INT, "energy_j": NUM,
                                                   "estimated": BOOL, "difficulty": INT, "proposer": HEX,
                                                   "txs": INT},
                                                  required=["height", "hash", "hashes", "energy_j", "estimated",
                                                            "difficulty"])},
        "total": _obj({"blocks": INT, "hashes": INT, "energy_j": NUM, "energy_kwh": NUM}),
        "minted_wh": INT, "settled_wh": INT, "redeemed_wh": INT, "consumed_wh": INT,
        "ledger_kwh_per_settled_kwh": {"type": "number", "nullable": True}, "grid": _ref("Grid"),
        "node": _ref("NodeEnergy")}, required=["blocks", "total", "minted_wh", "settled_wh", "redeemed_wh",
                                               "consumed_wh", "ledger_kwh_per_settled_kwh", "grid"]),
    "NodeEnergy": _obj({
        "energy_j": NUM, "energy_kwh": NUM, "cpu_s": NUM, "estimated": BOOL,
        "source": _enum("rapl", "cpu-time-estimate"), "watts_per_core": NUM, "j_per_cpu_s": NUM, "since_ms": INT,
        "breakdown_j": {"type": "object", "additionalProperties": NUM,
                        "description": "signatures, transition, storage, hashing, peer, api, other: adds up to "
                                       "energy_j"},
        "breakdown_cpu_s": {"type": "object", "additionalProperties": NUM},
        "signature_check_s": {"type": "object", "additionalProperties": NUM},
        "blocks": {"type": "array", "items": _obj({"height": INT, "hash": HEX, "txs": INT, "energy_j": NUM,
                                                   "estimated": BOOL,
                                                   "breakdown_j": {"type": "object", "additionalProperties": NUM}})},
        "blocks_applied": INT, "txs_applied": INT, "validators": INT, "overhead_j_per_tx": NUM,
        "per_type": {"type": "object", "additionalProperties": _obj({
            "admitted": INT, "applied": INT, "admit_j": NUM_OR_NULL, "apply_j": NUM_OR_NULL,
            "node_j": NUM_OR_NULL, "network_j": NUM_OR_NULL, "avg_wh": NUM_OR_NULL})}},
        description="This node's whole energy (CPU time of every code path, measured with RAPL or estimated)"),
    "EnergyQuote": _obj({"type": STR, "validators": INT, "samples": INT, "estimated": BOOL,
                         "source": _enum("rapl", "cpu-time-estimate"), "node_j": NUM, "marginal_node_j": NUM,
                         "overhead_node_j": NUM, "network_wh": NUM, "marginal_network_wh": NUM,
                         "wh_moved": NUM_OR_NULL, "fraction": NUM_OR_NULL}),
    "Evidence": _obj({"proposer": HEX, "height": INT, "blocks": {"type": "array", "items": HEX}}),
    "VoteEvidence": _obj({"voter": HEX, "target_height": INT,
                          "kind": {"type": "string", "enum": ["double_vote", "surround_vote"]},
                          "votes": {"type": "array", "items": HEX,
                                    "description": "both signed votes, canonical tx bytes in hex"}}),
    "Authorities": _obj({"authorities": {"type": "array", "items": HEX},
                         "proposals": {"type": "array", "items": _obj({"action": _enum("add", "remove"),
                                                                       "key": HEX,
                                                                       "votes": {"type": "array", "items": HEX},
                                                                       "opened_height": INT})},
                         "scheduled": {"type": "array", "items": _obj({"action": _enum("add", "remove"),
                                                                       "key": HEX, "passed_height": INT})}}),
}

MSGPACK_BYTES = {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}}
ERRORS = {code: {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
          for code, text in (("400", "bad input (reason in error)"),
                                             ("401", "personal data: no read credential, or a bad, expired or "
                                                     "replayed one (ADR 012)"), ("403", "not allowed"),
                             ("404", "not found"), ("409", "conflicts with state or mempool"),
                             ("413", "body too large"), ("429", "rate limited"))}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str, where: str, schema: dict[str, Any], description: str, required: bool | None = None) \
        -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path" if required is None else required,
            "schema": schema, "description": description}


def _op(summary: str, ok: dict[str, Any], params: list[dict[str, Any]] | None = None, body: Any = None,
        tags: list[str] | None = None, security: list[dict[str, list[str]]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **ERRORS}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    if tags:
        op["tags"] = tags
    if security is not None:
        op["security"] = security
    return op


ADDR_PATH = _param("addr", "path", ADDR, "account address")
HEIGHT_OR_HASH = {"type": "string", "pattern": "^([0-9]{1,19}|[0-9a-fA-F]{64})$"}
LIMIT_MIN = {"type": "integer", "minimum": 1}
FORMAT = _param("format", "query", {"type": "string", "enum": ["json", "msgpack"]},
                "msgpack: canonical bytes for peers and tools", False)
PEER_AUTH: list[dict[str, list[str]]] = [{"peerSession": []}]
CURSOR = _param("cursor", "query", {"type": "string", "pattern": "^([0-9a-f]{2}){1,64}$"},
                "the `next` of the page before (absent: the first page)", False)
PAGE = [_param("limit", "query", LIMIT_MIN, "items per page, at most 1000, more is capped (default 1000)", False),
        CURSOR]
LEVEL = _obj({"price_per_wh": INT, "wh": INT, "orders": INT})

PATHS: dict[str, Any] = {
    "/status": {"get": _op("Chain head, this node's role, mempool size and peers", _json(_ref("Status")),
                           tags=["chain"])},
    "/genesis": {"get": _op("The genesis JSON this node runs", _json({"type": "object"}), tags=["chain"])},
    "/blocks/{ref}": {"get": _op(
        "One block by height or hash",
        {"description": "block JSON, or the canonical block bytes with format=msgpack",
         "content": {"application/json": {"schema": _ref("Block")}, **MSGPACK_BYTES}},
        [_param("ref", "path", HEIGHT_OR_HASH, "height (decimal) or block hash (hex)"), FORMAT], tags=["chain"])},
    "/blocks": {"get": _op(
        "Canonical blocks from a height (at most 100, fewer if the page would be very large)",
        {"description": "{blocks: [block JSON], next}, or a msgpack list of block bytes with format=msgpack",
         "content": {"application/json": {"schema": _page("Block", "blocks")}, **MSGPACK_BYTES}},
        [_param("from", "query", {"type": "integer", "minimum": 0}, "first height (default 1)", False),
         _param("limit", "query", LIMIT_MIN, "at most 100, more is capped (default 100)", False), FORMAT,
         _param("cursor", "query", {"type": "string", "pattern": "^([0-9a-f]{2}){1,64}$"},
                "the `next` of the page before (instead of from)", False)],
        tags=["chain"])},
    "/tx": {"post": _op(
        "Submit a signed transaction or meter reading to the mempool",
        _json(_obj({"txid": HEX, "status": {"type": "string", "enum": ["pending"]}})),
        body={"required": True, "content": {
            "application/msgpack": {"schema": {"type": "string", "format": "binary",
                                               "description": "canonical tx bytes (ledger.tx.encode_tx)"}},
            "application/json": {"schema": _obj({"tx": HEX})}}}, tags=["transactions"])},
    "/tx/{txid}": {"get": _op("Where a transaction is: pending, included (with block) or rejected (with reason)",
                              _json(_ref("TxStatus")), [_param("txid", "path", _hex_id(32, "transaction id"),
                                                               "transaction id")],
                              tags=["transactions"])},
    "/accounts/{addr}": {"get": _op("Balances and nonces; next_nonce counts pending mempool txs",
                                    _json(_ref("Account")), [ADDR_PATH], tags=["accounts"])},
    "/accounts/{addr}/lots": {"get": _op("Wh holdings by lot, oldest first, with provenance (paged)",
                                         _json(_page("Lot", "lots")), [ADDR_PATH, *PAGE], tags=["accounts"])},
    "/accounts/{addr}/history": {"get": _op(
        "Transactions touching the account, newest first (paged)",
        _json(_obj({"history": {"type": "array", "items": _obj({"height": INT, "txid": HEX, "kind": STR,
                                                                  "final": BOOL})},
                    "next": NEXT})),
        [ADDR_PATH, _param("limit", "query", LIMIT_MIN, "at most 1000, more is capped (default 50)", False),
         CURSOR],
        tags=["accounts"])},
    "/meters": {"get": _op("Enrolled meters by id (paged)", _json(_page("Meter", "meters")), PAGE,
                           tags=["meters"])},
    "/meters/{meter_id}": {"get": _op("One meter", _json(_ref("Meter")),
                                      [_param("meter_id", "path", _hex_id(16, "meter id"), "16-byte meter id")],
                                      tags=["meters"])},
    "/ocmf-meters": {"get": _op("Enrolled OCMF meters by id (paged)", _json(_page("OcmfMeter", "meters")), PAGE,
                                tags=["meters"])},
    "/ocmf-meters/{meter_id}": {"get": _op(
        "One OCMF meter (its id: ledger.ocmf.meter_id_of_serial(serial))", _json(_ref("OcmfMeter")),
        [_param("meter_id", "path", _hex_id(16, "meter id"), "16-byte OCMF meter id")], tags=["meters"])},
    "/lots/{lot_id}": {"get": _op("A lot's origin and the movements of its Wh, oldest first (paged)",
                                  _json(_page("Movement", "movements", lot=_ref("Lot"))),
                                  [_param("lot_id", "path", _hex_id(24, "lot id"), "24-byte lot id"), *PAGE],
                                  tags=["meters"])},
    "/market/offers": {"get": _op("Prepaid delivery offers by id, or a seller's newest first (paged; a page "
                                  "reads at most 10,000 offers, so a filtered page may hold fewer than limit)",
                                  _json(_page("Offer", "offers")),
                                  [_param("status", "query", _enum(*OFFER_STATUSES),
                                          "only offers in this state", False),
                                   _param("seller", "query", ADDR, "only this seller's offers", False), *PAGE],
                                  tags=["market"])},
    "/market/offers/{offer_id}": {"get": _op("One offer (its id is the posting tx's id)", _json(_ref("Offer")),
                                             [_param("offer_id", "path", _hex_id(32, "offer id"),
                                                     "32-byte offer id")],
                                             tags=["market"])},
    "/market/orderbook": {"get": _op(
        "The best open limit orders of each side, best first, and the best price levels (Wh and orders "
        "summed per price; partial: a level was cut at 10,000 orders read)",
        _json(_obj({"buys": {"type": "array", "items": _ref("Order")},
                    "sells": {"type": "array", "items": _ref("Order")},
                    "levels": _obj({"buys": {"type": "array", "items": LEVEL},
                                    "sells": {"type": "array", "items": LEVEL}, "partial": BOOL})})),
        [_param("limit", "query", LIMIT_MIN, "orders per side, at most 1000, more is capped (default 100)", False),
         _param("depth", "query", LIMIT_MIN, "price levels per side, at most 100, more is capped (default 20)",
                False)],
        tags=["market"])},
    "/market/orders": {"get": _op("Limit orders by id, or an owner's newest first (paged, as offers)",
                                  _json(_page("Order", "orders")),
                                  [_param("owner", "query", ADDR, "only this owner's orders", False),
                                   _param("status", "query", _enum(*ORDER_STATUSES),
                                          "only orders in this state", False), *PAGE],
                                  tags=["market"])},
    "/trades": {"get": _op("Prepaid trades by id, or a party's newest first (paged, as offers)",
                           _json(_page("Trade", "trades")),
                           [_param("party", "query", ADDR, "trades where this account sells or buys", False),
                            _param("status", "query", _enum(*TRADE_STATUSES),
                                   "only trades in this state", False), *PAGE],
                           tags=["market"])},
    "/trades/{trade_id}": {"get": _op("One trade (its id is the accepting tx's id)", _json(_ref("Trade")),
                                      [_param("trade_id", "path", _hex_id(32, "trade id"), "32-byte trade id")],
                                      tags=["market"])},
    "/energy": {"get": _op("Hashes and energy per block and in total; Wh minted, settled, redeemed, consumed; "
                           "the grid policy", _json(_ref("Energy")),
                           [_param("limit", "query", LIMIT_MIN, "recent blocks, at most 100, more is capped "
                                                                "(default 20)", False)],
                           tags=["energy"])},
    "/energy/quote": {"get": _op("What verifying one transaction of a kind costs the network now: this node's "
                                 "measured cost per kind times the validating nodes, in Wh and as a fraction of "
                                 "the energy it moves", _json(_ref("EnergyQuote")),
                                 [_param("type", "query", _enum(*QUOTE_KINDS),
                                         "transaction kind (transfer, reading, post_offer or offer, accept_offer or "
                                         "accept, deliver, place_order or order, vote, ...)", True),
                                  _param("wh", "query", LIMIT_MIN, "energy the transaction moves (default: the "
                                                                   "average seen for that kind)", False)],
                                 tags=["energy"])},
    "/evidence": {"get": _op("Equivocation evidence: an authority that signed two blocks at one height, or "
                             "two conflicting finality votes (double or surround)",
                             _json(_page("Evidence", "evidence",
                                         votes={"type": "array", "items": _ref("VoteEvidence")})), PAGE,
                             tags=["chain"])},
    "/authorities": {"get": _op("The authority set, open proposals to change it, and passed changes waiting "
                                "for finality", _json(_ref("Authorities")), tags=["chain"])},
    "/metrics": {"get": _op("Prometheus metrics", {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": STR}}}, tags=["operations"])},
    "/openapi.json": {"get": _op("This document", _json({"type": "object"}), tags=["operations"])},
    "/admin/grid-signal": {"post": _op(
        "Set the grid signal (surplus in W, <= 0 is a shortage); answers the new mining policy",
        _json(_ref("Grid")), body={"required": True, "content": {"application/json": {
            "schema": _obj({"surplus_w": INT})}}},
        tags=["operations"], security=[{"adminToken": []}])},
    "/peer/hello": {"post": _op(
        "Peer handshake, step 1: the dialer's key, URL and challenge; answers this node's key, its signature "
        "over the dialer's challenge and a challenge for the dialer",
        _json(_obj({"chain_id": STR, "key": HEX, "challenge": HEX, "signature": HEX})),
        body={"required": True, "content": {"application/json": {"schema": _obj(
            {"chain_id": STR, "key": HEX, "url": STR, "challenge": HEX}, required=["chain_id", "key", "challenge"])}}},
        tags=["peers"])},
    "/peer/handshake": {"post": _op(
        "Peer handshake, step 2: the dialer's signature over this node's challenge; answers a session token",
        _json(_obj({"token": STR, "key": HEX})),
        body={"required": True, "content": {"application/json": {"schema": _obj(
            {"key": HEX, "challenge": HEX, "signature": HEX})}}}, tags=["peers"])},
    "/peer/block": {"post": _op(
        "Gossip: a new block (canonical bytes); an invalid block bans the sender",
        _json(_obj({"status": STR, "hash": HEX, "height": INT})),
        body={"required": True, "content": MSGPACK_BYTES}, tags=["peers"], security=PEER_AUTH)},
    "/peer/txs": {"post": _op(
        "Gossip: a msgpack list of tx bytes", _json(_obj({"accepted": INT, "received": INT})),
        body={"required": True, "content": MSGPACK_BYTES}, tags=["peers"], security=PEER_AUTH)},
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "kwhledger node API", "version": "1",
             "description": "HTTP API of a kwhledger node. Errors are {\"error\": CODE, \"detail\": \"...\"}; "
                            "see docs/interfaces.md for the contract."},
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "adminToken": {"type": "http", "scheme": "bearer", "description": "the node's --admin-token"},
            "peerSession": {"type": "http", "scheme": "bearer", "description": "token from /peer/handshake"},
        },
    },
}


def openapi_document() -> dict[str, Any]:
    return copy.deepcopy(DOCUMENT)
