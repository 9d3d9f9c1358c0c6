"""OCMF ingest: records real meters signed, decoded, verified and applied per second, against raw ECDSA
verifies of the same curve over payloads of the same size (one run, both measured now)."""
from __future__ import annotations

import shutil
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bench.core import BLOCK_TXS, _fresh_chain, best_rate
from ledger import ocmf
from ledger.block import decode_block, mine
from ledger.ocmf_sim import OcmfMeterSim
from ledger.testing import CHAIN_ID, make_net, make_tx, next_block
from ledger.tx import COIN, EnrollOcmfMeter, OcmfReading

RECORDS_PER_METER = 5  # per block, one second apart


def raw_ocmf_verify(n: int, repeats: int, curve: str = "secp256r1") -> float:
    """ECDSA-SHA256 verifies per second on `curve`, over real OCMF payload bytes."""
    sim = OcmfMeterSim("RAW", curve=curve)
    recs = [ocmf.parse(sim.record(1_767_225_600_000 + i * 1000, 1000 * i)) for i in range(n)]
    pub = sim.private.public_key()  # type: ignore[union-attr]
    algo = ec.ECDSA(hashes.SHA256())
    items = [(r.signature, r.payload) for r in recs]
    return best_rate(n, lambda: [pub.verify(s, m, algo) for s, m in items], repeats)


def ocmf_ingest(blocks: int, meters: int = 200, curve: str = "secp256r1") -> float:
    """OCMF readings (blocks of 1,000) decoded from a peer's bytes, verified and applied, per second."""
    net = make_net(authorities=1, accounts=50, min_difficulty=1, authority_coin=100 * COIN)
    auth = net.authorities[0]
    sims = [OcmfMeterSim(f"BENCH-{i:04d}", curve=curve) for i in range(meters)]
    builder, bpath = _fresh_chain(net)
    target, tpath = _fresh_chain(net)
    enroll = [make_tx(builder, auth, EnrollOcmfMeter(s.spki, s.serial, net.accounts[i % 50].address, "2.8.0", "",
                                                     1_000_000, "solar"), nonce=i) for i, s in enumerate(sims)]
    first = next_block(builder, net, enroll)
    builder.import_block(first)
    target.import_block(first)
    values = [0] * meters
    encoded = []
    per_meter = BLOCK_TXS // meters // RECORDS_PER_METER * RECORDS_PER_METER or RECORDS_PER_METER
    for _ in range(blocks):
        start = builder.head.timestamp_ms + 1000
        txs = []
        for k, sim in enumerate(sims):
            for j in range(per_meter):
                values[k] += 50_000 + 7 * j
                txs.append(OcmfReading.from_text(sim.record(start + 1000 * j + k, values[k]), CHAIN_ID))
        # the parent of the block that includes them is timed after every record
        parent = next_block(builder, net, [], gap_ms=1000 * per_meter + meters + 2000)
        builder.import_block(parent)
        encoded.append((False, parent.encode()))
        proposer = auth
        ts = builder.earliest_timestamp(builder.head, builder.height + 1, proposer.public)
        header, included, rejected = builder.build_block(txs, ts, proposer, 1)
        if rejected:
            raise RuntimeError(f"ocmf bench record rejected: {rejected[0][1]}")
        block = mine(proposer, header, included)
        builder.import_block(block)
        encoded.append((True, block.encode()))
    elapsed = 0.0
    for timed_block, raw in encoded:
        t0 = time.perf_counter()
        target.import_block(decode_block(raw, CHAIN_ID, 10_000))
        if timed_block:
            elapsed += time.perf_counter() - t0
    ok = target.head_hash == builder.head_hash
    for c, p in ((builder, bpath), (target, tpath)):
        c.kv.close()
        shutil.rmtree(p, ignore_errors=True)
    if not ok:
        raise RuntimeError("benchmark chain diverged")
    return blocks * per_meter * meters / elapsed


if __name__ == "__main__":  # python -m bench.ocmf: this section alone
    raw = raw_ocmf_verify(1000, 2)
    rate = ocmf_ingest(2)
    print(f"raw_ocmf_verify_per_s={raw:.0f} ocmf_ingest_per_s={rate:.0f} ocmf_ingest_ratio={rate / raw:.3f}")
