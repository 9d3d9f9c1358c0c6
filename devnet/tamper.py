"""Tampered readings: what a forger, a replaying gateway or a hacked meter would send.

Each tamper breaks exactly one rule of `ledger/transition.py` (`_reading`) and must be refused with that
rule's own reason, minting nothing. They are built around one honest reading R of a meter (interval I,
counter c): the "before" tampers are sent while R is not yet sent (the meter's state on the ledger is the
one before R), the "after" tampers right after R was accepted. The revoked meter's readings are honest
readings of a meter an authority has revoked.
"""
from __future__ import annotations

from dataclasses import replace

from ledger import errors as E
from ledger.keys import MeterKey
from ledger.tx import CONSUMPTION, GENERATION, MeterReading, ReadingFields, sign_reading

from .meters import SimMeter, align_up

FORGED_SIGNATURE = "forged_signature"
REPLAY = "replay"
COUNTER_ROLLBACK = "counter_rollback"
OVERLAPPING_INTERVAL = "overlapping_interval"
IMPOSSIBLE_ENERGY = "impossible_energy"
REVOKED_METER = "revoked_meter"
UNKNOWN_METER = "unknown_meter"
FUTURE_INTERVAL = "future_interval"
MISALIGNED_INTERVAL = "misaligned_interval"
REGISTER_MISMATCH = "register_mismatch"
WRONG_DIRECTION = "wrong_direction"

# tamper -> the one reason the ledger must give
EXPECTED: dict[str, str] = {
    FORGED_SIGNATURE: E.BAD_SIGNATURE,
    REPLAY: E.DUPLICATE,
    COUNTER_ROLLBACK: E.COUNTER_NOT_INCREASING,
    OVERLAPPING_INTERVAL: E.INTERVAL_OVERLAP,
    IMPOSSIBLE_ENERGY: E.ENERGY_EXCEEDS_RATING,
    REVOKED_METER: E.METER_REVOKED,
    UNKNOWN_METER: E.UNKNOWN_METER,
    FUTURE_INTERVAL: E.INTERVAL_IN_FUTURE,
    MISALIGNED_INTERVAL: E.INTERVAL_MISALIGNED,
    REGISTER_MISMATCH: E.REGISTER_MISMATCH,
    WRONG_DIRECTION: E.KIND_MISMATCH,
}


def before(meter: SimMeter, honest: ReadingFields, now_s: float) -> list[tuple[str, MeterReading]]:
    """Tampers to send before the honest reading `honest` (= meter.peek()); the meter is not advanced.
    `now_s` is real time: the future interval must not have ended on the nodes' clocks."""
    out: list[tuple[str, MeterReading]] = []
    chain_id = meter.chain_id
    start, counter = honest.interval_start, honest.counter
    consumption = meter.spec.kind == CONSUMPTION

    # more energy than the rating allows in the interval (a meter reporting 10 x its inverter)
    too_much = meter.limit_wh + 1 + meter.spec.rated_w // 10
    if consumption:
        out.append((IMPOSSIBLE_ENERGY, meter.sign(meter.fields(start, 0, too_much, counter))))
    else:
        out.append((IMPOSSIBLE_ENERGY, meter.sign(meter.fields(start, too_much, honest.import_wh, counter))))
    # the honest fields, signed by a key that is not the meter's
    out.append((FORGED_SIGNATURE, sign_reading(MeterKey.generate(), chain_id, honest)))
    # an interval that has not ended yet
    future = align_up(now_s + 1, meter.interval_s)
    out.append((FUTURE_INTERVAL, meter.sign(meter.fields(future, 0, 0, counter))))
    # an interval off the meter's boundaries
    out.append((MISALIGNED_INTERVAL, meter.sign(replace(honest, interval_start=start + 60))))
    # a register that does not add up (energy appears in the register without an interval carrying it)
    if consumption:
        out.append((REGISTER_MISMATCH, meter.sign(replace(honest, import_register=honest.import_register + 1))))
    else:
        out.append((REGISTER_MISMATCH, meter.sign(replace(honest, export_register=honest.export_register + 1))))
    # a direction the meter's kind cannot measure (a bidirectional meter has none)
    if meter.spec.kind == GENERATION:
        out.append((WRONG_DIRECTION, meter.sign(meter.fields(start, honest.export_wh, 1, counter))))
    elif consumption:
        out.append((WRONG_DIRECTION, meter.sign(meter.fields(start, 1, honest.import_wh, counter))))
    # a meter nobody enrolled
    stranger = MeterKey.generate()
    out.append((UNKNOWN_METER, sign_reading(stranger, chain_id, replace(honest, meter_id=stranger.meter_id,
                                                                          counter=1))))
    return out


def after(meter: SimMeter, honest: MeterReading) -> list[tuple[str, MeterReading]]:
    """Tampers to send right after `honest` (the meter's last reading, already counted in its state)."""
    f = honest.fields
    nxt = f.interval_start + f.interval_s
    return [
        (REPLAY, honest),  # the very same bytes again
        # the next interval, but the counter of the last reading (a meter rolled back)
        (COUNTER_ROLLBACK, meter.sign(meter.fields(nxt, 0, 0, counter=f.counter))),
        # a fresh counter, but the interval just reported again (double-counting energy)
        (OVERLAPPING_INTERVAL, meter.sign(meter.fields(f.interval_start, f.export_wh, f.import_wh,
                                                       counter=f.counter + 1))),
    ]
