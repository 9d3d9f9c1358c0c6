"""`kwh-devnet`: a local network of nodes with simulated smart meters and market agents.

    kwh-devnet up     [--nodes 4] [--observers 1] [--meters 24] [--dir ./devnet-data] [--base-port 8701]
                      [--speed 120] [--duration S] [--no-market] [--tamper] ...
    kwh-devnet status [--dir ./devnet-data]
    kwh-devnet down   [--dir ./devnet-data]

`up` makes the directory (keys, genesis, devnet.json) unless it exists, in which case it reuses it and the
chain continues. Errors are one line on stderr (`kwh-devnet: error: ...`) and exit code 1.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.live import Live

from node.keyfile import write_private
from wallet.client import DEFAULT_NODE

from .client import NodeUnavailable
from .genesis import (DEFAULT_AUTHORITIES, DEFAULT_BASE_PORT, DEFAULT_CHAIN_ID, DEFAULT_PERSONS, INTERVAL_MODES, PERSON,
                      create_devnet)
from .layout import INDEX, Devnet, LayoutError
from .nodes import NodeStartError, Supervisor, running_nodes, running_supervisor, stop_devnet
from .run import DevnetRun, RunOptions
from .upgrade import UpgradeError, upgrade_data_dirs

DEFAULT_DIR = "./devnet-data"
ENV_DIR = "KWH_DEVNET_DIR"  # so `kwh-devnet status` and `down` find the devnet `make devnet` started elsewhere
ENV_BASE_PORT = "KWH_DEVNET_BASE_PORT"
EXIT_ERROR = 1
EXIT_CHECKS = 3


class Stop(Exception):
    """SIGTERM/SIGINT before or after the event loop runs."""


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"kwh-devnet: error: {message}", err=True)
    sys.exit(code)


class Out:
    """Printing that survives a closed pipe (`make devnet | tee log`, then Ctrl-C kills tee first): after
    the first broken write, output goes nowhere and the devnet still stops in order and writes its summary."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.broken = False
        self.ran = False  # the run began (it writes the summary however it ends)

    def print(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.console.print(text, highlight=False, markup=False, soft_wrap=not self.console.is_terminal)
            self.console.file.flush()
        except (OSError, ValueError, SystemExit):  # rich turns a broken pipe into SystemExit(1)
            self.broken = True
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the interpreter's exit flush
            except OSError:
                pass


def next_steps(directory: Path, devnet: Devnet) -> list[str]:
    """What to type in another terminal: the README's first steps, with this devnet's paths and ports."""
    venv_bin = Path(sys.executable).parent
    local_venv = Path.cwd() / ".venv" / "bin"
    activate = ".venv/bin/activate" if local_venv.exists() and local_venv.resolve() == venv_bin.resolve() \
        else str(venv_bin / "activate")
    person = next((w.name for w in devnet.wallets if w.role == PERSON), None)
    node = devnet.nodes[0].url
    lines = [f"in another terminal, in {Path.cwd()}:",
             f"  . {activate}    (puts kwh-devnet and kwh-wallet on PATH)",
             "  kwh-devnet status" + ("" if str(directory) in (DEFAULT_DIR, DEFAULT_DIR[2:]) else f" --dir {directory}"),
             "  kwh-wallet " + ("" if node == DEFAULT_NODE else f"--node {node} ") + "status"]
    if person:
        lines.append(f"  kwh-wallet import-key {directory}/keys/wallets/{person}.json --name {person}"
                     "    (person-NN wallets: no market agent touches them)")
    return lines


def plural(n: int, word: str) -> str:
    if n == 1:
        return f"1 {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


def _setup_logging(devnet: Devnet) -> None:
    path = devnet.path("logs/devnet.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s level=%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("devnet")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def _explicit(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="kwhledger", prog_name="kwh-devnet")
def cli() -> None:
    """A local kwhledger network: authority and observer nodes, simulated smart meters, market agents."""


@cli.command()
@click.option("--nodes", "authorities", type=click.IntRange(1, 32), default=DEFAULT_AUTHORITIES, show_default=True,
              help="authority nodes (block producers; with 4, one may fail and blocks still finalize)")
@click.option("--observers", type=click.IntRange(0, 32), default=1, show_default=True, help="observer nodes")
@click.option("--meters", type=click.IntRange(0, 10_000), default=24, show_default=True,
              help="simulated meters (rooftop solar, households, prosumers)")
@click.option("--traders", type=click.IntRange(0, 100), default=2, show_default=True,
              help="funded wallets without a meter (market traders)")
@click.option("--persons", type=click.IntRange(0, 100), default=DEFAULT_PERSONS, show_default=True,
              help="funded wallets for people (person-01, ...): no meter, no market agent touches them")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DIR,
              show_default=True, envvar=ENV_DIR, help=f"devnet directory (reused if it exists; or ${ENV_DIR})")
@click.option("--base-port", type=click.IntRange(1, 65535), default=DEFAULT_BASE_PORT, show_default=True,
              envvar=ENV_BASE_PORT, help=f"first node's port on 127.0.0.1; the others follow (or ${ENV_BASE_PORT})")
@click.option("--speed", type=click.FloatRange(min=0.001), default=120.0, show_default=True,
              help="simulated seconds per real second (the simulation never passes real time)")
@click.option("--history-hours", type=click.FloatRange(min=0), default=None,
              help="the simulated clock starts this many hours ago  [default: at yesterday's local midnight]")
@click.option("--duration", type=click.FloatRange(min=1), default=None,
              help="stop after this many real seconds (wind down, then print a summary); default: until Ctrl-C")
@click.option("--sim-hours", type=click.FloatRange(min=0.25), default=None,
              help="stop after this many simulated hours (wind down, then print a summary)")
@click.option("--market/--no-market", default=True, show_default=True, help="run the market agents")
@click.option("--tamper", is_flag=True, help="send tampered readings (and revoke a meter); each must be refused")
@click.option("--seed", type=int, default=None, help="simulation seed (new devnets: random; reused: stored)")
@click.option("--chain-id", default=DEFAULT_CHAIN_ID, show_default=True, help="chain id of a new devnet")
@click.option("--block-interval-ms", type=click.IntRange(min=100), default=2000, show_default=True,
              help="block interval of a new devnet")
@click.option("--min-difficulty", type=click.IntRange(min=1), default=256, show_default=True,
              help="minimum proof-of-work difficulty of a new devnet")
@click.option("--interval", type=click.Choice(INTERVAL_MODES), default="mixed", show_default=True,
              help="meter interval of a new devnet: 900 s, 1800 s, or mixed (every 4th meter 30 min)")
@click.option("--window", "window_s", type=click.FloatRange(min=5), default=30.0, show_default=True,
              help="delivery window of market offers, real seconds")
@click.option("--restart/--no-restart", default=True, show_default=True,
              help="restart a node that dies while the devnet runs")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="nodes' log level (logs/NAME.log)")
