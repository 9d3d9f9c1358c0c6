"""Smart meters: enroll and revoke (authority keys), show and list; and for your own meter, a gateway:
`keygen` makes its P-256 key pair, `read` signs one interval's reading with it, `submit` posts that reading.

The reading file `meter read` writes and `meter submit` reads (JSON, format "kwhledger-reading", version 1):

    {"format": "kwhledger-reading", "version": 1, "chain_id": "kwh-devnet",
     "txid": "<64 hex>", "tx": "<hex of the reading's canonical msgpack bytes, the body of POST /tx>",
     "reading": {"meter_id": "<32 hex>", "interval_start": 1767225600, "interval_s": 900, "export_wh": 500,
                 "import_wh": 0, "export_register": 1500, "import_register": 0, "counter": 3}}

`tx` is what counts (it carries the meter's signature); `reading` and `txid` are for people and are checked
against it. The file holds no secret: the meter's private key stays in its PEM file.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from ledger.errors import Rejected
from ledger.keys import MeterKey, format_address, meter_id_of, meter_public_from_pem
from ledger.tx import (CONSUMPTION, GENERATION, INTERVALS, METER_KINDS, SOURCES, EnrollMeter, EnrollMeterSince, MeterReading,
                       ReadingFields, RevokeMeter, decode_tx, encode_tx, sign_reading)
from node.keyfile import write_private

from .client import NodeError
from .context import Wallet, common, pass_wallet, with_key
from .output import EXIT_REJECTED, CliError, amount, fail, kwh_text, parse_addr, resolve_id, wh_text
from .units import UnitError, format_wh, parse_kwh, parse_time

READING_FORMAT = "kwhledger-reading"
READING_VERSION = 1
MAX_READING_FILE = 65536


@click.group()
def meter() -> None:
    """Smart meters: enroll and revoke (authority keys), show and list; keygen, read and submit for your
    own meter.

    \b
    Examples:
      kwh-wallet meter keygen --out my-meter            (my-meter.pem, my-meter.pub.pem)
      kwh-wallet meter read --key my-meter.pem --export 0.5 --import 0.2
      kwh-wallet --wait meter submit reading-3f9a02c1-1.json
      kwh-wallet meter list
    """


def meter_ids(w: Wallet) -> list[str]:
    return [m["meter_id"] for m in w.client.meters()]


def read_meter_public(path: str) -> bytes:
    """A meter's compressed P-256 key from a PEM public key or hex. A private key is refused: enrollment
    needs only the public half, and the private one must stay with the meter."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        fail("bad_meter_key", f"cannot read {path}: {exc.strerror or exc}")
    if b"PRIVATE KEY" in data:
        fail("bad_meter_key", f"{path} holds a PRIVATE key; give the meter's public key (the .pub.pem file "
                              "'kwh-wallet meter keygen' wrote) and keep the private key with the meter")
    try:
        return meter_public_from_pem(data)
    except (ValueError, TypeError):
        pass
    try:
        raw = bytes.fromhex(data.decode("ascii").strip())
        if len(raw) == 33:
            return raw
    except (ValueError, UnicodeDecodeError):
        pass
    fail("bad_meter_key", f"{path} is not a P-256 public key (PEM, or 33-byte compressed point in hex)")


def load_meter_key(path: str) -> MeterKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        fail("bad_meter_key", f"cannot read {path}: {exc.strerror or exc}")
    try:
        return MeterKey.from_pem(data)
    except (ValueError, TypeError):
        fail("bad_meter_key", f"{path} is not a meter's P-256 private key (PEM); 'kwh-wallet meter keygen' makes one")


@meter.command()
@click.option("--out", "out", required=True, metavar="PATH",
              help="writes PATH.pem (private key, mode 0600) and PATH.pub.pem (public key, for the operator)")
