"""OCMF (Open Charge Metering Format, S.A.F.E. e.V.): records that real meters sign, parsed and verified.

A record is `OCMF|{payload JSON}|{signature JSON}`. The meter signs the payload section's bytes exactly
as sent, so they are kept as they are (never re-encoded: whitespace and number formats vary by vendor).
Everything here is pure and deterministic: no I/O, no clock, exact decimals (never floats).

What the ledger takes from a record:
  * the meter serial `MS` (or, where a vendor leaves it out because the signing gateway is the meter,
    the gateway serial `GS`): it names the enrolled meter;
  * paging `PG` (`T<n>` transaction or `F<n>` fiscal series; each series counts up by exactly 1);
  * readings `RD`: time `TM` with its clock state letter, value `RV` (a JSON number or a string of one),
    OBIS id `RI` and unit `RU` (kWh or Wh), error flags `EF` and meter status `ST`. A reading without
    `TM` or `ST` takes them from the reading before it in the same record (vendors write it so);
  * the signature section: `SA` algorithm (default ECDSA-secp256r1-SHA256), `SE` encoding (hex default,
    base64), `SM` (DER only), `SD`.

`SA` is not signed, so it never chooses the curve: the curve comes from the enrolled key (a DER
SubjectPublicKeyInfo as vendors publish it) and a record whose `SA` names another curve is refused.
Every algorithm of the specification hashes with SHA-256.

Register values are kept as exact integers of milli-Wh; a value finer than 1 mWh is refused.
A register is identified by the C.D.E part of its OBIS id (`1-0:2.8.0` and `1-b:2.8.0` are both "2.8.0");
`2.8.x` is export (it mints), `1.8.x` import (it records consumption).
"""
from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import json
import re
from decimal import Context, Decimal, InvalidOperation
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import errors as E

HEADER = "OCMF"
DEFAULT_ALGORITHM = "ECDSA-secp256r1-SHA256"
MAX_RECORD_BYTES = 3900  # fits ledger.tx.MAX_TX_BYTES with the envelope
MAX_READINGS = 64

# curve name (as the ledger records it) -> cryptography curve class
CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1, "secp256k1": ec.SECP256K1, "secp384r1": ec.SECP384R1,
    "secp192r1": ec.SECP192R1, "brainpoolP256r1": ec.BrainpoolP256R1, "brainpoolP384r1": ec.BrainpoolP384R1,
}
# SA value -> curve; the specification writes "brainpool256r1", some vendors "brainpoolP256r1"
ALGORITHMS: dict[str, str] = {
    "ECDSA-secp256r1-SHA256": "secp256r1", "ECDSA-secp256k1-SHA256": "secp256k1",
    "ECDSA-secp384r1-SHA256": "secp384r1", "ECDSA-secp192r1-SHA256": "secp192r1",
    "ECDSA-brainpool256r1-SHA256": "brainpoolP256r1", "ECDSA-brainpoolP256r1-SHA256": "brainpoolP256r1",
    "ECDSA-brainpool384r1-SHA256": "brainpoolP384r1", "ECDSA-brainpoolP384r1-SHA256": "brainpoolP384r1",
}
CURVE_ALGORITHM = {"secp256r1": "ECDSA-secp256r1-SHA256", "secp256k1": "ECDSA-secp256k1-SHA256",
                   "secp384r1": "ECDSA-secp384r1-SHA256", "secp192r1": "ECDSA-secp192r1-SHA256",
                   "brainpoolP256r1": "ECDSA-brainpool256r1-SHA256",
                   "brainpoolP384r1": "ECDSA-brainpool384r1-SHA256"}

CLOCK_SYNCHRONISED = "S"
STATUS_GOOD = "G"
UNIT_MWH = {"kWh": 1_000_000, "Wh": 1_000}  # milli-Wh per unit
EXPORT, IMPORT = "2.8", "1.8"  # OBIS C.D of the export and import registers

