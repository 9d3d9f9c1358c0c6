"""The dashboard in a real headless Chromium against a running `kwh-devnet up` (2 authorities, 1 observer,
6 meters, market agents; six simulated hours at x1440, then real time), shared by the module.

Every page loads with no console error, shows the numbers the JSON API gives (read right before and
after, so a live chain can only have moved between them), draws its charts (SVG shapes of non-zero
size), search leads to the right page, and the overview follows new blocks without a reload.
A screenshot of each page goes to tests/artifacts/dashboard/ (git-ignored).

Without /usr/bin/chromium, chromedriver or selenium the module is skipped with one line saying so.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

import browser
from framework import REPO, read_credential, wait_until
from ledger.keys import AccountKey
from node.keyfile import load_key

pytestmark = pytest.mark.functional

WHY_NOT = browser.missing()
if WHY_NOT:
    pytest.skip(f"dashboard browser tests skipped: {WHY_NOT}", allow_module_level=True)

ARTIFACTS = REPO / "tests" / "artifacts" / "dashboard"


def get(url: str, path: str, key: AccountKey | None = None) -> Any:
    """GET a JSON route; with `key`, signed with a read credential of that key (ADR 012)."""
    headers = {"Authorization": read_credential(url, key, "GET", path)} if key is not None else {}
    with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers), timeout=10) as resp:
        return json.loads(resp.read())


class Devnet:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, directory: Path, out: Path,
                 authority: AccountKey) -> None:
        self.proc, self.url, self.dir, self.out = proc, url, directory, out
        self.authority = authority  # reads everything, like the signed-in browser of most tests

    def api(self, path: str) -> Any:
        return get(self.url, path, self.authority)


def authority_key(directory: Path, url: str) -> AccountKey:
    """The key of one of the devnet's authorities (from its node key files)."""
    current = get(url, "/authorities")["authorities"]
    return next(k for k in map(load_key, sorted(directory.rglob("keys/nodes/*.json"))) if k.public.hex() in current)


def sign_in(driver: Any, devnet: Devnet, link: str, role: str) -> None:
    """Open a sign-in link (what `kwh-wallet dashboard` prints) and wait for the page to read as `role`."""
    browser.open_page(driver, link)
    wait_until(lambda: driver.find_element("id", "reader-role").text == role, 15, 0.2,
               f"the dashboard reads as {role}")
    assert "#/signin/" not in driver.current_url, "the one-use credential left the address bar"


def authority_link(devnet: Devnet) -> str:
    cred = read_credential(devnet.url, devnet.authority, "POST", "/dashboard/session")
    return f"{devnet.url}/#/signin/{urllib.parse.quote(cred, safe='')}"


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    from test_devnet import free_base_port
    root = tmp_path_factory.mktemp("dash")
    out = root / "up.out"
    base = free_base_port(3)
    cmd = [sys.executable, "-m", "devnet", "up", "--dir", str(root / "devnet"), "--nodes", "2", "--observers", "1",
           "--meters", "6", "--traders", "1", "--base-port", str(base), "--speed", "1440", "--history-hours", "6",
           "--block-interval-ms", "500", "--min-difficulty", "16", "--interval", "900", "--seed", "15",
           "--window", "10"]
    with out.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{base}"
    try:
        line = wait_until(lambda: re.search(r"^dashboard: (\S+)", out.read_text(), re.M), 40, 0.2,
                          "kwh-devnet up prints the dashboard URL")
        assert line.group(1) == url + "/"
        # enough of a day: energy minted, trades made, orders on the book
        auditor = authority_key(root / "devnet", url)
        wait_until(lambda: get(url, "/energy")["minted_wh"] > 0 and get(url, "/trades", auditor)["trades"]
                   and get(url, "/status")["height"] >= 30, 60, 0.5, "30 blocks, readings minted and trades made")
        yield Devnet(proc, url, root / "devnet", out, authority_key(root / "devnet", url))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # `up` stops its agents and nodes in order
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture(scope="module")
def driver(devnet: Devnet) -> Iterator[Any]:
    """A browser signed in as an authority: the pages show everything, as the API read as one does."""
    d = browser.chromium()
    try:
        sign_in(d, devnet, authority_link(devnet), "authority")
        yield d
    finally:
        d.quit()