@click.option("--check", is_flag=True,
              help="with --duration/--sim-hours: exit 3 if a final check fails (minted = sent, tamper reasons, heads)")
@click.pass_context
def up(ctx: click.Context, authorities: int, observers: int, meters: int, traders: int, persons: int, directory: Path,
       base_port: int, speed: float, history_hours: float | None, duration: float | None, sim_hours: float | None,
       market: bool, tamper: bool, seed: int | None, chain_id: str, block_interval_ms: int, min_difficulty: int,
       interval: str, window_s: float, restart: bool, log_level: str, check: bool) -> None:
    """Start (or resume) the devnet: nodes, meters and market, with a live view. Ctrl-C stops everything."""
    console = Console(stderr=False)
    out = Out(console)
    try:
        if (directory / INDEX).exists():
            devnet = Devnet.load(directory)
            ignored = [f"--{n.replace('_', '-')}" for n in ("authorities", "observers", "meters", "traders", "persons",
                                                            "chain_id", "block_interval_ms", "min_difficulty",
                                                            "interval")
                       if _explicit(ctx, n)]
            out.print(f"reusing the devnet in {directory} ({plural(len(devnet.authorities), 'authority')}, "
                          f"{plural(len(devnet.observers), 'observer')}, {plural(len(devnet.meters), 'meter')})"
                          + (f"; ignoring {', '.join(ignored)}" if ignored else ""))
            if _explicit(ctx, "base_port") and devnet.nodes and devnet.nodes[0].port != base_port:
                devnet.set_ports(base_port)
                devnet.save()
        else:
            devnet = create_devnet(directory, authorities=authorities, observers=observers, meters=meters,
                                   traders=traders, persons=persons, chain_id=chain_id, seed=seed, base_port=base_port,
                                   block_interval_ms=block_interval_ms, min_difficulty=min_difficulty,
                                   interval=interval)
            out.print(f"created a devnet in {directory}: {plural(authorities, 'authority')}, "
                          f"{plural(observers, 'observer')}, {plural(meters, 'meter')}, "
                          f"{plural(len(devnet.wallets), 'funded wallet')} (seed {devnet.seed})")
    except (LayoutError, ValueError, OSError) as exc:
        fail(str(exc))
    if tamper and len(devnet.meters) < 2:
        fail("--tamper needs at least two meters")
    pid = running_supervisor(devnet)
    if pid is not None:
        fail(f"a devnet is already running in {directory} (pid {pid}); stop it with `kwh-devnet down --dir {directory}`")
    if running_nodes(devnet):
        fail(f"nodes of {directory} are still running without their supervisor; "
             f"stop them with `kwh-devnet down --dir {directory}`")
    try:  # data dirs of an older build: upgraded together before any node starts (devnet/upgrade.py)
        upgraded = upgrade_data_dirs(devnet)
    except (UpgradeError, OSError) as exc:
        fail(f"cannot upgrade the node data dirs of {directory}: {exc}")
    if upgraded:
        console.print(upgraded)
    sup = Supervisor(devnet, log_level=log_level)
    busy = sup.busy_ports()
    if busy:
        fail(f"port(s) {', '.join(busy)} in use (another devnet? use --base-port or `kwh-devnet down`)")
    _setup_logging(devnet)
    options = RunOptions(speed=speed, history_s=history_hours * 3600 if history_hours is not None else None,
                         duration_s=duration,
                         sim_span_s=sim_hours * 3600 if sim_hours is not None else None, tamper=tamper,
                         market=market, window_s=window_s, restart_dead=restart,
                         seed=seed if seed is not None else devnet.seed)

    def raise_stop(signum: int, _frame: Any) -> None:
        raise Stop(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, raise_stop)
    summary: dict[str, Any] | None = None
    error: str | None = None
    stopped_by = "signal"
    try:
        out.print(f"starting {len(devnet.nodes)} nodes (logs in {directory / 'logs'}) ...")
        sup.start_all()
        out.print(f"dashboard: {devnet.nodes[0].url}/  (every node serves one at its own url)")
        for line in next_steps(directory, devnet):
            out.print(line)
        summary = asyncio.run(_run(devnet, options, sup, out))
    except Stop:
        pass
    except (NodeStartError, NodeUnavailable, LayoutError, ValueError, OSError) as exc:
        error, stopped_by = str(exc), "error"
        logging.getLogger("devnet").exception("devnet failed")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the nodes stop in order
        out.print("stopping nodes ...")
        sup.stop_all()
        if not out.ran:
            _write_early_summary(devnet, stopped_by, error)
    if error is not None:
        fail(error)
    if summary is not None:
        from .view import summary_lines
        for line in summary_lines(summary):
            out.print(line)
        out.print(f"summary: {devnet.summary_path}")
        if check and (duration is not None or sim_hours is not None) and \
                any(v is False for v in [*summary["checks"].values(), *summary.get("ocmf", {}).get("checks", {}).values()]):
            sys.exit(EXIT_CHECKS)


