"""OCMF records in the wallet: a gateway that checks real meters' signed records offline and posts them.

`kwh-wallet meter verify FILE` reads plain OCMF lines or the XML files of the OCMF verification tool
(`<signedData format="OCMF">` with `<publicKey>`), `-` for stdin, and prints one verdict per record.
`kwh-wallet meter submit FILE` (the command that posts native readings) posts OCMF records, in order,
and reports each ledger verdict. The ledger's own parser and verifier (ledger/ocmf.py) judge offline,
so an offline verdict is the ledger's, minus the rules that need its state.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from ledger import ocmf


@dataclass
class SignedRecord:
    """A record as a file gives it, with the key the file names (DER SPKI) if any."""
    text: str
    spki: bytes | None
    source: str  # "line N" or "value N"


def looks_like_ocmf(text: str) -> bool:
    return text.lstrip().startswith(ocmf.HEADER + "|") or "<signedData" in text


def read_records(text: str) -> list[SignedRecord]:
    """Records of a file: XML of the verification tool, or one OCMF record per line."""
    body = text.lstrip("\ufeff").strip()
    if body.startswith("<"):
        return _xml_records(body)
    out = []
    for n, line in enumerate(body.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(SignedRecord(line, None, f"line {n}"))
    return out


def _xml_records(body: str) -> list[SignedRecord]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"not an OCMF XML file: {exc}") from None
    values = root.findall(".//value") or [root]
    out = []
    for n, value in enumerate(values, 1):
        signed = value.find("signedData")
        if signed is None or signed.get("format", "OCMF") != "OCMF" or not (signed.text or "").strip():
            continue
        key_el = value.find("publicKey")
        spki = None
        if key_el is not None and (key_el.text or "").strip():
            try:
                spki = ocmf.parse_public_key(key_el.text or "")
            except ValueError:
                spki = b""  # present but unreadable: no signature can verify with it
        out.append(SignedRecord((signed.text or "").strip(), spki, f"value {n}"))
    return out


def offline_verdict(index: int, rec: SignedRecord, spki: bytes | None) -> dict[str, Any]:
    """What can be said without the ledger: does the signature verify with the key, and does the record
    pass every rule that needs no ledger state (algorithm, status, error flags, clock, registers)?"""
    out: dict[str, Any] = {"index": index, "source": rec.source, "signature_valid": False, "acceptable": False,
                           "meter": None, "paging": None}
    try:
        parsed = ocmf.parse(rec.text)
    except ocmf.OcmfError as exc:
        out["reason"] = "malformed"
        out["detail"] = str(exc)
        return out
    out["meter"] = parsed.serial
    out["paging"] = f"{parsed.paging_series}{parsed.paging}"
    out["time_ms"] = parsed.time_ms
    out["registers"] = {reg: mwh for reg, mwh in parsed.registers().items()}
    if not spki:
        out["reason"] = "no_public_key"
        out["detail"] = "the file names no public key for this record (give --public-key)"
        return out
    try:
        curve = ocmf.curve_of(spki)
    except ValueError as exc:
        out["reason"] = "invalid_meter"
        out["detail"] = f"public key: {exc}"
        return out
    out["curve"] = curve
    out["signature_valid"] = ocmf.verify_signature(parsed, spki)
    problem = None if out["signature_valid"] else ("bad_signature", "the signature does not verify with the key")
    if problem is None:
        problem = ocmf.static_problem(parsed, curve)
    if problem is None:
        out["acceptable"] = True
    else:
        out["reason"], out["detail"] = problem
    return out


_SPACES = re.compile(r"\s+")


def verdict_line(v: dict[str, Any]) -> str:
    """One readable line per record."""
    head = f"#{v['index']} {v['source']} meter={v['meter']} paging={v['paging']}"
    sig = "signature ok" if v["signature_valid"] else "signature FAILED"
    if v["acceptable"]:
        return f"{head}: {sig}, acceptable"
    return f"{head}: {sig}, not acceptable: {v.get('reason')} ({_SPACES.sub(' ', str(v.get('detail', '')))})"