_PAGING = re.compile(r"([TF])(0|[1-9][0-9]{0,17})")
_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2}),(\d{3})([+-])(\d{2})(\d{2}) ([A-Z])", re.ASCII)
_OBIS = re.compile(r"(\d{1,3})-(\d{1,3}|b):(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\*(\d{1,3}))?", re.ASCII)
_REGISTER = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})", re.ASCII)
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_SERIAL = re.compile(r"[\x21-\x7e]{1,64}")


_EXACT = Context(prec=100)
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())  # every OCMF algorithm hashes with SHA-256


class OcmfError(ValueError):
    """A record that is not well-formed OCMF (the ledger's reason: `malformed`)."""


class Reading(NamedTuple):
    """One entry of `RD`, with inherited time and status filled in (a tuple: cheap to build per reading)."""
    time_ms: int  # unix milliseconds
    clock: str  # U, I, S or R
    tx: str  # B, C, X, E, ... or "" (fiscal)
    value_mwh: int | None  # register value in milli-Wh; None for a reading that is not energy
    register: str  # canonical C.D.E of an electricity OBIS id, or "" when it is none
    error_flags: str
    status: str


class Record(NamedTuple):
    """A parsed OCMF record: what the ledger needs, plus the exact signed bytes (a tuple: cheap to build)."""
    text: str
    payload: bytes  # the signed bytes: the payload section exactly as sent
    serial: str
    paging_series: str  # "T" or "F"
    paging: int
    readings: tuple[Reading, ...]
    algorithm: str  # SA, the default filled in (not signed!)
    signature: bytes  # DER
    fields: dict[str, Any]  # the payload object (JSON values; numbers as Decimal or int)

    @property
    def time_ms(self) -> int:
        """The record's time: its last reading's."""
        return self.readings[-1].time_ms

    @property
    def first_time_ms(self) -> int:
        return self.readings[0].time_ms

    def registers(self) -> dict[str, int]:
        """The last value of every energy register in the record (C.D.E -> mWh)."""
        out: dict[str, int] = {}
        for r in self.readings:
            if r.register and r.value_mwh is not None:
                out[r.register] = r.value_mwh
        return out

    def backwards_register(self) -> str:
        """A register whose value decreases inside this record, or ''."""
        seen: dict[str, int] = {}
        for r in self.readings:
            if r.register and r.value_mwh is not None:
                if r.value_mwh < seen.get(r.register, -1):
                    return r.register
                seen[r.register] = r.value_mwh
        return ""


# ------------------------------------------------------------------------------------------- parsing


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _v in pairs:
            if k in seen:
                raise OcmfError(f"duplicate key {k!r}")
            seen.add(k)
    return out


def _bounded_int(text: str) -> int:
    """JSON integers of at most 40 digits: the same answer on every node, whatever its int-size limit."""
    if len(text) > 41:
        raise OcmfError(f"integer of {len(text)} characters")
    return int(text)


def _bad_constant(name: str) -> Any:
    raise OcmfError(f"{name} is not a number OCMF allows")


def _json_object(section: str, what: str) -> dict[str, Any]:
    try:
        value = _DECODER.decode(section)
    except OcmfError as exc:
        raise OcmfError(f"{what}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise OcmfError(f"{what} is not JSON: {str(exc)[:80]}") from None
    if type(value) is not dict:
        raise OcmfError(f"{what} must be a JSON object")
    return value


# one decoder for every record (json.loads would build one per call): exact decimals, no NaN/Infinity,
# duplicate keys refused
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_float=Decimal, parse_int=_bounded_int,
                            parse_constant=_bad_constant)
MAX_CONTAINERS = 200  # '{' and '[' in a record, strings included: nesting stays far below any recursion limit