def _write_early_summary(devnet: Devnet, stopped_by: str, error: str | None) -> None:
    """The devnet stopped before its run began (Ctrl-C while the nodes started, or a node would not start):
    the summary still says so."""
    data = {"chain_id": devnet.chain_id, "stopped_by": stopped_by, "error": error, "phase": "starting",
            "checks": {}}
    try:
        write_private(devnet.summary_path, (json.dumps(data, indent=2) + "\n").encode())
    except OSError:
        pass


async def _run(devnet: Devnet, options: RunOptions, sup: Supervisor, out: Out) -> dict[str, Any]:
    from .view import progress_line, render
    console = out.console
    out.ran = True
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    run = DevnetRun(devnet, options, sup)
    if console.is_terminal:
        with Live(render(run), console=console, refresh_per_second=2, transient=False) as live:
            return await run.run(stop, lambda r: live.update(render(r)))
    last = [0.0]

    def line(r: DevnetRun) -> None:  # not a terminal: a progress line every 10 s
        if time.monotonic() - last[0] < 10 and r.phase != "stopped":
            return
        last[0] = time.monotonic()
        out.print(progress_line(r))
    return await run.run(stop, line)


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DIR,
              show_default=True, envvar=ENV_DIR, help=f"devnet directory (or ${ENV_DIR})")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(directory: Path, as_json: bool) -> None:
    """Print the nodes' status table. Exit code 0 if every node answers, 1 otherwise."""
    try:
        devnet = Devnet.load(directory)
    except LayoutError as exc:
        fail(str(exc))
    rows = []
    for n in devnet.nodes:
        row: dict[str, Any] = {"name": n.name, "role": n.role, "url": n.url, "up": False}
        try:
            with urllib.request.urlopen(n.url + "/status", timeout=3) as resp:
                data = json.loads(resp.read())
            peers = data.get("peers") or []
            row.update(up=True, height=data["height"], head=data["head"], mempool=data.get("mempool"),
                       syncing=data.get("syncing"), peers=sum(1 for p in peers if p.get("connected", True)),
                       authority=data.get("authority"))
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            pass
        rows.append(row)
    sup = running_supervisor(devnet)
    if as_json:
        click.echo(json.dumps({"dir": str(directory), "supervisor": sup, "nodes": rows}, indent=2))
    else:
        from .view import nodes_table
        console = Console()
        console.print(nodes_table(rows, title=f"{devnet.chain_id} in {directory}"))
        console.print(f"supervisor: {'pid ' + str(sup) if sup else 'not running'}", highlight=False)
    sys.exit(0 if all(r["up"] for r in rows) else 1)


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DIR,
              show_default=True, envvar=ENV_DIR, help=f"devnet directory (or ${ENV_DIR})")
