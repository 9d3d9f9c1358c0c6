"""Meter readings (every rejection reason, minting with provenance, consumption) and meter enrollment."""
from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ledger import errors as E
from ledger.chain import Chain
from ledger.keys import MeterKey, address_of
from ledger.state import lot_id_of
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, Net, advance_to, extend, gap_until, make_net, make_tx, \
    rejection, try_extend
from ledger.tx import COIN, EnrollMeter, MeterReading, ReadingFields, RevokeMeter, sign_reading

GENESIS_S = GENESIS_MS // 1000
RATED_W = 10_000
LIMIT_WH = RATED_W * 900 // 3600  # 2500 Wh per 15 minutes at 10 kW


@pytest.fixture
def net() -> Net:
    return make_net(accounts=3, meters=1, meter_kind="both", rated_w=RATED_W, authority_coin=10 * COIN)


@pytest.fixture
def chain(net: Net) -> Chain:
    return net.chain()


@pytest.fixture
def meter(net: Net) -> MeterState:
    """Eight 15-minute intervals before genesis have ended, so readings for them are due at block 1."""
    return MeterState(net.meters[0], start=GENESIS_S - 8 * 900)


def owner(net: Net) -> bytes:
    return net.accounts[0].address


def meter_record_unchanged_and_nothing_minted(chain: Chain, net: Net, counter: int = 0, minted: int = 0) -> None:
    m = chain.meter(net.meters[0].meter_id)
    assert m is not None
    assert m.counter == counter
    assert m.minted_wh == minted
    assert chain.globals().minted_wh == minted
    assert chain.account(owner(net)).wh == minted
    assert sum(wh for _lot, wh, _src in chain.holdings(owner(net))) == minted


def reject_in_block(chain: Chain, net: Net, reading: MeterReading, reason: str, gap_ms: int = 0) -> None:
    """The block leaves the reading out with `reason`, and the block still imports."""
    height = chain.height
    location = chain.tx_location(reading.txid)  # None unless this is a replay
    block, rejected = try_extend(chain, net, [reading], gap_ms)
    assert [r.reason for _t, r in rejected] == [reason]
    assert block.txs == () and chain.height == height + 1
    assert chain.tx_location(reading.txid) == location


# --------------------------------------------------------------------------------------- valid

def test_export_mints_a_lot_with_provenance(chain: Chain, net: Net, meter: MeterState) -> None:
    reading = meter.read(CHAIN_ID, 1234)
    block = extend(chain, net, [reading])
    lot_id = lot_id_of(GENESIS_S - 8 * 900, net.meters[0].meter_id)
    lot = chain.lot(lot_id)
    assert lot is not None
    assert (lot.meter_id, lot.producer, lot.interval_start, lot.interval_s, lot.source, lot.minted_wh,
            lot.height, lot.reading_id) == (net.meters[0].meter_id, owner(net), GENESIS_S - 8 * 900, 900,
                                            "solar", 1234, 1, reading.txid)
    assert chain.holdings(owner(net)) == [(lot_id, 1234, "solar")]
    acct = chain.account(owner(net))
    assert (acct.wh, acct.consumed_wh, acct.coin) == (1234, 0, 1_000 * COIN)  # readings cost no fee
    assert chain.globals().minted_wh == 1234 and chain.globals().readings == 1
    assert chain.lot_movements(lot_id) == [[reading.txid, b"", owner(net), 1234, "mint"]]
    m = chain.meter(net.meters[0].meter_id)
    assert (m.counter, m.next_start, m.export_register, m.import_register, m.minted_wh) == \
        (1, GENESIS_S - 7 * 900, 1234, 0, 1234)
    assert chain.tx_location(reading.txid) == (1, block.hash, 0)
    assert chain.history(owner(net))[0] == (1, reading.txid, "reading")


def test_export_at_exactly_the_rating_is_accepted(chain: Chain, net: Net, meter: MeterState) -> None:
    extend(chain, net, [meter.read(CHAIN_ID, LIMIT_WH, LIMIT_WH)])
    assert chain.account(owner(net)).wh == LIMIT_WH
    assert chain.account(owner(net)).consumed_wh == LIMIT_WH


