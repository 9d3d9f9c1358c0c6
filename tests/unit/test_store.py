"""The KV contract, run against both backends, and a chain that survives reopening its LevelDB."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.chain import Chain
from ledger.store import KV, LevelKV, MemoryKV, _prefix_end
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, Net, extend, make_net, make_tx
from ledger.tx import BUY, COIN, SELL, PlaceOrder, PostOffer, Transfer, TransferWh

GENESIS_S = GENESIS_MS // 1000


@pytest.fixture(params=["memory", "leveldb"])
def make_kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], KV]]:
    """A factory of empty stores of one backend; every store it made is closed afterwards."""
    made: list[KV] = []

    def factory() -> KV:
        kv: KV = MemoryKV() if request.param == "memory" else LevelKV(tmp_path / f"db{len(made)}")
        made.append(kv)
        return kv

    yield factory
    for kv in made:
        kv.close()


@pytest.fixture
def kv(make_kv: Callable[[], KV]) -> KV:
    return make_kv()


KEYS = [b"a", b"a\x00", b"a\x01", b"a\xff", b"a\xff\xff", b"ab", b"abc", b"b", b"\xff", b"\xff\x00", b"\xff\xff"]


def fill(kv: KV) -> None:
    kv.write({k: b"v" + k for k in KEYS})


# --------------------------------------------------------------------------------------- contract

def test_get_missing_is_none(kv: KV) -> None:
    assert kv.get(b"nothing") is None
    assert list(kv.iterate(b"")) == []


def test_put_get_overwrite_delete(kv: KV) -> None:
    kv.write({b"k": b"1"})
    assert kv.get(b"k") == b"1"
    kv.write({b"k": b"2"})
    assert kv.get(b"k") == b"2"
    kv.write({b"k": None})
    assert kv.get(b"k") is None
    kv.write({b"k": None})  # deleting a missing key is fine
    assert list(kv.iterate(b"k")) == []


def test_empty_value_is_a_value(kv: KV) -> None:
    kv.write({b"e": b""})
    assert kv.get(b"e") == b""
    assert list(kv.iterate(b"e")) == [(b"e", b"")]


def test_write_is_a_batch_of_puts_and_deletes(kv: KV) -> None:
    fill(kv)
    kv.write({b"a": None, b"ab": b"new", b"zz": b"z", b"\xff\xff": None}, sync=False)
    assert kv.get(b"a") is None and kv.get(b"ab") == b"new" and kv.get(b"zz") == b"z"
    assert [k for k, _v in kv.iterate(b"")] == sorted(set(KEYS) - {b"a", b"\xff\xff"} | {b"zz"})


def test_iterate_prefix_in_key_order(kv: KV) -> None:
    fill(kv)
    assert [k for k, _ in kv.iterate(b"a")] == [b"a", b"a\x00", b"a\x01", b"ab", b"abc", b"a\xff", b"a\xff\xff"]
    assert [k for k, _ in kv.iterate(b"ab")] == [b"ab", b"abc"]
    assert [k for k, _ in kv.iterate(b"a\xff")] == [b"a\xff", b"a\xff\xff"]
    assert [k for k, _ in kv.iterate(b"\xff")] == [b"\xff", b"\xff\x00", b"\xff\xff"]
    assert [k for k, _ in kv.iterate(b"\xff\xff")] == [b"\xff\xff"]
    assert list(kv.iterate(b"c")) == []
    assert dict(kv.iterate(b"abc")) == {b"abc": b"vabc"}
    assert [k for k, _ in kv.iterate(b"")] == sorted(KEYS)


def test_iterate_reverse(kv: KV) -> None:
    fill(kv)
    assert [k for k, _ in kv.iterate(b"a", reverse=True)] == \
        [b"a\xff\xff", b"a\xff", b"abc", b"ab", b"a\x01", b"a\x00", b"a"]
    assert [k for k, _ in kv.iterate(b"\xff", reverse=True)] == [b"\xff\xff", b"\xff\x00", b"\xff"]


def test_iterate_from_start(kv: KV) -> None:
    fill(kv)
    assert [k for k, _ in kv.iterate(b"a", start=b"a\x01")] == [b"a\x01", b"ab", b"abc", b"a\xff", b"a\xff\xff"]
    assert [k for k, _ in kv.iterate(b"a", start=b"a\x02")] == [b"ab", b"abc", b"a\xff", b"a\xff\xff"]
    assert [k for k, _ in kv.iterate(b"a", start=b"ab", reverse=True)] == [b"a\xff\xff", b"a\xff", b"abc", b"ab"]


def test_iterate_below_stop(kv: KV) -> None:
    """`stop` bounds a walk from above (exclusive), either way: where a newest-first page continues."""
    kv.write({k: b"v" + k for k in KEYS})
    assert [k for k, _ in kv.iterate(b"a", stop=b"ab")] == [b"a", b"a\x00", b"a\x01"]
    assert [k for k, _ in kv.iterate(b"a", stop=b"ab", reverse=True)] == [b"a\x01", b"a\x00", b"a"]
    assert [k for k, _ in kv.iterate(b"a", start=b"a\x01", stop=b"abc", reverse=True)] == [b"ab", b"a\x01"]
    assert [k for k, _ in kv.iterate(b"a", start=b"a\x01", stop=b"abc")] == [b"a\x01", b"ab"]
    assert [k for k, _ in kv.iterate(b"a", stop=b"b")] == [k for k, _ in kv.iterate(b"a")]  # past the prefix
    assert [k for k, _ in kv.iterate(b"\xff", stop=b"\xff\xff", reverse=True)] == [b"\xff\x00", b"\xff"]
    assert list(kv.iterate(b"a", stop=b"a")) == []
    assert [k for k, _ in kv.iterate(b"a", start=b"")] == [k for k, _ in kv.iterate(b"a")]  # before the prefix
    assert list(kv.iterate(b"a", start=b"b")) == []  # past the prefix
    assert [k for k, _ in kv.iterate(b"\xff", start=b"\xff\x00")] == [b"\xff\x00", b"\xff\xff"]
    assert [k for k, _ in kv.iterate(b"a\xff", start=b"a\xff\x00")] == [b"a\xff\xff"]


def test_reverse_over_a_single_key_equal_to_the_bound(kv: KV) -> None:
    """plyvel's own reverse iterator yields nothing here; the contract says one item."""
    kv.write({b"a": b"1", b"b": b"2", b"c": b"3"})
    for prefix in (b"a", b"b", b"c"):
        assert list(kv.iterate(prefix, reverse=True)) == [(prefix, kv.get(prefix))]
    assert list(kv.iterate(b"", start=b"c", reverse=True)) == [(b"c", b"3")]
    assert list(kv.iterate(b"", start=b"b", reverse=True)) == [(b"c", b"3"), (b"b", b"2")]
    assert list(kv.iterate(b"c", start=b"c", reverse=True)) == [(b"c", b"3")]
    assert list(kv.iterate(b"c", start=b"d", reverse=True)) == []
    kv.write({b"\xff": b"4"})
    assert list(kv.iterate(b"\xff", reverse=True)) == [(b"\xff", b"4")]


