"""Miner: real headers mined in a real worker process, counted, cancelled; the raw hash loop."""
from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Iterator

import pytest

from ledger.block import BlockHeader, meets_difficulty, search_nonce, seal_block
from ledger.testing import make_net
from node.energy import EnergyMeter
from node.miner import MineResult, Miner, raw_hash_rate

BOUND_S = 30.0  # bounded waits: long enough for a loaded CI machine, short enough to fail a hang


@pytest.fixture(scope="module")
def meter(tmp_path_factory: pytest.TempPathFactory) -> EnergyMeter:
    """No RAPL (an empty powercap dir), so energy is the CPU-time estimate on every machine."""
    return EnergyMeter(watts_per_core=15.0, rapl_root=tmp_path_factory.mktemp("no-rapl"))


@pytest.fixture(scope="module")
def miner(meter: EnergyMeter) -> Iterator[Miner]:
    m = Miner(meter)
    yield m
    m.close()


def header_and_chain(difficulty: int):
    net = make_net(authorities=1, accounts=1, min_difficulty=1)
    chain = net.chain()
    proposer = net.authorities[0]
    ts = chain.earliest_timestamp(chain.head, 1, proposer.public)
    header, included, _ = chain.build_block([], ts, proposer, difficulty)
    return header, included, chain, proposer


def mine(miner: Miner, header: BlockHeader, cancel: asyncio.Event | None = None) -> MineResult | None:
    async def go() -> MineResult | None:
        return await asyncio.wait_for(miner.mine(header, cancel), BOUND_S)
    return asyncio.run(go())


def test_difficulty_one(miner: Miner, meter: EnergyMeter) -> None:
    header, *_ = header_and_chain(1)
    result = mine(miner, header)
    assert result is not None
    assert (result.nonce, result.hashes) == (0, 1)
    assert meets_difficulty(dataclasses.replace(header, nonce=result.nonce).hash, 1)
    assert result.estimated and result.energy_mj == meter.estimate_mj(result.cpu_seconds)


def test_mined_block_is_valid_and_hashes_counted(miner: Miner, meter: EnergyMeter) -> None:
    difficulty = 2000
    header, included, chain, proposer = header_and_chain(difficulty)
    result = mine(miner, header)
    assert result is not None
    expected_nonce, expected_tried = search_nonce(header.pow_prefix(), difficulty, 0, 1 << 40)
    assert (result.nonce, result.hashes) == (expected_nonce, expected_tried)
    assert result.hashes == result.nonce + 1 >= 1
    assert meets_difficulty(dataclasses.replace(header, nonce=result.nonce).hash, difficulty)
    assert result.estimated and result.energy_mj == meter.estimate_mj(result.cpu_seconds)
    assert result.cpu_seconds >= 0 and result.seconds >= 0
    block = seal_block(proposer, header, result.nonce, included, result.hashes, result.energy_mj, result.estimated)
    chain.import_block(block)  # the chain's own proof-of-work and seal checks
    assert chain.height == 1 and chain.head_hash == block.hash
    assert miner.hash_rate() > 0


def test_cancel_returns_none_and_miner_goes_on(miner: Miner) -> None:
    header, *_ = header_and_chain(1 << 60)  # would take decades

    async def go() -> tuple[MineResult | None, MineResult | None]:
        cancel = asyncio.Event()
        chunks_before = miner.stats().chunks
        task = asyncio.create_task(miner.mine(header, cancel))
        for _ in range(int(BOUND_S / 0.01)):  # until the worker has really hashed something
            if miner.stats().chunks > chunks_before:
                break
            await asyncio.sleep(0.01)
        assert miner.stats().chunks > chunks_before
        assert not task.done()
        cancel.set()
        cancelled = await asyncio.wait_for(task, BOUND_S)
        easy = dataclasses.replace(header, difficulty=50)
        return cancelled, await asyncio.wait_for(miner.mine(easy), BOUND_S)

    cancelled_before = miner.stats().searches_cancelled
    cancelled, after = asyncio.run(go())
    assert cancelled is None
    assert miner.stats().searches_cancelled == cancelled_before + 1
    assert after is not None and after.hashes == after.nonce + 1


def test_cancel_already_set(miner: Miner) -> None:
    header, *_ = header_and_chain(1 << 60)

    async def go() -> MineResult | None:
        cancel = asyncio.Event()
        cancel.set()
        return await asyncio.wait_for(miner.mine(header, cancel), BOUND_S)
    assert asyncio.run(go()) is None


def test_two_workers_small_chunks(tmp_path: Path) -> None:
    m = Miner(EnergyMeter(rapl_root=tmp_path), workers=2, chunk=256)
    try:
        header, *_ = header_and_chain(3000)
        result = mine(m, header)
        assert result is not None
        assert meets_difficulty(dataclasses.replace(header, nonce=result.nonce).hash, 3000)
        assert result.hashes >= result.nonce + 1 - 256  # at least everything up to the found chunk's start
        assert result.hashes == m.stats().hashes  # every chunk tried is in the block's count
        assert asyncio.run(m.calibrate()) > 0
    finally:
        m.close()
    with pytest.raises(RuntimeError):
        mine(m, header)


def test_raw_hash_rate() -> None:
    assert raw_hash_rate(0.02) > 0