@common
@pass_wallet
def keygen(w: Wallet, out: str) -> None:
    """Make a meter key pair (P-256): the private key stays with the meter, the public key goes to the grid
    operator who enrolls the meter.

    \b
    Examples:
      kwh-wallet meter keygen --out my-meter
      kwh-wallet --name grid-operator --wait meter enroll --pubkey my-meter.pub.pem --owner kwh... \\
          --kind both --rated-w 5000 --interval 900
    """
    private_path, public_path = Path(f"{out}.pem"), Path(f"{out}.pub.pem")
    for p in (private_path, public_path):
        if p.exists():
            fail("file_exists", f"{p} exists; choose another --out (a meter key is never overwritten)")
    key = MeterKey.generate()
    try:
        write_private(private_path, key.private_pem(), overwrite=False)
        public_path.write_bytes(key.public_pem())
    except OSError as exc:
        fail("cannot_write", f"{exc.filename or out}: {exc.strerror or exc}")
    result = {"meter_id": key.meter_id.hex(), "public": key.public.hex(), "private_key_file": str(private_path),
              "public_key_file": str(public_path)}
    if w.as_json:
        w.emit_json(result)
    else:
        w.echo(f"meter id: {key.meter_id.hex()}\nprivate key: {private_path} (mode 0600; keep it with the meter)\n"
               f"public key: {public_path} (give it to the grid operator to enroll the meter)")


@meter.command()
@click.option("--pubkey", required=True, type=click.Path(exists=True, dir_okay=False), metavar="PEM_FILE",
              help="the meter's P-256 public key (PEM)")
@click.option("--owner", required=True, metavar="ADDRESS", help="account that receives what the meter mints")
@click.option("--kind", required=True, type=click.Choice(METER_KINDS))
@click.option("--rated-w", required=True, type=click.IntRange(1), help="rated power in W")
@click.option("--interval", required=True, type=click.Choice([str(i) for i in INTERVALS]),
              help="reading interval in seconds")
@click.option("--source", type=click.Choice(SOURCES), default="solar", show_default=True)
@click.option("--export-register", type=click.IntRange(0), default=0, show_default=True,
              help="cumulative Wh exported before enrollment")
@click.option("--import-register", type=click.IntRange(0), default=0, show_default=True,
              help="cumulative Wh imported before enrollment")
@click.option("--since", default=None, metavar="TIME",
              help="the meter's first interval starts at this time, rounded down to an interval boundary "
                   "(unix seconds, ISO-8601 or relative: -1h); at most a day before the enrollment "
                   "(default: the first whole interval after it)")
@common
@with_key
@pass_wallet
def enroll(w: Wallet, pubkey: str, owner: str, kind: str, rated_w: int, interval: str, source: str,
           export_register: int, import_register: int, since: str | None) -> None:
    """Enroll a meter (sign with an authority key); --pubkey is the meter's PUBLIC key.

    \b
    Examples:
      kwh-wallet --name grid-operator --wait meter enroll --pubkey my-meter.pub.pem \\
          --owner kwh0bea40a2ac03787f66fdaec9a5552fd77802858ed101b7cd --kind both --rated-w 5000 --interval 900
    """
    public = read_meter_public(pubkey)
    owner_raw = parse_addr(owner, "owner")
    meter_id = meter_id_of(public).hex()
    fields = (public, owner_raw, kind, rated_w, int(interval), source, export_register, import_register)
    first_start = None
    if since is not None:
        try:
            first_start = parse_time(since, int(time.time())) // int(interval) * int(interval)
        except UnitError as exc:
            fail("bad_time", f"--since: {exc}")
    w.submit(EnrollMeter(*fields) if first_start is None else EnrollMeterSince(*fields, first_start),
             f"enroll {kind} meter {meter_id} ({rated_w} W, {source}, every {interval} s) for "
             f"{format_address(owner_raw)}", {"meter_id": meter_id, "owner": format_address(owner_raw)})


@meter.command()
@click.argument("meter_id", metavar="METER_ID")
@common
@with_key
@pass_wallet
def revoke(w: Wallet, meter_id: str) -> None:
    """Revoke a meter (sign with an authority key); it mints nothing after this.

    \b
    Examples:
      kwh-wallet --name grid-operator meter revoke 9370780e
    """
    mid = resolve_id(meter_id, 16, "meter id", lambda: meter_ids(w))
    w.submit(RevokeMeter(bytes.fromhex(mid)), f"revoke meter {mid}", {"meter_id": mid})


