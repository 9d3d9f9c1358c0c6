"""Coin and Wh transfers, nonces, fees to the proposer, redemption against metered consumption."""
from __future__ import annotations

import pytest

from ledger import errors as E
from ledger.chain import Chain
from ledger.keys import AccountKey, address_of
from ledger.state import lot_id_of
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, Net, advance_to, extend, gap_until, make_net, make_tx, rejection, \
    try_extend
from ledger.tx import COIN, Redeem, SignedTx, Transfer, TransferWh, sign_tx

GENESIS_S = GENESIS_MS // 1000
START = 1_000 * COIN
FEE = 1000


@pytest.fixture
def net() -> Net:
    return make_net(accounts=4, meters=1, meter_kind="both")


@pytest.fixture
def chain(net: Net) -> Chain:
    return net.chain()


def proposer_address(chain: Chain, height: int) -> bytes:
    return address_of(chain.block_at(height).header.proposer)


# ------------------------------------------------------------------------------------------- coin

def test_transfer_moves_exact_amounts_and_pays_the_proposer(chain: Chain, net: Net) -> None:
    a, b = net.accounts[0], net.accounts[1]
    tx = make_tx(chain, a, Transfer(b.address, 7 * COIN + 3), fee=2500)
    block = extend(chain, net, [tx])
    assert chain.account(a.address).coin == START - 7 * COIN - 3 - 2500
    assert chain.account(a.address).nonce == 1
    assert chain.account(b.address).coin == START + 7 * COIN + 3
    assert chain.account(b.address).nonce == 0
    assert address_of(block.header.proposer) == net.authorities[1].address  # in turn at height 1
    assert chain.account(net.authorities[1].address).coin == 2500
    assert chain.globals().fees == 2500
    assert [h[1:] for h in chain.history(b.address)] == [(tx.txid, "transfer")]
    assert chain.tx_location(tx.txid) == (1, block.hash, 0)


def test_fees_of_every_tx_go_to_that_blocks_proposer(chain: Chain, net: Net) -> None:
    a, b, c = net.accounts[:3]
    txs = [make_tx(chain, a, Transfer(b.address, 1), fee=1000), make_tx(chain, b, Transfer(c.address, 2), fee=2000),
           make_tx(chain, c, TransferWh(a.address, 1), fee=4000)]  # rejected: c holds no Wh, pays nothing
    block, rejected = try_extend(chain, net, txs)
    assert [r.reason for _t, r in rejected] == [E.INSUFFICIENT_WH]
    assert chain.account(address_of(block.header.proposer)).coin == 3000
    txs2 = [make_tx(chain, a, Transfer(c.address, 5), fee=10_000)]
    block2 = extend(chain, net, txs2)
    assert block2.header.proposer != block.header.proposer
    assert chain.account(address_of(block.header.proposer)).coin == 3000
    assert chain.account(address_of(block2.header.proposer)).coin == 10_000
    assert chain.account(c.address).coin == START + 2 + 5
    assert chain.account(c.address).nonce == 0
    assert chain.globals().fees == 13_000


def test_transfer_to_self_costs_only_the_fee(chain: Chain, net: Net) -> None:
    a = net.accounts[0]
    extend(chain, net, [make_tx(chain, a, Transfer(a.address, 5 * COIN))])
    assert chain.account(a.address).coin == START - FEE


def test_transfer_to_a_new_account_creates_it(chain: Chain, net: Net) -> None:
    fresh = AccountKey(bytes([7]) * 32)
    extend(chain, net, [make_tx(chain, net.accounts[0], Transfer(fresh.address, 3 * FEE))])
    assert chain.account(fresh.address).coin == 3 * FEE
    extend(chain, net, [make_tx(chain, fresh, Transfer(net.accounts[1].address, 2 * FEE))])  # can spend it
    assert chain.account(fresh.address).coin == 0
    assert chain.account(net.accounts[1].address).coin == START + 2 * FEE


