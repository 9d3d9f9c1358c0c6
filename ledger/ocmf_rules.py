"""The rules for OCMF meters: enrollment by an authority and readings the meter signed itself.

State: one `OcmfMeter` record per meter under its own key prefix `sq<meter id16>` (the meter id is
`ocmf.meter_id_of_serial(serial)`), not inside the native `Meter` record: an OCMF meter has a DER key of
any OCMF curve, a serial, paging per series and registers in milli-Wh, none of which a native meter has.
Lots it mints are ordinary `Lot` records (meter id, interval, source), so provenance, transfers, orders
and redemption work unchanged; a lot's `reading_id` is the OCMF reading's txid, whose raw record
`GET /tx/{txid}` returns for anyone to verify again with any OCMF tool.

A record is accepted only if, in this order: the meter is enrolled and active; its `SA` names the
enrolled key's curve; the signature verifies; every reading is status G, without error flags, on a
synchronised clock (S); its paging is exactly the last accepted of its series + 1 (a first record of a
series starts it); no reading is before enrollment and the record's time has passed at the parent
block's timestamp; it starts in a later second than the last accepted record; it carries every enrolled
register, none lower than last accepted (nor falling inside the record); and no register grew by more
than rated power x time since the last accepted record. The first accepted record only sets the baseline.
Energy then is the register difference in whole Wh: floor(new) - floor(old), so a sequence mints exactly
floor(last) - floor(first) with nothing lost to rounding.

A record refused for a meter-side fault (status, flags, clock) leaves a paging gap that later records
cannot cross: the authority revokes the meter and enrolls it again (allowed for a revoked OCMF meter),
which starts a new baseline after the new enrollment time.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import errors as E
from . import ocmf
from .errors import Rejected
from .state import Lot, Record, StateOverlay, holding_add, k_lot, lot_id_of, record
from .store import KV
from .tx import SOURCES, EnrollOcmfMeter, OcmfReading, SignedTx

if TYPE_CHECKING:
    from .transition import BlockContext

OCMF_METER_PREFIX = b"sq"
MAX_RATED_W = 100_000_000


@record
class OcmfMeter(Record):
    spki: bytes  # DER SubjectPublicKeyInfo as enrolled
    curve: str
    serial: str
    owner: bytes
    mint_register: str  # "" or C.D.E of an export register
    consume_register: str  # "" or C.D.E of an import register
    rated_w: int
    source: str
    active: bool
    enrolled_ms: int  # block time of the enrollment: no reading may be older
    enrolled_height: int
    last_t: int = -1  # last accepted paging number of the T (transaction) series; -1: none yet
    last_f: int = -1  # ... of the F (fiscal) series
    last_time_ms: int = -1  # time of the last accepted record; -1: no baseline yet
    mint_mwh: int = -1  # register values at the last accepted record
    consume_mwh: int = -1
    minted_wh: int = 0
    consumed_wh: int = 0
    records: int = 0
    last_reading: bytes = b""  # txid of the last accepted record

    @property
    def kind(self) -> str:
        if self.mint_register and self.consume_register:
            return "both"
        return "generation" if self.mint_register else "consumption"

    def registers(self) -> list[tuple[str, int]]:
        """(register, last value in mWh) of each enrolled register."""
        return [(r, v) for r, v in ((self.mint_register, self.mint_mwh), (self.consume_register, self.consume_mwh))
                if r]


def k_ocmf_meter(meter_id: bytes) -> bytes:
    return OCMF_METER_PREFIX + meter_id


def load_ocmf_meter(kv: KV, meter_id: bytes) -> OcmfMeter | None:
    """Committed state (queries)."""
    raw = kv.get(k_ocmf_meter(meter_id))
    return OcmfMeter.unpack(raw) if raw is not None else None


def check_registers(mint_register: str, consume_register: str) -> None:
    """Enrollment's register choice: canonical C.D.E, export (2.8.x) mints, import (1.8.x) consumes."""
    for reg, cd in ((mint_register, ocmf.EXPORT), (consume_register, ocmf.IMPORT)):
        if not reg:
            continue
        try:
            canonical = ocmf.canonical_register(reg)
        except ValueError:
            canonical = ""
        if canonical != reg or not reg.startswith(cd + "."):
            raise Rejected(E.INVALID_METER, f"register {reg!r} must be {cd}.<tariff> (canonical C.D.E)")
    if not mint_register and not consume_register:
        raise Rejected(E.INVALID_METER, "enroll at least one register (mint or consume)")


