"""The devnet's meter simulator without a network: energy curves, the simulated clock, readings that a
ledger chain accepts, tampered readings it refuses (each with its own reason), the devnet directory, and
the market agents' decisions."""
from __future__ import annotations

import calendar
import json
import random
import stat
from pathlib import Path

import pytest

from devnet import tamper as T
from devnet.genesis import create_devnet, interval_for
from devnet.layout import Devnet, LayoutError
from devnet.market import (FIXED_TRADE_WH, MAX_TRADE_WH, Agent, Market, View, quote_trade_wh,
                           verification_shares)
from devnet.meters import SimClock, SimMeter, align_down
from devnet.profiles import HOUSEHOLD, PROSUMER, SOLAR, Profile, Site, interval_energy, make_profile
from ledger import errors as E
from ledger.chain import Chain
from ledger.keys import AccountKey, format_address, meter_id_of
from ledger.store import MemoryKV
from ledger.testing import GENESIS_MS, Net, in_turn_slot, make_tx, try_extend
from ledger.tx import COIN, AcceptOffer, Deliver, MeterReading, PlaceOrder, PostOffer, Redeem, RevokeMeter
from node.keyfile import load_key

SITE = Site()  # Tokyo, JST
GENESIS_S = GENESIS_MS // 1000


def local_midnight(y: int, m: int, d: int) -> int:
    """Unix time of 00:00 JST on that date."""
    return calendar.timegm((y, m, d, 0, 0, 0)) - SITE.tz_offset_s