def page(driver: Any, devnet: Devnet, fragment: str, shot: str | None = None) -> None:
    """Open a dashboard page, check the console stayed clean, save a screenshot."""
    browser.open_page(driver, devnet.url + "/" + fragment)
    if shot:
        browser.screenshot(driver, ARTIFACTS / f"{shot}.png")
    errors = browser.console_errors(driver)
    assert not errors, f"console errors on {fragment or '/'}: {errors}"
    shown = driver.find_element("id", "main").text
    assert not re.search(r"\b(null|undefined|NaN|Invalid Date)\b", shown), f"a value went missing on {fragment}"


def text(driver: Any, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def value(driver: Any, element_id: str) -> str:
    return driver.find_element("id", element_id).get_attribute("data-value")


def drawn_shapes(driver: Any, svg_id: str) -> int:
    """SVG bars of non-zero size and lines of non-zero length (a flat line has no height) in the chart."""
    return driver.execute_script("""
        const svg = document.getElementById(arguments[0]);
        if (!svg) return -1;
        let n = 0;
        for (const e of svg.querySelectorAll('rect')) { const b = e.getBBox(); if (b.width > 0 && b.height > 0) n++; }
        for (const e of svg.querySelectorAll('path')) { const b = e.getBBox(); if (b.width > 0 || b.height > 0) n++; }
        return n;""", svg_id)


def steady(devnet: Devnet, path: str, load: Any, tries: int = 5) -> Any:
    """Load a page while the object at `path` does not change (the chain is live): the API's answer,
    the same before and after the page was drawn, which the page must then show."""
    for _ in range(tries):
        before = devnet.api(path)
        load()
        if devnet.api(path) == before:
            return before
    raise AssertionError(f"{path} changed during each of {tries} page loads")


def rows(driver: Any, table_id: str) -> list[Any]:
    return driver.find_elements("css selector", f"#{table_id} tbody tr")


def test_overview_matches_status_and_follows_new_blocks(driver: Any, devnet: Devnet) -> None:
    before = devnet.api("/status")
    page(driver, devnet, "", "overview")
    after = devnet.api("/status")
    assert text(driver, "ov-chain") == before["chain_id"]
    shown = int(value(driver, "ov-height"))
    assert before["height"] <= shown <= after["height"]
    if after.get("finalized_height") is None:
        assert text(driver, "ov-finalized") == "–"
    else:
        assert before.get("finalized_height", 0) <= int(value(driver, "ov-finalized")) <= after["finalized_height"]
    assert text(driver, "ov-peers").endswith(f"/ {len(after['peers'])}")
    assert len(rows(driver, "ov-peer-table")) == len(after["peers"])
    first = rows(driver, "ov-blocks")[0].find_elements("tag name", "td")
    assert int(first[0].text.replace(",", "")) == shown
    assert len(rows(driver, "ov-txs")) == 10
    # live: a new block shows without a reload (the marker would vanish with one)
    driver.execute_script("window.__still_here = true")
    wait_until(lambda: int(value(driver, "ov-height")) > shown, 15, 0.2, "the overview shows a newer block")
    assert driver.execute_script("return window.__still_here") is True
    assert not browser.console_errors(driver)


def test_blocks_block_and_transaction_pages(driver: Any, devnet: Devnet) -> None:
    page(driver, devnet, "#/blocks", "blocks")
    assert len(rows(driver, "blocks-table")) == 25
    older = driver.find_element("id", "blocks-older").get_attribute("href")
    page(driver, devnet, older[older.index("#"):])
    top = int(rows(driver, "blocks-table")[0].find_elements("tag name", "td")[0].text.replace(",", ""))
    assert top == int(older.rsplit("=", 1)[1]) - 1

    # a block with transactions: its header and its transactions as /blocks/{height} gives them
    height = devnet.api("/status")["height"]
    block = next(b for b in (devnet.api(f"/blocks/{h}") for h in range(height, 0, -1)) if len(b["txs"]) >= 2)
    page(driver, devnet, f"#/block/{block['height']}", "block")
    assert text(driver, "block-hash") == block["hash"]
    assert text(driver, "block-height") == str(block["height"])
    assert text(driver, "block-hashes").replace(",", "") == str(block["hashes"])
    assert len(rows(driver, "block-txs")) == len(block["txs"])

    txid = block["txs"][0]["txid"]
    tx = devnet.api(f"/tx/{txid}")
    page(driver, devnet, f"#/tx/{txid}", "tx")
    assert text(driver, "tx-id") == txid
    assert text(driver, "tx-kind") == tx["tx"]["kind"]
    assert text(driver, "tx-status").startswith(tx["status"])


def search(driver: Any, q: str) -> None:
    driver.execute_script("document.body.dataset.ready = '0'")
    box = driver.find_element("id", "search-q")
    box.clear()
    box.send_keys(q)
    driver.find_element("css selector", "#search button").click()


def test_search_leads_to_each_kind_of_page(driver: Any, devnet: Devnet) -> None:
    page(driver, devnet, "")
    block = devnet.api("/blocks/3")
    meter = devnet.api("/meters")["meters"][0]
    lot = next(l for w in json.loads((devnet.dir / "devnet.json").read_text())["wallets"]
               for l in devnet.api(f"/accounts/{w['address']}/lots")["lots"])
    tx = devnet.api("/dashboard/api/txs?limit=1")["txs"][0]
    cases = [("3", "#/block/3", "block-hash", block["hash"]),
             (block["hash"], f"#/block/{block['hash']}", "block-height", "3"),
             (tx["txid"], f"#/tx/{tx['txid']}", "tx-id", tx["txid"]),
             (meter["owner"], f"#/account/{meter['owner']}", "acct-address", meter["owner"]),
             (meter["meter_id"].upper(), f"#/meter/{meter['meter_id']}", "meter-id", meter["meter_id"]),
             (lot["lot_id"], f"#/lot/{lot['lot_id']}", "lot-id", lot["lot_id"])]
    for q, fragment, element_id, expected in cases:
        search(driver, q)
        wait_until(lambda: driver.current_url.endswith(fragment), 10, 0.1, f"search {q} leads to {fragment}")
        browser.wait_drawn(driver)
        assert text(driver, element_id) == expected
    assert not browser.console_errors(driver)
    search(driver, "no-such-thing")
    wait_until(lambda: driver.find_elements("id", "search-error"), 10, 0.1, "a search that finds nothing says so")
    assert "nothing on this chain matches" in text(driver, "search-error")
    browser.console_errors(driver)  # the 404 of that search is the browser's own log line; clear it


def test_account_lot_and_meter_pages(driver: Any, devnet: Devnet) -> None:
    wallets = json.loads((devnet.dir / "devnet.json").read_text())["wallets"]
    addr = max(wallets, key=lambda w: len(devnet.api(f"/accounts/{w['address']}/lots")["lots"]))["address"]
    account = steady(devnet, f"/accounts/{addr}", lambda: page(driver, devnet, f"#/account/{addr}", "account"))
    assert text(driver, "acct-address") == addr
    for field, element_id in (("coin", "acct-coin"), ("wh", "acct-wh"), ("locked_coin", "acct-locked-coin"),
                              ("locked_wh", "acct-locked-wh"), ("nonce", "acct-nonce")):
        assert int(value(driver, element_id)) == account[field], field
    lots = rows(driver, "acct-lots")
    assert 0 < len(lots) <= 20
    assert len(rows(driver, "acct-history")) > 0
    # each lot links to its meter and the reading that minted it
    links = lots[0].find_elements("tag name", "a")
    hrefs = [a.get_attribute("href") for a in links]
    assert any("#/meter/" in h for h in hrefs) and any("#/tx/" in h for h in hrefs)
    lot_href = next(h for h in hrefs if "#/lot/" in h)
    lot_id = lot_href.rsplit("/", 1)[1]
    page(driver, devnet, f"#/lot/{lot_id}", "lot")
    lot = devnet.api(f"/lots/{lot_id}")["lot"]
    assert lot["meter_id"] in text(driver, "lot-provenance") and lot["reading_id"] in text(driver, "lot-provenance")

    meter_id = lot["meter_id"]
    meter = steady(devnet, f"/meters/{meter_id}", lambda: page(driver, devnet, f"#/meter/{meter_id}", "meter"))
    assert text(driver, "meter-id") == meter_id
    for field, element_id in (("export_register", "meter-export"), ("import_register", "meter-import"),
                              ("counter", "meter-counter")):
        assert int(value(driver, element_id)) == meter[field], field
    assert drawn_shapes(driver, "meter-chart") > 0
    assert len(rows(driver, "meter-readings")) > 0


def test_energy_page_numbers_and_charts(driver: Any, devnet: Devnet) -> None:
    e0 = devnet.api("/energy")
    page(driver, devnet, "#/energy", "energy")
    e1 = devnet.api("/energy")
    for field, element_id in (("minted_wh", "en-minted"), ("consumed_wh", "en-consumed"),
                              ("redeemed_wh", "en-redeemed"), ("settled_wh", "en-settled")):
        assert e0[field] <= int(value(driver, element_id)) <= e1[field], field
    assert e0["total"]["energy_j"] <= float(value(driver, "en-energy")) <= e1["total"]["energy_j"]
    for chart in ("chart-metered", "chart-hourly", "chart-ratio", "chart-mining", "chart-difficulty",
                  "chart-node-breakdown", "chart-node-blocks"):
        assert drawn_shapes(driver, chart) > 0, chart
    # what verifying costs: this node's whole energy (it only grows), and the network's as N times it
    shown = float(value(driver, "en-node-energy"))
    assert e0["node"]["energy_j"] <= shown <= e1["node"]["energy_j"]
    assert float(value(driver, "en-network-energy")) == pytest.approx(shown * e1["node"]["validators"])
    assert e1["node"]["validators"] >= 2
    assert float(value(driver, "en-whole-vs-hashing")) > 1  # verifying costs more than the proposer's hashing
    # the hourly series add up to the totals of the blocks they cover (here: the whole chain)
    series = devnet.api("/dashboard/api/energy?hours=168")
    assert series["indexed_from"] <= 1
    assert sum(h["minted_wh"] for h in series["by_block_hour"]) == series["totals"]["minted_wh"]
    assert sum(h["settled_wh"] for h in series["by_block_hour"]) == series["totals"]["settled_wh"]
    assert sum(h["export_wh"] for h in series["by_interval_hour"]) == series["totals"]["minted_wh"]
    assert sum(h["energy_j"] for h in series["by_block_hour"]) == pytest.approx(series["totals"]["energy_j"])


def test_market_page(driver: Any, devnet: Devnet) -> None:
    newest_before = max(t["height"] for t in devnet.api("/trades")["trades"])
    page(driver, devnet, "#/market", "market")
    market = devnet.api("/dashboard/api/market?limit=20")
    assert drawn_shapes(driver, "chart-depth") > 0 or not (market["depth"]["buys"] or market["depth"]["sells"])
    trades = rows(driver, "mk-trades")
    assert 0 < len(trades) <= 20
    trade_id = trades[0].find_element("tag name", "a").get_attribute("href").rsplit("/", 1)[1]
    trade = devnet.api(f"/trades/{trade_id}")
    cells = [td.text for td in trades[0].find_elements("tag name", "td")]
    assert cells[3].replace(",", "") == str(trade["wh"])
    assert float(cells[4].replace(",", "")) * 1e9 == pytest.approx(trade["escrow"])
    # a trade's page is the page of the tx that opened it, with the trade's escrow and deliveries
    status_before = devnet.api(f"/trades/{trade_id}")["status"]
    page(driver, devnet, f"#/tx/{trade_id}", "trade")
    assert text(driver, "tx-kind") == "accept_offer"
    assert text(driver, "trade-status") in (status_before, devnet.api(f"/trades/{trade_id}")["status"])
    fields = text(driver, "trade-fields")
    assert trade["seller"] in fields and trade["buyer"] in fields
    page(driver, devnet, "#/market")
    shown = sum(int(value(driver, i)) for i in ("mk-open", "mk-delivered", "mk-settled"))
    assert shown >= len(trades)
    # the trades listed are the newest, newest first
    listed = [t["height"] for t in market["trades"]]
    assert listed == sorted(listed, reverse=True) and listed[0] >= newest_before


def test_public_view_hides_personal_data_and_an_owner_signs_in_with_the_wallet(driver: Any, devnet: Devnet,
                                                                               tmp_path: Path) -> None:
    """ADR 012 in the browser: signed out, an account, a meter's readings, a transfer's body and the trades
    are hidden with a note saying how to sign in; `kwh-wallet dashboard` signs an owner in, who sees its
    own account and not another's; the page never holds the key, and the sign-in link works once."""
    wallets = json.loads((devnet.dir / "devnet.json").read_text())["wallets"]
    owner, other = wallets[0], wallets[1]
    meter_id = devnet.api("/meters")["meters"][0]["meter_id"]
    transfer = next(t for t in devnet.api("/dashboard/api/txs?limit=50")["txs"] if t["kind"] != "vote")
    driver.find_element("id", "sign-out").click()
    wait_until(lambda: text(driver, "reader-role") == "public view", 10, 0.2, "signed out")
    page(driver, devnet, f"#/account/{owner['address']}", "public-account")
    assert "personal data" in text(driver, "acct-private") and not driver.find_elements("id", "acct-coin")
    page(driver, devnet, f"#/meter/{meter_id}", "public-meter")
    assert text(driver, "meter-id") == meter_id and driver.find_elements("id", "meter-private")
    assert not driver.find_elements("id", "meter-readings")
    page(driver, devnet, f"#/tx/{transfer['txid']}")
    assert text(driver, "tx-status") and driver.find_elements("id", "tx-private")
    page(driver, devnet, "#/market")
    assert [r.text for r in rows(driver, "mk-trades")] == ["none"] and driver.find_elements("id", "mk-trades-private")
    assert int(value(driver, "mk-settled")) >= 0  # the counts stay public

    env = dict(os.environ, KWH_WALLET_PASSPHRASE="dashboard test")
    wallet = [sys.executable, "-m", "wallet", "--keystore", str(tmp_path / "ks"), "--node", devnet.url]
    subprocess.run(wallet + ["import-key", str(devnet.dir / owner["key_file"]), "--name", "me"], env=env,
                   check=True, capture_output=True, cwd=REPO)
    done = subprocess.run(wallet + ["--name", "me", "dashboard"], env=env, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip()
    assert link.startswith(devnet.url + "/#/signin/")
    sign_in(driver, devnet, link, "account")
    wait_until(lambda: driver.find_elements("id", "acct-coin"), 10, 0.2, "the owner lands on its account")
    mine = steady(devnet, f"/accounts/{owner['address']}",
                  lambda: page(driver, devnet, f"#/account/{owner['address']}", "owner-account"))
    assert int(value(driver, "acct-coin")) == mine["coin"]
    page(driver, devnet, f"#/account/{other['address']}")
    assert "another account" in text(driver, "acct-private")
    assert driver.execute_script("return document.cookie") == "", "the session cookie is HttpOnly"
    browser.open_page(driver, link)  # used once already: refused, and the page says why
    wait_until(lambda: driver.find_elements("id", "page-error"), 10, 0.2, "a used link is refused")
    assert "credential_replayed" in text(driver, "page-error")
    assert any("401" in e["message"] for e in browser.console_errors(driver))  # the refusal, and nothing else
    sign_in(driver, devnet, authority_link(devnet), "authority")  # as the other tests expect


def test_dashboard_views_are_bounded(devnet: Devnet) -> None:
    """Every list view answers one page: limits are capped, cursors continue, bad input is a 400."""
    answer = devnet.api("/dashboard/api/blocks?limit=100000")
    assert len(answer["blocks"]) == min(50, answer["head"] + 1)
    page1 = devnet.api("/dashboard/api/txs?limit=7")
    page2 = devnet.api(f"/dashboard/api/txs?limit=7&before={page1['next']}")
    assert len(page1["txs"]) == 7 and page2["txs"]
    ids1 = {t["txid"] for t in page1["txs"]}
    assert not ids1 & {t["txid"] for t in page2["txs"]}
    assert (page1["txs"][-1]["height"], page1["txs"][-1]["index"]) > (page2["txs"][0]["height"], page2["txs"][0]["index"])
    assert len(devnet.api("/dashboard/api/energy?hours=100000&blocks=100000")["blocks"]) <= 500
    for bad in ("/dashboard/api/blocks?limit=x", "/dashboard/api/blocks?limit=0", "/dashboard/api/blocks?before=",
                "/dashboard/api/blocks?before=-1", "/dashboard/api/blocks?before=99999999999999999999",
                "/dashboard/api/txs?before=1.x", "/dashboard/api/txs?before=%EF%BC%91", "/dashboard/api/search?q=",
                "/dashboard/api/search?q=kwh" + "0" * 500, "/dashboard/api/search?q=" + "ab" * 32,
                "/dashboard/api/search?q=%00%ff", "/dashboard/api/energy?hours=1.5",
                "/dashboard/api/meters/zz/readings", "/dashboard/api/meters/" + "00" * 16 + "/readings",
                "/dashboard/api/accounts/kwhnope/history", "/dashboard/api/accounts/kwhnope/lots?offset=-1",
                "/dashboard/static/..%2Fapi.py", "/dashboard/static/app.py", "/dashboard/static/nothere.js"):
        try:
            urllib.request.urlopen(devnet.url + bad, timeout=10)
            raise AssertionError(f"{bad} answered 200")
        except urllib.error.HTTPError as exc:
            assert exc.code in (400, 404), bad
            assert "error" in json.loads(exc.read()), bad
    for log in (devnet.dir / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert "request_failed" not in text and "dashboard_index_failed" not in text, log.name


def test_schemathesis_finds_nothing_in_the_dashboard_views(devnet: Devnet) -> None:
    """The views of GET /dashboard/openapi.json, fuzzed like the API (test_api_schema): positive and
    negative cases, no server error, documented statuses and shapes, and the node keeps producing."""
    import schemathesis
    from schemathesis import GenerationMode
    from test_api_schema import _fuzz, _has_inputs
    schema = schemathesis.openapi.from_url(devnet.url + "/dashboard/openapi.json")
    failures, runs = [], 0
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and not _has_inputs(op):
                continue
            runs += 1
            failure = _fuzz(op, mode, None)
            if failure:
                failures.append(failure)
    assert runs >= 15, f"only {runs} operation runs"
    assert not failures, "\n\n".join(failures)
    start = devnet.api("/status")["height"]
    wait_until(lambda: devnet.api("/status")["height"] > start, 15, 0.2, "blocks go on after the fuzzing")
    for log in (devnet.dir / "logs").glob("*.log"):
        assert "request_failed" not in log.read_text(errors="replace"), log.name