def test_import_adds_consumption_and_mints_nothing(chain: Chain, net: Net, meter: MeterState) -> None:
    extend(chain, net, [meter.read(CHAIN_ID, 0, 800), meter.read(CHAIN_ID, 0, 150)])
    acct = chain.account(owner(net))
    assert (acct.consumed_wh, acct.wh) == (950, 0)
    assert chain.holdings(owner(net)) == []
    g = chain.globals()
    assert (g.consumed_wh, g.minted_wh, g.readings) == (950, 0, 2)
    m = chain.meter(net.meters[0].meter_id)
    assert (m.consumed_wh, m.import_register, m.counter) == (950, 950, 2)


def test_several_intervals_make_separate_lots_in_age_order(chain: Chain, net: Net, meter: MeterState) -> None:
    extend(chain, net, [meter.read(CHAIN_ID, 10), meter.read(CHAIN_ID, 20), meter.read(CHAIN_ID, 30)])
    mid = net.meters[0].meter_id
    assert chain.holdings(owner(net)) == [(lot_id_of(GENESIS_S - (8 - i) * 900, mid), wh, "solar")
                                          for i, wh in enumerate((10, 20, 30))]
    assert chain.account(owner(net)).wh == 60


def test_reading_relayed_by_anyone_is_credited_to_the_meter_owner(chain: Chain, net: Net,
                                                                 meter: MeterState) -> None:
    """A reading carries no sender: whoever relays it, the owner gets the Wh."""
    extend(chain, net, [meter.read(CHAIN_ID, 5)])
    assert chain.account(owner(net)).wh == 5
    assert all(chain.account(a.address).wh == 0 for a in net.accounts[1:] + net.authorities)


# ------------------------------------------------------------------------------------ rejections

def test_unknown_meter(chain: Chain, net: Net) -> None:
    stranger = MeterState(MeterKey(ec.derive_private_key(777, ec.SECP256R1())), start=GENESIS_S - 900)
    reject_in_block(chain, net, stranger.read(CHAIN_ID, 100), E.UNKNOWN_METER)
    meter_record_unchanged_and_nothing_minted(chain, net)


def test_meter_revoked(chain: Chain, net: Net, meter: MeterState) -> None:
    extend(chain, net, [meter.read(CHAIN_ID, 100)])
    extend(chain, net, [make_tx(chain, net.authorities[0], RevokeMeter(net.meters[0].meter_id))])
    assert chain.meter(net.meters[0].meter_id).active is False
    reject_in_block(chain, net, meter.read(CHAIN_ID, 100), E.METER_REVOKED)
    meter_record_unchanged_and_nothing_minted(chain, net, counter=1, minted=100)


def test_bad_signature_forged_by_another_key(chain: Chain, net: Net, meter: MeterState) -> None:
    forger = MeterKey(ec.derive_private_key(4242, ec.SECP256R1()))
    forged = sign_reading(forger, CHAIN_ID, meter.peek(2000))  # the enrolled meter's id, someone else's key
    reject_in_block(chain, net, forged, E.BAD_SIGNATURE)
    meter_record_unchanged_and_nothing_minted(chain, net)


@pytest.mark.parametrize("field,value", [("export_wh", 2000), ("export_register", 2000), ("counter", 9),
                                         ("interval_start", GENESIS_S - 900)])
def test_bad_signature_tampered_field(chain: Chain, net: Net, meter: MeterState, field: str, value: int) -> None:
    honest = meter.read(CHAIN_ID, 100)
    tampered = MeterReading(dataclasses.replace(honest.fields, **{field: value}), honest.signature, CHAIN_ID)
    if field == "export_wh":  # keep the registers consistent so only the signature is wrong
        tampered = MeterReading(dataclasses.replace(tampered.fields, export_register=value), honest.signature,
                                CHAIN_ID)
    reject_in_block(chain, net, tampered, E.BAD_SIGNATURE)
    meter_record_unchanged_and_nothing_minted(chain, net)
    extend(chain, net, [honest])  # the genuine reading still counts
    meter_record_unchanged_and_nothing_minted(chain, net, counter=1, minted=100)


def test_counter_not_increasing_on_replay(chain: Chain, net: Net, meter: MeterState) -> None:
    reading = meter.read(CHAIN_ID, 300)
    extend(chain, net, [reading])
    reject_in_block(chain, net, reading, E.COUNTER_NOT_INCREASING)
    meter_record_unchanged_and_nothing_minted(chain, net, counter=1, minted=300)


