"""`kwh-node` / `python -m node`: run one node until SIGINT or SIGTERM.

Exit codes: 0 after a clean stop, 2 when the node cannot start (bad flags, genesis, key, data dir, port);
the reason is one line on stderr. Shutdown stops the producer and miner workers, the peers, then the
HTTP server, and closes LevelDB last, so a restart with the same data dir continues where it stopped.
"""
from __future__ import annotations

import asyncio
import signal
import sys
from typing import Sequence

from aiohttp import web

from .config import ConfigError, load_config
from .log import EventLog, bridge_stdlib_logging


async def serve(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"kwh-node: error: {exc}", file=sys.stderr)
        return 2
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
    except OSError as exc:
        print(f"kwh-node: error: cannot listen on {config.listen}: {exc.strerror or exc}", file=sys.stderr)
        await runner.cleanup()
        await node.stop()
        node.close_database()
        return 2
    try:
        await node.start()
        log.info("listening", url=config.advertised_url, listen=config.listen)
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