def parse_time(value: Any) -> tuple[int, str]:
    """`2018-07-24T13:22:04,000+0200 S` -> (unix ms, clock state letter)."""
    m = _TIME.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise OcmfError(f"TM {value!r} is not <date>T<time>,<ms><+hhmm> <state>")
    y, mo, d, h, mi, s, ms, sign, oh, om, clock = m.groups()
    if clock not in "UISR":
        raise OcmfError(f"TM clock state {clock!r} is not U, I, S or R")
    h, mi, s, oh, om = int(h), int(mi), int(s), int(oh), int(om)
    days = _epoch_day(y, mo, d)
    if days is None or not (h < 24 and mi < 60 and s < 60 and oh < 24 and om < 60):
        raise OcmfError(f"TM {value!r} is not a valid time")
    offset_s = (oh * 3600 + om * 60) * (1 if sign == "+" else -1)
    epoch_s = days * 86400 + h * 3600 + mi * 60 + s - offset_s
    return epoch_s * 1000 + int(ms), clock


@functools.lru_cache(maxsize=1024)
def _epoch_day(y: str, mo: str, d: str) -> int | None:
    """Days since 1970-01-01 of a calendar date, None if there is no such date (or it is before 1970)."""
    try:
        days = datetime.date(int(y), int(mo), int(d)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    return days if days >= 0 else None


def parse_value_mwh(value: Any, unit: str) -> int:
    """RV in `unit` -> exact milli-Wh (RV may be a JSON number or a string holding one)."""
    if type(value) is int:  # the common integer form, exactly
        if value < 0 or value > 10**30:
            raise OcmfError(f"RV {value!r} must be a number >= 0 (and below 1e30)")
        return value * UNIT_MWH[unit]
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise OcmfError("RV must be a number")
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value.strip(" ")):  # ASCII digits only: Decimal() also takes '١' and '1_0'
            raise OcmfError(f"RV {value!r} is not a number")
        value = value.strip(" ")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise OcmfError(f"RV {value!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise OcmfError(f"RV {value!r} must be a finite number >= 0")
    if abs(number.adjusted()) > 30 or len(number.as_tuple().digits) > 40:
        raise OcmfError(f"RV {value!r} is out of range")
    mwh = _EXACT.multiply(number, UNIT_MWH[unit])  # exact: the context holds every digit
    if mwh != mwh.to_integral_value():
        raise OcmfError(f"RV {value!r} {unit} is finer than 1 mWh")
    return int(mwh)


def register_of(ri: Any) -> str:
    """Canonical C.D.E of an electricity (A=1) OBIS id, '' for any other id."""
    m = _OBIS.fullmatch(ri) if isinstance(ri, str) else None
    if m is None or int(m.group(1)) != 1:
        return ""
    return f"{int(m.group(3))}.{int(m.group(4))}.{int(m.group(5))}"


def canonical_register(text: str) -> str:
    """`2.8.0`, `1-0:2.8.0` or `1-b:2.8.0` -> `2.8.0`; raises ValueError for anything else."""
    m = _REGISTER.fullmatch(text)
    reg = f"{int(m.group(1))}.{int(m.group(2))}.{int(m.group(3))}" if m else register_of(text)
    if not reg:
        raise ValueError(f"{text!r} is not an OBIS register id like 1-0:2.8.0")
    return reg


def _readings(rd: Any) -> tuple[Reading, ...]:
    if type(rd) is not list or not rd or len(rd) > MAX_READINGS:
        raise OcmfError(f"RD must be a list of 1..{MAX_READINGS} readings")
    out: list[Reading] = []
    time_ms, clock, status = -1, "", ""
    for i, item in enumerate(rd):
        if type(item) is not dict:
            raise OcmfError(f"RD[{i}] must be an object")
        if "TM" in item:
            time_ms, clock = parse_time(item["TM"])
        elif i == 0:
            raise OcmfError("RD[0] has no TM")
        if out and time_ms < out[-1].time_ms:
            raise OcmfError(f"RD[{i}] is earlier than the reading before it")
        if "ST" in item:
            status = item["ST"]
            if not isinstance(status, str) or not status:
                raise OcmfError(f"RD[{i}].ST must be a status letter")
        elif i == 0:
            raise OcmfError("RD[0] has no ST")
        tx = item.get("TX", "")
        flags = item.get("EF", "")
        if not isinstance(tx, str) or not isinstance(flags, str):
            raise OcmfError(f"RD[{i}]: TX and EF must be strings")
        value, register = None, ""
        if "RV" in item:
            unit = item.get("RU")
            if not isinstance(unit, str):
                raise OcmfError(f"RD[{i}] has RV but no RU")
            if unit in UNIT_MWH:
                register = register_of(item.get("RI"))
                value = parse_value_mwh(item["RV"], unit)
        out.append(Reading(time_ms, clock, tx, value, register, flags, status))
    return tuple(out)


def _signature(section: dict[str, Any]) -> tuple[str, bytes]:
    algorithm = section.get("SA", DEFAULT_ALGORITHM)
    encoding = section.get("SE", "hex")
    mime = section.get("SM", "application/x-der")
    data = section.get("SD")
    for name, v in (("SA", algorithm), ("SE", encoding), ("SM", mime), ("SD", data)):
        if not isinstance(v, str):
            raise OcmfError(f"signature {name} must be a string")
    if mime != "application/x-der":
        raise OcmfError(f"signature SM {mime!r} is not application/x-der")
    if encoding not in ("hex", "base64"):
        raise OcmfError(f"signature SE {encoding!r} is not hex or base64")
    try:
        sig = bytes.fromhex(data) if encoding == "hex" else base64.b64decode(data, validate=True)
    except (ValueError, binascii.Error):
        raise OcmfError(f"signature SD is not {encoding}") from None
    if not 8 <= len(sig) <= 160:
        raise OcmfError("signature SD has an impossible length")
    return algorithm, sig


def parse(text: str) -> Record:
    """Parse one OCMF record; raises OcmfError with a readable detail. Deterministic for given text."""
    if not isinstance(text, str):
        raise OcmfError("an OCMF record is text")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_RECORD_BYTES:
        raise OcmfError(f"record longer than {MAX_RECORD_BYTES} bytes")
    if text.count("{") + text.count("[") > MAX_CONTAINERS:
        raise OcmfError(f"more than {MAX_CONTAINERS} objects and arrays")
    parts = text.split("|")
    if len(parts) != 3 or parts[0] != HEADER:
        raise OcmfError("expected OCMF|{payload}|{signature}")
    try:
        payload = parts[1].encode("utf-8")
    except UnicodeEncodeError:
        raise OcmfError("payload is not valid UTF-8 text") from None
    fields = _json_object(parts[1], "payload")
    algorithm, signature = _signature(_json_object(parts[2], "signature section"))
    pg = fields.get("PG")
    m = _PAGING.fullmatch(pg) if isinstance(pg, str) else None
    if m is None:
        raise OcmfError(f"PG {pg!r} is not T<n> or F<n>")
    serial = fields.get("MS") or fields.get("GS")
    if not isinstance(serial, str) or not _SERIAL.fullmatch(serial):
        raise OcmfError("no meter serial: MS (or GS) must be 1..64 printable characters")
    return Record(text, payload, serial, m.group(1), int(m.group(2)), _readings(fields.get("RD")), algorithm,
                  signature, fields)


# ------------------------------------------------------------------------------------------ keys


def valid_serial(serial: str) -> bool:
    return isinstance(serial, str) and _SERIAL.fullmatch(serial) is not None


def meter_id_of_serial(serial: str) -> bytes:
    """16-byte ledger id of an OCMF meter: from its serial, which every record carries (MS or GS)."""
    return hashlib.sha256(b"kwh/ocmf-meter" + serial.encode("utf-8")).digest()[:16]


@functools.lru_cache(maxsize=4096)
def load_key(spki: bytes) -> tuple[ec.EllipticCurvePublicKey, str]:
    """A DER SubjectPublicKeyInfo -> (key, curve name); ValueError if it is not an EC key on a curve above."""
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not a DER SubjectPublicKeyInfo") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic curve key")
    name = {cls.name: n for n, cls in CURVES.items()}.get(key.curve.name)
    if name is None:
        raise ValueError(f"curve {key.curve.name} is not one OCMF uses")
    if key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != spki:
        raise ValueError("key is not in canonical DER")
    return key, name


