"""The pool verifier gives exactly the serial answer, whatever the schedule (worker processes, inline
share, lazy per-chunk waits), for good and bad signatures of both kinds."""
from __future__ import annotations

import dataclasses

from ledger.chain import serial_verifier
from ledger.keys import AccountKey
from ledger.testing import CHAIN_ID, MeterState, make_net
from ledger.tx import Transfer, Tx, sign_tx
from node.verify import MAX_SHARE, MIN_SHARE, PoolVerifier


def mixed_batch() -> tuple[list[Tx], dict[bytes, bytes]]:
    """300 transfers and 100 readings; every 7th signature is broken."""
    net = make_net(accounts=10, meters=4, seed=3)
    a = net.accounts[0]
    meters = [MeterState(m, 1_700_000_000) for m in net.meters]
    txs: list[Tx] = []
    for i in range(400):
        if i % 4 == 3:
            tx: Tx = meters[i % 4].read(CHAIN_ID, 10, 0)
        else:
            tx = sign_tx(net.accounts[i % 10], CHAIN_ID, i, 1000, Transfer(a.address, 1 + i))
        if i % 7 == 0:
            tx = dataclasses.replace(tx, signature=sign_tx(AccountKey.generate(), CHAIN_ID, 0, 1, Transfer(
                a.address, 1)).signature if hasattr(tx, "sender") else meters[0].read(CHAIN_ID, 1, 0).signature)
        txs.append(tx)
    keys = {m.meter_id: m.public for m in net.meters}
    return txs, keys


def test_same_answer_as_the_serial_check() -> None:
    txs, keys = mixed_batch()
    expected = serial_verifier(txs, keys.get)
    assert 0 < len(expected) < len(txs)  # some good, some bad: the comparison means something
    pool = PoolVerifier(workers=2, inline_share=0.25, chunk=37)
    try:
        for _ in range(4):  # several blocks: the inline share moves between them
            verified = pool(txs, keys.get)
            sent = {t.txid for t in txs if t.txid in verified}
            # txs not sent to a worker answer False: the chain then checks them itself
            inline = {t.txid for t in txs if t.txid not in verified._where}
            assert sent == expected - inline
            assert MIN_SHARE <= pool.inline_share <= MAX_SHARE
        assert pool(txs[:10], keys.get)._where == {}  # small batches stay in the main process
    finally:
        pool.close()