def test_counter_not_increasing_on_rollback(chain: Chain, net: Net, meter: MeterState) -> None:
    extend(chain, net, [meter.read(CHAIN_ID, 100), meter.read(CHAIN_ID, 100), meter.read(CHAIN_ID, 100)])
    for counter in (3, 2, 0):  # a later interval, consistent registers, but an old counter value
        rolled = sign_reading(net.meters[0], CHAIN_ID, dataclasses.replace(meter.peek(100), counter=counter))
        reject_in_block(chain, net, rolled, E.COUNTER_NOT_INCREASING)
    meter_record_unchanged_and_nothing_minted(chain, net, counter=3, minted=300)
    skipped = sign_reading(net.meters[0], CHAIN_ID, dataclasses.replace(meter.peek(100), counter=10))
    extend(chain, net, [skipped])  # counters may skip values; they only have to increase
    meter_record_unchanged_and_nothing_minted(chain, net, counter=10, minted=400)


@pytest.mark.parametrize("start_offset,interval_s", [(60, 900), (450, 900), (0, 1800), (0, 300), (0, 0)])
def test_interval_misaligned(chain: Chain, net: Net, meter: MeterState, start_offset: int,
                             interval_s: int) -> None:
    fields = dataclasses.replace(meter.peek(100), interval_start=meter.next_start + start_offset,
                                 interval_s=interval_s)
    reject_in_block(chain, net, sign_reading(net.meters[0], CHAIN_ID, fields), E.INTERVAL_MISALIGNED)
    meter_record_unchanged_and_nothing_minted(chain, net)


def test_interval_overlap(chain: Chain, net: Net, meter: MeterState) -> None:
    extend(chain, net, [meter.read(CHAIN_ID, 0), meter.read(CHAIN_ID, 0), meter.read(CHAIN_ID, 50)])
    last_start = meter.next_start - 900
    for start in (last_start, last_start - 900, GENESIS_S - 8 * 900):  # the same interval again, or earlier
        fields = dataclasses.replace(meter.peek(50), interval_start=start)
        reject_in_block(chain, net, sign_reading(net.meters[0], CHAIN_ID, fields), E.INTERVAL_OVERLAP)
    meter_record_unchanged_and_nothing_minted(chain, net, counter=3, minted=50)
    gap = dataclasses.replace(meter.peek(60), interval_start=meter.next_start + 900)  # skipping is allowed
    extend(chain, net, [sign_reading(net.meters[0], CHAIN_ID, gap)])
    meter_record_unchanged_and_nothing_minted(chain, net, counter=4, minted=110)


def test_interval_in_future(chain: Chain, net: Net) -> None:
    """An interval mints only once it has ended by the parent block's time, which every validator saw
    pass: a proposer that times its own block after the end (its clock may run ahead of theirs) cannot."""
    meter = MeterState(net.meters[0], start=GENESIS_S)  # ends at GENESIS_S + 900
    reading = meter.read(CHAIN_ID, 100)
    reject_in_block(chain, net, reading, E.INTERVAL_IN_FUTURE)
    gap = gap_until(chain, net, (GENESIS_S + 899) * 1000)
    reject_in_block(chain, net, reading, E.INTERVAL_IN_FUTURE, gap_ms=gap)
    # a block timed well after the end, on a parent timed one second before it, still leaves it out
    gap = gap_until(chain, net, (GENESIS_S + 915) * 1000)
    reject_in_block(chain, net, reading, E.INTERVAL_IN_FUTURE, gap_ms=gap)
    meter_record_unchanged_and_nothing_minted(chain, net)
    extend(chain, net, [reading])  # its parent (the block above) was timed after the end
    meter_record_unchanged_and_nothing_minted(chain, net, counter=1, minted=100)


def test_a_stolen_key_cannot_mint_before_enrollment() -> None:
    """A meter enrolled now cannot mint the intervals before its enrollment (before, a stolen key minted
    decades of rated output at once); its first interval is the first whole one after enrollment."""
    net = make_net(accounts=1, authority_coin=10 * COIN)
    chain = net.chain()
    key = MeterKey(ec.derive_private_key(4242, ec.SECP256R1()))
    extend(chain, net, [make_tx(chain, net.authorities[0], EnrollMeter(
        key.public, net.accounts[0].address, "generation", 5000, 900, "solar", 0, 0))])
    assert chain.meter(key.meter_id).next_start == GENESIS_S + 900  # enrolled at GENESIS_S + 2 s
    advance_to(chain, net, GENESIS_S + 3600)
    for start in (0, 999_999_900, GENESIS_S - 900, GENESIS_S):
        backfill = MeterState(key, start=start).read(CHAIN_ID, 100)
        assert rejection(chain, net, backfill).reason == E.INTERVAL_BEFORE_ENROLLMENT
    extend(chain, net, [MeterState(key, start=GENESIS_S + 900).read(CHAIN_ID, 100)])
    assert chain.account(net.accounts[0].address).wh == 100


