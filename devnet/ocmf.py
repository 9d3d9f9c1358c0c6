"""OCMF meters of the devnet: EV chargers and a DC meter that sign OCMF records with their own keys and
curves, enrolled by an authority, their records posted by a gateway like any real one's.

Each meter signs, every `period_s` of real time, a record timed just before the head block (a node admits
a record once its time has passed at the parent block), on a synchronised clock, with the next paging
number and its register grown by what it measured (a share of rated power over the time since its last
record). The gateway keeps each record until the chain's meter record shows its paging, re-posting it to
another node if one drops it. A generation meter's minted Wh must equal the register growth of its
accepted records; the run summary's `ocmf.checks` says so.

With tamper mode the DC meter sends, once, four tampered variants of a record before the honest one:
manipulated status (ST=M), a bad signature (a digit added to the value), a skipped paging number and a
swapped SA. Each must be refused with its own reason, and none mints.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from ledger import errors as E
from ledger import ocmf
from ledger.keys import AccountKey, format_address
from ledger.ocmf_sim import OcmfMeterSim
from ledger.tx import EnrollOcmfMeter, OcmfReading, encode_tx, sign_tx
from node.keyfile import write_private

from .client import NodePool, NodeUnavailable, reason_of

log = logging.getLogger("devnet.ocmf")

# name, curve, kind, rated W, source
FLEET = [("DCM-1", "secp384r1", "generation", 30_000, "solar"),
         ("EVC-1", "secp256r1", "consumption", 22_000, "grid"),
         ("EVC-2", "brainpoolP256r1", "consumption", 11_000, "grid")]
TAMPERS = {"ocmf_manipulated": E.METER_STATUS_NOT_GOOD, "ocmf_bad_signature": E.BAD_SIGNATURE,
           "ocmf_skipped_paging": E.PAGING_GAP, "ocmf_swapped_sa": E.ALGORITHM_MISMATCH}
TAMPER_AFTER = 2  # accepted records of the DC meter before its tamper round
REGISTERS = {"generation": ("2.8.0", ""), "consumption": ("", "1.8.0"), "both": ("2.8.0", "1.8.0")}


@dataclass
class OcmfGateway:
    sim: OcmfMeterSim
    kind: str
    rated_w: int
    source: str
    owner: bytes
    meter_id: str
    mwh: int = 0  # register value of the last signed record
    last_ms: int = -1  # time of the last signed record
    confirmed_paging: int = -1
    queue: list[tuple[int, str, int]] = field(default_factory=list)  # (paging, record, Wh it mints)
    baseline_minted_wh: int = 0
    minted_sent_wh: int = 0  # what the accepted honest records mint
    accepted: int = 0
    refusals: Counter[str] = field(default_factory=Counter)


class OcmfFleet:
    """The devnet's OCMF meters and their gateway (`prepare`, then `run(stop)`; `summary()`)."""

    def __init__(self, pool: NodePool, authority: AccountKey, owners: list[bytes], min_fee: int, key_dir: Path,
                 tamper: bool = False, period_s: float = 1.5, seed: int | None = None) -> None:
        self.pool, self.authority, self.owners, self.min_fee = pool, authority, owners, min_fee
        self.key_dir = key_dir
        self.tamper = tamper
        self.period_s = period_s
        self.rng = random.Random(seed)
        self.gateways: list[OcmfGateway] = []
        self.tampered: dict[str, Counter[str]] = {}
        self.emitting = True

    # setup ----------------------------------------------------------------------------------------
    def _key(self, name: str, curve: str) -> Any:
        path = self.key_dir / f"{name}.pem"
        if path.exists():
            return serialization.load_pem_private_key(path.read_bytes(), password=None)
        sim = OcmfMeterSim(name, curve=curve)
        self.key_dir.mkdir(parents=True, exist_ok=True)
        write_private(path, sim.private.private_bytes(serialization.Encoding.PEM,  # type: ignore[union-attr]
                                                      serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
        return sim.private

    async def prepare(self) -> None:
        """Enroll the meters not on chain yet (an authority's txs), and resume each from its chain record."""
        enrolls = []
        for i, (name, curve, kind, rated_w, source) in enumerate(FLEET):
            mint, consume = REGISTERS[kind]
            sim = OcmfMeterSim(f"KWH-{name}", curve=curve, private=self._key(name, curve), mint_register=mint,
                               consume_register=consume, vendor="kwhledger-devnet")
            meter_id = ocmf.meter_id_of_serial(sim.serial).hex()
            gw = OcmfGateway(sim, kind, rated_w, source, self.owners[i % len(self.owners)], meter_id)
            self.gateways.append(gw)
            _i, data = await self.pool.get(f"/ocmf-meters/{meter_id}")
            if "error" in data:
                enrolls.append(EnrollOcmfMeter(sim.spki, sim.serial, gw.owner, mint, consume, rated_w, source))
        if enrolls:
            await self._enroll(enrolls)
        for gw in self.gateways:
            m = await self.pool.get_ok(f"/ocmf-meters/{gw.meter_id}")
            gw.sim.paging = max(0, int(m["last_paging_t"]))
            gw.confirmed_paging = int(m["last_paging_t"])
            gw.last_ms = max(int(m["last_time_ms"]), int(m["enrolled_ms"]))
            reg = int(m["mint_register_mwh"] if gw.kind == "generation" else m["consume_register_mwh"])
            gw.mwh = reg if reg >= 0 else self.rng.randrange(1_000_000, 50_000_000)
            gw.baseline_minted_wh = int(m["minted_wh"])

    async def _enroll(self, bodies: list[EnrollOcmfMeter]) -> None:
        addr = format_address(self.authority.address)
        chain_id = (await self.pool.get_ok("/status"))["chain_id"]
        nonce = int((await self.pool.get_ok(f"/accounts/{addr}"))["next_nonce"])
        for body in bodies:
            tx = sign_tx(self.authority, chain_id, nonce, self.min_fee, body)
            _i, status, data = await self.pool.post_tx(encode_tx(tx))
            if status != 200:
                raise RuntimeError(f"enrolling OCMF meter {body.serial}: {reason_of(status, data)}")
            nonce += 1
        for body in bodies:  # wait until they are on chain
            for _ in range(600):
                _i, data = await self.pool.get(f"/ocmf-meters/{ocmf.meter_id_of_serial(body.serial).hex()}")
                if "error" not in data:
                    break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"OCMF meter {body.serial} was not enrolled in time")

    # running --------------------------------------------------------------------------------------
    def stop_emitting(self) -> None:
        self.emitting = False

    @property
    def drained(self) -> bool:
        return all(not gw.queue for gw in self.gateways)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._tick()
            except NodeUnavailable as exc:
                log.warning("OCMF gateway: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), self.period_s)
            except asyncio.TimeoutError:
                pass

    async def _head_ms(self) -> int:
        status = await self.pool.get_ok("/status")
        return int((await self.pool.get_ok(f"/blocks/{status['head']}"))["timestamp_ms"])

    async def _tick(self) -> None:
        head_ms = await self._head_ms()
        for gw in self.gateways:
            m = await self.pool.get_ok(f"/ocmf-meters/{gw.meter_id}")
            done = int(m["last_paging_t"])
            while gw.queue and gw.queue[0][0] <= done:
                _pg, _text, wh = gw.queue.pop(0)
                gw.accepted += 1
                gw.minted_sent_wh += wh
            gw.confirmed_paging = done
            if self.emitting and not gw.queue and head_ms - gw.last_ms >= 1500:
                await self._next_record(gw, head_ms - 200)
            for _pg, text, _wh in gw.queue:  # (re)post what the chain does not have yet, in order
                _i, status, data = await self.pool.post_tx(encode_tx(OcmfReading.from_text(text, "")))
                reason = reason_of(status, data)
                if reason not in ("ok", E.DUPLICATE):
                    gw.refusals[reason] += 1
                    break

    async def _next_record(self, gw: OcmfGateway, time_ms: int) -> None:
        elapsed = time_ms - gw.last_ms
        grow = int(gw.rated_w * elapsed / 3600 * self.rng.uniform(0.2, 0.9))  # mWh, below the rating
        if self.tamper and gw is self.gateways[0] and gw.accepted == TAMPER_AFTER and not self.tampered:
            await self._tamper_round(gw, time_ms, gw.mwh + grow)
        first = gw.confirmed_paging < 0 and gw.sim.paging == 0
        old = gw.mwh
        gw.mwh += grow
        regs = {"mint_mwh": gw.mwh} if gw.kind == "generation" else {"consume_mwh": gw.mwh}
        text = gw.sim.record(time_ms, **regs)
        wh = 0 if first or gw.kind != "generation" else gw.mwh // 1000 - old // 1000
        gw.queue.append((gw.sim.paging, text, wh))
        gw.last_ms = time_ms

    async def _tamper_round(self, gw: OcmfGateway, time_ms: int, mwh: int) -> None:
        """Tampered variants of the next honest record, each posted once; the honest one follows."""
        good = gw.sim.record(time_ms, advance=False, mint_mwh=mwh)
        swapped = "ECDSA-secp256r1-SHA256" if gw.sim.curve != "secp256r1" else "ECDSA-secp256k1-SHA256"
        variants = {
            "ocmf_manipulated": gw.sim.record(time_ms, advance=False, mint_mwh=mwh, status="M"),
            "ocmf_bad_signature": good.replace('"RV":', '"RV":1', 1),
            "ocmf_skipped_paging": gw.sim.record(time_ms, advance=False, mint_mwh=mwh,
                                                 paging=f"T{gw.sim.paging + 2}"),
            "ocmf_swapped_sa": good.replace(f'"SA":"{ocmf.CURVE_ALGORITHM[gw.sim.curve]}"', f'"SA":"{swapped}"'),
        }
        for name, text in variants.items():
            _i, status, data = await self.pool.post_tx(encode_tx(OcmfReading.from_text(text, "")))
            self.tampered.setdefault(name, Counter())[reason_of(status, data)] += 1

    # summary --------------------------------------------------------------------------------------
    async def minted_on_chain(self) -> dict[str, int]:
        out = {}
        for gw in self.gateways:
            m = await self.pool.get_ok(f"/ocmf-meters/{gw.meter_id}")
            out[gw.meter_id] = int(m["minted_wh"]) - gw.baseline_minted_wh
        return out

    def summary(self, minted: dict[str, int] | None) -> dict[str, Any]:
        sent = sum(gw.minted_sent_wh for gw in self.gateways)
        on_chain = sum(minted.values()) if minted is not None else None
        return {
            "meters": [{"serial": gw.sim.serial, "meter_id": gw.meter_id, "curve": gw.sim.curve, "kind": gw.kind,
                        "accepted": gw.accepted, "pending": len(gw.queue), "minted_wh_sent": gw.minted_sent_wh,
                        "minted_wh_on_chain": (minted or {}).get(gw.meter_id), "refusals": dict(gw.refusals)}
                       for gw in self.gateways],
            "tamper": {name: {"expected": TAMPERS[name], "got": dict(got)} for name, got in self.tampered.items()},
            "minted_wh_this_run": on_chain,
            "checks": {
                "minted_equals_sent": on_chain == sent and self.drained,
                # like the native tampers: every one sent got its own reason (a short run may end before)
                "tamper_each_own_reason": all(set(got) == {TAMPERS[name]} for name, got in self.tampered.items())
                if self.tamper else None,
            },
            "tamper_untried": sorted(set(TAMPERS) - set(self.tampered)) if self.tamper else None,
        }