def down(directory: Path) -> None:
    """Stop a running devnet (its supervisor and nodes, found through the pid file)."""
    try:
        devnet = Devnet.load(directory)
    except LayoutError as exc:
        fail(str(exc))
    found, killed = stop_devnet(devnet)
    from .governance import stop_extra_nodes
    extra = stop_extra_nodes(devnet)
    found = found or bool(extra)
    if not found:
        click.echo(f"no devnet running in {directory}")
        return
    click.echo(f"stopped the devnet in {directory}" + (f" (killed {', '.join(killed)})" if killed else ""))


@cli.group()
def authority() -> None:
    """Add or remove an authority of a running devnet (the devnet's authorities vote; the change applies
    once the block where it passed is final)."""


@authority.command("add")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DIR,
              show_default=True, envvar=ENV_DIR, help=f"devnet directory (or ${ENV_DIR})")
@click.option("--name", default=None, help="name of the new node (default: the next authN)")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="seconds to wait for the change")
def authority_add(directory: Path, name: str | None, timeout: float) -> None:
    """Start a new authority node: a new key, votes by the authorities, the node syncs and proposes in turn."""
    from .governance import add_authority, wait_member
    try:
        devnet = Devnet.load(directory)
        spec, _proc = add_authority(devnet, name)
    except (LayoutError, NodeStartError, OSError) as exc:
        fail(str(exc))
    click.echo(f"started {spec.name} at {spec.url} (node key {spec.public}); the authorities voted to add it")
    if not wait_member(devnet, spec.public, True, timeout):
        fail(f"{spec.name} is not an authority after {timeout:.0f} s (is finality advancing? see "
             f"`kwh-devnet status`)")
    click.echo(f"{spec.name} is an authority (the block where the vote passed is final); it proposes in its turn")


@authority.command("remove")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DIR,
              show_default=True, envvar=ENV_DIR, help=f"devnet directory (or ${ENV_DIR})")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="seconds to wait for the change")
def authority_remove(name: str, directory: Path, timeout: float) -> None:
    """Vote an authority out (the others vote); its node keeps following the chain but no longer proposes."""
    from .governance import remove_authority, wait_member
    try:
        devnet = Devnet.load(directory)
        remove_authority(devnet, name)
        public = devnet.node(name).public
    except (LayoutError, OSError) as exc:
        fail(str(exc))
    if not wait_member(devnet, public, False, timeout):
        fail(f"{name} is still an authority after {timeout:.0f} s (is finality advancing?)")
    click.echo(f"{name} is no longer an authority: its blocks and votes are refused from now on")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