def test_bad_nonce_replay(chain: Chain, net: Net) -> None:
    a, b = net.accounts[0], net.accounts[1]
    tx = make_tx(chain, a, Transfer(b.address, COIN))
    extend(chain, net, [tx])
    assert rejection(chain, net, tx).reason == E.BAD_NONCE
    block, rejected = try_extend(chain, net, [tx])
    assert block.txs == () and [r.reason for _t, r in rejected] == [E.BAD_NONCE]
    assert chain.account(b.address).coin == START + COIN  # paid once
    assert chain.account(a.address).coin == START - COIN - FEE


def test_bad_nonce_gap_and_in_block_order(chain: Chain, net: Net) -> None:
    a, b = net.accounts[0], net.accounts[1]
    future = make_tx(chain, a, Transfer(b.address, 1), nonce=1)
    assert rejection(chain, net, future).reason == E.BAD_NONCE
    first = make_tx(chain, a, Transfer(b.address, 1), nonce=0)
    block, rejected = try_extend(chain, net, [future, first])  # wrong order: only the first fits
    assert block.txs == (first,) and [r.reason for _t, r in rejected] == [E.BAD_NONCE]
    extend(chain, net, [future])
    assert chain.account(a.address).nonce == 2


def test_several_txs_of_one_sender_in_one_block(chain: Chain, net: Net) -> None:
    a, b = net.accounts[0], net.accounts[1]
    txs = [make_tx(chain, a, Transfer(b.address, 100 + i), nonce=i) for i in range(5)]
    extend(chain, net, txs)
    assert chain.account(a.address).nonce == 5
    assert chain.account(a.address).coin == START - sum(100 + i for i in range(5)) - 5 * FEE


def test_fee_too_low(chain: Chain, net: Net) -> None:
    a, b = net.accounts[0], net.accounts[1]
    assert rejection(chain, net, make_tx(chain, a, Transfer(b.address, 1), fee=FEE - 1)).reason == E.FEE_TOO_LOW
    assert rejection(chain, net, make_tx(chain, a, Transfer(b.address, 1), fee=0)).reason == E.FEE_TOO_LOW
    assert rejection(chain, net, make_tx(chain, a, Transfer(b.address, 1), fee=FEE)) is None


def test_insufficient_funds(chain: Chain, net: Net) -> None:
    a, b = net.accounts[0], net.accounts[1]
    assert rejection(chain, net, make_tx(chain, a, Transfer(b.address, START - FEE + 1))).reason == \
        E.INSUFFICIENT_FUNDS
    assert rejection(chain, net, make_tx(chain, a, Transfer(b.address, START + 1))).reason == E.INSUFFICIENT_FUNDS
    extend(chain, net, [make_tx(chain, a, Transfer(b.address, START - FEE))])  # exactly everything
    assert chain.account(a.address).coin == 0
    assert chain.account(b.address).coin == 2 * START - FEE
    broke = make_tx(chain, a, Transfer(b.address, 1))
    assert rejection(chain, net, broke).reason == E.INSUFFICIENT_FUNDS


def test_unfunded_account_cannot_pay_the_fee(chain: Chain, net: Net) -> None:
    nobody = AccountKey(bytes([9]) * 32)
    assert rejection(chain, net, make_tx(chain, nobody, Redeem(1))).reason == E.INSUFFICIENT_FUNDS


@pytest.mark.parametrize("body", [Transfer(bytes(20), 0), TransferWh(bytes(20), 0), Redeem(0)],
                         ids=["transfer", "transfer_wh", "redeem"])
def test_invalid_amount_zero(chain: Chain, net: Net, body: object) -> None:
    assert rejection(chain, net, make_tx(chain, net.accounts[0], body)).reason == E.INVALID_AMOUNT


def test_bad_signature_other_key(chain: Chain, net: Net) -> None:
    a, b = net.accounts[0], net.accounts[1]
    real = make_tx(chain, a, Transfer(b.address, COIN))
    by_b = sign_tx(b, CHAIN_ID, 0, FEE, Transfer(b.address, COIN))
    stolen = SignedTx(a.public, 0, FEE, real.body, by_b.signature, CHAIN_ID)
    assert rejection(chain, net, stolen).reason == E.BAD_SIGNATURE
    tampered = SignedTx(a.public, 0, FEE, Transfer(b.address, 2 * COIN), real.signature, CHAIN_ID)
    assert rejection(chain, net, tampered).reason == E.BAD_SIGNATURE
    assert rejection(chain, net, SignedTx(a.public, 0, FEE + 1, real.body, real.signature, CHAIN_ID)).reason == \
        E.BAD_SIGNATURE