def day_of(profile: Profile, seed: int, name: str, midnight: int, interval_s: int = 900) -> list[tuple[int, int]]:
    return [interval_energy(profile, seed, name, midnight + i * interval_s, interval_s, SITE)
            for i in range(86400 // interval_s)]


# ------------------------------------------------------------------------------------------ profiles


@pytest.mark.parametrize("date", [(2026, 6, 21), (2026, 12, 21), (2026, 3, 20)])
def test_solar_is_zero_at_night_and_peaks_around_noon(date: tuple[int, int, int]) -> None:
    profile = Profile(SOLAR, 5000, pv_w=6250)
    midnight = local_midnight(*date)
    for seed in range(5):
        day = day_of(profile, seed, "roof", midnight)
        by_hour = [sum(e for e, _ in day[h * 4:h * 4 + 4]) for h in range(24)]
        assert all(i == 0 for _, i in day), "a generation profile never imports"
        assert by_hour[0:4] == [0] * 4 and by_hour[20:24] == [0] * 4, "no sun at night"
        assert by_hour[3] == 0 and by_hour[21] == 0
    # averaged over many skies, the curve is a bell around solar noon (11:40 JST in Tokyo)
    mean = [sum(sum(e for e, _ in day_of(profile, s, "roof", midnight)[h * 4:h * 4 + 4]) for s in range(12))
            for h in range(24)]
    peak = max(range(24), key=lambda h: mean[h])
    assert 10 <= peak <= 13
    assert mean[peak] > mean[8] > mean[6] and mean[peak] > mean[15] > mean[17]


def test_summer_days_yield_more_than_winter_days() -> None:
    profile = Profile(SOLAR, 5000, pv_w=6250)
    summer = sum(e for s in range(10) for e, _ in day_of(profile, s, "roof", local_midnight(2026, 6, 21)))
    winter = sum(e for s in range(10) for e, _ in day_of(profile, s, "roof", local_midnight(2026, 12, 21)))
    assert summer > 1.3 * winter
    assert 5_000 < summer / 10 < 40_000  # Wh per day of a 5 kW roof: plausible


def test_output_is_capped_by_the_rating() -> None:
    """An oversized array clips at the inverter's rating: noon intervals are exactly at the ledger's limit."""
    rated = 4000
    profile = Profile(SOLAR, rated, pv_w=40 * rated)
    day = day_of(profile, 1, "clipped", local_midnight(2026, 6, 21))
    limit = rated * 900 // 3600
    assert max(e for e, _ in day) == limit
    assert all(e <= limit for e, _ in day)
    for kind in (SOLAR, HOUSEHOLD, PROSUMER):
        for seed in range(4):
            p = make_profile(kind, seed, f"{kind}-{seed}")
            for interval_s in (900, 1800):
                lim = p.rated_w * interval_s // 3600
                for e, i in day_of(p, seed, f"{kind}-{seed}", local_midnight(2026, 8, 1), interval_s):
                    assert 0 <= e <= lim and 0 <= i <= lim


def test_households_peak_in_the_morning_and_evening() -> None:
    profile = Profile(HOUSEHOLD, 6000, load_scale=1.0)
    hours = [0] * 24
    for seed in range(8):
        for d in range(3):
            day = day_of(profile, seed, "home", local_midnight(2026, 2, 1 + d))
            assert all(e == 0 for e, _ in day)
            for h in range(24):
                hours[h] += sum(i for _, i in day[h * 4:h * 4 + 4])
    night = hours[3]
    assert night > 0, "a fridge runs at night"
    assert hours[7] > 2 * night and hours[19] > 3 * night
    assert hours[19] > hours[15] and hours[7] > hours[10]
    daily = sum(hours) / 24
    assert 5_000 < daily < 25_000  # Wh per day of a household: plausible


def test_prosumers_export_at_noon_and_import_at_night() -> None:
    profile = make_profile(PROSUMER, 3, "pro")
    midnight = local_midnight(2026, 5, 10)
    exports = imports = 0
    for seed in range(6):
        day = day_of(profile, seed, "pro", midnight)
        exports += sum(e for e, _ in day[44:52])  # 11:00-13:00
        imports += sum(i for _, i in day[76:84])  # 19:00-21:00
        assert all(e == 0 for e, _ in day[:16]), "no export before 04:00"
    assert exports > 0 and imports > 0


def test_profiles_are_deterministic_per_seed() -> None:
    p = make_profile(SOLAR, 7, "roof")
    assert p == make_profile(SOLAR, 7, "roof")
    midnight = local_midnight(2026, 4, 2)
    assert day_of(p, 7, "roof", midnight) == day_of(p, 7, "roof", midnight)
    others = [day_of(p, s, "roof", midnight) for s in range(8, 12)]
    assert any(o != day_of(p, 7, "roof", midnight) for o in others)


def test_interval_mix() -> None:
    assert [interval_for(i, "mixed") for i in range(8)] == [900, 900, 900, 1800, 900, 900, 900, 1800]
    assert interval_for(5, "1800") == 1800 and interval_for(3, "900") == 900
    with pytest.raises(ValueError):
        interval_for(0, "600")


# -------------------------------------------------------------------------------------------- clock


class FakeTime:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_clock_runs_fast_from_the_past_and_never_passes_real_time() -> None:
    wall = FakeTime(1_800_000_000.0)
    clock = SimClock(wall.t - 86400, speed=1440, lag_s=2.0, time_fn=wall)
    assert clock.now() == wall.t - 86400
    assert not clock.caught_up
    wall.t += 30
    assert clock.now() == pytest.approx(wall.t - 30 - 86400 + 30 * 1440)
    assert clock.real_seconds_until(clock.start_s + 86400 - 2) == pytest.approx(30, abs=0.01)
    for _ in range(100):
        wall.t += 0.7
        assert clock.now() <= wall.t - 2.0
    assert clock.caught_up and clock.now() == wall.t - 2.0
    # jumping ahead (a reused devnet resumes where its meters stopped), never back, never past real time
    clock.jump_to(wall.t - 3600)
    assert clock.now() == wall.t - 2.0
    late = SimClock(wall.t - 86400, speed=60, lag_s=2.0, time_fn=wall)
    late.jump_to(wall.t - 7200)
    assert late.now() == wall.t - 7200
    wall.t += 10
    assert late.now() == wall.t - 10 - 7200 + 600
    late.jump_to(wall.t - 86400)
    assert late.now() == wall.t - 10 - 7200 + 600
    # a start in the future is pulled back to now
    assert SimClock(wall.t + 500, speed=10, time_fn=wall).now() <= wall.t
    with pytest.raises(ValueError):
        SimClock(wall.t, speed=0, time_fn=wall)


# ----------------------------------------------------------------------------------- devnet + chain


@pytest.fixture
def devnet(tmp_path: Path) -> Devnet:
    return create_devnet(tmp_path / "dn", authorities=3, observers=1, meters=8, traders=1, seed=11,
                         block_interval_ms=500, min_difficulty=1, interval="mixed", timestamp_ms=GENESIS_MS,
                         meters_from_s=GENESIS_S - 86400)


def chain_and_net(devnet: Devnet) -> tuple[Chain, Net]:
    genesis = devnet.genesis()
    auths = [devnet.node_key(n.name) for n in devnet.authorities]
    accounts = [devnet.wallet_key(w.name) for w in devnet.wallets]
    net = Net(genesis, auths, accounts, [devnet.meter_key(m) for m in devnet.meters])
    return Chain(MemoryKV(), genesis), net


def sim_meters(devnet: Devnet) -> list[SimMeter]:
    return [SimMeter(spec, devnet.meter_key(spec), devnet.chain_id, devnet.seed, devnet.site)
            for spec in devnet.meters]


def test_devnet_directory(devnet: Devnet, tmp_path: Path) -> None:
    root = devnet.root
    genesis = devnet.genesis()
    assert genesis.chain_id == "kwh-devnet" and genesis.block_interval_ms == 500
    assert [n.name for n in devnet.nodes] == ["auth0", "auth1", "auth2", "obs0"]
    assert [devnet.node_key(n.name).public for n in devnet.authorities] == list(genesis.authorities)
    assert [devnet.node_key(n.name).public for n in devnet.observers] == list(genesis.observers)
    assert [n.port for n in devnet.nodes] == [8701, 8702, 8703, 8704]
    for path in [*root.glob("keys/*/*.json"), *root.glob("meters/*.pem"), root / "devnet.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    funded = dict(genesis.allocations)
    for w in devnet.wallets:
        key = load_key(root / w.key_file)  # the node's key file format: `kwh-wallet import-key` reads it
        assert key.address_text == w.address and funded[key.address] == w.coin > 0
    by_public = {m.public: m for m in genesis.meters}
    profiles = set()
    for spec in devnet.meters:
        key = devnet.meter_key(spec)
        assert key.meter_id.hex() == spec.meter_id == meter_id_of(bytes.fromhex(spec.public)).hex()
        g = by_public[key.public]
        assert (format_address(g.owner), g.kind, g.rated_w, g.interval_s, g.source) == \
            (spec.owner, spec.kind, spec.rated_w, spec.interval_s, spec.source)
        assert devnet.wallet(spec.owner_wallet).address == spec.owner
        profiles.add(spec.profile)
    assert profiles == {SOLAR, HOUSEHOLD, PROSUMER}
    assert {m.interval_s for m in devnet.meters} == {900, 1800}
    index = json.loads((root / "devnet.json").read_text())
    assert index["nodes"][0]["url"] == "http://127.0.0.1:8701" and index["seed"] == 11
    again = Devnet.load(root)
    assert again.to_json() == devnet.to_json()
    with pytest.raises(LayoutError, match="already holds a devnet"):
        create_devnet(root)
    with pytest.raises(LayoutError, match="not a devnet directory"):
        Devnet.load(tmp_path / "nothing")


def test_a_simulated_day_applies_on_a_chain(devnet: Devnet) -> None:
    """A day of every meter's readings, signed as a meter signs, is accepted in full: counters, registers
    and alignment hold, and the chain mints exactly the exported Wh and records exactly the imported Wh."""
    chain, net = chain_and_net(devnet)
    meters = sim_meters(devnet)
    start = align_down(GENESIS_S - 86400, 1800)
    readings: list[MeterReading] = []
    for m in meters:
        m.start_at(start)
        while m.due(GENESIS_S):
            readings.append(m.read())
    assert len(readings) == sum(86400 // m.interval_s for m in meters)
    for r in readings:
        assert r.verify(next(m.key.public for m in meters if m.meter_id == r.fields.meter_id))
    exported = sum(r.fields.export_wh for r in readings)
    imported = sum(r.fields.import_wh for r in readings)
    assert exported > 0 and imported > 0
    for i in range(0, len(readings), 200):
        _block, rejected = try_extend(chain, net, readings[i:i + 200])
        assert rejected == []
    g = chain.globals()
    assert g.minted_wh == exported and g.consumed_wh == imported and g.readings == len(readings)
    for m in meters:
        rec = chain.meter(m.meter_id)
        assert rec is not None
        assert (rec.counter, rec.next_start, rec.export_register, rec.import_register) == \
            (m.counter, m.next_start, m.export_register, m.import_register)
        assert rec.next_start == start + 86400
    # a meter resumed from the chain's record continues seamlessly
    m0 = meters[0]
    rec = chain.meter(m0.meter_id)
    assert rec is not None
    again = SimMeter(m0.spec, m0.key, devnet.chain_id, devnet.seed, devnet.site)
    again.resume(rec.counter, rec.next_start, rec.export_register, rec.import_register)
    again.start_at(start)  # never goes back before what the chain has
    assert again.peek() == m0.peek()


def test_every_tamper_is_refused_with_its_own_reason(devnet: Devnet) -> None:
    chain, net = chain_and_net(devnet)
    meters = sim_meters(devnet)
    start = align_down(GENESIS_S - 86400, 1800)
    for m in meters:
        m.start_at(start)
    _proposer, block_ts = in_turn_slot(chain, net)
    now_ms = block_ts

    def reason(tx: object) -> str | None:
        try:
            chain.check_tx(tx, now_ms)  # type: ignore[arg-type]
        except E.Rejected as exc:
            return exc.reason
        return None

    seen: dict[str, str | None] = {}
    for m in (meters[0], meters[1]):  # a generation meter and a consumption meter
        assert m.spec.kind in ("generation", "consumption")
        for _ in range(3):  # some history first
            try_extend(chain, net, [m.read()])
        honest = m.peek()
        for name, tx in T.before(m, honest, now_ms / 1000):
            seen[name] = reason(tx)
            assert seen[name] == T.EXPECTED[name], (m.spec.kind, name, seen[name])
        r = m.read()
        assert reason(r) is None
        _block, rejected = try_extend(chain, net, [r])
        assert rejected == []
        now_ms = in_turn_slot(chain, net)[1]
        for name, tx in T.after(m, r):
            seen[name] = reason(tx)
            assert seen[name] == T.EXPECTED[name], (m.spec.kind, name, seen[name])
    # the stolen meter: revoked by an authority, its next (honest-looking) reading mints nothing
    stolen = meters[4]
    try_extend(chain, net, [stolen.read()])
    minted = chain.globals().minted_wh
    revoke = make_tx(chain, net.authorities[0], RevokeMeter(stolen.meter_id))
    _block, rejected = try_extend(chain, net, [revoke])
    assert rejected == []
    seen[T.REVOKED_METER] = reason(stolen.read())
    assert seen[T.REVOKED_METER] == E.METER_REVOKED
    assert set(seen) == set(T.EXPECTED), "every tamper was tried"
    assert len(set(T.EXPECTED.values())) == len(T.EXPECTED), "each tamper has its own reason"
    assert chain.globals().minted_wh == minted


# -------------------------------------------------------------------------------------------- market


def agent(role: str, seed: int = 1) -> Agent:
    return Agent(role, role, AccountKey.generate(), 0, random.Random(seed))


def account(wh: int = 0, coin: int = 1000 * COIN, consumed: int = 0, redeemed: int = 0) -> dict[str, int]:
    return {"wh": wh, "coin": coin, "consumed_wh": consumed, "redeemed_wh": redeemed, "nonce": 0, "next_nonce": 0}


def test_market_agents_decide_sensibly(devnet: Devnet) -> None:
    market = Market.__new__(Market)  # plan() needs no network: set what it reads
    market.seed, market.block_interval_s, market.window_s, market.min_fee = 1, 0.5, 10.0, 1000
    market.trading, market.stale_blocks, market.consumers = True, 12, []
    now = 1_800_000_000.0
    producer, consumer = agent("producer"), agent("consumer")
    market.agent_addresses = frozenset((producer.address, consumer.address))
    trade = {"trade_id": "11" * 32, "seller": producer.address, "buyer": consumer.address, "wh": 400,
             "delivered": 0, "window_start": int(now) - 5, "window_end": int(now) + 10, "height": 3}
    view = View(now, 10, [], [trade], [], [])
    plan = market.plan(producer, account(wh=1000), view)
    delivers = [b for b in plan if isinstance(b, Deliver)]
    assert delivers == [Deliver(bytes.fromhex("11" * 32), 400)]  # a seller's first trade: in full
    second = dict(trade, trade_id="44" * 32, height=4)
    plan = market.plan(producer, account(wh=1000), View(now, 11, [], [dict(trade, delivered=400), second], [], []))
    assert [b for b in plan if isinstance(b, Deliver)] == [Deliver(bytes.fromhex("44" * 32), 200)]  # its 2nd: half
    assert any(isinstance(b, PostOffer) and b.window_end > now for b in plan)
    # past its window nothing is delivered, and with nothing to sell nothing is offered
    late = View(now + 20, 30, [], [trade], [], [])
    assert not [b for b in market.plan(producer, account(wh=0), late) if isinstance(b, (Deliver, PostOffer))]
    # a consumer redeems what it holds against what it consumed, and buys the cheapest offer for the rest
    offers = [{"offer_id": "22" * 32, "seller": producer.address, "remaining": 500, "wh": 500,
               "price_per_wh": 30_000_000, "window_end": int(now) + 30, "height": 9},
              {"offer_id": "33" * 32, "seller": producer.address, "remaining": 500, "wh": 500,
               "price_per_wh": 20_000_000, "window_end": int(now) + 30, "height": 9}]
    plan = market.plan(consumer, account(wh=100, consumed=1000), View(now, 10, offers, [], [], []))
    assert Redeem(100) in plan
    accepts = [b for b in plan if isinstance(b, AcceptOffer)]
    assert accepts == [AcceptOffer(bytes.fromhex("33" * 32), 500)]
    assert offers[1]["remaining"] == 0  # the next buyer of this tick sees it taken
    # it never accepts its own offer, nor spends coin it does not have
    mine = [dict(offers[0], seller=consumer.address)]
    assert not [b for b in market.plan(consumer, account(consumed=1000), View(now, 10, mine, [], [], []))
                if isinstance(b, AcceptOffer)]
    broke = market.plan(agent("consumer", 2), account(consumed=1000, coin=10), View(now, 10, offers[:1], [], [], []))
    assert not [b for b in broke if isinstance(b, AcceptOffer)]
    # once trading stops, no new offers or trades (deliveries and redemption go on)
    market.trading = False
    plan = market.plan(producer, account(wh=1000), view)
    assert [type(b) for b in plan if not isinstance(b, Deliver)] == []


def test_market_agents_leave_people_and_absurd_prices_alone(devnet: Devnet) -> None:
    """Agents never accept a person's offer or an offer far from the market price, and never place an order
    that would fill against a person's resting order; person wallets are not agents at all."""
    market = Market.__new__(Market)
    market.seed, market.block_interval_s, market.window_s, market.min_fee = 1, 0.5, 10.0, 1000
    market.trading, market.stale_blocks, market.consumers = True, 12, []
    now = 1_800_000_000.0
    producer, trader, person = agent("producer"), agent("trader", 3), AccountKey.generate()
    market.agent_addresses = frozenset((producer.address, trader.address))
    offer = {"offer_id": "22" * 32, "seller": producer.address, "remaining": 500, "wh": 500,
             "price_per_wh": 25_000_000, "window_end": int(now) + 30, "height": 9}
    absurd = dict(offer, offer_id="33" * 32, price_per_wh=500_000_000)  # 500 coin/kWh
    persons = dict(offer, offer_id="44" * 32, seller=person.address_text, price_per_wh=20_000_000)
    for offers in ([absurd], [persons], [absurd, persons]):
        for seed in range(20):
            plan = market.plan(agent("trader", seed), account(), View(now, 10, [dict(o) for o in offers], [], [], []))
            assert not [b for b in plan if isinstance(b, AcceptOffer)], offers
    plan = market.plan(trader, account(), View(now, 10, [dict(offer), absurd, persons], [], [], []))
    assert [b for b in plan if isinstance(b, AcceptOffer)] == [AcceptOffer(bytes.fromhex("22" * 32), 500)]
    # a person's sell resting at 1 coin/kWh: no agent buy order at or above it
    sell = {"order_id": "55" * 32, "owner": person.address_text, "side": "sell", "price_per_wh": 1_000_000,
            "remaining": 1000, "height": 9}
    for seed in range(40):
        plan = market.plan(agent("trader", seed), account(wh=2000), View(now, 10, [], [], [], [sell]))
        assert not [b for b in plan if isinstance(b, PlaceOrder) and b.side == "buy"]
    # the devnet's person wallets are funded and are not agents
    people = [w for w in devnet.wallets if w.role == "person"]
    assert people and all(w.coin > 0 for w in people)
    assert not {w.name for w in people} & {a.name for a in Market(devnet, None, seed=1).agents}  # type: ignore[arg-type]


def test_quote_driven_consumers_buy_bigger_when_verification_is_dear(devnet: Devnet) -> None:
    """A "quote" consumer sizes its prepaid trade from the network's quote for verifying a purchase; a "fixed"
    one buys the same small amount whatever verification costs; so the quote-driven one ends with a smaller
    share of its energy spent on verifying its purchases."""
    assert quote_trade_wh(None) == FIXED_TRADE_WH  # no quote yet: the small amount
    assert quote_trade_wh(1e-6) == FIXED_TRADE_WH  # verification cheap: no reason to buy ahead
    assert quote_trade_wh(1e-4) == 1000  # 0.1 mWh per purchase, at most 1e-7 of the energy: 1 kWh per trade
    assert quote_trade_wh(1.0) == MAX_TRADE_WH  # dearer still: capped (prepayment at risk)
    assert quote_trade_wh(2e-5) < quote_trade_wh(4e-5) < quote_trade_wh(8e-5)
    market = Market.__new__(Market)
    market.seed, market.block_interval_s, market.window_s, market.min_fee = 1, 0.5, 10.0, 1000
    market.trading, market.stale_blocks, market.consumers = True, 12, []
    now = 1_800_000_000.0
    producer = agent("producer")
    quoted, fixed = agent("consumer", 2), agent("consumer", 3)
    quoted.strategy, fixed.strategy = "quote", "fixed"
    market.agent_addresses = frozenset((producer.address, quoted.address, fixed.address))
    offer = {"offer_id": "22" * 32, "seller": producer.address, "remaining": 2500, "wh": 2500,
             "price_per_wh": 25_000_000, "window_end": int(now) + 30, "height": 9}
    small = dict(offer, offer_id="33" * 32, remaining=150, wh=150, price_per_wh=24_000_000)  # cheaper, too small

    def bought(who: Agent, quote: float | None) -> list[AcceptOffer]:
        view = View(now, 10, [dict(offer), dict(small)], [], [], [], quote)
        return [b for b in market.plan(who, account(consumed=300), view) if isinstance(b, AcceptOffer)]

    assert bought(quoted, 1.2e-4) == [AcceptOffer(bytes.fromhex("22" * 32), 1200)]  # ahead of its 300 Wh need
    assert bought(quoted, 1e-6) == [AcceptOffer(bytes.fromhex("33" * 32), FIXED_TRADE_WH)]  # cheap: cheapest
    assert bought(fixed, 1.2e-4) == bought(fixed, 1e-6) == [AcceptOffer(bytes.fromhex("33" * 32), FIXED_TRADE_WH)]
    # the shares: one accept and one delivery per trade, over the Wh delivered
    strategies = {quoted.address: "quote", fixed.address: "fixed"}
    trades = [{"buyer": quoted.address, "wh": 1200, "delivered": 1200},
              {"buyer": quoted.address, "wh": 1200, "delivered": 600}]
    trades += [{"buyer": fixed.address, "wh": 100, "delivered": d} for d in (100, 100, 50, 100, 0)]
    trades += [{"buyer": producer.address, "wh": 700, "delivered": 700}]  # no buying strategy: not counted
    shares = verification_shares(trades, strategies, {"accept_offer": 2e-4, "deliver": 1e-4})
    assert shares["quote"] == {"trades": 2, "bought_wh": 1800, "verify_wh": pytest.approx(6e-4),
                               "share": pytest.approx(6e-4 / 1800)}
    assert shares["fixed"]["trades"] == 5 and shares["fixed"]["bought_wh"] == 350
    assert shares["fixed"]["verify_wh"] == pytest.approx(5 * 2e-4 + 4 * 1e-4)
    assert shares["quote"]["share"] < shares["fixed"]["share"]
    assert verification_shares([], strategies, {})["quote"]["share"] is None
    # the devnet's consumers take the two ways in turn
    consumers = [a for a in Market(devnet, None, seed=1).agents if a.role == "consumer"]  # type: ignore[arg-type]
    assert [a.strategy for a in consumers][:2] == ["quote", "fixed"] and len(consumers) >= 2


def test_the_view_says_the_simulated_time_and_whether_the_sun_is_up() -> None:
    from devnet.view import sim_clock_text
    site = Site()  # Tokyo, UTC+09:00
    midnight = calendar.timegm((2026, 6, 20, 15, 0, 0)) + 0.0  # 00:00 at the site
    night = sim_clock_text(midnight, site, 120, False)
    assert night == "simulated 2026-06-20 15:00 UTC (00:00 at the site, UTC+09:00; night: no solar) x120"
    noon = sim_clock_text(midnight + 12 * 3600, site, 120, True)
    assert "03:00 UTC (12:00 at the site" in noon and "daylight: solar" in noon and noon.endswith("real time")


def test_the_nodes_table_fits_80_columns() -> None:
    from rich.console import Console

    from devnet.view import nodes_table
    rows = [{"name": f"auth{i}", "role": "authority", "url": f"http://127.0.0.1:{8701 + i}", "up": True,
             "height": 123456, "finalized": 123454, "head": "ab" * 32, "peers": 4, "mempool": 120} for i in range(4)]
    rows.append({"name": "obs0", "role": "observer", "url": "http://127.0.0.1:8705", "up": False, "exit": -9})
    console = Console(width=80)
    with console.capture() as cap:
        console.print(nodes_table(rows))
    lines = cap.get().splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines)
    (auth3,) = [line for line in lines if line.startswith("auth3")]
    assert "127.0.0.1:8704" in auth3 and "ababababab " in auth3 and "exited -9" in lines[-1]
    assert "123454" in auth3 and "final" in lines[1]


def test_the_view_and_summary_show_the_whole_energy_beside_hashing(devnet: Devnet) -> None:
    """Every node's whole energy is summed over the run, across a node's restart, beside the hashing figure."""
    from rich.console import Console

    from devnet.run import DevnetRun, RunOptions
    from devnet.view import render, summary_lines

    run = DevnetRun(devnet, RunOptions(market=True))

    def report(joules: float, since: int) -> dict[str, object]:
        return {"energy_j": joules, "since_ms": since, "estimated": True,
                "breakdown_j": {"signatures": joules / 2, "other": joules / 2},
                "per_type": {"accept_offer": {"node_j": 0.36}, "deliver": {"node_j": 0.18}}, "overhead_j_per_tx": 0.0}

    run._chain_base = {"hashing_j": 1.0, "settled_wh": 0.0}
    run._node_energy_seen("auth0", report(100.0, 1))
    run._node_energy_seen("auth1", report(50.0, 1))
    run._node_energy_seen("auth0", report(400.0, 1))
    run._node_energy_seen("auth1", report(80.0, 1))
    run._node_energy_seen("auth1", report(20.0, 2))  # restarted: its 30 J before the restart are kept
    run.energy = {"total": {"energy_j": 4.6, "hashes": 10}, "settled_wh": 2000, "minted_wh": 0}
    whole = run.energy_summary()
    assert whole["whole_kwh"] * 3.6e6 == pytest.approx(300 + 30 + 20)
    assert whole["hashing_kwh"] * 3.6e6 == pytest.approx(3.6)
    assert whole["whole_kwh_per_settled_kwh"] == pytest.approx(350 / 3.6e6 / 2)
    assert whole["breakdown_j"] == pytest.approx({"signatures": 175, "other": 175})
    assert whole["network_wh_per_tx"] == pytest.approx({"accept_offer": 0.72 / 3600, "deliver": 0.36 / 3600})
    assert whole["estimated"] is True and set(whole["agents"]) == {"quote", "fixed"}
    console = Console(width=100)
    with console.capture() as cap:
        console.print(render(run))
    text = cap.get()
    assert "ledger's whole energy, all nodes (estimated)" in text and "350.00 J" in text
    assert "whole kWh per settled kWh" in text
    lines = summary_lines({"simulator": run.sim.stats.to_json(), "chain": {}, "minted_wh_this_run": 0,
                           "checks": {}, "energy": whole})
    assert any(line.startswith("ledger energy (estimated): whole 350.0 J on 2 nodes") for line in lines), lines