def test_stores_are_independent(make_kv: Callable[[], KV]) -> None:
    one, two = make_kv(), make_kv()
    one.write({b"x": b"1"})
    assert two.get(b"x") is None


def test_prefix_end() -> None:
    assert _prefix_end(b"a") == b"b"
    assert _prefix_end(b"a\xff") == b"b"
    assert _prefix_end(b"\xff\xff") is None
    assert _prefix_end(b"") is None


ops = st.lists(st.tuples(st.binary(min_size=1, max_size=3), st.one_of(st.none(), st.binary(max_size=4))),
               max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(ops, max_size=6), prefix=st.binary(max_size=2), start=st.none() | st.binary(max_size=3),
       reverse=st.booleans())
def test_backend_matches_a_model(make_kv: Callable[[], KV], batches: list, prefix: bytes, start: bytes | None,
                                 reverse: bool) -> None:
    kv = make_kv()
    model: dict[bytes, bytes] = {}
    for batch in batches:
        changes = dict(batch)
        kv.write(changes)
        for k, v in changes.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
    expected = sorted((k, v) for k, v in model.items() if k.startswith(prefix) and (start is None or k >= start))
    if reverse:
        expected.reverse()
    assert list(kv.iterate(prefix, start=start, reverse=reverse)) == expected
    assert all(kv.get(k) == v for k, v in model.items())


