"""The pool verifier answers exactly which signatures hold, whatever the schedule (worker processes,
inline share, lazy per-chunk waits), for good and bad signatures of both kinds."""
from __future__ import annotations

import dataclasses

from ledger.testing import CHAIN_ID, MeterState, make_net
from ledger.tx import MeterReading, Transfer, Tx, sign_tx
from node.verify import MAX_SHARE, MIN_SHARE, PoolVerifier


def mixed_batch() -> tuple[list[Tx], dict[bytes, bytes], set[bytes]]:
    """300 transfers and 100 readings, every 7th with another tx's signature; and the ids that verify."""
    net = make_net(accounts=10, meters=4, seed=3)
    meters = [MeterState(m, 1_700_000_000) for m in net.meters]
    txs: list[Tx] = []
    for i in range(400):
        if i % 4 == 3:
            txs.append(meters[i % 4].read(CHAIN_ID, 10, 0))
        else:
            txs.append(sign_tx(net.accounts[i % 10], CHAIN_ID, i, 1000, Transfer(net.accounts[0].address, 1 + i)))
    for i in range(0, 400, 7):  # a signature of the same kind, over other bytes
        donor = next(t for t in txs if type(t) is type(txs[i]) and t is not txs[i])
        txs[i] = dataclasses.replace(txs[i], signature=donor.signature)
    keys = {m.meter_id: m.public for m in net.meters}
    good = {t.txid for t in txs
            if (t.verify(keys[t.fields.meter_id]) if isinstance(t, MeterReading) else t.verify())}
    return txs, keys, good


def test_same_answer_as_checking_each_signature() -> None:
    txs, keys, good = mixed_batch()
    assert 0 < len(good) < len(txs)  # some good, some bad: the comparison means something
    pool = PoolVerifier(workers=2, inline_share=0.25, chunk=37)
    try:
        for _ in range(4):  # several blocks: the inline share moves between them
            verified = pool(txs, keys.get)
            # txs kept back answer False: the transition checks them itself as it applies them
            kept = {t.txid for t in txs if t.txid not in verified._where}
            assert {t.txid for t in txs if t.txid in verified} == good - kept
            assert MIN_SHARE <= pool.inline_share <= MAX_SHARE
        assert pool(txs[:10], keys.get)._where == {}  # small batches stay in the main process
    finally:
        pool.close()