class OcmfRules:
    """Mixed into `Transition`: the OCMF rules, with the same overlay and block context."""
    st: StateOverlay
    ctx: "BlockContext"

    def _require_authority(self, tx: SignedTx) -> None: ...  # provided by Transition

    def ocmf_meter(self, meter_id: bytes) -> OcmfMeter | None:
        return self.st._load(k_ocmf_meter(meter_id), OcmfMeter.unpack)

    def _enroll_ocmf(self, tx: SignedTx, body: EnrollOcmfMeter) -> None:
        self._require_authority(tx)
        try:
            curve = ocmf.curve_of(body.meter_spki)
        except ValueError as exc:
            raise Rejected(E.INVALID_METER, f"meter key: {exc}") from None
        if not ocmf.valid_serial(body.serial):
            raise Rejected(E.INVALID_METER, "serial must be 1..64 printable ASCII characters")
        check_registers(body.mint_register, body.consume_register)
        if body.source not in SOURCES or not 0 < body.rated_w <= MAX_RATED_W:
            raise Rejected(E.INVALID_METER, f"source in {SOURCES}, rated_w in 1..{MAX_RATED_W}")
        meter_id = ocmf.meter_id_of_serial(body.serial)
        old = self.ocmf_meter(meter_id)
        if old is not None and old.active:
            raise Rejected(E.METER_EXISTS, f"OCMF meter {body.serial!r} is already enrolled")
        self.st.put(k_ocmf_meter(meter_id), OcmfMeter(
            body.meter_spki, curve, body.serial, body.owner, body.mint_register, body.consume_register,
            body.rated_w, body.source, True, self.ctx.timestamp_ms, self.ctx.height))
        self.ctx.history(body.owner, tx.txid, tx.kind)

    def _revoke_ocmf(self, meter_id: bytes) -> bool:
        """RevokeMeter of an OCMF meter id; False if there is no such meter."""
        meter = self.ocmf_meter(meter_id)
        if meter is None:
            return False
        if not meter.active:
            raise Rejected(E.METER_REVOKED, "meter is already revoked")
        meter.active = False
        return True

    def _ocmf_reading(self, tx: OcmfReading, verified: bool) -> None:
        rec = tx.parsed
        meter_id = tx.meter_id
        m = self.ocmf_meter(meter_id)
        if m is None:
            raise Rejected(E.UNKNOWN_METER, f"no OCMF meter with serial {rec.serial!r} is enrolled")
        if not m.active:
            raise Rejected(E.METER_REVOKED, f"OCMF meter {rec.serial!r} was revoked")
        if not ocmf.algorithm_matches(rec, m.curve):
            raise Rejected(E.ALGORITHM_MISMATCH, f"SA {rec.algorithm!r} is not the enrolled key's {m.curve}")
        if not verified and not ocmf.verify_signature(rec, m.spki):
            raise Rejected(E.BAD_SIGNATURE, "the meter's signature over the payload does not verify")
        problem = ocmf.static_problem(rec, m.curve)
        if problem is not None:
            raise Rejected(*problem)
        last = m.last_t if rec.paging_series == "T" else m.last_f
        if last >= 0 and rec.paging <= last:
            raise Rejected(E.PAGING_NOT_INCREASING, f"PG {rec.paging_series}{rec.paging} <= last accepted {last}")
        if last >= 0 and rec.paging != last + 1:
            raise Rejected(E.PAGING_GAP, f"PG {rec.paging_series}{rec.paging} skips after {last}")
        if rec.first_time_ms < m.enrolled_ms:
            raise Rejected(E.BEFORE_ENROLLMENT, f"reading at {rec.first_time_ms} ms, enrolled at {m.enrolled_ms} ms")
        if rec.time_ms > self.ctx.parent_timestamp_ms:
            raise Rejected(E.INTERVAL_IN_FUTURE, "the record's time has not passed at the parent block's time")
        baseline = m.last_time_ms >= 0
        if baseline and rec.first_time_ms // 1000 <= m.last_time_ms // 1000:
            raise Rejected(E.INTERVAL_OVERLAP, "the record does not start in a second after the last accepted one")
        values = rec.registers()
        enrolled = m.registers()
        for reg, old in enrolled:
            if reg not in values:
                raise Rejected(E.REGISTER_MISMATCH, f"the record carries no value of enrolled register {reg}")
            if baseline and values[reg] < old:
                raise Rejected(E.REGISTER_BACKWARDS, f"register {reg} went back from {old} to {values[reg]} mWh")
        elapsed_ms = rec.time_ms - m.last_time_ms
        if baseline:
            for reg, old in enrolled:
                if (values[reg] - old) * 3600 > m.rated_w * elapsed_ms:
                    raise Rejected(E.ENERGY_EXCEEDS_RATING, f"register {reg} grew {values[reg] - old} mWh in "
                                                            f"{elapsed_ms} ms at {m.rated_w} W")
        # every check passed: apply
        prev_s, now_s = m.last_time_ms // 1000, rec.time_ms // 1000
        mint_wh = consume_wh = 0
        if m.mint_register:
            if baseline:
                mint_wh = values[m.mint_register] // 1000 - m.mint_mwh // 1000
            m.mint_mwh = values[m.mint_register]
        if m.consume_register:
            if baseline:
                consume_wh = values[m.consume_register] // 1000 - m.consume_mwh // 1000
            m.consume_mwh = values[m.consume_register]
        if rec.paging_series == "T":
            m.last_t = rec.paging
        else:
            m.last_f = rec.paging
        m.last_time_ms = rec.time_ms
        m.records += 1
        txid = tx.txid
        m.last_reading = txid
        g = self.st.globals()
        g.readings += 1
        owner = self.st.account(m.owner)
        if mint_wh:
            lot_id = lot_id_of(prev_s, meter_id)
            self.st.put(k_lot(lot_id), Lot(meter_id, m.owner, prev_s, now_s - prev_s, m.source, mint_wh,
                                           self.ctx.height, txid))
            holding_add(self.st, m.owner, lot_id, mint_wh, m.source)
            owner.wh += mint_wh
            m.minted_wh += mint_wh
            g.minted_wh += mint_wh
            self.ctx.provenance(lot_id, txid, b"", m.owner, mint_wh, "mint")
        if consume_wh:
            owner.consumed_wh += consume_wh
            m.consumed_wh += consume_wh
            g.consumed_wh += consume_wh
        self.ctx.history(m.owner, txid, tx.kind)