# ------------------------------------------------------------------------------------- persistence

def _busy_chain(chain: Chain, net: Net) -> None:
    a, b, c = net.accounts
    meter = MeterState(net.meters[0], start=GENESIS_S - 3 * 900)
    extend(chain, net, [meter.read(CHAIN_ID, 800), make_tx(chain, b, Transfer(c.address, 5 * COIN))])
    extend(chain, net, [make_tx(chain, a, TransferWh(b.address, 300)),
                        make_tx(chain, a, PostOffer(100, 9, GENESIS_S, GENESIS_S + 3600, ""), nonce=1)])
    extend(chain, net, [make_tx(chain, a, PlaceOrder(SELL, 200, 4)), make_tx(chain, c, PlaceOrder(BUY, 50, 5))])


def test_chain_reopened_on_the_same_leveldb(tmp_path: Path) -> None:
    net = make_net(accounts=3, meters=1, meter_kind="generation")
    kv = LevelKV(tmp_path / "chain")
    chain = net.chain(kv)
    _busy_chain(chain, net)
    head, height, work = chain.head_hash, chain.height, chain.head.total_work
    accounts = {k.address: chain.account(k.address) for k in net.accounts}
    entries = dict(chain.state_entries())
    second = chain.canonical_hash(2)
    kv.close()

    kv2 = LevelKV(tmp_path / "chain")
    again = net.chain(kv2)
    assert (again.head_hash, again.height, again.head.total_work) == (head, height, work)
    assert {k.address: again.account(k.address) for k in net.accounts} == accounts
    assert again.account(net.accounts[0].address).wh == 300
    assert dict(again.state_entries()) == entries
    assert again.verify_state_root()
    assert again.block_at(2).hash == second
    extend(again, net, [make_tx(again, net.accounts[1], Transfer(net.accounts[0].address, 1))])
    assert again.height == height + 1 and again.verify_state_root()
    kv2.close()


def test_reopen_with_another_genesis_is_refused(tmp_path: Path) -> None:
    net = make_net(accounts=1)
    kv = LevelKV(tmp_path / "chain")
    net.chain(kv)
    kv.close()
    kv = LevelKV(tmp_path / "chain")
    with pytest.raises(ValueError, match="different genesis"):
        Chain(kv, make_net(accounts=1).genesis)
    kv.close()


def test_memory_and_leveldb_chains_agree(tmp_path: Path) -> None:
    net = make_net(accounts=3, meters=1, meter_kind="generation")
    mem = net.chain()
    _busy_chain(mem, net)
    kv = LevelKV(tmp_path / "chain")
    disk = net.chain(kv)
    for h in range(1, mem.height + 1):
        assert disk.import_block(mem.block_at(h)).status == "head"
    assert dict(disk.state_entries()) == dict(mem.state_entries())
    assert disk.head_hash == mem.head_hash and disk.verify_state_root()
    kv.close()


def test_genesis_refuses_a_meter_or_an_allocation_given_twice() -> None:
    """A second entry for one meter key or one address would silently overwrite the first."""
    g = make_net(meters=2, seed=5).genesis
    assert len(g.meters) == 2 and len(g.allocations) >= 2
    with pytest.raises(ValueError, match="duplicate genesis meter"):
        dataclasses.replace(g, meters=(g.meters[0], g.meters[0]))
    with pytest.raises(ValueError, match="duplicate allocation"):
        dataclasses.replace(g, allocations=(g.allocations[0], g.allocations[0]))
    dataclasses.replace(g, meters=g.meters[:1], allocations=g.allocations[:1])  # one of each is fine
