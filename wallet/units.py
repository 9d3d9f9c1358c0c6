"""Exact conversions between what people type and the ledger's integers; decimal strings, never floats.

The ledger counts coin in base units (`COIN = 10**9` per coin), energy in Wh and prices in coin units per
Wh (docs/interfaces.md). People think in coin with decimals, kWh with decimals and coin per kWh. Every
conversion here is exact or refused with a `UnitError` that says why: a float would silently turn
"0.1 coin" into 99999999 units.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from ledger.tx import COIN, WH_PER_KWH

U64_MAX = (1 << 64) - 1
COIN_DECIMALS = 9  # 10**9 units per coin
KWH_DECIMALS = 3  # 1000 Wh per kWh
# price_per_wh [units/Wh] = price_per_kwh [coin/kWh] * COIN / WH_PER_KWH = price_per_kwh * 10**6
PRICE_UNITS_PER_COIN_PER_KWH = COIN // WH_PER_KWH
PRICE_DECIMALS = 6

# ASCII digits only: int() would also take other scripts' digits, which nobody means in an amount.
_DECIMAL = re.compile(r"^([0-9]+)(?:\.([0-9]+))?$")
_ENERGY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(kwh|wh)?\s*$", re.IGNORECASE)
_RELATIVE = re.compile(r"^([+-])\s*([0-9]+)\s*(s|m|h|d)?$", re.IGNORECASE)
_UNIX = re.compile(r"^[0-9]+$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UnitError(ValueError):
    """An amount, price or time that cannot be represented exactly; the message is one readable line."""


def _scaled(text: str, decimals: int, what: str, reason: str) -> int:
    """Decimal text -> integer of 10**-decimals steps; refuses more precision than `decimals`."""
    value = text.strip()
    m = _DECIMAL.match(value)
    if m is None:
        raise UnitError(f"{what} {text!r} is not a non-negative decimal number (like 1.5)")
    whole, frac = m.group(1), m.group(2) or ""
    significant = frac.rstrip("0")
    if len(significant) > decimals:
        raise UnitError(f"{what} {text!r} has more than {decimals} decimal places ({reason})")
    result = int(whole) * 10**decimals + (int(significant.ljust(decimals, "0")) if significant else 0)
    if result > U64_MAX:
        raise UnitError(f"{what} {text!r} is too large")
    return result


def _decimal_text(value: int, decimals: int) -> str:
    """Integer of 10**-decimals steps -> shortest exact decimal text ("1.5", "0", "0.000000001")."""
    if value < 0:
        return "-" + _decimal_text(-value, decimals)
    whole, frac = divmod(value, 10**decimals)
    frac_text = str(frac).rjust(decimals, "0").rstrip("0")
    return f"{whole}.{frac_text}" if frac_text else str(whole)


# ---------------------------------------------------------------------------------------------- coin


def parse_coin(text: str) -> int:
    """'1.5' coin -> 1_500_000_000 base units; at most 9 decimals."""
    return _scaled(text, COIN_DECIMALS, "coin amount", "1 coin = 10**9 units")


def format_coin(units: int) -> str:
    """Base units -> coin text, exact: 1_500_000_000 -> '1.5'."""
    return _decimal_text(units, COIN_DECIMALS)


# -------------------------------------------------------------------------------------------- energy


def parse_kwh(text: str) -> int:
    """'0.25' (kWh) -> 250 Wh. A unit suffix may be given: '0.25kWh', '500Wh' (Wh must be whole)."""
    m = _ENERGY.match(text)
    if m is None:
        raise UnitError(f"energy {text!r} is not a number of kWh (like 0.25) or Wh (like 500Wh)")
    number, unit = m.group(1), (m.group(2) or "kwh").lower()
    if unit == "wh":
        return _scaled(number, 0, "energy", "the ledger counts whole Wh")
    return _scaled(number, KWH_DECIMALS, "energy", "the ledger counts whole Wh: at most 3 decimals of kWh")


def format_wh(wh: int) -> str:
    """Wh -> kWh text, exact: 250 -> '0.25' (the inverse of parse_kwh)."""
    return _decimal_text(wh, KWH_DECIMALS)


# --------------------------------------------------------------------------------------------- price


def parse_price_per_kwh(text: str) -> int:
    """Price in coin per kWh -> price_per_wh in coin units per Wh: '0.25' -> 250_000.

    A price is exact only if it is a whole number of units per Wh, that is at most 6 decimals of coin/kWh.
    """
    return _scaled(text, PRICE_DECIMALS, "price per kWh",
                   "a price must be a whole number of coin units per Wh: at most 6 decimals of coin/kWh")


def format_price_per_kwh(price_per_wh: int) -> str:
    """price_per_wh (units/Wh) -> coin per kWh text, exact: 250_000 -> '0.25'."""
    return _decimal_text(price_per_wh, PRICE_DECIMALS)


def price_per_kwh_units(price_per_wh: int) -> int:
    """Coin units per kWh at a given price per Wh (what a kWh costs, in base units)."""
    return price_per_wh * WH_PER_KWH


# --------------------------------------------------------------------------------------------- times


def parse_time(text: str, now: int) -> int:
    """A point in time as unix seconds: '1767225600', '+1h', '+90s', '+15m', '+2d', 'now' or ISO-8601.

    ISO-8601 without a UTC offset is read as UTC, so a window means the same for everyone on the ledger.
    """
    value = text.strip()
    if value.lower() == "now":
        return now
    if _UNIX.match(value):
        return int(value)
    m = _RELATIVE.match(value)
    if m is not None:
        sign, amount, unit = m.group(1), int(m.group(2)), (m.group(3) or "s").lower()
        result = now + (amount if sign == "+" else -amount) * _SECONDS[unit]
        if result < 0:
            raise UnitError(f"time {text!r} is before 1970")
        return result
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UnitError(f"time {text!r} is not unix seconds, a relative time like +1h or ISO-8601 "
                        "like 2026-03-01T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    seconds = moment.timestamp()
    if seconds < 0 or seconds != int(seconds):
        raise UnitError(f"time {text!r} must be whole seconds after 1970")
    return int(seconds)


def format_time(seconds: int, local: bool = False) -> str:
    """Unix seconds -> ISO-8601 UTC text ('2026-01-01T00:00:00Z'), or local time with its offset."""
    if local:
        return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