def _meter_pairs(w: Wallet, m: dict[str, Any]) -> list[tuple[str, str]]:
    if "counter" not in m:  # another account's meter: enrolled, without its readings (ADR 012)
        return [("meter", m["meter_id"]), ("owner", m["owner"]), ("kind", m["kind"]), ("source", m["source"]),
                ("rated", f"{m['rated_w']} W"), ("interval", f"{m['interval_s']} s"),
                ("active", "yes" if m["active"] else "no (revoked)"), ("readings", "the owner's to read"),
                ("enrolled at block", str(m["enrolled_height"])), ("public key", m["public"])]
    return [("meter", m["meter_id"]), ("owner", m["owner"]), ("kind", m["kind"]), ("source", m["source"]),
            ("rated", f"{m['rated_w']} W"), ("interval", f"{m['interval_s']} s"),
            ("active", "yes" if m["active"] else "no (revoked)"), ("counter", str(m["counter"])),
            (f"next interval ({w.zone()})", w.when(m["next_start"]) if m.get("next_start") else "-"),
            ("export register", wh_text(m["export_register"])), ("import register", wh_text(m["import_register"])),
            ("minted", kwh_text(m["minted_wh"])), ("consumed", kwh_text(m["consumed_wh"])),
            ("enrolled at block", str(m["enrolled_height"])), ("public key", m["public"])]


@meter.command()
@click.argument("meter_id", metavar="METER_ID")
@common
@pass_wallet
def show(w: Wallet, meter_id: str) -> None:
    """Show a meter: owner, kind, registers, what it minted.

    \b
    Examples:
      kwh-wallet meter show 9370780e
    """
    m = w.client.meter(resolve_id(meter_id, 16, "meter id", lambda: meter_ids(w)))
    if w.as_json:
        w.emit_json(m)
    else:
        w.fields(None, _meter_pairs(w, m))


@meter.command("list")
@click.option("--owner", metavar="ADDRESS", default=None, help="only this owner's meters")
@common
@pass_wallet
def meter_list(w: Wallet, owner: str | None) -> None:
    """All enrolled meters.

    \b
    Examples:
      kwh-wallet meter list --owner kwh0bea40a2ac03787f66fdaec9a5552fd77802858ed101b7cd
    """
    owner_text = format_address(parse_addr(owner, "owner")) if owner else None
    items = [m for m in w.client.meters() if owner_text is None or m.get("owner") == owner_text]
    if w.as_json:
        w.emit_json({"meters": items})
        return
    w.table(None, ["meter", "owner", "kind", "source", "rated W", "minted kWh", "active"],
            [[w.id(m["meter_id"]), w.addr(m["owner"]), m["kind"], m["source"], str(m["rated_w"]),
              format_wh(m["minted_wh"]) if "minted_wh" in m else "-", "yes" if m["active"] else "no"]
             for m in items], empty="(no meters)")


# ------------------------------------------------------------------------------ a gateway for one meter


@meter.command("read")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), metavar="PEM_FILE",
              help="the meter's private key (from 'meter keygen')")
@click.option("--export", "export_kwh", default="0", show_default=True, metavar="KWH",
              help="energy exported in the interval (kWh, or e.g. 500Wh)")
@click.option("--import", "import_kwh", default="0", show_default=True, metavar="KWH",
              help="energy imported (consumed) in the interval")
@click.option("--interval-start", default=None, metavar="TIME",
              help="start of the interval (default: the latest interval that has ended)")
@click.option("--out", "out", default=None, metavar="FILE",
              help="reading file to write (default: reading-METER-COUNTER.json)")
