"""What every wallet command shares for input and output: exit codes, the one-line error, parsing of
addresses, ids and amounts typed by people, and the text forms of coin, energy and prices."""
from __future__ import annotations

from typing import Callable, NoReturn

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