def curve_of(spki: bytes) -> str:
    return load_key(spki)[1]


def parse_public_key(text: str) -> bytes:
    """A key as the verification tool's files give it: hex (spaces allowed) or PEM -> DER SPKI bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bytes.fromhex("".join(text.split()))


def algorithm_matches(record: Record, curve: str) -> bool:
    """Does the record's (unsigned) SA name the enrolled key's curve?"""
    return ALGORITHMS.get(record.algorithm) == curve


def verify_signature(record: Record, spki: bytes) -> bool:
    """ECDSA with SHA-256 over the exact payload bytes, on the curve of the key (never of SA)."""
    try:
        key, _curve = load_key(spki)
        key.verify(record.signature, record.payload, _ECDSA_SHA256)
        return True
    except (InvalidSignature, ValueError):
        return False


# -------------------------------------------------------------------------------------- checks


def static_problem(record: Record, curve: str) -> tuple[str, str] | None:
    """The first rule a record breaks that needs no ledger state, as (reason, detail); None if none.
    Signature aside: the caller verifies it (it needs the key, and costs the most)."""
    if not algorithm_matches(record, curve):
        return E.ALGORITHM_MISMATCH, f"SA {record.algorithm!r} is not the enrolled key's {curve}"
    for i, r in enumerate(record.readings):
        if r.status != STATUS_GOOD:
            return E.METER_STATUS_NOT_GOOD, f"RD[{i}].ST is {r.status!r}, not G"
        if r.error_flags:
            return E.METER_ERROR_FLAGS, f"RD[{i}].EF is {r.error_flags!r}"
        if r.clock != CLOCK_SYNCHRONISED:
            return E.CLOCK_NOT_SYNCHRONISED, f"RD[{i}].TM clock state is {r.clock!r}, not S"
    reg = record.backwards_register()
    if reg:
        return E.REGISTER_BACKWARDS, f"register {reg} decreases inside the record"
    return None


# ------------------------------------------------------------------------------------------ signing


def sign(private: ec.EllipticCurvePrivateKey, payload: dict[str, Any] | str, algorithm: str | None = None,
         encoding: str = "hex") -> str:
    """Build a signed record (what a meter does; the devnet, tests and bench use it). A payload given as
    text is signed as it is; a dict is written compactly. `algorithm` defaults to the key's curve."""
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), default=str)
    der = private.sign(text.encode("utf-8"), ec.ECDSA(hashes.SHA256()))
    curve = {cls.name: n for n, cls in CURVES.items()}[private.curve.name]
    sd = der.hex().upper() if encoding == "hex" else base64.b64encode(der).decode()
    sig: dict[str, str] = {"SA": algorithm or CURVE_ALGORITHM[curve], "SD": sd}
    if encoding != "hex":
        sig["SE"] = encoding
    return f"{HEADER}|{text}|{json.dumps(sig, separators=(',', ':'))}"


def format_time(time_ms: int, clock: str = CLOCK_SYNCHRONISED, offset_min: int = 0) -> str:
    """Unix ms -> OCMF TM text (the inverse of parse_time)."""
    local_s, ms = divmod(time_ms + offset_min * 60_000, 1000)
    t = (datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=local_s)).timetuple()
    sign_ = "+" if offset_min >= 0 else "-"
    oh, om = divmod(abs(offset_min), 60)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d},"
            f"{ms:03d}{sign_}{oh:02d}{om:02d} {clock}")


def spki_of(private: ec.EllipticCurvePrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
