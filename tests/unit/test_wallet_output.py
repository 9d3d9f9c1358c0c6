"""wallet output for people: id prefixes, 80-column tables, one unit per quantity, clear usage errors.

These run the real CLI in-process (`wallet.cli.main`) where no node is needed, and the pure helpers
directly; the node-backed paths are in tests/functional/test_wallet.py and test_readme.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from wallet.cli import humanize, main
from wallet.config import ConfigError, load_config
from wallet.context import Wallet
from wallet.describe import describe
from wallet.output import CliError, resolve_id, short_address, short_id

IDS = ["3ecc08f2" + "a" * 56, "3ecc08f2" + "b" * 56, "77aa0011" + "c" * 56]
ADDRESS = "kwh0bea40a2ac03787f66fdaec9a5552fd77802858ed101b7cd"


def error(exc: pytest.ExceptionInfo[CliError]) -> tuple[str, str]:
    return exc.value.code, exc.value.detail


def test_a_unique_prefix_of_eight_or_more_resolves() -> None:
    assert resolve_id("77aa0011", 32, "offer id", lambda: IDS) == IDS[2]
    assert resolve_id("3ECC08F2B", 32, "offer id", lambda: IDS) == IDS[1]  # case does not matter
    asked: list[int] = []
    assert resolve_id(IDS[0], 32, "offer id", lambda: asked.append(1) or []) == IDS[0]  # type: ignore[func-returns-value]
    assert asked == [], "a whole id needs no lookup"


def test_an_ambiguous_prefix_says_so_and_lists_matches() -> None:
    with pytest.raises(CliError) as exc:
        resolve_id("3ecc08f2", 32, "offer id", lambda: IDS)
    code, detail = error(exc)
    assert code == "ambiguous_id" and "matches 2" in detail and "3ecc08f2aaaa" in detail and "3ecc08f2bbbb" in detail
    assert exc.value.exit_code == 2


def test_prefix_too_short_unknown_or_not_hex() -> None:
    with pytest.raises(CliError) as exc:
        resolve_id("3ecc08", 32, "offer id", lambda: IDS)
    assert error(exc)[0] == "bad_id" and "at least 8" in error(exc)[1]
    with pytest.raises(CliError) as exc:
        resolve_id("deadbeef", 16, "meter id", lambda: IDS)
    assert error(exc)[0] == "unknown_meter" and exc.value.exit_code == 1
    with pytest.raises(CliError) as exc:
        resolve_id("xyz12345", 32, "trade id", lambda: IDS)
    assert error(exc)[0] == "bad_id"
    with pytest.raises(CliError) as exc:
        resolve_id("a" * 65, 32, "txid", lambda: IDS)
    assert error(exc)[0] == "bad_id"


def test_short_forms() -> None:
    assert short_id(IDS[0]) == "3ecc08f2aa" and short_id(IDS[0], full=True) == IDS[0]
    assert short_address(ADDRESS) == "kwh0bea40..b7cd" and short_address(ADDRESS, full=True) == ADDRESS


def test_tables_fit_80_columns_without_splitting_ids(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("KWH_WALLET_CONFIG", "/nonexistent/config.toml")
    w = Wallet(None, None, None, False, False, 10.0, None)
    offer = {"offer_id": IDS[0], "seller": ADDRESS, "remaining": 150, "wh": 5000, "price_per_wh": 25_500_000,
             "window_start": 1_767_225_600, "window_end": 1_767_229_200, "source": "solar", "status": "cancelled"}
    from wallet.cmd_market import _offer_rows
    w.table(None, ["offer", "seller", "kWh left", "coin/kWh", f"window ({w.zone()})", "status"],
            _offer_rows(w, [offer, dict(offer, offer_id=IDS[2])]))
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 3 and all(len(line) <= 80 for line in lines), out
    assert "3ecc08f2aa" in lines[1] and "kwh0bea40..b7cd" in lines[1] and "01-01 00:00 +60m" in lines[1], out
    # with --full-ids nothing is shortened (and nothing is folded into the next line either)
    w.full_ids = True
    w.table(None, ["offer", "seller"], [[w.id(IDS[0]), w.addr(ADDRESS)]])
    full = capsys.readouterr().out
    assert IDS[0] in full and ADDRESS in full


def test_units_said_as_typed() -> None:
    assert humanize("over_delivery", "only 219 Wh left to deliver") == "only 0.219 kWh (219 Wh) left to deliver"
    assert humanize("fee_too_low", "fee 0 below minimum 1000") == \
        "fee 0 coin below the minimum 0.000001 coin"
    assert humanize("insufficient_wh", "holds 150 Wh, needs 5000") == \
        "holds 0.15 kWh (150 Wh), needs 5 kWh (5000 Wh)"
    assert humanize("x", "already 0.3 kWh (300 Wh)") == "already 0.3 kWh (300 Wh)"  # never twice


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith("KWH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("KWH_WALLET_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("KWH_WALLET_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("KWH_NODE", "http://127.0.0.1:9")  # nothing listens on the discard port
    return tmp_path


def test_wording_of_usage_errors(capsys: pytest.CaptureFixture[str], offline: Path) -> None:
    rc, out, err = run(capsys, "send", "-1", ADDRESS)
    assert rc == 2 and err.startswith("error: invalid_amount: amounts cannot be negative (-1)") and out == ""
    rc, _out, err = run(capsys, "balance", "--node", "http://127.0.0.1:9", ADDRESS)  # --node after the command
    assert rc == 3 and err.startswith("error: node_unreachable:"), err
    assert "make devnet" in err and "--node" in err and len(err.splitlines()) == 1
    rc, _out, err = run(capsys, "meter", "show", "3ecc08")
    assert rc == 2 and "at least 8 hex characters" in err


def test_import_key_says_imported_and_refuses_the_same_key_twice(capsys: pytest.CaptureFixture[str],
                                                                 offline: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger.keys import AccountKey
    from node.keyfile import save_key
    monkeypatch.setenv("KWH_WALLET_PASSPHRASE", "pw")
    monkeypatch.setenv("KWH_WALLET_FAST_KDF", "1")
    key = AccountKey.generate()
    save_key(offline / "k.json", key)
    rc, out, err = run(capsys, "import-key", str(offline / "k.json"), "--name", "one")
    assert rc == 0 and out.startswith("imported key 'one'"), (out, err)
    rc, out, err = run(capsys, "import-key", str(offline / "k.json"), "--name", "two")
    assert rc == 4 and "already in the keystore as 'one'" in err and out == ""


def test_every_command_has_examples(capsys: pytest.CaptureFixture[str], offline: Path) -> None:
    from wallet.cli import cli
    import click
    commands: list[list[str]] = []
    for name, cmd in cli.commands.items():
        if isinstance(cmd, click.Group):
            commands += [[name, sub] for sub in cmd.commands]
        commands.append([name])
    assert len(commands) > 30
    for argv in commands:
        rc, out, _err = run(capsys, *argv, "--help")
        assert rc == 0 and "Examples:" in out, argv


def test_a_meter_key_for_enrollment_must_be_public(capsys: pytest.CaptureFixture[str], offline: Path) -> None:
    rc, out, err = run(capsys, "meter", "keygen", "--out", str(offline / "m"))
    assert rc == 0 and (offline / "m.pem").stat().st_mode & 0o777 == 0o600 and (offline / "m.pub.pem").exists()
    rc, _out, err = run(capsys, "meter", "keygen", "--out", str(offline / "m"))
    assert rc == 2 and "never overwritten" in err
    rc, _out, err = run(capsys, "--name", "x", "meter", "enroll", "--pubkey", str(offline / "m.pem"), "--owner",
                        ADDRESS, "--kind", "both", "--rated-w", "1000", "--interval", "900")
    assert rc == 2 and err.startswith("error: bad_meter_key:") and "PRIVATE key" in err


def test_config_file(offline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = offline / "config.toml"
    path.write_text('node = "http://127.0.0.1:8702"\nname = "alice"\nfallback_nodes = ["http://127.0.0.1:8703"]\n')
    cfg = load_config(path)
    assert (cfg.node, cfg.name, cfg.fallback_nodes) == ("http://127.0.0.1:8702", "alice", ("http://127.0.0.1:8703",))
    w = Wallet(None, None, None, False, False, 10.0, None)
    assert w.node_url == "http://127.0.0.1:9"  # $KWH_NODE wins over the file
    assert w.name == "alice" and w.fallback_nodes == ("http://127.0.0.1:8703",)
    path.write_text('nod = "typo"\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(path)
    rc, _out, err = run(capsys, "config")
    assert rc == 2 and err.startswith("error: bad_config:")


def test_history_says_who_did_what() -> None:
    me, other = "kwhME", "kwhOTHER"
    taken = describe({"kind": "accept_offer", "sender": other, "offer_id": "ab" * 32, "wh": 300, "fee": 1000}, me)
    assert taken.direction == "in" and "your offer" in taken.what and taken.counterparty == other
    assert taken.fee is None  # the buyer paid that fee, not you
    mine = describe({"kind": "accept_offer", "sender": me, "offer_id": "ab" * 32, "wh": 300, "fee": 1000}, me)
    assert mine.direction == "out" and mine.what.startswith("accepted") and mine.fee == 1000
    paid = describe({"kind": "transfer", "sender": other, "to": me, "amount": 1_500_000_000, "fee": 1000}, me)
    assert (paid.direction, paid.amount, paid.counterparty) == ("in", "1.5 coin", other)


def _at_a_terminal(offline: Path, keys: bytes) -> tuple[int, str]:
    """Run `kwh-wallet new` with a pseudo-terminal as stdin/stdout/stderr, typing `keys`; (exit code, screen)."""
    import pty
    import subprocess
    import sys
    import time
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWH_")}
    env.update(KWH_WALLET_DIR=str(offline / "keys"), KWH_WALLET_CONFIG=str(offline / "none.toml"),
               KWH_WALLET_FAST_KDF="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    def controlling_terminal() -> None:  # Ctrl-C typed at the terminal becomes SIGINT, as in a shell
        import fcntl
        import termios
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "wallet", "new", "--name", "tty"], stdin=follower,
                            stdout=follower, stderr=follower, env=env, preexec_fn=controlling_terminal)
    os.close(follower)
    screen = b""
    try:
        deadline = time.monotonic() + 30
        while b"Passphrase" not in screen and b"passphrase" not in screen and time.monotonic() < deadline:
            screen += os.read(leader, 4096)
        os.write(leader, keys)
        rc = proc.wait(timeout=30)
        try:
            while True:
                chunk = os.read(leader, 4096)
                if not chunk:
                    break
                screen += chunk
        except OSError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return rc, screen.decode(errors="replace")


def test_an_empty_passphrase_is_refused_in_words(offline: Path) -> None:
    rc, screen = _at_a_terminal(offline, b"\r")
    assert rc == 4 and "error: empty_passphrase:" in screen, screen
    assert not (offline / "keys" / "tty.json").exists()


def test_ctrl_c_at_the_prompt_is_an_interruption(offline: Path) -> None:
    rc, screen = _at_a_terminal(offline, b"\x03")
    assert rc == 130 and "error: interrupted:" in screen and "no_passphrase" not in screen, screen


def test_refunds_and_fills_in_history_are_not_your_own_accept_or_order() -> None:
    from wallet.describe import describe_fill, describe_refund
    refund = describe_refund({"trade_id": "cd" * 32, "seller": "kwhS", "wh": 300, "delivered": 200,
                              "refunded": 2_500_000_000})
    assert (refund.direction, refund.amount, refund.counterparty) == ("in", "2.5 coin", "kwhS")
    assert "0.1 kWh not delivered" in refund.what
    fill = describe_fill({"order_id": "ef" * 32, "side": "sell", "filled_wh": 100, "paid_coin": 4_000_000_000})
    assert (fill.direction, fill.amount) == ("out", "0.1 kWh") and "for 4 coin so far" in fill.what
