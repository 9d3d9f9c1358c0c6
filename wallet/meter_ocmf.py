"""OCMF records in the wallet: a gateway that checks real meters' signed records offline and posts them.

`kwh-wallet meter verify FILE` reads plain OCMF lines or the XML files of the OCMF verification tool
(`<signedData format="OCMF">` with `<publicKey>`), `-` for stdin, and prints one verdict per record.
`kwh-wallet meter submit FILE` (the command that posts native readings) posts OCMF records, in order,
and reports each ledger verdict. The ledger's own parser and verifier (ledger/ocmf.py) judge offline,
so an offline verdict is the ledger's, minus the rules that need its state.
"""
from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ledger import ocmf
from ledger.errors import Rejected
from ledger.ocmf_rules import check_registers
from ledger.tx import SOURCES, EnrollOcmfMeter, OcmfReading, decode_tx

from .client import NodeError
from .cmd_meters import meter
from .context import Wallet, common, pass_wallet, with_key
from .output import EXIT_REJECTED, fail, parse_addr


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


# ------------------------------------------------------------------------------------------ commands
# Registered on the `meter` group of wallet/cli.py by one import line there (after the group exists).

KIND_REGISTERS = {"generation": ("2.8.0", ""), "consumption": ("", "1.8.0"), "both": ("2.8.0", "1.8.0")}