@common
@pass_wallet
def read(w: Wallet, key_file: str, export_kwh: str, import_kwh: str, interval_start: str | None,
         out: str | None) -> None:
    """Sign one interval's reading with a meter key, as the meter would, and write it to a file.

    The meter's counter, registers and next interval come from the node (the chain's record of the meter),
    so the reading continues them; nothing is sent: 'meter submit FILE' posts it.

    \b
    Examples:
      kwh-wallet meter read --key my-meter.pem --export 0.5 --import 0.2
      kwh-wallet meter read --key my-meter.pem --export 250Wh --interval-start 2026-03-01T09:00Z --out r.json
    """
    key = load_meter_key(key_file)
    mid = key.meter_id.hex()
    try:
        m = w.client.meter(mid)
    except NodeError as exc:
        if exc.code != "not_found":
            raise
        fail("unknown_meter", f"meter {mid} is not enrolled on this chain; a grid operator enrolls it with its "
                              "public key ('kwh-wallet meter enroll --pubkey ...')", EXIT_REJECTED)
    if "counter" not in m:
        fail("forbidden", f"meter {mid} belongs to {m['owner']}: its registers are the owner's to read; run with "
                          "--name set to the owner's key", EXIT_REJECTED)
    if not m["active"]:
        fail("meter_revoked", f"meter {mid} was revoked; its readings mint nothing", EXIT_REJECTED)
    export_wh = amount(parse_kwh, export_kwh, "export", positive=False)
    import_wh = amount(parse_kwh, import_kwh, "import", positive=False)
    interval_s = int(m["interval_s"])
    now = w.node_now()
    if interval_start is None:
        start = now // interval_s * interval_s - interval_s  # the latest interval that has ended
    else:
        try:
            start = parse_time(interval_start, now)
        except UnitError as exc:
            fail("interval_misaligned", str(exc))
        if start % interval_s:
            fail("interval_misaligned", f"an interval of this meter starts on a multiple of {interval_s} s; "
                                        f"{w.when(start)} is not one")
    if start < int(m["next_start"]):
        fail("interval_overlap", f"the meter's next interval starts {w.when(int(m['next_start']))}; it has not "
                                 f"ended yet (node time {w.when(now)}): read again after "
                                 f"{w.when(int(m['next_start']) + interval_s)}", EXIT_REJECTED)
    if start + interval_s > now:
        fail("interval_in_future", f"the interval {w.when(start)} + {interval_s} s has not ended "
                                   f"(node time {w.when(now)})")
    limit = int(m["rated_w"]) * interval_s // 3600
    if export_wh > limit or import_wh > limit:
        fail("energy_exceeds_rating", f"at most {wh_text(limit)} in {interval_s} s at {m['rated_w']} W")
    if (export_wh and m["kind"] == CONSUMPTION) or (import_wh and m["kind"] == GENERATION):
        fail("kind_mismatch", f"a {m['kind']} meter cannot report that direction")
    fields = ReadingFields(key.meter_id, start, interval_s, export_wh, import_wh,
                           int(m["export_register"]) + export_wh, int(m["import_register"]) + import_wh,
                           int(m["counter"]) + 1)
    chain_id = w.client.chain_id()
    reading = sign_reading(key, chain_id, fields)
    document = reading_document(reading)
    path = Path(out or f"reading-{mid[:8]}-{fields.counter}.json")
    try:
        write_private(path, (json.dumps(document, indent=2) + "\n").encode())
    except OSError as exc:
        fail("cannot_write", f"{path}: {exc.strerror or exc}")
    if w.as_json:
        w.emit_json(dict(document, file=str(path.resolve())))
    else:
        w.echo(f"wrote {path}: meter {mid[:10]} reading #{fields.counter}, interval {w.when(start)} + "
               f"{interval_s} s, export {kwh_text(export_wh)}, import {kwh_text(import_wh)}\n"
               f"post it with: kwh-wallet --wait meter submit {path}")


def reading_document(reading: MeterReading) -> dict[str, Any]:
    """The reading file's content (format in this module's docstring)."""
    f = reading.fields
    return {"format": READING_FORMAT, "version": READING_VERSION, "chain_id": reading.chain_id,
            "txid": reading.txid.hex(), "tx": encode_tx(reading).hex(),
            "reading": {"meter_id": f.meter_id.hex(), "interval_start": f.interval_start, "interval_s": f.interval_s,
                        "export_wh": f.export_wh, "import_wh": f.import_wh, "export_register": f.export_register,
                        "import_register": f.import_register, "counter": f.counter}}


