"""The wallet CLI as people use it: `python -m wallet ...` processes against real node processes.

One network (one authority, one observer) is shared by the tests of this module. The scenario test follows
a producer, a buyer and a consumer through minting, a prepaid offer (a full and a short delivery, the
refund at window end), the order book and redemption, checking balances after each step; the error test
checks that every failure is one line on stderr with the right code and a non-zero exit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from framework import NodeNet, free_port, get, post_tx, sync_blocks, wait_until
from ledger.keys import AccountKey, MeterKey
from ledger.testing import MeterState
from ledger.tx import COIN, Transfer, sign_tx
from node.keyfile import save_key

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple"
INTERVAL_MS = 500
CLI_TIMEOUT_S = 60  # one wallet process, including its --wait
WAIT_S = 30  # --timeout given to the wallet's --wait
WINDOW_S = 25  # delivery window of the prepaid offer: long enough for the steps inside it on a slow machine
INITIAL = 1_000 * COIN


@pytest.fixture(scope="module")
def net(module_node_net: Any) -> NodeNet:
    # accounts: 0 producer (owns genesis meter 0), 1 buyer, 2 consumer, 3 treasury; 4, 5, 6 for the error paths
    return module_node_net(authorities=1, observers=1, accounts=7, meters=1, meter_kind="generation",
                           rated_w=10_000, spare_observers=0, block_interval_ms=INTERVAL_MS)


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class WalletCli:
    """Runs the real CLI in a subprocess with one keystore directory."""

    def __init__(self, keystore: Path, node_url: str) -> None:
        self.keystore = keystore
        self.node_url = node_url

    def run(self, *args: str, name: str | None = None, node: str | None = None, passphrase: str | None = PASSPHRASE,
            as_json: bool = True, env: dict[str, str] | None = None) -> Result:
        argv = [sys.executable, "-m", "wallet", "--keystore", str(self.keystore), "--node", node or self.node_url,
                "--timeout", str(WAIT_S)]
        if name:
            argv += ["--name", name]
        if as_json:
            argv.append("--json")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("KWH_")}
        environment.update({"PYTHONPATH": str(REPO), "KWH_WALLET_FAST_KDF": "1"})
        if passphrase is not None:
            environment["KWH_WALLET_PASSPHRASE"] = passphrase
        environment.update(env or {})
        proc = subprocess.run(argv + list(args), cwd=REPO, env=environment, capture_output=True, text=True,
                              timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, **kwargs: Any) -> Any:
        r = self.run(*args, **kwargs)
        assert r.rc == 0 and r.err == "", f"kwh-wallet {' '.join(args)}: rc={r.rc} stderr={r.err!r}"
        return r.json() if kwargs.get("as_json", True) else r.out

    def fails(self, *args: str, code: str, rc: int | None = None, **kwargs: Any) -> str:
        """The command fails with exactly one stderr line `error: CODE: ...` and nothing on stdout."""
        r = self.run(*args, **kwargs)
        assert r.rc != 0, f"kwh-wallet {' '.join(args)} succeeded: {r.out}"
        if rc is not None:
            assert r.rc == rc, (r.rc, r.err)
        lines = r.err.splitlines()
        assert len(lines) == 1 and r.err.endswith("\n"), f"expected one line on stderr, got {r.err!r}"
        assert lines[0].startswith(f"error: {code}: "), lines[0]
        assert r.out == "", r.out
        return lines[0]

    def balance(self, name: str, node: str | None = None) -> dict[str, Any]:
        return self.ok("balance", name=name, node=node)


def import_key(cli: WalletCli, tmp: Path, name: str, key: AccountKey) -> str:
    path = tmp / f"{name}.node-key.json"
    save_key(path, key)
    info = cli.ok("import-key", str(path), "--name", name)
    assert info["address"] == key.address_text and info["name"] == name
    return key.address_text


def post_and_include(node: Any, tx: Any, timeout: float = 20) -> None:
    """Post a meter reading (the wallet does not relay readings; gateways do) and wait for its block."""
    code, answer = post_tx(node, tx)
    assert code == 200, answer
    wait_until(lambda: get(node, f"/tx/{tx.txid.hex()}")["status"] == "included", timeout,
               message=f"reading {tx.txid.hex()[:12]} included")


def offer_of(cli: WalletCli, offer_id: str) -> dict[str, Any]:
    return next(o for o in cli.ok("offers", "--all")["offers"] if o["offer_id"] == offer_id)


# ---------------------------------------------------------------------------------------------- keys


def test_keys_without_a_node(tmp_path: Path) -> None:
    """new, list, address, export-public, passwd: local only (the node URL points nowhere)."""
    cli = WalletCli(tmp_path / "keys", f"http://127.0.0.1:{free_port()}")
    alice = cli.ok("new", "--name", "alice")
    assert alice["address"].startswith("kwh") and Path(alice["path"]).stat().st_mode & 0o777 == 0o600
    assert cli.ok("new", name="bob")["name"] == "bob"  # the global --name works for `new` too
    assert [k["name"] for k in cli.ok("list")["keys"]] == ["alice", "bob"]
    assert cli.ok("address", name="alice", as_json=False).strip() == alice["address"]
    public = cli.ok("export-public", name="alice")
    assert public == {"name": "alice", "type": "ed25519", "address": alice["address"], "public": alice["public"]}
    # two keys and no 'default': the wallet will not guess which one signs
    cli.fails("address", code="unknown_key", rc=4)
    cli.fails("new", "--name", "alice", code="key_exists", rc=4)
    cli.fails("new", "--name", "../x", code="bad_name", rc=2)
    cli.ok("passwd", name="alice", env={"KWH_WALLET_NEW_PASSPHRASE": "new passphrase"})
    cli.fails("passwd", name="alice", code="wrong_passphrase", rc=4)  # the old passphrase is gone
    # without any passphrase source and no terminal, the wallet says so instead of hanging
    cli.fails("send", "1", alice["address"], name="alice", passphrase=None, code="no_passphrase", rc=4)
    assert cli.ok("list", as_json=False).count("kwh") == 2  # a table for people
    assert "Usage" in cli.ok(as_json=False)  # no command: help, exit 0


# ------------------------------------------------------------------------------------------ scenario


def test_produce_trade_deliver_refund_redeem(net: NodeNet, tmp_path: Path) -> None:
    auth, obs = net.authorities[0], net.observers[0]
    chain_id = net.chain_id
    fee = net.net.genesis.min_fee
    cli = WalletCli(tmp_path / "keys", auth.url)
    producer = import_key(cli, tmp_path, "producer", net.net.accounts[0])
    buyer = import_key(cli, tmp_path, "buyer", net.net.accounts[1])
    consumer = import_key(cli, tmp_path, "consumer", net.net.accounts[2])
    operator = import_key(cli, tmp_path, "grid-operator", net.net.authorities[0])
    import_key(cli, tmp_path, "treasury", net.net.accounts[3])
    status = cli.ok("status")
    assert status["chain_id"] == chain_id and status["min_fee"] == fee
    for name in ("producer", "buyer", "consumer"):
        b = cli.balance(name)
        assert (b["coin"], b["wh"], b["locked_coin"], b["nonce"]) == (INITIAL, 0, 0, 0)

    # --- a consumption meter enrolled by the grid operator (an authority, which needs coin for the fee)
    cli.ok("--wait", "send", "1", operator, name="treasury")
    consumer_meter = MeterKey.generate()
    pem = tmp_path / "consumer-meter.pub.pem"
    pem.write_bytes(consumer_meter.public_pem())
    since = (int(time.time()) // 900 - 1) * 900  # the meter was installed before it was enrolled
    enrolled = cli.ok("--wait", "meter", "enroll", "--pubkey", str(pem), "--owner", consumer, "--kind",
                      "consumption", "--rated-w", "5000", "--interval", "900", "--source", "grid",
                      "--since", str(since), name="grid-operator")
    assert enrolled["status"] == "included" and enrolled["meter_id"] == consumer_meter.meter_id.hex()
    shown = cli.ok("meter", "show", consumer_meter.meter_id.hex())
    assert (shown["owner"], shown["kind"], shown["active"], shown["rated_w"]) == (consumer, "consumption", True, 5000)

    # --- the producer's genesis meter mints 2 x 2 kWh from signed readings; the consumer's meter reports use
    now = int(time.time())
    producer_meter = MeterState(net.net.meters[0], (now // 900 - 2) * 900, 900)
    post_and_include(auth, producer_meter.read(chain_id, 2000))
    post_and_include(auth, producer_meter.read(chain_id, 2000))
    post_and_include(auth, MeterState(consumer_meter, (now // 900 - 1) * 900, 900).read(chain_id, 0, 1200))
    b = cli.balance("producer")
    assert (b["coin"], b["wh"]) == (INITIAL, 4000)
    assert cli.balance("consumer")["consumed_wh"] == 1200
    lots = cli.ok("lots", name="producer")["lots"]
    assert sorted(x["wh"] for x in lots) == [2000, 2000] and {x["source"] for x in lots} == {"solar"}
    assert {x["producer"] for x in lots} == {producer}
    assert "reading" in {h["kind"] for h in cli.ok("history", name="producer")["history"]}

    # --- a prepaid offer: 2 kWh of solar at 0.2 coin/kWh (price_per_wh 200_000 units), window of WINDOW_S
    posted = cli.ok("--wait", "offer", "--kwh", "2", "--price-per-kwh", "0.2", "--window-start", "now",
                    "--window-end", f"+{WINDOW_S}s", "--source", "solar", name="producer")
    offer_id = posted["offer_id"]
    assert posted["status"] == "included" and posted["price_per_wh"] == 200_000 and offer_id == posted["txid"]
    listed = {o["offer_id"]: o for o in cli.ok("offers")["offers"]}
    assert listed[offer_id]["remaining"] == 2000 and listed[offer_id]["source"] == "solar"

    # the buyer prepays 1.5 kWh: 0.3 coin locked in escrow
    accepted = cli.ok("--wait", "accept", offer_id, "--kwh", "1.5", name="buyer")
    trade1 = accepted["trade_id"]
    assert accepted["escrow"] == 1500 * 200_000 == 300_000_000
    b = cli.balance("buyer")
    assert (b["coin"], b["locked_coin"]) == (INITIAL - 300_000_000 - 3 * fee, 300_000_000)  # accept: 3 fees

    # the consumer takes the rest (no --kwh: the whole remaining 0.5 kWh), through the observer node
    sync_blocks([auth, obs])
    accepted2 = cli.ok("--wait", "accept", offer_id, name="consumer", node=obs.url)
    trade2 = accepted2["trade_id"]
    assert (accepted2["wh"], accepted2["escrow"]) == (500, 100_000_000)
    assert offer_of(cli, offer_id)["status"] == "filled"

    # a full delivery releases the whole escrow; a short one releases pro rata
    cli.ok("--wait", "deliver", trade2, "0.5", name="producer")
    cli.ok("--wait", "deliver", trade1, "1000Wh", name="producer")
    # a trade is its parties' business (ADR 012): the wallet reads it with the seller's key
    t1, t2 = cli.ok("trade", trade1, name="producer"), cli.ok("trade", trade2, name="producer")
    cli.fails("trade", trade1, name="consumer", code="forbidden", rc=1)
    assert (t1["delivered"], t1["released"], t1["status"]) == (1000, 200_000_000, "open")
    assert (t2["delivered"], t2["released"], t2["status"]) == (500, 100_000_000, "delivered")
    b = cli.balance("producer")
    assert (b["coin"], b["wh"]) == (INITIAL + 300_000_000 - 5 * fee, 2500)  # fees: offer (3), 2 deliveries
    b = cli.balance("buyer")
    assert (b["wh"], b["locked_coin"]) == (1000, 100_000_000)
    assert cli.balance("consumer")["wh"] == 500
    # only the seller delivers, and never more than bought
    cli.fails("deliver", trade1, "0.1", name="buyer", code="not_seller", rc=1)
    cli.fails("deliver", trade2, "0.001", name="producer", code="trade_closed", rc=1)
    cli.fails("deliver", trade1, "0.6", name="producer", code="over_delivery", rc=1)
    assert {t["trade_id"] for t in cli.ok("trades", name="buyer")["trades"]} == {trade1}

    # --- the order book (while the offer's window runs out): a resting sell, a crossing buy, a cancel
    sell = cli.ok("--wait", "order", "sell", "--kwh", "1", "--price-per-kwh", "0.3", name="producer")
    assert sell["order"]["status"] == "open" and sell["order"]["remaining"] == 1000
    book = cli.ok("orderbook")
    assert [o["order_id"] for o in book["sells"]] == [sell["order_id"]] and book["buys"] == []
    b = cli.balance("producer")
    assert (b["wh"], b["locked_wh"]) == (1500, 1000)
    buy = cli.ok("--wait", "order", "buy", "--kwh", "0.6", "--price-per-kwh", "0.35", name="buyer")
    assert buy["order"]["status"] == "filled" and buy["order"]["filled_wh"] == 600
    assert buy["order"]["paid_coin"] == 600 * 300_000  # at the resting order's price, not the limit
    b = cli.balance("buyer")
    assert (b["coin"], b["wh"], b["locked_coin"]) == (INITIAL - 300_000_000 - 180_000_000 - 6 * fee, 1600,
                                                      100_000_000)
    b = cli.balance("producer")
    assert (b["coin"], b["locked_wh"]) == (INITIAL + 300_000_000 + 180_000_000 - 8 * fee, 400)
    cancelled = cli.ok("--wait", "cancel-order", sell["order_id"], name="producer")
    assert cancelled["status"] == "included"
    mine = {o["order_id"]: o for o in cli.ok("orders", name="producer")["orders"]}
    assert (mine[sell["order_id"]]["status"], mine[sell["order_id"]]["filled_wh"]) == ("cancelled", 600)
    b = cli.balance("producer")
    assert (b["wh"], b["locked_wh"]) == (1900, 0)
    cli.fails("cancel-order", sell["order_id"], name="producer", code="order_closed", rc=1)

    # --- transfers of coin and kWh to a brand-new key
    fresh = cli.ok("new", "--name", "fresh")["address"]
    cli.ok("--wait", "send", "1.5", fresh, name="buyer")
    cli.ok("--wait", "send-wh", "500Wh", fresh, name="producer")
    b = cli.balance("fresh")
    assert (b["coin"], b["wh"]) == (1_500_000_000, 500)
    line = cli.fails("send", "100", buyer, name="fresh", code="insufficient_funds", rc=1)
    assert line == f"error: insufficient_funds: balance 1.5 coin < amount 100 coin + fee {fee / COIN:.6f} coin"

    # --- the consumer redeems tokens against metered consumption (1.2 kWh used, 0.5 kWh held)
    cli.ok("--wait", "redeem", "0.4", name="consumer")
    b = cli.balance("consumer")
    assert (b["wh"], b["redeemed_wh"], b["consumed_wh"]) == (100, 400, 1200)
    cli.fails("redeem", "0.2", name="consumer", code="insufficient_wh", rc=1)
    cli.fails("redeem", "0.1", name="buyer", code="exceeds_consumption", rc=1)  # the buyer has no meter

    # --- the short delivery is refunded when the window ends; the full one has nothing to refund
    window_end = posted["window_end"]
    wait_until(lambda: cli.ok("trade", trade1, name="producer")["status"] == "settled", WINDOW_S + 30,
               0.5, f"trade {trade1[:12]} settled after its window ended at {window_end}")
    t1 = cli.ok("trade", trade1, name="producer")
    assert (t1["released"], t1["refunded"]) == (200_000_000, 100_000_000)
    b = cli.balance("buyer")
    assert (b["coin"], b["locked_coin"]) == (INITIAL - 200_000_000 - 180_000_000 - 1_500_000_000 - 7 * fee, 0)
    assert "refund" in {h["kind"] for h in cli.ok("history", name="buyer")["history"]}
    cli.fails("deliver", trade1, "0.1", name="producer", code="trade_closed", rc=1)
    assert offer_of(cli, offer_id)["status"] == "filled"

    # --- the grid operator revokes the consumer's meter; the wallet shows it and refuses a second revoke
    cli.ok("--wait", "meter", "revoke", consumer_meter.meter_id.hex(), name="grid-operator")
    assert cli.ok("meter", "show", consumer_meter.meter_id.hex())["active"] is False
    cli.fails("meter", "revoke", consumer_meter.meter_id.hex(), name="grid-operator", code="meter_revoked", rc=1)
    # people's tables show the same numbers in human units
    text = cli.ok("balance", name="buyer", as_json=False)
    assert fee == 1000 and "1.6 kWh" in text and "998.119993 coin" in text  # 1000 - 0.2 - 0.18 - 1.5 - 7 fees
    assert "0.3" in cli.ok("trade", trade1, as_json=False, name="buyer")  # 0.3 coin escrow
    assert "(none)" in cli.ok("orderbook", as_json=False)


# ---------------------------------------------------------------------------------------- error paths


def test_every_error_is_one_line_and_non_zero(net: NodeNet, tmp_path: Path) -> None:
    auth = net.authorities[0]
    cli = WalletCli(tmp_path / "keys", auth.url)
    me = import_key(cli, tmp_path, "me", net.net.accounts[4])
    other = net.net.accounts[0].address_text
    cli.ok("new", "--name", "empty")

    # keystore
    assert "wrong passphrase" in cli.fails("send", "1", other, name="me", passphrase="nope", code="wrong_passphrase",
                                           rc=4)
    cli.fails("balance", name="nobody", code="unknown_key", rc=4)
    # input, refused before anything is signed
    typo = other[:-1] + ("0" if other[-1] != "0" else "1")
    assert "checksum" in cli.fails("send", "1", typo, name="me", code="bad_address", rc=2)
    cli.fails("send", "1", "kwh1234", name="me", code="bad_address", rc=2)
    cli.fails("balance", typo, code="bad_address", rc=2)
    cli.fails("send", "1.0000000001", other, name="me", code="invalid_amount", rc=2)
    assert "cannot be negative" in cli.fails("send", "-1", other, name="me", code="invalid_amount", rc=2)
    cli.fails("send", "0", other, name="me", code="invalid_amount", rc=2)
    cli.fails("send-wh", "0.0005", other, name="me", code="invalid_amount", rc=2)  # half a Wh
    cli.fails("send-wh", "1.5Wh", other, name="me", code="invalid_amount", rc=2)
    cli.fails("order", "buy", "--kwh", "1", "--price-per-kwh", "0.0000001", name="me", code="invalid_amount", rc=2)
    cli.fails("offer", "--kwh", "1", "--price-per-kwh", "1", "--window-end", "yesterday", name="me",
              code="invalid_window", rc=2)
    cli.fails("offer", "--kwh", "1", "--price-per-kwh", "1", "--window-start", "+2h", "--window-end", "+1h",
              name="me", code="invalid_window", rc=2)
    cli.fails("send", "1", name="me", code="usage", rc=2)
    cli.fails("order", "hold", "--kwh", "1", "--price-per-kwh", "1", name="me", code="usage", rc=2)
    cli.fails("frobnicate", code="usage", rc=2)
    cli.fails("trade", "abc", code="bad_id", rc=2)
    # the node is unreachable
    nowhere = f"http://127.0.0.1:{free_port()}"
    cli.fails("balance", name="me", node=nowhere, code="node_unreachable", rc=3)
    cli.fails("send", "1", other, name="me", node=nowhere, code="node_unreachable", rc=3)
    # refused by the ledger, with the ledger's reason
    assert "balance 0 coin < amount 1 coin" in cli.fails("send", "1", other, name="empty",
                                                         code="insufficient_funds", rc=1)
    assert "balance 1000 coin < amount 5000 coin" in cli.fails("send", "5000", other, name="me",
                                                               code="insufficient_funds", rc=1)
    cli.fails("order", "buy", "--kwh", "1000", "--price-per-kwh", "1000", name="me", code="insufficient_funds", rc=1)
    assert "balance 0 coin < fee" in cli.fails("cancel-order", "33" * 32, name="empty", code="insufficient_funds")
    # the ledger's own check, in its words (energy is in Wh there)
    assert "holds 0 kWh (0 Wh), needs 1 kWh (1000 Wh)" in cli.fails("send-wh", "1", other, name="me", code="insufficient_wh", rc=1)
    cli.fails("--fee", "0.000000001", "send", "1", other, name="me", code="fee_too_low", rc=1)
    cli.fails("deliver", "11" * 32, "1", name="me", code="unknown_trade", rc=1)
    cli.fails("trade", "11" * 32, code="not_found", rc=1)
    cli.fails("accept", "22" * 32, name="me", code="unknown_offer", rc=1)
    cli.fails("cancel-order", "33" * 32, name="me", code="unknown_order", rc=1)
    cli.fails("meter", "show", "44" * 16, code="not_found", rc=1)
    pem = tmp_path / "m.pem"
    pem.write_bytes(MeterKey.generate().public_pem())
    cli.fails("meter", "enroll", "--pubkey", str(pem), "--owner", me, "--kind", "generation", "--rated-w", "1000",
              "--interval", "900", name="me", code="not_authority", rc=1)
    cli.fails("meter", "enroll", "--pubkey", str(tmp_path / "missing.pem"), "--owner", me, "--kind", "generation",
              "--rated-w", "1000", "--interval", "900", name="me", code="usage", rc=2)
    (tmp_path / "junk.pem").write_text("not a key")
    cli.fails("meter", "enroll", "--pubkey", str(tmp_path / "junk.pem"), "--owner", me, "--kind", "generation",
              "--rated-w", "1000", "--interval", "900", name="me", code="bad_meter_key", rc=2)
    cli.fails("redeem", "1", name="me", code="exceeds_consumption", rc=1)
    # a bounded wait: an unknown transaction is reported after --timeout, not waited for forever
    started = time.monotonic()
    cli.fails("--timeout", "1", "--wait", "tx", "55" * 32, code="timeout", rc=3)
    assert time.monotonic() - started < 15

    # two buyers race for the whole of one offer: whoever is second gets `offer_closed`, whether the wallet,
    # the node's admission or the block builder notices (test_wait_reports_a_rejection_after_admission
    # pins down the last of these)
    import_key(cli, tmp_path, "rival", net.net.accounts[5])
    import_key(cli, tmp_path, "seller", net.net.accounts[6])
    offer = cli.ok("--wait", "offer", "--kwh", "0.001", "--price-per-kwh", "1", "--window-end", "+5m",
                   name="seller")
    first = cli.ok("accept", offer["offer_id"], name="me")  # no --wait: returns while pending
    assert first["status"] == "pending"
    cli.fails("--wait", "accept", offer["offer_id"], name="rival", code="offer_closed", rc=1)
    included = cli.ok("--wait", "tx", first["txid"], name="me")  # a tx is its signer's to read (ADR 012)
    assert included["status"] == "included" and included["height"] >= 1
    cli.fails("cancel", offer["offer_id"], name="seller", code="offer_closed", rc=1)


def test_concurrent_wallets_of_one_key_find_free_nonces(net: NodeNet, tmp_path: Path) -> None:
    """Three wallet processes send from one key at once; each ends in a block with its own nonce."""
    cli = WalletCli(tmp_path / "keys", net.authorities[0].url)
    me = import_key(cli, tmp_path, "me", net.net.accounts[5])
    to = net.net.accounts[6].address_text
    before = cli.balance("me")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWH_")}
    env.update(PYTHONPATH=str(REPO), KWH_WALLET_FAST_KDF="1", KWH_WALLET_PASSPHRASE=PASSPHRASE)
    argv = [sys.executable, "-m", "wallet", "--keystore", str(cli.keystore), "--node", cli.node_url, "--name", "me",
            "--json", "--wait", "--timeout", str(WAIT_S), "send"]
    procs = [subprocess.Popen(argv + [f"0.00000000{i}", to], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL) for i in (1, 2, 3)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
        assert proc.returncode == 0 and err == "", err
        results.append(json.loads(out))
    assert sorted(r["nonce"] for r in results) == [before["next_nonce"] + i for i in range(3)]
    assert all(r["status"] == "included" for r in results)
    after = cli.balance("me")
    assert after["coin"] == before["coin"] - 6 - 3 * net.net.genesis.min_fee and after["address"] == me


def test_wait_reports_a_rejection_after_admission(node_net: Any, tmp_path: Path) -> None:
    """A tx the node admitted but the block refused: --wait ends with the ledger's reason for it.

    The node judges a pending tx against the head state, so a second spend of the same coin is admitted
    while the first is pending; the block applies the first and refuses the second. Slow blocks (3 s) leave
    the time to get both into one mempool.
    """
    net = node_net(authorities=1, observers=0, accounts=2, spare_observers=0, block_interval_ms=3000)
    node = net.authorities[0]
    cli = WalletCli(tmp_path / "keys", node.url)
    import_key(cli, tmp_path, "me", net.net.accounts[0])
    to = net.net.accounts[1].address
    start = get(node, "/status")["height"]
    wait_until(lambda: get(node, "/status")["height"] > start, 20, 0.02, "a new block")  # a fresh 3 s slot
    first = sign_tx(net.net.accounts[0], net.chain_id, 0, net.net.genesis.min_fee, Transfer(to, 600 * COIN))
    assert post_tx(node, first)[0] == 200
    line = cli.fails("--wait", "send", "600", net.net.accounts[1].address_text, name="me",
                     code="insufficient_funds", rc=1)
    assert "(transaction " in line, "refused at admission, not in block building: the slot was too short"
    txid = line.rsplit("(transaction ", 1)[1].rstrip(")")
    assert get(node, f"/tx/{txid}")["status"] == "rejected"
    shown = cli.ok("tx", txid, name="me")  # a query: the status, exit 0
    assert (shown["status"], shown["reason"]) == ("rejected", "insufficient_funds")
    cli.fails("--wait", "tx", txid, name="me", code="insufficient_funds", rc=1)  # waiting for it: an error
    assert get(node, f"/tx/{first.txid.hex()}")["status"] == "included"
