"""Prometheus metrics of one node (its own registry, so several nodes in one process never mix)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.height = Gauge("kwh_height", "Height of the head block", registry=r)
        self.total_work = Gauge("kwh_total_work", "Fork-choice weight of the head chain (2 per in-turn block, "
                                "1 per out-of-turn block)", registry=r)
        self.finalized_height = Gauge("kwh_finalized_height", "Height of the last finalized block", registry=r)
        self.finality_lag = Gauge("kwh_finality_lag_blocks", "Head height minus finalized height", registry=r)
        self.vote_evidence = Counter("kwh_vote_evidence", "Conflicting finality votes seen", registry=r)
        self.mempool_size = Gauge("kwh_mempool_size", "Pending transactions and readings", registry=r)
        self.peers = Gauge("kwh_peers", "Peers with a live session", registry=r)
        self.syncing = Gauge("kwh_syncing", "1 while catching up with a peer", registry=r)
        self.blocks_produced = Counter("kwh_blocks_produced", "Blocks this node mined and sealed", registry=r)
        self.blocks_imported = Counter("kwh_blocks_imported", "Blocks imported, by result",
                                       ["result"], registry=r)
        self.blocks_rejected = Counter("kwh_blocks_rejected", "Blocks refused, by reason", ["reason"], registry=r)
        self.reorgs = Counter("kwh_reorgs", "Chain reorganisations", registry=r)
        self.txs_accepted = Counter("kwh_txs_accepted", "Transactions admitted to the mempool", registry=r)
        self.txs_rejected = Counter("kwh_txs_rejected", "Transactions refused, by reason", ["reason"], registry=r)
        self.hashes = Counter("kwh_mining_hashes", "Hashes this node tried for the blocks it produced",
                              registry=r)
        self.energy_joules = Counter("kwh_mining_energy_joules", "Energy of the hashes in blocks this node "
                                     "produced (measured or estimated)", registry=r)
        self.chain_hashes = Gauge("kwh_chain_hashes", "Hashes along the head chain (all proposers)", registry=r)
        self.chain_energy_joules = Gauge("kwh_chain_energy_joules", "Energy along the head chain", registry=r)
        self.difficulty = Gauge("kwh_grid_difficulty", "Difficulty the grid policy asks for now", registry=r)
        self.surplus_w = Gauge("kwh_grid_surplus_watts", "Last grid signal (negative: shortage)", registry=r)
        self.hash_rate = Gauge("kwh_miner_hash_rate", "Hashes per CPU-second of one mining worker", registry=r)
        self.peer_bans = Counter("kwh_peer_bans", "Peers banned for misbehaviour", registry=r)
        # The ledger's energy and escrow totals along the head chain. Gauges, not counters: a reorganisation
        # can take a block's minting back, and a Prometheus counter must never go down.
        self.minted_wh = Gauge("kwh_energy_minted_wh", "Wh minted from meter readings (head chain)", registry=r)
        self.consumed_wh = Gauge("kwh_energy_consumed_wh", "Wh of metered consumption reported (head chain)",
                                 registry=r)
        self.redeemed_wh = Gauge("kwh_energy_redeemed_wh", "Wh redeemed (burned) against consumption (head chain)",
                                 registry=r)
        self.settled_wh = Gauge("kwh_energy_settled_wh", "Wh that changed hands through trades and the order book "
                                "(head chain)", registry=r)
        self.escrow_coin = Gauge("kwh_escrow_coin_units", "Coin (base units) held in escrow by open trades: "
                                 "prepaid, not yet released or refunded", registry=r)

        self.node_energy = Gauge("kwh_node_energy_joules", "This node's whole energy since it started, by what it "
                                 "was spent on (signatures, transition, storage, hashing, peer, api, other)",
                                 ["category"], registry=r)
        self.node_energy_estimated = Gauge("kwh_node_energy_estimated", "1: the node's energy is CPU time x watts "
                                           "per core; 0: measured with RAPL", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
