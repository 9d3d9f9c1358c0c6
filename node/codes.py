"""HTTP error codes of the node: the ledger's reasons (ledger/errors.py) plus the node's own, and the
status each maps to (docs/interfaces.md)."""
from __future__ import annotations

from ledger import errors as E
from ledger.errors import Rejected

NOT_FOUND = "not_found"
BAD_REQUEST = "bad_request"
UNAUTHORIZED = "unauthorized"
RATE_LIMITED = "rate_limited"
MEMPOOL_FULL = "mempool_full"
INTERNAL = "internal"

_STATUS = {
    E.NOT_AUTHORITY: 403, E.NOT_SELLER: 403, E.NOT_OWNER: 403, UNAUTHORIZED: 403,
    NOT_FOUND: 404,
    E.DUPLICATE: 409, E.BAD_NONCE: 409, E.METER_EXISTS: 409, E.COUNTER_NOT_INCREASING: 409,
    E.INTERVAL_OVERLAP: 409, MEMPOOL_FULL: 409, E.PAGING_NOT_INCREASING: 409,
    E.TOO_LARGE: 413,
    RATE_LIMITED: 429,
    INTERNAL: 500,
}


def status_of(code: str) -> int:
    """400 unless the contract says otherwise; every `unknown_*` is a 404."""
    if code in _STATUS:
        return _STATUS[code]
    if code.startswith("unknown_"):
        return 404
    return 400


class ApiError(Rejected):
    """An error answer: code, detail and (by default) the contract's status for the code."""

    def __init__(self, code: str, detail: str = "", status: int | None = None) -> None:
        super().__init__(code, detail)
        self.status = status if status is not None else status_of(code)


def hex_value(value: object, size: int, name: str) -> bytes:
    """A hex string of exactly `size` bytes from a path, query or JSON field; 400 bad_request otherwise."""
    if not isinstance(value, str):
        raise ApiError(BAD_REQUEST, f"{name} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ApiError(BAD_REQUEST, f"{name} is not hexadecimal") from None
    if len(raw) != size:
        raise ApiError(BAD_REQUEST, f"{name} must be {size} bytes ({2 * size} hex characters)")
    return raw
