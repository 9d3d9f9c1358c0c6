"""wallet.units: exact conversions between what people type and the ledger's integers."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.tx import COIN, cost
from wallet.units import (U64_MAX, UnitError, format_coin, format_price_per_kwh, format_time, format_wh, parse_coin,
                          parse_kwh, parse_price_per_kwh, parse_time)

u64 = st.integers(min_value=0, max_value=U64_MAX)


# ----------------------------------------------------------------------------------------------- coin


@pytest.mark.parametrize("text, units", [
    ("1", COIN), ("1.5", 1_500_000_000), ("0.000000001", 1), ("0", 0), ("0.0", 0), ("10.250", 10_250_000_000),
    ("1.000000000000", COIN),  # trailing zeros beyond 9 places are exact, so accepted
    (" 2.5 ", 2_500_000_000), ("007", 7 * COIN),
])
def test_parse_coin(text: str, units: int) -> None:
    assert parse_coin(text) == units


@pytest.mark.parametrize("text", ["0.0000000001", "1.5000000001", "-1", "+1", "1e9", "1,5", "", "abc", ".5", "1.",
                                  "nan", "inf", "1.5 coin", "0x10", "١"])
def test_parse_coin_refuses(text: str) -> None:
    with pytest.raises(UnitError):
        parse_coin(text)


def test_parse_coin_refuses_more_than_64_bits() -> None:
    assert parse_coin(format_coin(U64_MAX)) == U64_MAX
    with pytest.raises(UnitError, match="too large"):
        parse_coin(format_coin(U64_MAX + 1))


@pytest.mark.parametrize("units, text", [(COIN, "1"), (1_500_000_000, "1.5"), (1, "0.000000001"), (0, "0"),
                                         (1000, "0.000001"), (123 * COIN + 456, "123.000000456")])
def test_format_coin(units: int, text: str) -> None:
    assert format_coin(units) == text


@given(u64)
def test_coin_round_trip(units: int) -> None:
    text = format_coin(units)
    assert parse_coin(text) == units
    assert Decimal(text) * COIN == units  # the text means exactly that many units


@given(st.decimals(min_value=0, max_value=10**9, places=9, allow_nan=False, allow_infinity=False))
def test_coin_from_any_9_place_decimal(value: Decimal) -> None:
    units = parse_coin(format(value, "f"))
    assert units == int(value * COIN)
    assert Decimal(format_coin(units)) == value


# --------------------------------------------------------------------------------------------- energy


@pytest.mark.parametrize("text, wh", [
    ("0.25", 250), ("1", 1000), ("0.001", 1), ("2.5kWh", 2500), ("2.5 kwh", 2500), ("500Wh", 500), ("500 wh", 500),
    ("500WH", 500), ("0", 0), ("1.2500", 1250), ("12.000Wh", 12),
])
def test_parse_kwh(text: str, wh: int) -> None:
    assert parse_kwh(text) == wh


@pytest.mark.parametrize("text", ["0.0005", "1.2345", "0.5Wh", "1.5Wh", "-1", "1 MWh", "kWh", "", "1e3", "five"])
def test_parse_kwh_refuses_sub_wh_and_junk(text: str) -> None:
    with pytest.raises(UnitError):
        parse_kwh(text)


def test_sub_wh_error_says_why() -> None:
    with pytest.raises(UnitError, match="whole Wh"):
        parse_kwh("0.0005")


@given(u64)
def test_energy_round_trip(wh: int) -> None:
    assert parse_kwh(format_wh(wh)) == wh
    assert parse_kwh(f"{wh}Wh") == wh
    assert Decimal(format_wh(wh)) * 1000 == wh


# ---------------------------------------------------------------------------------------------- price


@pytest.mark.parametrize("text, per_wh", [
    ("0.25", 250_000), ("1", 1_000_000), ("0.000001", 1), ("0.1", 100_000), ("12.345678", 12_345_678),
])
def test_parse_price_per_kwh(text: str, per_wh: int) -> None:
    assert parse_price_per_kwh(text) == per_wh
    # people's price per kWh is price_per_wh * 1000 / COIN coin (docs/interfaces.md)
    assert Decimal(text) == Decimal(per_wh) * 1000 / COIN


@pytest.mark.parametrize("text", ["0.0000001", "0.2500001", "1.1234567", "-0.1", "free"])
def test_parse_price_refuses_inexact(text: str) -> None:
    with pytest.raises(UnitError):
        parse_price_per_kwh(text)


def test_inexact_price_error_says_why() -> None:
    with pytest.raises(UnitError, match="whole number of coin units per Wh"):
        parse_price_per_kwh("0.0000005")


@given(u64)
def test_price_round_trip(per_wh: int) -> None:
    assert parse_price_per_kwh(format_price_per_kwh(per_wh)) == per_wh


@given(st.integers(min_value=0, max_value=10**7), st.integers(min_value=1, max_value=10**9))
def test_cost_of_kwh_at_price_per_kwh_is_exact(wh: int, per_wh: int) -> None:
    """What people compute by hand (kWh x coin/kWh) is exactly what the ledger charges."""
    by_hand = Decimal(format_wh(wh)) * Decimal(format_price_per_kwh(per_wh))
    assert parse_coin(format(by_hand, "f")) == cost(wh, per_wh)


# ---------------------------------------------------------------------------------------------- times

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize("text, expected", [
    ("now", NOW), ("1767229200", 1_767_229_200), ("+1h", NOW + 3600), ("+90s", NOW + 90), ("+90", NOW + 90),
    ("+15m", NOW + 900), ("+2d", NOW + 172_800), ("-5m", NOW - 300),
    ("2026-01-01T01:00:00Z", NOW + 3600), ("2026-01-01T01:00:00", NOW + 3600),  # no offset: UTC
    ("2026-01-01T02:00:00+01:00", NOW + 3600), ("2026-01-01 01:00", NOW + 3600),
])
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["tomorrow", "+1y", "1h", "2026-13-01", "", "2026-01-01T00:00:00.5Z", "-99999d"])
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(UnitError):
        parse_time(text, NOW)


@given(st.integers(min_value=0, max_value=253_402_300_799))  # up to 9999-12-31
def test_time_round_trip(seconds: int) -> None:
    text = format_time(seconds)
    assert text.endswith("Z")
    assert parse_time(text, NOW) == seconds
    assert datetime.fromtimestamp(seconds, tz=timezone.utc) == datetime.fromisoformat(text)