def load_reading(path: str, chain_id: str) -> MeterReading:
    """A reading file back to the signed reading; refuses anything else, or a reading for another chain."""
    try:
        raw = Path(path).read_bytes()[:MAX_READING_FILE + 1]
    except OSError as exc:
        fail("bad_reading_file", f"cannot read {path}: {exc.strerror or exc}")
    if len(raw) > MAX_READING_FILE:
        fail("bad_reading_file", f"{path} is larger than {MAX_READING_FILE} bytes")
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        fail("bad_reading_file", f"{path} is not JSON (a reading file from 'kwh-wallet meter read')")
    if not isinstance(doc, dict) or doc.get("format") != READING_FORMAT or doc.get("version") != READING_VERSION:
        fail("bad_reading_file", f"{path} is not a {READING_FORMAT} version {READING_VERSION} file")
    if doc.get("chain_id") != chain_id:
        fail("wrong_chain", f"{path} is a reading for chain {doc.get('chain_id')!r}; this node is {chain_id!r}")
    try:
        tx = decode_tx(bytes.fromhex(str(doc.get("tx", ""))), chain_id)
    except (ValueError, Rejected) as exc:
        fail("bad_reading_file", f"{path}: the signed reading does not decode ({exc})")
    if not isinstance(tx, MeterReading):
        fail("bad_reading_file", f"{path} holds a {tx.kind} transaction, not a meter reading")
    if doc.get("txid") not in (None, tx.txid.hex()) or \
            {k: v for k, v in reading_document(tx)["reading"].items()} != doc.get("reading", {}):
        fail("bad_reading_file", f"{path}: the readable fields do not match the signed reading")
    return tx


def _is_reading_file(path: str) -> bool:
    """A JSON reading file from 'meter read' (starts with '{'), rather than a file of records."""
    if path == "-":
        return False
    try:
        with open(path, "rb") as f:
            return f.read(64).lstrip().startswith(b"{")
    except OSError:
        return True  # load_reading says what is wrong with it


@meter.command("submit")
@click.argument("reading_file", metavar="FILE")
@common
@pass_wallet
def submit(w: Wallet, reading_file: str) -> None:
    """Post a signed reading (a file from 'meter read') to the node; the chain mints its export to the
    meter's owner. Anyone may post a reading: it needs no account key and costs no fee. A file of OCMF
    records (plain lines or the verification tool's XML, '-' for stdin) or of native readings as hex
    lines is posted record by record, in order, with each ledger verdict.

    \b
    Examples:
      kwh-wallet --wait meter submit reading-3f9a02c1-1.json
      kwh-wallet --wait meter submit charger-records.txt
    """
    if not _is_reading_file(reading_file):
        from .meter_ocmf import submit_records
        submit_records(w, reading_file)
        return
    client = w.client
    reading = load_reading(reading_file, client.chain_id())
    f = reading.fields
    txid = reading.txid.hex()
    answer = client.submit(reading)
    result: dict[str, Any] = {"txid": txid, "kind": "reading", "status": answer.get("status", "pending"),
                              "meter_id": f.meter_id.hex(), "counter": f.counter, "export_wh": f.export_wh,
                              "import_wh": f.import_wh}
    if w.wait:
        info = client.wait_tx(txid, w.timeout, final=w.final)
        result["status"] = info["status"]
        if info["status"] == "rejected":
            raise CliError(str(info.get("reason") or "rejected"), f"{info.get('detail') or 'rejected'} "
                                                                  f"(reading {txid})")
        result["height"] = info.get("height")
    if w.as_json:
        w.emit_json(result)
        return
    lines = [f"reading #{f.counter} of meter {f.meter_id.hex()[:10]}: export {kwh_text(f.export_wh)}, "
             f"import {kwh_text(f.import_wh)}", f"txid: {txid}"]
    lines.append(f"included in block {result['height']}: minted {kwh_text(f.export_wh)}" if result["status"] ==
                 "included" else f"status: {result['status']} (see 'kwh-wallet tx {txid}', or use --wait)")
    w.echo("\n".join(lines))


COMMANDS = [meter]
