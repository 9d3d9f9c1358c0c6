"""OCMF meters on real nodes, through the wallet: enroll with the vendor's key, forward the meter's own
records with `kwh-wallet meter submit`, and see every node mint the register difference once, while the
public samples and tampered records get their reasons and mint nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from framework import NodeNet, get, height, request, sync_blocks, wait_until
from ledger import errors as E
from ledger import ocmf
from ledger.ocmf_sim import OcmfMeterSim
from ledger.tx import COIN, OcmfReading
from node.keyfile import save_key

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "data" / "ocmf"
RATED_W = 10_000_000  # 2777 Wh per second at most
STEP_MWH = [0, 1_234_567, 2_000_000, 2_777_000, 1]  # register growth per record (first sets the baseline)


@pytest.fixture(scope="module")
def net(module_node_net: Any) -> NodeNet:
    n: NodeNet = module_node_net(authorities=2, observers=1, accounts=2, authority_coin=10 * COIN,
                                 spare_observers=0, block_interval_ms=500)
    wait_until(lambda: min(height(x) for x in n.nodes) >= 1, 30, message="the net produces blocks")
    return n


class Wallet:
    def __init__(self, net: NodeNet, tmp: Path) -> None:
        self.node = net.authorities[0].url
        self.keystore = tmp / "keystore"
        save_key(tmp / "authority.json", net.net.authorities[0])
        self.ok("import-key", str(tmp / "authority.json"), "--name", "authority")

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "wallet", "--keystore", str(self.keystore), "--node", self.node,
                "--timeout", "30", "--json", *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KWH_")}
        env.update({"PYTHONPATH": str(REPO), "KWH_WALLET_FAST_KDF": "1", "KWH_WALLET_PASSPHRASE": "pw"})
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, input=stdin)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def ok(self, *args: str) -> Any:
        proc = self.run(*args)
        assert proc.returncode == 0, (args, proc.stderr, proc.stdout)
        return json.loads(proc.stdout)

    def lines(self, *args: str, rc: int, stdin: str | None = None) -> list[dict[str, Any]]:
        proc = self.run(*args, stdin=stdin)
        assert proc.returncode == rc, (args, proc.stderr, proc.stdout)
        return [json.loads(line) for line in proc.stdout.splitlines()]

    def enroll(self, owner: str, *args: str) -> dict[str, Any]:
        out = self.ok("--wait", "--name", "authority", "meter", "enroll-ocmf", "--owner", owner, *args)
        assert out["status"] == "included", out
        return out


@pytest.fixture(scope="module")
def wallet(net: NodeNet, tmp_path_factory: pytest.TempPathFactory) -> Wallet:
    return Wallet(net, tmp_path_factory.mktemp("ocmf-wallet"))


def minted_everywhere(net: NodeNet, owner: str, meter_id: str) -> set[tuple[int, int]]:
    sync_blocks(net.nodes, timeout=20)
    return {(get(n, f"/accounts/{owner}")["wh"], get(n, f"/ocmf-meters/{meter_id}")["minted_wh"])
            for n in net.nodes}


# sample file -> the ledger's reason for each record (the meter enrolled with the file's key)
SAMPLE_REASONS = {
    "VW_OCMF_load.xml": [E.CLOCK_NOT_SYNCHRONISED],
    "keba_test.xml": [E.CLOCK_NOT_SYNCHRONISED] * 100,
    "keba_test_txn.xml": [E.CLOCK_NOT_SYNCHRONISED] * 100,
    "nistP384_0Wh.xml": [E.BEFORE_ENROLLMENT] * 2,
    "test_ocmf_ebee_01.xml": [E.CLOCK_NOT_SYNCHRONISED] * 2,
    "test_ocmf_ebee_02.xml": [E.BAD_SIGNATURE, E.CLOCK_NOT_SYNCHRONISED],
    "test_ocmf_keba_kcp30.xml": [E.CLOCK_NOT_SYNCHRONISED],
    "test_ocmf_keba_kcp30_fail.xml": [E.BAD_SIGNATURE],
}


def test_public_samples_get_their_reasons_on_a_node_and_mint_nothing(net: NodeNet, wallet: Wallet) -> None:
    owner = net.net.accounts[1].address_text
    for name, reasons in SAMPLE_REASONS.items():
        path = str(SAMPLES / name)
        first = ocmf.parse(_first_record(path))
        regs = first.registers()
        kind = "both" if any(r.startswith("2.8.") for r in regs) and any(r.startswith("1.8.") for r in regs) \
            else "consumption"
        consume = next(r for r in regs if r.startswith("1.8."))
        code, _data, _h = request(net.authorities[0], "GET", f"/ocmf-meters/{ocmf.meter_id_of_serial(first.serial).hex()}")
        if code == 404:  # files of one meter share its enrollment
            wallet.enroll(owner, "--public-key", path, "--records", path, "--kind", kind, "--consume-register",
                          consume, "--rated-w", "22000")
        verdicts = wallet.lines("meter", "submit", path, rc=1)
        assert [v["reason"] for v in verdicts] == reasons, (name, verdicts)
        assert all(v["status"] == "refused" for v in verdicts)
    assert {get(n, "/energy")["minted_wh"] for n in net.nodes} == {0}
    assert get(net.authorities[0], f"/accounts/{owner}")["consumed_wh"] == 0
    # the enrolled meters, one per page: the cursor walks them all, in id order
    whole = get(net.authorities[0], "/ocmf-meters")
    assert len(whole["meters"]) >= 2 and whole["next"] is None
    walked, cursor = [], None
    for _ in range(len(whole["meters"]) + 1):
        page = get(net.authorities[0], "/ocmf-meters?limit=1" + (f"&cursor={cursor}" if cursor else ""))
        walked += page["meters"]
        cursor = page["next"]
        if cursor is None:
            break
    assert [m["meter_id"] for m in walked] == [m["meter_id"] for m in whole["meters"]]


def _first_record(path: str) -> str:
    from wallet.meter_ocmf import read_records
    return read_records(Path(path).read_text(encoding="utf-8-sig"))[0].text


def test_a_generator_mints_its_register_difference_once_and_tampering_mints_nothing(
        net: NodeNet, wallet: Wallet, tmp_path: Path) -> None:
    sim = OcmfMeterSim("SIM-GEN-K1", curve="secp256k1")
    owner = net.net.accounts[0].address_text
    enrolled = wallet.enroll(owner, "--public-key", sim.spki.hex(), "--serial", sim.serial, "--kind", "generation",
                             "--rated-w", str(RATED_W), "--source", "wind")
    meter_id = enrolled["meter_id"]
    m = get(net.authorities[0], f"/ocmf-meters/{meter_id}")
    assert (m["curve"], m["kind"], m["mint_register"], m["records"]) == ("secp256k1", "generation", "2.8.0", 0)
    t0, value = m["enrolled_ms"], 7_000_000_000
    texts, values = [], []
    for i, step in enumerate(STEP_MWH):
        value += step
        values.append(value)
        texts.append(sim.record(t0 + 1000 * (i + 1) + 7, value))
    last_ms = t0 + 1000 * len(STEP_MWH) + 7
    wait_until(lambda: get(net.authorities[0], "/blocks/" + str(height(net.authorities[0])))["timestamp_ms"]
               > last_ms, 30, message="the records' times have passed at the head")
    path = tmp_path / "records.ocmf"
    path.write_text("\n".join(texts) + "\n")
    offline = wallet.lines("meter", "verify", str(path), "--public-key", sim.spki.hex(), rc=0)
    assert all(v["signature_valid"] and v["acceptable"] for v in offline)
    verdicts = wallet.lines("--wait", "meter", "submit", str(path), rc=0)
    assert [v["status"] for v in verdicts] == ["included"] * len(texts), verdicts
    expected = values[-1] // 1000 - values[0] // 1000
    assert minted_everywhere(net, owner, meter_id) == {(expected, expected)}
    # the raw record is retrievable from the chain, for anyone to verify again
    tx = get(net.observers[0], f"/tx/{verdicts[2]['txid']}")
    assert tx["tx"]["record"] == texts[2] and tx["tx"]["kind"] == "ocmf_reading"
    lots = get(net.observers[0], f"/accounts/{owner}/lots")["lots"]
    assert sum(x["wh"] for x in lots) == expected and {x["source"] for x in lots} == {"wind"}
    # tampering: each refused with its reason, nothing more minted
    t = last_ms + 2000
    wait_until(lambda: get(net.authorities[0], "/blocks/" + str(height(net.authorities[0])))["timestamp_ms"]
               > t + 10, 30, message="time passes")
    good = sim.record(t, value + 1000, advance=False)
    tampered = [
        (sim.record(t, value + 1000, advance=False, status="M"), E.METER_STATUS_NOT_GOOD),
        (good.replace('"RV":', '"RV":1', 1), E.BAD_SIGNATURE),  # a digit added to the value
        (sim.record(t, value + 1000, advance=False, paging=f"T{sim.paging + 2}"), E.PAGING_GAP),
        (good.replace('"SA":"ECDSA-secp256k1-SHA256"', '"SA":"ECDSA-secp256r1-SHA256"'), E.ALGORITHM_MISMATCH),
    ]
    bad_path = tmp_path / "tampered.ocmf"
    bad_path.write_text("\n".join(text for text, _ in tampered) + "\n")
    verdicts = wallet.lines("meter", "submit", str(bad_path), rc=1)
    assert [v["reason"] for v in verdicts] == [reason for _, reason in tampered], verdicts
    assert minted_everywhere(net, owner, meter_id) == {(expected, expected)}
    # a record that does not even parse is refused by the wallet itself, with the parser's detail
    out = wallet.lines("meter", "submit", "-", rc=1, stdin="OCMF|{\"PG\":\"T1\",\"PG\":\"T2\"}|{}\n")
    assert out[0]["reason"] == "malformed" and "duplicate" in out[0]["detail"]
    # the untampered record still applies: the refusals changed nothing
    proc = wallet.lines("--wait", "meter", "submit", "-", rc=0, stdin=good + "\n")
    assert proc[0]["status"] == "included" and proc[0]["txid"] == OcmfReading.from_text(good, net.chain_id).txid.hex()
    assert minted_everywhere(net, owner, meter_id) == {(expected + 1, expected + 1)}
