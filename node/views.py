"""JSON forms of ledger objects for the HTTP API (docs/interfaces.md): addresses as `kwh...` text, other
bytes as lowercase hex, integers as plain numbers."""
from __future__ import annotations

import dataclasses
from typing import Any

from ledger.block import Block
from ledger.keys import format_address
from ledger.state import Account, Lot, Meter, Offer, Order, Trade
from ledger.ocmf_rules import OcmfMeter
from ledger.tx import MeterReading, OcmfReading, SignedTx, Tx, Vote

# The states of market objects (ledger/state.py), which the list routes filter by.
OFFER_STATUSES = ("open", "filled", "cancelled", "expired")
ORDER_STATUSES = ("open", "filled", "cancelled")
TRADE_STATUSES = ("open", "delivered", "settled")

# Body fields whose names clash with the envelope's get a prefix (EnrollMeter.kind -> meter_kind).
_ENVELOPE = {"txid", "kind", "sender", "sender_key", "nonce", "fee", "signature"}


def _body_fields(body: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(body):
        value = getattr(body, f.name)
        spec = f.metadata.get("spec")
        if isinstance(value, bytes):
            value = format_address(value) if spec is not None and spec.size == 20 else value.hex()
        name = f"meter_{f.name}" if f.name in _ENVELOPE else f.name
        out[name] = value
    return out


def tx_json(tx: Tx) -> dict[str, Any]:
    if isinstance(tx, MeterReading):
        f = tx.fields
        return {"txid": tx.txid.hex(), "kind": "reading", "meter_id": f.meter_id.hex(),
                "interval_start": f.interval_start, "interval_s": f.interval_s, "export_wh": f.export_wh,
                "import_wh": f.import_wh, "export_register": f.export_register,
                "import_register": f.import_register, "counter": f.counter, "signature": tx.signature.hex()}
    if isinstance(tx, Vote):
        f = tx.fields
        return {"txid": tx.txid.hex(), "kind": "vote", "voter": f.voter.hex(), "source_height": f.source_height,
                "source_hash": f.source_hash.hex(), "target_height": f.target_height,
                "target_hash": f.target_hash.hex(), "signature": tx.signature.hex()}
    if isinstance(tx, OcmfReading):
        p = tx.parsed
        return {"txid": tx.txid.hex(), "kind": tx.kind, "meter_id": tx.meter_id.hex(), "serial": p.serial,
                "paging": f"{p.paging_series}{p.paging}", "time_ms": p.time_ms,
                "record": tx.record.decode("utf-8")}  # the raw record: anyone can verify it again
    assert isinstance(tx, SignedTx)
    out: dict[str, Any] = {"txid": tx.txid.hex(), "kind": tx.kind, "sender": format_address(tx.sender_address),
                           "sender_key": tx.sender.hex(), "nonce": tx.nonce, "fee": tx.fee}
    out.update(_body_fields(tx.body))
    out["signature"] = tx.signature.hex()
    return out


def block_json(block: Block) -> dict[str, Any]:
    out = block_json_header(block)
    out["txs"] = [tx_json(tx) for tx in block.txs]
    return out


def public_block_json(block: Block) -> dict[str, Any]:
    """A block for readers who may not see transactions: the header, the seal and how many txs it holds."""
    out = block_json_header(block)
    out.update({"txs": [], "tx_count": len(block.txs)})
    return out


def block_json_header(block: Block) -> dict[str, Any]:
    h, s = block.header, block.seal
    return {"hash": block.hash.hex(), "height": h.height, "prev_hash": h.prev_hash.hex(),
            "timestamp_ms": h.timestamp_ms, "proposer": h.proposer.hex(), "tx_root": h.tx_root.hex(),
            "state_root": h.state_root.hex(), "difficulty": h.difficulty, "nonce": h.nonce, "hashes": s.hashes,
            "energy_mj": s.energy_mj, "energy_estimated": s.energy_estimated}


def account_json(addr: bytes, acct: Account, next_nonce: int) -> dict[str, Any]:
    return {"address": format_address(addr), "coin": acct.coin, "nonce": acct.nonce, "next_nonce": next_nonce,
            "wh": acct.wh, "locked_coin": acct.locked_coin, "locked_wh": acct.locked_wh,
            "consumed_wh": acct.consumed_wh, "redeemed_wh": acct.redeemed_wh, "open_offers": acct.open_offers,
            "open_orders": acct.open_orders}


def lot_json(lot_id: bytes, lot: Lot | None, wh: int | None = None, source: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"lot_id": lot_id.hex()}
    if wh is not None:
        out["wh"] = wh
    out["source"] = source if source is not None else (lot.source if lot is not None else "")
    if lot is not None:
        out.update({"meter_id": lot.meter_id.hex(), "producer": format_address(lot.producer),
                    "interval_start": lot.interval_start, "interval_s": lot.interval_s,
                    "minted_wh": lot.minted_wh, "height": lot.height, "reading_id": lot.reading_id.hex()})
    return out


def movement_json(raw: list[Any]) -> dict[str, Any]:
    txid, sender, receiver, wh, kind = raw
    return {"txid": txid.hex(), "from": format_address(sender) if sender else None,
            "to": format_address(receiver) if receiver else None, "wh": wh, "kind": kind}


def meter_json(meter_id: bytes, m: Meter) -> dict[str, Any]:
    return {"meter_id": meter_id.hex(), "public": m.public.hex(), "owner": format_address(m.owner), "kind": m.kind,
            "rated_w": m.rated_w, "interval_s": m.interval_s, "source": m.source, "active": m.active,
            "counter": m.counter, "next_start": m.next_start, "export_register": m.export_register,
            "import_register": m.import_register, "minted_wh": m.minted_wh, "consumed_wh": m.consumed_wh,
            "enrolled_height": m.enrolled_height}


# What anyone may see of a meter: that it is enrolled, whose it is and what it is, never its readings.
PUBLIC_METER_FIELDS = ("meter_id", "public", "owner", "kind", "rated_w", "interval_s", "source", "active",
                       "enrolled_height")
PUBLIC_OCMF_METER_FIELDS = ("meter_id", "serial", "public_key", "curve", "owner", "kind", "rated_w", "source",
                            "active", "enrolled_ms", "enrolled_height")


def public_meter_json(meter_id: bytes, m: Meter) -> dict[str, Any]:
    full = meter_json(meter_id, m)
    return {k: full[k] for k in PUBLIC_METER_FIELDS}


def public_ocmf_meter_json(meter_id: bytes, m: OcmfMeter) -> dict[str, Any]:
    full = ocmf_meter_json(meter_id, m)
    return {k: full[k] for k in PUBLIC_OCMF_METER_FIELDS}


def ocmf_meter_json(meter_id: bytes, m: OcmfMeter) -> dict[str, Any]:
    return {"meter_id": meter_id.hex(), "serial": m.serial, "public_key": m.spki.hex(), "curve": m.curve,
            "owner": format_address(m.owner), "kind": m.kind, "mint_register": m.mint_register,
            "consume_register": m.consume_register, "rated_w": m.rated_w, "source": m.source, "active": m.active,
            "enrolled_ms": m.enrolled_ms, "enrolled_height": m.enrolled_height, "last_paging_t": m.last_t,
            "last_paging_f": m.last_f, "last_time_ms": m.last_time_ms, "mint_register_mwh": m.mint_mwh,
            "consume_register_mwh": m.consume_mwh, "minted_wh": m.minted_wh, "consumed_wh": m.consumed_wh,
            "records": m.records, "last_reading": m.last_reading.hex()}


def offer_json(offer_id: bytes, o: Offer) -> dict[str, Any]:
    return {"offer_id": offer_id.hex(), "seller": format_address(o.seller), "wh": o.wh, "remaining": o.remaining,
            "price_per_wh": o.price_per_wh, "window_start": o.window_start, "window_end": o.window_end,
            "source": o.source, "status": o.status, "height": o.height}


def order_json(order_id: bytes, o: Order, finalized: int | None = None) -> dict[str, Any]:
    """`final`: no block above the finalized height changed the order (its fills cannot be reverted)."""
    out = {"order_id": order_id.hex(), "owner": format_address(o.owner), "side": o.side,
           "price_per_wh": o.price_per_wh, "wh": o.wh, "remaining": o.remaining, "filled_wh": o.filled_wh,
           "paid_coin": o.paid_coin, "status": o.status, "seq": o.seq, "height": o.height,
           "updated_height": max(o.height, o.updated)}
    if finalized is not None:
        out["final"] = out["updated_height"] <= finalized
    return out


def trade_json(trade_id: bytes, t: Trade, finalized: int | None = None) -> dict[str, Any]:
    """`final`: no block above the finalized height changed the trade (its escrow releases and refund
    cannot be reverted)."""
    out = {"trade_id": trade_id.hex(), "offer_id": t.offer_id.hex(), "seller": format_address(t.seller),
           "buyer": format_address(t.buyer), "wh": t.wh, "price_per_wh": t.price_per_wh, "escrow": t.escrow,
           "delivered": t.delivered, "released": t.released, "refunded": t.refunded,
           "window_start": t.window_start, "window_end": t.window_end, "source": t.source, "status": t.status,
           "height": t.height, "updated_height": max(t.height, t.updated)}
    if finalized is not None:
        out["final"] = out["updated_height"] <= finalized
    return out