@pytest.mark.parametrize("export_wh,import_wh", [(LIMIT_WH + 1, 0), (0, LIMIT_WH + 1), (10**9, 0)])
def test_energy_exceeds_rating(chain: Chain, net: Net, meter: MeterState, export_wh: int, import_wh: int) -> None:
    reject_in_block(chain, net, meter.read(CHAIN_ID, export_wh, import_wh), E.ENERGY_EXCEEDS_RATING)
    meter_record_unchanged_and_nothing_minted(chain, net)
    assert chain.account(owner(net)).consumed_wh == 0


@pytest.mark.parametrize("field,delta", [("export_register", 1), ("export_register", -1),
                                         ("import_register", 1)])
def test_register_mismatch(chain: Chain, net: Net, meter: MeterState, field: str, delta: int) -> None:
    extend(chain, net, [meter.read(CHAIN_ID, 200, 10)])
    fields = meter.peek(300, 20)
    fields = dataclasses.replace(fields, **{field: getattr(fields, field) + delta})
    reject_in_block(chain, net, sign_reading(net.meters[0], CHAIN_ID, fields), E.REGISTER_MISMATCH)
    meter_record_unchanged_and_nothing_minted(chain, net, counter=1, minted=200)


def test_register_mismatch_against_enrolled_starting_register() -> None:
    """A meter enrolled mid-life starts from the registers given at enrollment."""
    net = make_net(accounts=1, authority_coin=10 * COIN)
    chain = net.chain()
    key = MeterKey(ec.derive_private_key(99, ec.SECP256R1()))
    extend(chain, net, [make_tx(chain, net.authorities[0], EnrollMeter(
        key.public, net.accounts[0].address, "generation", 5000, 900, "wind", 10_000, 0))])
    advance_to(chain, net, GENESIS_S + 1800)
    fresh = MeterState(key, start=GENESIS_S + 900)
    reject_in_block(chain, net, fresh.read(CHAIN_ID, 100), E.REGISTER_MISMATCH)  # register 100, not 10_100
    continued = MeterState(key, start=GENESIS_S + 900)
    continued.export_register = 10_000
    extend(chain, net, [continued.read(CHAIN_ID, 100)])
    assert chain.holdings(net.accounts[0].address) == [(lot_id_of(GENESIS_S + 900, key.meter_id), 100, "wind")]


@pytest.mark.parametrize("kind,export_wh,import_wh", [("generation", 0, 10), ("consumption", 10, 0),
                                                      ("generation", 10, 10)])
def test_kind_mismatch(kind: str, export_wh: int, import_wh: int) -> None:
    net = make_net(accounts=1, meters=1, meter_kind=kind)
    chain = net.chain()
    meter = MeterState(net.meters[0], start=GENESIS_S - 900)
    reject_in_block(chain, net, meter.read(CHAIN_ID, export_wh, import_wh), E.KIND_MISMATCH)
    meter_record_unchanged_and_nothing_minted(chain, net)
    assert chain.account(net.accounts[0].address).consumed_wh == 0


def test_kinds_accept_their_own_direction() -> None:
    net = make_net(accounts=2, meters=2, meter_kind="generation")
    chain = net.chain()
    extend(chain, net, [MeterState(net.meters[0], start=GENESIS_S - 900).read(CHAIN_ID, 70)])
    assert chain.account(net.accounts[0].address).wh == 70
    net2 = make_net(accounts=1, meters=1, meter_kind="consumption")
    chain2 = net2.chain()
    extend(chain2, net2, [MeterState(net2.meters[0], start=GENESIS_S - 900).read(CHAIN_ID, 0, 70)])
    assert chain2.account(net2.accounts[0].address).consumed_wh == 70


def test_a_rejected_reading_does_not_disturb_the_rest_of_the_block(chain: Chain, net: Net,
                                                                   meter: MeterState) -> None:
    good = meter.read(CHAIN_ID, 100)
    bad = sign_reading(net.meters[0], CHAIN_ID, dataclasses.replace(meter.peek(100), export_register=1))
    block, rejected = try_extend(chain, net, [good, bad])
    assert block.txs == (good,) and [r.reason for _t, r in rejected] == [E.REGISTER_MISMATCH]
    meter_record_unchanged_and_nothing_minted(chain, net, counter=1, minted=100)