def test_rejected_tx_changes_nothing(chain: Chain, net: Net) -> None:
    a, b = net.accounts[0], net.accounts[1]
    before = dict(chain.state_entries())
    block, rejected = try_extend(chain, net, [make_tx(chain, a, Transfer(b.address, START * 2))])
    assert [r.reason for _t, r in rejected] == [E.INSUFFICIENT_FUNDS]
    after = dict(chain.state_entries())
    assert after == before  # an empty block changes no state entry at all
    assert chain.verify_state_root()


# ------------------------------------------------------------------------------------------- Wh

@pytest.fixture
def lots(chain: Chain, net: Net) -> list[bytes]:
    """accounts[0] produced three lots: 100, 200 and 300 Wh, oldest first."""
    meter = MeterState(net.meters[0], start=GENESIS_S - 3 * 900)
    extend(chain, net, [meter.read(CHAIN_ID, wh) for wh in (100, 200, 300)])
    return [lot_id_of(GENESIS_S - (3 - i) * 900, net.meters[0].meter_id) for i in range(3)]


def test_wh_transfer_splits_lots_oldest_first(chain: Chain, net: Net, lots: list[bytes]) -> None:
    a, b, c = net.accounts[:3]
    t1 = make_tx(chain, a, TransferWh(b.address, 250))
    extend(chain, net, [t1])
    assert chain.holdings(a.address) == [(lots[1], 50, "solar"), (lots[2], 300, "solar")]
    assert chain.holdings(b.address) == [(lots[0], 100, "solar"), (lots[1], 150, "solar")]
    assert (chain.account(a.address).wh, chain.account(b.address).wh) == (350, 250)
    t2 = make_tx(chain, b, TransferWh(c.address, 120))
    extend(chain, net, [t2])
    assert chain.holdings(b.address) == [(lots[1], 130, "solar")]
    assert chain.holdings(c.address) == [(lots[0], 100, "solar"), (lots[1], 20, "solar")]
    assert chain.account(c.address).wh == 120
    # provenance: every movement of a lot is recorded, in order
    minted = chain.lot(lots[1]).reading_id
    assert chain.lot_movements(lots[1]) == [
        [minted, b"", a.address, 200, "mint"],
        [t1.txid, a.address, b.address, 150, "transfer_wh"],
        [t2.txid, b.address, c.address, 20, "transfer_wh"],
    ]
    assert chain.lot(lots[1]).producer == a.address and chain.lot(lots[1]).minted_wh == 200
    assert chain.account(a.address).coin == START - FEE
    assert chain.globals().minted_wh == 600


def test_wh_coming_back_merges_into_the_same_lot(chain: Chain, net: Net, lots: list[bytes]) -> None:
    a, b = net.accounts[:2]
    extend(chain, net, [make_tx(chain, a, TransferWh(b.address, 150))])
    extend(chain, net, [make_tx(chain, b, TransferWh(a.address, 120))])
    assert chain.holdings(a.address) == [(lots[0], 100, "solar"), (lots[1], 170, "solar"), (lots[2], 300, "solar")]
    assert chain.holdings(b.address) == [(lots[1], 30, "solar")]
    assert (chain.account(a.address).wh, chain.account(b.address).wh) == (570, 30)


def test_wh_transfer_to_self_keeps_everything(chain: Chain, net: Net, lots: list[bytes]) -> None:
    a = net.accounts[0]
    before = chain.holdings(a.address)
    extend(chain, net, [make_tx(chain, a, TransferWh(a.address, 450))])
    assert chain.holdings(a.address) == before
    assert chain.account(a.address).wh == 600