def _read_input(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        fail("bad_file", f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")


def _records(path: str) -> list[SignedRecord]:
    try:
        recs = read_records(_read_input(path))
    except ValueError as exc:
        fail("bad_file", str(exc))
    if not recs:
        fail("bad_file", f"{path} holds no OCMF record")
    return recs


def _public_key(text: str) -> bytes:
    """--public-key: a file (hex, PEM, or the tool's XML) or hex on the command line."""
    source = text
    if Path(text).is_file():
        source = Path(text).read_text(encoding="utf-8-sig")
        if "<publicKey" in source:
            keys = [r.spki for r in read_records(source) if r.spki]
            if keys:
                return keys[0]
    try:
        spki = ocmf.parse_public_key(source)
        ocmf.curve_of(spki)
        return spki
    except ValueError as exc:
        fail("bad_meter_key", f"--public-key: not an OCMF meter key (DER SPKI hex or PEM): {exc}")


@meter.command("verify")
@click.argument("file", metavar="FILE")
@click.option("--public-key", "public_key", metavar="FILE|HEX", default=None,
              help="the meter's key (DER SubjectPublicKeyInfo hex, PEM); default: the file's <publicKey>")
@common
@pass_wallet
def verify(w: Wallet, file: str, public_key: str | None) -> None:
    """Check OCMF records offline: plain OCMF lines or the verification tool's XML (- for stdin).

    One verdict per record; exit 1 if any record's signature fails or it breaks a rule that needs no
    ledger state (algorithm, status, error flags, clock). Rules that need the ledger (enrollment, paging,
    registers, rating, time) are the node's: see 'kwh-wallet meter submit'.

    \b
    Examples:
      kwh-wallet meter verify tests/data/ocmf/test_ocmf_keba_kcp30.xml
      kwh-wallet --json meter verify records.txt --public-key meter.pub.pem
      cat records.txt | kwh-wallet meter verify -
    """
    key = _public_key(public_key) if public_key else None
    bad = 0
    for i, rec in enumerate(_records(file)):
        v = offline_verdict(i, rec, key or rec.spki)
        bad += not (v["signature_valid"] and v["acceptable"])
        click.echo(json.dumps(v, separators=(",", ":")) if w.as_json else verdict_line(v))
    if bad:
        sys.exit(EXIT_REJECTED)


def _to_tx(rec: SignedRecord, chain_id: str) -> Any:
    """An OCMF record, or a native reading as hex of its canonical tx bytes (one per line)."""
    if rec.text.startswith(ocmf.HEADER + "|"):
        return OcmfReading.from_text(rec.text, chain_id)
    try:
        raw = bytes.fromhex(rec.text)
    except ValueError:
        raise Rejected("malformed", "neither an OCMF record nor hex of a reading's canonical bytes") from None
    return decode_tx(raw, chain_id)


def submit_records(w: Wallet, file: str) -> None:
    """`kwh-wallet meter submit` for a file of records: post them to the node, in order, and report each
    ledger verdict (- for stdin). FILE holds OCMF records (lines, or the verification tool's XML) or native
    readings (hex of their canonical bytes, one per line). Anyone may forward them: the meter's own
    signature is what counts. With --wait, waits for each to be included or rejected. Exit 1 if any was
    refused."""
    recs = _records(file)
    client = w.client
    chain_id = client.chain_id()
    results = []
    for i, rec in enumerate(recs):
        out: dict[str, Any] = {"index": i, "source": rec.source}
        try:
            tx = _to_tx(rec, chain_id)
            out["txid"] = tx.txid.hex()
            if isinstance(tx, OcmfReading):
                out["meter"] = tx.parsed.serial
                out["paging"] = f"{tx.parsed.paging_series}{tx.parsed.paging}"
            out["status"] = client.submit(tx).get("status", "pending")
        except Rejected as exc:
            out.update(status="refused", reason=exc.reason, detail=exc.detail)
        except NodeError as exc:
            if exc.code in ("node_unreachable", "timeout", "bad_response"):
                raise
            out.update(status="refused", reason=exc.code, detail=exc.detail)
        results.append(out)
    if w.wait:
        for out in results:
            if out["status"] == "pending":
                info = client.wait_tx(out["txid"], w.timeout, final=w.final)
                out["status"] = info["status"]
                for k in ("height", "reason", "detail"):
                    if info.get(k) is not None:
                        out[k] = info[k]
    for out in results:
        if w.as_json:
            click.echo(json.dumps(out, separators=(",", ":")))
        else:
            what = f"#{out['index']} {out['source']}"
            if "meter" in out:
                what += f" meter={out['meter']} paging={out['paging']}"
            tail = f": {out['status']}"
            if out.get("reason"):
                tail += f": {out['reason']} ({' '.join(str(out.get('detail', '')).split())})"
            elif out.get("height") is not None:
                tail += f" in block {out['height']}"
            click.echo(what + tail + (f" txid {out['txid']}" if "txid" in out else ""))
    if any(o["status"] in ("refused", "rejected") for o in results):
        sys.exit(EXIT_REJECTED)


@meter.command("enroll-ocmf")
@click.option("--public-key", "public_key", required=True, metavar="FILE|HEX",
              help="the key the vendor published: DER SubjectPublicKeyInfo (hex), PEM, or the tool's XML file")
@click.option("--serial", default=None, help="meter serial as its records carry it (MS, else GS); "
                                             "default: from --records")
@click.option("--records", "records_file", metavar="FILE", default=None,
              help="a file of the meter's records, to take the serial from")
@click.option("--owner", required=True, metavar="ADDRESS", help="account that receives what the meter mints")
@click.option("--kind", type=click.Choice(sorted(KIND_REGISTERS)), default="generation", show_default=True,
              help="generation: export 2.8.0 mints; consumption: import 1.8.0 records consumption; both")
@click.option("--mint-register", default=None, metavar="OBIS", help="export register that mints (e.g. 1-0:2.8.0)")
@click.option("--consume-register", default=None, metavar="OBIS", help="import register of consumption")
@click.option("--rated-w", required=True, type=click.IntRange(1), help="rated power in W")
@click.option("--source", type=click.Choice(SOURCES), default="solar", show_default=True)
@common
@with_key
@pass_wallet
def enroll_ocmf(w: Wallet, public_key: str, serial: str | None, records_file: str | None, owner: str, kind: str,
                mint_register: str | None, consume_register: str | None, rated_w: int, source: str) -> None:
    """Enroll an OCMF meter (sign with an authority key): its own signed records then count.

    \b
    Examples:
      kwh-wallet --name grid-operator --wait meter enroll-ocmf \\
          --public-key tests/data/ocmf/nistP384_0Wh.xml --records tests/data/ocmf/nistP384_0Wh.xml \\
          --owner kwh0bea40a2ac03787f66fdaec9a5552fd77802858ed101b7cd --kind generation --rated-w 22000
    """
    spki = _public_key(public_key)
    if serial is None:
        if records_file is None:
            fail("usage", "give --serial, or --records FILE to take it from the meter's records")
        try:
            serial = ocmf.parse(_records(records_file)[0].text).serial
        except ocmf.OcmfError as exc:
            fail("malformed", f"{records_file}: {exc}")
    mint, consume = KIND_REGISTERS[kind]
    try:
        mint = ocmf.canonical_register(mint_register) if mint_register is not None else mint
        consume = ocmf.canonical_register(consume_register) if consume_register is not None else consume
        check_registers(mint, consume)
    except (ValueError, Rejected) as exc:
        fail("invalid_meter", str(getattr(exc, "detail", "") or exc))
    owner_raw = parse_addr(owner, "owner")
    meter_id = ocmf.meter_id_of_serial(serial).hex()
    w.submit(EnrollOcmfMeter(spki, serial, owner_raw, mint, consume, rated_w, source),
             f"enroll OCMF meter {serial} ({ocmf.curve_of(spki)}, mint {mint or '-'}, consume {consume or '-'}, "
             f"{rated_w} W, {source})", {"meter_id": meter_id, "serial": serial})


@meter.command("ocmf-show")
@click.argument("serial", metavar="SERIAL")
@common
@pass_wallet
def ocmf_show(w: Wallet, serial: str) -> None:
    """Show an OCMF meter by its serial: key, registers, paging, what it minted.

    \b
    Examples:
      kwh-wallet meter ocmf-show 1ESY1161229886
    """
    data = w.client._object(f"/ocmf-meters/{ocmf.meter_id_of_serial(serial).hex()}")
    if w.as_json:
        w.emit_json(data)
    else:
        w.fields(None, [(k.replace("_", " "), str(v)) for k, v in data.items()])