def test_reading_for_a_meter_enrolled_earlier_in_the_same_block() -> None:
    net = make_net(accounts=1, authority_coin=10 * COIN)
    chain = net.chain()
    key = MeterKey(ec.derive_private_key(31337, ec.SECP256R1()))
    enroll = make_tx(chain, net.authorities[0], EnrollMeter(key.public, net.accounts[0].address, "both", 4000,
                                                            900, "hydro", 0, 0))
    early = MeterState(key, start=GENESIS_S - 900).read(CHAIN_ID, 1000)
    assert rejection(chain, net, early).reason == E.UNKNOWN_METER
    block, rejected = try_extend(chain, net, [enroll, early])  # the reading sees the enrollment, and its time
    assert block.txs == (enroll,) and [r.reason for _t, r in rejected] == [E.INTERVAL_BEFORE_ENROLLMENT]
    advance_to(chain, net, GENESIS_S + 1800)
    extend(chain, net, [MeterState(key, start=GENESIS_S + 900).read(CHAIN_ID, 1000)])
    assert chain.account(net.accounts[0].address).wh == 1000


# ------------------------------------------------------------------------------ enroll and revoke

def _other_meter(seed: int = 5) -> MeterKey:
    return MeterKey(ec.derive_private_key(seed, ec.SECP256R1()))


def test_enroll_by_authority(chain: Chain, net: Net) -> None:
    key = _other_meter()
    enroll = make_tx(chain, net.authorities[1], EnrollMeter(key.public, net.accounts[2].address, "generation",
                                                            3000, 1800, "wind", 0, 0))
    extend(chain, net, [enroll])
    m = chain.meter(key.meter_id)
    assert (m.public, m.owner, m.kind, m.rated_w, m.interval_s, m.source, m.active, m.counter, m.enrolled_height) \
        == (key.public, net.accounts[2].address, "generation", 3000, 1800, "wind", True, 0, 1)
    assert chain.account(net.authorities[1].address).coin == 10 * COIN - 1000 + \
        (1000 if address_of(chain.block_at(1).header.proposer) == net.authorities[1].address else 0)
    assert chain.history(net.accounts[2].address)[0][1] == enroll.txid


def test_enroll_not_authority(chain: Chain, net: Net) -> None:
    key = _other_meter()
    enroll = make_tx(chain, net.accounts[0], EnrollMeter(key.public, net.accounts[0].address, "generation", 3000,
                                                         900, "solar", 0, 0))
    assert rejection(chain, net, enroll).reason == E.NOT_AUTHORITY
    extend(chain, net)
    assert chain.meter(key.meter_id) is None
    assert chain.account(net.accounts[0].address).nonce == 0  # a rejected tx does not consume the nonce


def test_revoke_not_authority(chain: Chain, net: Net, meter: MeterState) -> None:
    revoke = make_tx(chain, net.accounts[0], RevokeMeter(net.meters[0].meter_id))  # not even its owner may
    assert rejection(chain, net, revoke).reason == E.NOT_AUTHORITY
    extend(chain, net, [meter.read(CHAIN_ID, 10)])
    assert chain.meter(net.meters[0].meter_id).active is True


def test_meter_exists(chain: Chain, net: Net) -> None:
    genesis_meter = make_tx(chain, net.authorities[0], EnrollMeter(net.meters[0].public, net.accounts[1].address,
                                                                   "generation", 3000, 900, "solar", 0, 0))
    assert rejection(chain, net, genesis_meter).reason == E.METER_EXISTS
    key = _other_meter()
    body = EnrollMeter(key.public, net.accounts[1].address, "generation", 3000, 900, "solar", 0, 0)
    extend(chain, net, [make_tx(chain, net.authorities[0], body)])
    assert rejection(chain, net, make_tx(chain, net.authorities[0], body)).reason == E.METER_EXISTS
    extend(chain, net, [make_tx(chain, net.authorities[0], RevokeMeter(key.meter_id))])
    # a revoked meter's key can never be enrolled again (to anyone)
    again = EnrollMeter(key.public, net.accounts[2].address, "generation", 3000, 900, "solar", 0, 0)
    assert rejection(chain, net, make_tx(chain, net.authorities[0], again)).reason == E.METER_EXISTS


