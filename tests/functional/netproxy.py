"""TCP proxies between node processes, so a test can cut and restore links without any test hook in the node.

    hub = ProxyHub()                       # one asyncio loop in a daemon thread serves every link
    link = hub.add(target_port, "a->b")    # listens on a fresh 127.0.0.1 port, forwards to target_port
    link.url                               # give this to the dialing node (--peers / --public-url)
    link.cut()                             # close live connections, refuse new ones (reset at once)
    link.restore()                         # forward again
    hub.add(port, name, tls=True)          # the target speaks TLS: link.url is https://
    link.tamper_after = N                  # flip one bit in every chunk (each direction) once N bytes passed
    link.capture                           # every byte the link forwarded (both directions): what a wiretap sees
    hub.add(port, name, tls=True, mitm_key=key)  # terminate TLS with a certificate of `key` (not the
                                           # target's), read the plaintext, and forward it over a new TLS link
    hub.close()

A cut link behaves like a peer that went down: connections are reset, never left hanging, so nodes
notice at once and their retry timers (not TCP timeouts) decide how fast they reconnect after a heal.
"""
from __future__ import annotations

import asyncio
import threading
from contextlib import suppress
from typing import Any

CONNECT_TIMEOUT_S = 3.0


class Link:
    """One listening port forwarding to one target port; cut and restored from the test's thread."""

    def __init__(self, hub: "ProxyHub", target_port: int, name: str, tls: bool = False,
                 mitm_key: Any = None) -> None:
        self.hub = hub
        self.target_port = target_port
        self.name = name
        self.tls = tls
        self.mitm_key = mitm_key
        self.tamper_after: int | None = None
        self.capture = bytearray()
        self.port = 0
        self.cut_flag = False
        self.accepted = 0  # connections forwarded so far (a test can see that traffic went through)
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self.cut_flag

    def cut(self) -> None:
        """Refuse new connections and reset the live ones."""
        self.hub.call(self._cut())

    def restore(self) -> None:
        self.hub.call(self._restore())

    async def _start(self) -> None:
        ssl_ctx = None
        if self.mitm_key is not None:
            from node.tls import server_context
            ssl_ctx = server_context(self.mitm_key)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl_ctx)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        self.cut_flag = True
        for down, up in list(self._conns):
            _abort(down)
            _abort(up)
        self._conns.clear()

    async def _restore(self) -> None:
        self.cut_flag = False

    async def _close(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()
            with suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_flag:
            _abort(writer)
            return
        try:
            up_ssl = None
            if self.mitm_key is not None:
                from node.tls import client_context
                up_ssl = client_context()
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port, ssl=up_ssl), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            _abort(writer)  # the node behind is down: the dialer sees what it would see without the proxy
            return
        if self.cut_flag:  # cut while connecting
            _abort(writer)
            _abort(up_writer)
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._conns.add(pair)
        tasks = {asyncio.create_task(_pipe(reader, up_writer, self, tamper=True)),
                 asyncio.create_task(_pipe(up_reader, writer, self, tamper=True))}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._conns.discard(pair)
            for w in pair:  # graceful: what one side sent before closing still reaches the other
                with suppress(Exception):
                    w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: "Link | None" = None,
                tamper: bool = False) -> None:
    passed = 0
    with suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if link is not None:
                if len(link.capture) < 4 * 1024 * 1024:
                    link.capture += data
                if tamper and link.tamper_after is not None and passed + len(data) > link.tamper_after:
                    at = max(0, link.tamper_after - passed) + (len(data) - max(0, link.tamper_after - passed)) // 2
                    data = data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]
                passed += len(data)
            writer.write(data)
            await writer.drain()


def _abort(writer: asyncio.StreamWriter) -> None:
    with suppress(Exception):
        writer.transport.abort()


class ProxyHub:
    """An event loop in a daemon thread that serves every Link; close() stops it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.links: list[Link] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="netproxy", daemon=True)
        self._thread.start()

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def add(self, target_port: int, name: str = "", tls: bool = False, mitm_key: Any = None) -> Link:
        link = Link(self, target_port, name or f"->{target_port}", tls, mitm_key)
        self.call(link._start())
        self.links.append(link)
        return link

    def close(self) -> None:
        if not self.loop.is_running():
            return
        async def close_all() -> None:
            await asyncio.gather(*(link._close() for link in self.links), return_exceptions=True)

        with suppress(Exception):
            self.call(close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()
