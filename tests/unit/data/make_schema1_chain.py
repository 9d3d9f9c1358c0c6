"""Makes tests/unit/data/schema1-chain.tar.gz and schema1-chain.json: a LevelDB chain written by the
schema-1 build, with every kind of state schema 1 kept as one record (holdings, order book with a sell
order's lots, expiry schedule), for tests/unit/test_migrate.py. Run it with the schema-1 ledger package:

    git archive fd10c53 ledger | tar -x -C /tmp/v1
    PYTHONPATH=/tmp/v1 python tests/unit/data/make_schema1_chain.py tests/unit/data
"""
from __future__ import annotations

import json
import sys
import tarfile
import tempfile
from pathlib import Path

from ledger.chain import SCHEMA_VERSION, Chain
from ledger.store import LevelKV
from ledger.testing import CHAIN_ID, GENESIS_MS, MeterState, extend, make_net, make_tx
from ledger.tx import BUY, SELL, AcceptOffer, Deliver, PlaceOrder, PostOffer, TransferWh

SEED = 20261201
GENESIS_S = GENESIS_MS // 1000


def main(out: Path) -> None:
    assert SCHEMA_VERSION == 1, "run with the schema-1 build"
    net = make_net(accounts=4, meters=2, rated_w=100_000, seed=SEED)
    a, b, c, d = net.accounts
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "db"
        chain = Chain(LevelKV(db), net.genesis)
        meters = [MeterState(m, GENESIS_S - 100 * 900) for m in net.meters]  # owners: a (meter 0), b (meter 1)
        extend(chain, net, [m.read(CHAIN_ID, 100 + 10 * i) for i in range(8) for m in meters])
        extend(chain, net, [make_tx(chain, a, TransferWh(c.address, 250)),
                            make_tx(chain, b, TransferWh(c.address, 120))])
        end = GENESIS_S + 6 * 3600
        o1 = make_tx(chain, a, PostOffer(300, 4, GENESIS_S, end, ""))
        o2 = make_tx(chain, b, PostOffer(200, 5, GENESIS_S, end + 600, ""))
        extend(chain, net, [o1, o2])
        t1 = make_tx(chain, d, AcceptOffer(o1.txid, 100))
        extend(chain, net, [t1])
        extend(chain, net, [make_tx(chain, a, Deliver(t1.txid, 40))])
        extend(chain, net, [make_tx(chain, d, PlaceOrder(BUY, 50, 3)), make_tx(chain, c, PlaceOrder(SELL, 300, 9)),
                            make_tx(chain, b, PlaceOrder(SELL, 80, 7))])
        extend(chain, net, [make_tx(chain, d, PlaceOrder(BUY, 30, 7))])  # fills part of b's sell at 7
        expected = {
            "seed": SEED, "height": chain.height, "head": chain.head_hash.hex(),
            "holdings": {k.address.hex(): [[lot.hex(), wh, src] for lot, wh, src in chain.holdings(k.address)]
                         for k in net.accounts},
            "accounts": {k.address.hex(): chain.account(k.address).as_dict() for k in net.accounts},
            "orders": {i.hex(): [o.status, o.remaining, [[lot.hex(), wh, src] for lot, wh, src in o.lots]]
                       for i, o in chain.orders()},
            "book": [[i.hex() for i, _o in side] for side in chain.order_book()],
            "schedule": [[e, k, i.hex()] for e, k, i in chain.kv.get(b"sS") and
                         __import__("msgpack").unpackb(chain.kv.get(b"sS"))],
            "offers": {i.hex(): o.status for i, o in chain.offers()},
            "trades": {i.hex(): t.status for i, t in chain.trades()},
        }
        chain.kv.close()
        with tarfile.open(out / "schema1-chain.tar.gz", "w:gz") as tar:
            tar.add(db, arcname="db")
    (out / "schema1-chain.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
