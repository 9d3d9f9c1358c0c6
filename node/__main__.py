"""`kwh-node` / `python -m node`: run one node until SIGINT or SIGTERM.

Exit codes: 0 after a clean stop, 2 when the node cannot start (bad flags, genesis, key, data dir, port,
or a data dir whose state does not match its head); the reason is one line on stderr.
`--check-db` checks the data dir thoroughly instead of running (exit 0 consistent, 1 not, 2 cannot open);
`--upgrade-db` converts a schema-1 data dir to schema 2 (ledger/migrate.py) and exits.
Shutdown stops the producer and miner workers, the peers, then the HTTP server, and closes LevelDB last,
so a restart with the same data dir continues where it stopped.
"""
from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any, Sequence

from aiohttp import web

from .config import Config, ConfigError, build_parser, load_config
from .log import EventLog, bridge_stdlib_logging


def _open_stopped(config: Config) -> "tuple[Any, Any] | None":
    """(genesis, LevelKV) of a stopped node's data dir, or None after one error line (no database, bad
    genesis, or the database locked by a running node or damaged): for --check-db and --upgrade-db."""
    from ledger.genesis import Genesis
    from ledger.store import LevelKV
    if not (config.data_dir / "CURRENT").exists():
        print(f"kwh-node: error: {config.data_dir} holds no database", file=sys.stderr)
        return None
    try:
        return Genesis.load(config.genesis), LevelKV(config.data_dir)
    except Exception as exc:  # noqa: BLE001 - bad genesis, or LevelDB locked by a running node / corrupt
        print(f"kwh-node: error: cannot open {config.data_dir} with {config.genesis}: {exc}", file=sys.stderr)
        return None


def check_db(config: Config) -> int:
    """`kwh-node --check-db`: the full consistency check of a stopped node's data dir (Chain.check). Reads
    only: an interrupted head move is reported, and the node finishes it when it starts."""
    from ledger.chain import K_TARGET, Chain
    from ledger.state import _unpack
    opened = _open_stopped(config)
    if opened is None:
        return 2
    genesis, kv = opened
    try:
        if kv.get(b"g") is None:
            print(f"kwh-node: error: {config.data_dir} holds no chain", file=sys.stderr)
            return 2
        try:
            chain = Chain(kv, genesis, resume=False)
            problems = chain.check(full=True)
        except Exception as exc:  # noqa: BLE001 - damage bad enough to break reading is a finding too
            problems = [f"cannot read the chain: {exc!r}"]
            chain = None
        if problems:
            for problem in problems:
                print(problem)
            more = f" (and {len(problems) - 1} more, listed above)" if len(problems) > 1 else ""
            print(f"kwh-node: error: {config.data_dir} is inconsistent: {problems[0]}{more}", file=sys.stderr)
            return 1
        assert chain is not None
        pending = kv.get(K_TARGET)
        note = f"; an interrupted move to block {_unpack(pending)[0].hex()} resumes at start" if pending else ""
        print(f"kwh-node: {config.data_dir} is consistent at height {chain.height} "
              f"(head {chain.head_hash.hex()}){note}")
        return 0
    finally:
        kv.close()


def upgrade_db(config: Config, to_height: int | None) -> int:
    """`kwh-node --upgrade-db`: convert a stopped node's schema-1 data dir to schema 2 (ledger/migrate.py),
    then check it. Exit 0 upgraded (or already current), 1 if it cannot be upgraded, 2 if it cannot open."""
    from ledger.chain import SCHEMA_VERSION, Chain
    from ledger.migrate import UpgradeError, schema_version, upgrade_v1_to_v2
    opened = _open_stopped(config)
    if opened is None:
        return 2
    genesis, kv = opened
    try:
        if schema_version(kv) == SCHEMA_VERSION:
            print(f"kwh-node: {config.data_dir} is already at schema version {SCHEMA_VERSION}")
            return 0
        try:
            done = upgrade_v1_to_v2(kv, to_height)
            problems = Chain(kv, genesis, resume=False).check(full=True)
        except (UpgradeError, ValueError) as exc:
            print(f"kwh-node: error: cannot upgrade {config.data_dir}: {exc}", file=sys.stderr)
            return 1
        if problems:
            print(f"kwh-node: error: {config.data_dir} upgraded but inconsistent: {problems[0]}", file=sys.stderr)
            return 1
        print(f"kwh-node: {config.data_dir} upgraded to schema version {SCHEMA_VERSION} at height "
              f"{done['height']} (head {done['head']}, {done['reverted']} blocks reverted first): "
              f"{done['lots']} lots, {done['resting_orders']} resting orders, {done['scheduled']} scheduled "
              f"expiries now one entry each")
        return 0
    finally:
        kv.close()


async def serve(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"kwh-node: error: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    if args.check_db:
        return check_db(config)
    if args.upgrade_db:
        return upgrade_db(config, args.upgrade_height)
    log = EventLog(config.log_level)
    bridge_stdlib_logging(log)
    from .api import Api
    from .service import Node, StartupError
    try:
        node = Node(config, log)
    except StartupError as exc:
        print(f"kwh-node: error: {exc}", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(Api(node).app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host or None, config.port, shutdown_timeout=2.0).start()
        if config.tls_listen is not None and node.key is not None:
            from .tls import server_context
            host, port = config.tls_listen.rsplit(":", 1)
            await web.TCPSite(runner, host or None, int(port), shutdown_timeout=2.0,
                              ssl_context=server_context(node.key)).start()
    except OSError as exc:
        where = config.listen + (f" / {config.tls_listen}" if config.tls_listen else "")
        print(f"kwh-node: error: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        await runner.cleanup()
        await node.stop()
        node.close_database()
        return 2
    try:
        await node.start()
        log.info("listening", url=config.advertised_url, listen=config.listen, tls_listen=config.tls_listen)
        await stop.wait()
        log.info("stopping", height=node.chain.height)
    finally:
        await node.stop()
        await runner.cleanup()
        height = node.chain.height
        node.close_database()
        log.info("stopped", height=height)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = asyncio.run(serve(argv))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
