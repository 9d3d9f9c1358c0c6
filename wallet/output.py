"""What every wallet command shares for input and output: exit codes, the one-line error, parsing of
addresses, ids and amounts typed by people, and the text forms of coin, energy and prices."""
from __future__ import annotations

from typing import Callable, Iterable, NoReturn

from ledger.keys import parse_address

from .units import UnitError, format_coin, format_price_per_kwh, format_wh

EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_NODE = 3
EXIT_KEYSTORE = 4


class CliError(Exception):
    """A failure to report as one line: `error: CODE: detail`."""

    def __init__(self, code: str, detail: str, exit_code: int = EXIT_REJECTED) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.exit_code = code, detail, exit_code


def fail(code: str, detail: str, exit_code: int = EXIT_USAGE) -> NoReturn:
    raise CliError(code, detail, exit_code)


# ------------------------------------------------------------------------------------ parsing input


def parse_addr(text: str, what: str = "address") -> bytes:
    try:
        return parse_address(text.strip())
    except ValueError as exc:
        fail("bad_address", f"{what} {text!r}: {exc}")


def parse_id(text: str, size: int, what: str) -> bytes:
    value = text.strip().lower()
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        fail("bad_id", f"{what} {text!r} is not hexadecimal")
    if len(raw) != size:
        fail("bad_id", f"{what} must be {2 * size} hex characters, got {len(value)}")
    return raw


def amount(parse: Callable[[str], int], text: str, what: str, positive: bool = True) -> int:
    try:
        value = parse(text)
    except UnitError as exc:
        fail("invalid_amount", str(exc))
    if positive and value <= 0:
        fail("invalid_amount", f"{what} must be more than zero")
    return value


def kwh_text(wh: int) -> str:
    return f"{format_wh(wh)} kWh"


def coin_text(units: int) -> str:
    return f"{format_coin(units)} coin"


def price_text(price_per_wh: int) -> str:
    return f"{format_price_per_kwh(price_per_wh)} coin/kWh"



# ----------------------------------------------------------------------------------- ids for people

SHORT_ID = 10  # hex characters of an id shown in tables (--full-ids for all of them)
MIN_PREFIX = 8  # hex characters a typed id prefix needs at least


def short_id(value: str, full: bool = False) -> str:
    """An id for a table: its first SHORT_ID hex characters (any command takes them back as a prefix)."""
    return value if full or len(value) <= SHORT_ID else value[:SHORT_ID]


def short_address(value: str, full: bool = False) -> str:
    """An address for a table: 'kwh0bea40..b7cd' (head and tail), or all of it."""
    return value if full or len(value) <= 20 else f"{value[:9]}..{value[-4:]}"


def resolve_id(text: str, size: int, what: str, candidates: Callable[[], Iterable[str]]) -> str:
    """A full id (2*size hex characters) from what was typed: the whole id, or a unique prefix of at least
    MIN_PREFIX characters among `candidates()` (asked only for a prefix). Says when a prefix is ambiguous."""
    value = text.strip().lower()
    full = 2 * size
    if not value or any(c not in "0123456789abcdef" for c in value):
        fail("bad_id", f"{what} {text!r} is not hexadecimal")
    if len(value) == full:
        return value
    if len(value) > full:
        fail("bad_id", f"{what} has {full} hex characters, got {len(value)}")
    if len(value) < MIN_PREFIX:
        fail("bad_id", f"{what} {value!r} is too short: give at least {MIN_PREFIX} hex characters "
                       f"(or all {full})")
    matches = sorted({c for c in candidates() if c.startswith(value)})
    if not matches:
        fail(f"unknown_{what.replace(' ', '_').removesuffix('_id')}",
             f"no {what} starts with {value} (give the full {full} hex characters if it is not listed yet)",
             EXIT_REJECTED)
    if len(matches) > 1:
        shown = ", ".join(m[:len(value) + 4] for m in matches[:4]) + (" ..." if len(matches) > 4 else "")
        fail("ambiguous_id", f"{what} prefix {value} matches {len(matches)}: {shown}; give more characters")
    return matches[0]


def wh_text(wh: int) -> str:
    """Energy where exactness matters: '0.219 kWh (219 Wh)'."""
    return f"{format_wh(wh)} kWh ({wh} Wh)"
