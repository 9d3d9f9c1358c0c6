"""Fixtures for functional tests: `node_net(**kwargs)` makes a NodeNet that is always closed, and whose
node logs are printed when the test using it fails."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from framework import NodeNet


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


MODULE_NETS: list[NodeNet] = []  # shared nets, whose logs any failing test prints


def _failed(item: Any) -> bool:
    return any(getattr(getattr(item, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))


@pytest.fixture(autouse=True)
def _dump_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if _failed(request.node):
        for net in MODULE_NETS:
            print(net.dump_logs())


def _factory(base: Path, shared: bool, request: pytest.FixtureRequest) -> Iterator[Callable[..., NodeNet]]:
    nets: list[NodeNet] = []

    def make(**kwargs: Any) -> NodeNet:
        start = kwargs.pop("start", True)
        net = NodeNet(base / f"net{len(nets)}", start=False, **kwargs)
        nets.append(net)
        if shared:
            MODULE_NETS.append(net)
        if start:
            net.start()
        return net

    try:
        yield make
    finally:
        for net in nets:
            net.close()
            if shared:
                MODULE_NETS.remove(net)
            elif _failed(request.node):
                print(net.dump_logs())


@pytest.fixture
def node_net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., NodeNet]]:
    """`net = node_net(authorities=3, observers=1, ...)`: NodeNet's arguments; closed after the test."""
    yield from _factory(tmp_path, False, request)


@pytest.fixture(scope="module")
def module_node_net(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., NodeNet]]:
    """Like node_net, shared by the tests of one module (closed after the last of them)."""
    yield from _factory(tmp_path_factory.mktemp("nodes"), True, request)
