"""Smart meters: enroll and revoke (authority keys), show and list."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ledger.keys import MeterKey, format_address, meter_id_of, meter_public_from_pem
from ledger.tx import INTERVALS, METER_KINDS, SOURCES, EnrollMeter, RevokeMeter

from .context import Wallet, common, pass_wallet, with_key
from .output import fail, kwh_text, parse_addr, parse_id
from .units import format_time, format_wh


@click.group()
def meter() -> None:
    """Smart meters: enroll and revoke (authority keys), show."""


def read_meter_public(path: str) -> bytes:
    """A meter's compressed P-256 key from a PEM public key, a PEM private key, or hex."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        fail("bad_meter_key", f"cannot read {path}: {exc.strerror or exc}")
    try:
        return meter_public_from_pem(data)
    except (ValueError, TypeError):
        pass
    try:
        return MeterKey.from_pem(data).public
    except (ValueError, TypeError):
        pass
    try:
        raw = bytes.fromhex(data.decode("ascii").strip())
        if len(raw) == 33:
            return raw
    except (ValueError, UnicodeDecodeError):
        pass
    fail("bad_meter_key", f"{path} is not a P-256 key (PEM public or private key, or 33-byte hex)")


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
@common
@with_key
@pass_wallet
def enroll(w: Wallet, pubkey: str, owner: str, kind: str, rated_w: int, interval: str, source: str,
           export_register: int, import_register: int) -> None:
    """Enroll a meter (sign with an authority key)."""
    public = read_meter_public(pubkey)
    owner_raw = parse_addr(owner, "owner")
    meter_id = meter_id_of(public).hex()
    w.submit(EnrollMeter(public, owner_raw, kind, rated_w, int(interval), source, export_register, import_register),
             f"enroll {kind} meter {meter_id} ({rated_w} W, {source}, every {interval} s) for "
             f"{format_address(owner_raw)}", {"meter_id": meter_id, "owner": format_address(owner_raw)})


@meter.command()
@click.argument("meter_id", metavar="METER_ID")
@common
@with_key
@pass_wallet
def revoke(w: Wallet, meter_id: str) -> None:
    """Revoke a meter (sign with an authority key); it mints nothing after this."""
    mid = parse_id(meter_id, 16, "meter id")
    w.submit(RevokeMeter(mid), f"revoke meter {mid.hex()}", {"meter_id": mid.hex()})


def _meter_pairs(m: dict[str, Any]) -> list[tuple[str, str]]:
    return [("meter", m["meter_id"]), ("owner", m["owner"]), ("kind", m["kind"]), ("source", m["source"]),
            ("rated", f"{m['rated_w']} W"), ("interval", f"{m['interval_s']} s"),
            ("active", "yes" if m["active"] else "no (revoked)"), ("counter", str(m["counter"])),
            ("next interval", format_time(m["next_start"]) if m.get("next_start") else "-"),
            ("export register", f"{m['export_register']} Wh"), ("import register", f"{m['import_register']} Wh"),
            ("minted", kwh_text(m["minted_wh"])), ("consumed", kwh_text(m["consumed_wh"])),
            ("enrolled at block", str(m["enrolled_height"])), ("public key", m["public"])]


@meter.command()
@click.argument("meter_id", metavar="METER_ID")
@common
@pass_wallet
def show(w: Wallet, meter_id: str) -> None:
    """Show a meter: owner, kind, registers, what it minted."""
    m = w.client.meter(parse_id(meter_id, 16, "meter id").hex())
    if w.as_json:
        w.emit_json(m)
    else:
        w.fields(None, _meter_pairs(m))


@meter.command("list")
@click.option("--owner", metavar="ADDRESS", default=None, help="only this owner's meters")
@common
@pass_wallet
def meter_list(w: Wallet, owner: str | None) -> None:
    """All enrolled meters."""
    owner_text = format_address(parse_addr(owner, "owner")) if owner else None
    items = [m for m in w.client.meters() if owner_text is None or m.get("owner") == owner_text]
    if w.as_json:
        w.emit_json({"meters": items})
        return
    w.table(None, ["meter", "owner", "kind", "source", "rated W", "minted kWh", "active"],
            [[m["meter_id"], m["owner"], m["kind"], m["source"], str(m["rated_w"]), format_wh(m["minted_wh"]),
              "yes" if m["active"] else "no"] for m in items], empty="(no meters)")


COMMANDS = [meter]