def test_insufficient_wh(chain: Chain, net: Net, lots: list[bytes]) -> None:
    a, b = net.accounts[:2]
    assert rejection(chain, net, make_tx(chain, a, TransferWh(b.address, 601))).reason == E.INSUFFICIENT_WH
    assert rejection(chain, net, make_tx(chain, b, TransferWh(a.address, 1))).reason == E.INSUFFICIENT_WH
    extend(chain, net, [make_tx(chain, a, TransferWh(b.address, 600))])
    assert chain.holdings(a.address) == [] and chain.account(a.address).wh == 0


# ----------------------------------------------------------------------------------- redemption

@pytest.fixture
def consumer(chain: Chain, net: Net) -> MeterState:
    """accounts[0]'s meter exported 1000 Wh in two lots and imported 400 Wh."""
    meter = MeterState(net.meters[0], start=GENESIS_S - 3 * 900)
    extend(chain, net, [meter.read(CHAIN_ID, 600), meter.read(CHAIN_ID, 400, 300), meter.read(CHAIN_ID, 0, 100)])
    return meter


def test_redeem_burns_wh_up_to_uncovered_consumption(chain: Chain, net: Net, consumer: MeterState) -> None:
    a = net.accounts[0]
    assert rejection(chain, net, make_tx(chain, a, Redeem(401))).reason == E.EXCEEDS_CONSUMPTION
    r1 = make_tx(chain, a, Redeem(250))
    extend(chain, net, [r1])
    acct = chain.account(a.address)
    assert (acct.wh, acct.consumed_wh, acct.redeemed_wh, acct.coin) == (750, 400, 250, START - FEE)
    first_lot = lot_id_of(GENESIS_S - 3 * 900, net.meters[0].meter_id)
    second_lot = lot_id_of(GENESIS_S - 2 * 900, net.meters[0].meter_id)
    assert chain.holdings(a.address) == [(first_lot, 350, "solar"), (second_lot, 400, "solar")]
    assert chain.lot_movements(first_lot)[-1] == [r1.txid, a.address, b"", 250, "redeem"]
    g = chain.globals()
    assert (g.minted_wh, g.redeemed_wh, g.consumed_wh) == (1000, 250, 400)
    assert rejection(chain, net, make_tx(chain, a, Redeem(151))).reason == E.EXCEEDS_CONSUMPTION
    extend(chain, net, [make_tx(chain, a, Redeem(150))])
    assert chain.account(a.address).redeemed_wh == 400
    assert rejection(chain, net, make_tx(chain, a, Redeem(1))).reason == E.EXCEEDS_CONSUMPTION
    assert chain.account(a.address).wh == 600
    assert chain.globals().redeemed_wh == 400


def test_redeem_needs_the_wh(chain: Chain, net: Net, consumer: MeterState) -> None:
    a, b = net.accounts[:2]
    extend(chain, net, [make_tx(chain, a, TransferWh(b.address, 900))])
    assert rejection(chain, net, make_tx(chain, a, Redeem(101))).reason == E.INSUFFICIENT_WH
    extend(chain, net, [make_tx(chain, a, Redeem(100))])
    assert chain.account(a.address).wh == 0


def test_redeem_without_own_consumption(chain: Chain, net: Net, consumer: MeterState) -> None:
    """Holding Wh is not enough: only the account's own metered consumption can be covered."""
    a, b = net.accounts[:2]
    extend(chain, net, [make_tx(chain, a, TransferWh(b.address, 500))])
    assert rejection(chain, net, make_tx(chain, b, Redeem(1))).reason == E.EXCEEDS_CONSUMPTION
    assert chain.account(b.address).wh == 500


def test_more_consumption_reopens_redemption(chain: Chain, net: Net, consumer: MeterState) -> None:
    a = net.accounts[0]
    extend(chain, net, [make_tx(chain, a, Redeem(400))])
    assert rejection(chain, net, make_tx(chain, a, Redeem(1))).reason == E.EXCEEDS_CONSUMPTION
    advance_to(chain, net, GENESIS_S + 900)
    extend(chain, net, [consumer.read(CHAIN_ID, 0, 50)])
    extend(chain, net, [make_tx(chain, a, Redeem(50))])
    acct = chain.account(a.address)
    assert (acct.consumed_wh, acct.redeemed_wh, acct.wh) == (450, 450, 550)
