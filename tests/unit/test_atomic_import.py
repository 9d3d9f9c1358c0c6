"""A block that extends the head is stored and applied in one LevelDB batch, so no crash can leave a
stored-but-unapplied head block behind, and a catch-up sync can skip the fsync per block."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ledger.block import Block
from ledger.chain import Chain
from ledger.store import LevelKV
from ledger.testing import Net, make_net, next_block
from ledger.tx import Transfer, sign_tx


class CountingKV(LevelKV):
    """The real LevelDB store, remembering each batch it wrote and whether it was fsynced."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[tuple[int, bool]] = []

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        self.batches.append((len(changes), sync))
        super().write(changes, sync)


def transfer_blocks(net: Net, count: int) -> list[Block]:
    """`count` blocks of one transfer each, built on a chain of their own."""
    source = net.chain()
    a, b = net.accounts[:2]
    blocks = []
    for nonce in range(count):
        tx = sign_tx(a, net.genesis.chain_id, nonce, net.genesis.min_fee, Transfer(b.address, 1 + nonce))
        block = next_block(source, net, [tx])
        source.import_block(block)
        blocks.append(block)
    return blocks


def test_one_batch_per_head_block_and_durability_follows_the_flag(tmp_path: Path) -> None:
    net = make_net(seed=7)
    blocks = transfer_blocks(net, 4)
    kv = CountingKV(tmp_path / "db")
    chain = Chain(kv, net.genesis)
    for i, block in enumerate(blocks):
        kv.batches.clear()
        durable = i % 2 == 1
        assert chain.import_block(block, durable=durable).status == "head"
        assert [sync for _size, sync in kv.batches] == [durable]
    assert chain.height == 4 and chain.verify_state_root()
    head = chain.head_hash
    kv.close()
    reopened = Chain(LevelKV(tmp_path / "db"), net.genesis)
    assert reopened.height == 4 and reopened.head_hash == head and reopened.verify_state_root()
