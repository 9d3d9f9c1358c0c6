"""Joules one node spends per transfer and per reading, with the node's own accounting (node/accounting.py).

Each transaction is admitted (as from a peer: signature and transition on the head state) and then applied
in a block of 1,000 imported into LevelDB with the chain's phase callback, exactly the code paths a node
meters. The figure is one node's marginal cost (admission + signature checks + transition + storage); the
network's is that times the validating nodes, plus hashing, votes and peer traffic (GET /energy/quote).
`python -m bench.energy [--quick]` runs this section alone.
"""
from __future__ import annotations

import argparse
import json
import shutil
from typing import Any, Callable

from ledger.chain import Chain, inline_verifier
from ledger.genesis import Genesis, GenesisMeter
from ledger.keys import AccountKey, MeterKey
from ledger.block import Block, mine
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, next_block
from ledger.tx import SignedTx, Tx, decode_tx
from node.accounting import NodeEnergy

from .core import BLOCK_TXS, TransferWorkload, _fresh_chain

# Published estimates per transaction, for scale (kWh): Bitcoin's proof of work over the years (Digiconomist's
# index ranged about 174 to 1,544), Ethereum after its move to proof of stake (about 0.03).
REFERENCE_KWH_PER_TX = {"bitcoin_low": 174.0, "bitcoin_high": 1544.0, "ethereum_pos": 0.03}


def _metered_blocks(energy: NodeEnergy, net: Any, count: int,
                    make_block: Callable[[Chain], tuple[Block, list[Tx]]]) -> dict[str, float]:
    """Build `count` blocks with `make_block` on one fresh chain, then admit and import them on another,
    metered; returns the CPU seconds by category the second part took. Both chains are removed after."""
    builder, bpath = _fresh_chain(net)
    target, tpath = _fresh_chain(net)
    try:
        made = []
        for _ in range(count):
            block, txs = make_block(builder)
            builder.import_block(block)
            made.append((block, txs))
        before = energy.snapshot_seconds()
        target.on_phase = energy.phase
        for block, txs in made:
            for tx in txs:
                started = energy.admission_started()
                pending = tx.nonce if isinstance(tx, SignedTx) else None
                target.check_tx(tx, block.header.timestamp_ms, pending_nonce=pending)
                energy.admission_ended(started, tx, True)
            started_import = energy.import_started()
            result = target.import_block(block)
            energy.import_ended(started_import, result.applied, target.verifier is inline_verifier)
        after = energy.snapshot_seconds()
        return {c: after[c] - before[c] for c in after}
    finally:
        for c, p in ((builder, bpath), (target, tpath)):
            c.kv.close()
            shutil.rmtree(p, ignore_errors=True)


def transfers(blocks: int, energy: NodeEnergy) -> dict[str, float]:
    work = TransferWorkload()

    def make(builder: Chain) -> tuple[Block, list[Tx]]:
        txs = [decode_tx(raw, CHAIN_ID) for raw in work.batch()]
        return next_block(builder, work.net, txs), txs
    return _metered_blocks(energy, work.net, blocks, make)


def readings(blocks: int, energy: NodeEnergy, meters: int = BLOCK_TXS) -> dict[str, float]:
    """One reading per meter per block, so each is admitted on the head state as a node would."""
    mkeys = [MeterKey.generate() for _ in range(meters)]
    owners = [AccountKey.generate() for _ in range(50)]
    auth = AccountKey.generate()
    first = GENESIS_MS // 1000 + 399 * 86400  # a day before genesis: installed before enrolled
    genesis = Genesis(CHAIN_ID, GENESIS_MS + 400 * 86400 * 1000, (auth.public,), min_difficulty=1,
                      meters=tuple(GenesisMeter(m.public, owners[i % 50].address, "both", 20_000, 900, "solar",
                                                first_start=first) for i, m in enumerate(mkeys)))
    states = [MeterState(m, first) for m in mkeys]
    per_block = BLOCK_TXS // meters

    def make(builder: Chain) -> tuple[Block, list[Tx]]:
        txs: list[Tx] = [s.read(CHAIN_ID, 1000 + (i % 500), 200) for i in range(per_block) for s in states]
        ts = builder.earliest_timestamp(builder.head, builder.height + 1, auth.public)
        header, included, rejected = builder.build_block(txs, ts, auth, 1)
        assert not rejected, rejected[:1]
        return mine(auth, header, included), txs
    return _metered_blocks(energy, type("N", (), {"genesis": genesis})(), blocks, make)


def run(blocks: int, watts_per_core: float = 15.0) -> dict[str, Any]:
    """Joules per transfer and per reading on one node (admission + apply), said whether measured or estimated."""
    energy = NodeEnergy(watts_per_core)
    spent = transfers(blocks, energy)
    for c, v in readings(blocks, energy).items():
        spent[c] += v
    report = energy.report(validators=1)
    per_type = report["per_type"]
    transfer_j, reading_j = per_type["transfer"]["node_j"], per_type["reading"]["node_j"]
    total = sum(spent.values())
    return {"energy_j_per_transfer": transfer_j, "energy_j_per_reading": reading_j,
            "energy_kwh_per_transfer": transfer_j / 3.6e6, "energy_kwh_per_reading": reading_j / 3.6e6,
            "energy_per_tx_estimated": report["estimated"], "energy_per_tx_source": report["source"],
            "energy_watts_per_core": watts_per_core,
            # where the metered admission and import went (the rest of this process is the bench's setup)
            "energy_per_tx_share": {c: round(v / total, 4) for c, v in spent.items() if v > 0} if total else None,
            "reference_kwh_per_tx": REFERENCE_KWH_PER_TX}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(2 if args.quick else 5), indent=2))


if __name__ == "__main__":
    main()