@pytest.mark.parametrize("change", [
    dict(meter_public=b"\x02" + b"\xff" * 32), dict(meter_public=b"\x02" + bytes(31) + b"\x01"),
    dict(meter_public=b"\x04" + bytes(32)), dict(kind="nuclear"),
    dict(interval_s=600), dict(source="coal"), dict(rated_w=0), dict(rated_w=100_000_001)])
def test_enroll_invalid_meter(chain: Chain, net: Net, change: dict) -> None:
    body = dataclasses.replace(EnrollMeter(_other_meter().public, net.accounts[1].address, "generation", 3000, 900,
                                           "solar", 0, 0), **change)
    assert rejection(chain, net, make_tx(chain, net.authorities[0], body)).reason == E.INVALID_METER


def test_revoke_unknown_and_twice(chain: Chain, net: Net) -> None:
    assert rejection(chain, net, make_tx(chain, net.authorities[0], RevokeMeter(bytes(16)))).reason == \
        E.UNKNOWN_METER
    extend(chain, net, [make_tx(chain, net.authorities[0], RevokeMeter(net.meters[0].meter_id))])
    assert rejection(chain, net, make_tx(chain, net.authorities[0], RevokeMeter(net.meters[0].meter_id))).reason \
        == E.METER_REVOKED


def test_revoked_meter_mints_nothing_even_for_intervals_before_revocation(chain: Chain, net: Net,
                                                                           meter: MeterState) -> None:
    early = meter.read(CHAIN_ID, 500)  # measured before the revocation, submitted after it
    extend(chain, net, [make_tx(chain, net.authorities[2], RevokeMeter(net.meters[0].meter_id))])
    reject_in_block(chain, net, early, E.METER_REVOKED)
    meter_record_unchanged_and_nothing_minted(chain, net)


def test_revocation_in_the_same_block_stops_later_readings(chain: Chain, net: Net, meter: MeterState) -> None:
    before = meter.read(CHAIN_ID, 100)
    after = meter.read(CHAIN_ID, 100)
    revoke = make_tx(chain, net.authorities[0], RevokeMeter(net.meters[0].meter_id))
    block, rejected = try_extend(chain, net, [before, revoke, after])
    assert block.txs == (before, revoke)
    assert [(t.txid, r.reason) for t, r in rejected] == [(after.txid, E.METER_REVOKED)]
    meter_record_unchanged_and_nothing_minted(chain, net, counter=1, minted=100)


def test_readings_are_bound_to_their_meter_id(chain: Chain, net: Net, meter: MeterState) -> None:
    """A genuine signature over fields naming another meter id is useless."""
    fields: ReadingFields = dataclasses.replace(meter.peek(100), meter_id=bytes(16))
    reject_in_block(chain, net, sign_reading(net.meters[0], CHAIN_ID, fields), E.UNKNOWN_METER)


def test_an_explicit_first_interval_is_bounded() -> None:
    """An authority may name a meter's first interval up to a day before the enrollment block (installed
    before it was enrolled), never further back, and only on an interval boundary."""
    from ledger.tx import MAX_METER_BACKFILL_S, EnrollMeterSince
    net = make_net(accounts=1, authority_coin=10 * COIN)
    chain = net.chain()
    key = MeterKey(ec.derive_private_key(4343, ec.SECP256R1()))

    def enroll(first_start: int) -> EnrollMeterSince:
        return EnrollMeterSince(key.public, net.accounts[0].address, "generation", 5000, 900, "solar", 0, 0,
                                first_start)
    for bad in (GENESIS_S - MAX_METER_BACKFILL_S - 900, GENESIS_S - 450):
        assert rejection(chain, net, make_tx(chain, net.authorities[0], enroll(bad))).reason == E.INVALID_METER
    extend(chain, net, [make_tx(chain, net.authorities[0], enroll(GENESIS_S - 3600))])
    assert chain.meter(key.meter_id).next_start == GENESIS_S - 3600
    early = MeterState(key, start=GENESIS_S - 4500).read(CHAIN_ID, 100)
    assert rejection(chain, net, early).reason == E.INTERVAL_BEFORE_ENROLLMENT
    extend(chain, net, [MeterState(key, start=GENESIS_S - 3600).read(CHAIN_ID, 100)])
    assert chain.account(net.accounts[0].address).wh == 100
