"""What `kwh-devnet` shows: the live view of a running devnet and the nodes' status table (rich)."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .profiles import Site, sun_elevation_sin
from .run import DevnetRun
from .tamper import EXPECTED


def short(h: str | None, n: int = 12) -> str:
    return h[:n] if h else "-"


def kwh(wh: int | float | None) -> str:
    return "-" if wh is None else f"{wh / 1000:,.3f} kWh"


def joules(j: float | None) -> str:
    """Energy for people: J below a Wh, then Wh, then kWh."""
    if j is None:
        return "-"
    if j < 3600:
        return f"{j:,.2f} J"
    if j < 3.6e6:
        return f"{j / 3600:,.3f} Wh"
    return f"{j / 3.6e6:,.3f} kWh"


def sim_clock_text(t: float, site: Site, speed: float, caught_up: bool) -> str:
    """The simulated time and what it means for the meters, in plain words (the same in a terminal and a pipe):
    'simulated 2026-11-29 15:30 UTC (00:30 at the site, UTC+09:00; night: no solar) x120'."""
    utc = datetime.fromtimestamp(t, timezone.utc)
    offset = site.tz_offset_s
    local = datetime.fromtimestamp(t, timezone(timedelta(seconds=offset)))
    sign = "+" if offset >= 0 else "-"
    zone = f"UTC{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    sun = sun_elevation_sin(t, site)
    light = "night: no solar" if sun <= 0 else "low sun: little solar" if sun < 0.2 else "daylight: solar"
    pace = "real time" if caught_up else f"x{speed:g}"
    return f"simulated {utc:%Y-%m-%d %H:%M} UTC ({local:%H:%M} at the site, {zone}; {light}) {pace}"


def progress_line(run: DevnetRun) -> str:
    """One plain-text line of the run's state, for a log or a pipe: no markup, no Python reprs."""
    s = run.sim.stats
    heights = " ".join(f"{n['name']}={n.get('height', 'down')}" for n in run.nodes)
    minted = run.energy.get("minted_wh")
    this_run = minted - s.baseline_minted_wh if minted is not None else None
    parts = [f"[{run.phase}] {sim_clock_text(s.sim_now or run.clock.now(), run.devnet.site, run.options.speed, run.clock.caught_up)}",
             f"heights {heights}",
             finality_text(run.finality()),
             f"readings made {s.readings} accepted {s.accepted} on chain {s.confirmed}",
             f"minted this run {kwh(this_run)}, settled {kwh(run.energy.get('settled_wh'))}"]
    if run.market is not None:
        parts.append(f"trades open {run.trades.get('open', 0)} delivered {run.trades.get('delivered', 0)} "
                     f"settled {run.trades.get('settled', 0)}")
    return " | ".join(parts)


def finality_text(fin: dict[str, Any]) -> str:
    """'finalized 120 (lag 2 blocks)': what no fork can take back any more, and how far the head is ahead."""
    if fin.get("finalized_height") is None:
        return "finalized -"
    return f"finalized {fin['finalized_height']} (lag {fin['lag_blocks']} blocks)"


def nodes_table(rows: list[dict[str, Any]], title: str = "nodes") -> Table:
    """The nodes at a glance; fits 80 columns (address without 'http://', head's first 10 hex characters,
    the role in the name: auth0, obs0; `final` is the node's finalized height)."""
    t = Table(title=title, title_justify="left", expand=False, box=None, padding=(0, 1), pad_edge=False,
              header_style="bold")
    for col in ("node", "address", "state", "height", "final", "head", "peers", "mempool"):  # auth*/obs*: role
        t.add_column(col, justify="right" if col in ("height", "final", "peers", "mempool") else "left",
                     no_wrap=True)
    for r in rows:
        if r.get("up"):
            state = Text("syncing", style="yellow") if r.get("syncing") else Text("up", style="green")
        elif r.get("exit") is not None:
            state = Text(f"exited {r['exit']}", style="red")
        else:
            state = Text("down", style="red")
        t.add_row(r["name"], str(r["url"]).removeprefix("http://"), state, str(r.get("height", "-")),
                  str(r.get("finalized", "-")), short(r.get("head"), 10), str(r.get("peers", "-")),
                  str(r.get("mempool", "-")))
    return t


def render(run: DevnetRun) -> Group:
    """The live view: nodes, meters and energy, market, tamper results."""
    stats, energy = run.sim.stats, run.energy
    elapsed = int(time.time() - run.started)
    header = Text.assemble(("kwh-devnet", "bold"), f"  chain {run.devnet.chain_id}  {run.devnet.root}  ",
                           (run.phase, "cyan"), f"  {elapsed // 60}:{elapsed % 60:02d} elapsed\n",
                           (sim_clock_text(stats.sim_now or run.clock.now(), run.devnet.site, run.options.speed,
                                           run.clock.caught_up), "bold"))
    dashboard = Text.assemble("dashboard ", (f"{run.devnet.nodes[0].url}/", "underline"), "  (energy: ",
                              f"{run.devnet.nodes[0].url}/#/energy, market: #/market)") if run.devnet.nodes else Text("")
    parts: list[Any] = [header, dashboard, nodes_table(run.nodes)]

    minted = energy.get("minted_wh")
    total = energy.get("total") or {}
    ratio = energy.get("ledger_kwh_per_settled_kwh")
    e = Table(title="energy", title_justify="left", show_header=False)
    e.add_column("what")
    e.add_column("value", justify="right")
    e.add_row("readings made / accepted / on chain", f"{stats.readings} / {stats.accepted} / {stats.confirmed}")
    e.add_row("exported by meters (accepted)", kwh(stats.export_wh_accepted))
    this_run = minted - stats.baseline_minted_wh if minted is not None else None
    dark = sun_elevation_sin(stats.sim_now or run.clock.now(), run.devnet.site) <= 0
    e.add_row("minted on chain (this run)", kwh(this_run) + ("  (night: no solar yet)" if dark and not this_run
                                                             else ""))
    e.add_row("minted on chain (all time)", kwh(minted))
    e.add_row("consumed (metered) / redeemed", f"{kwh(energy.get('consumed_wh'))} / {kwh(energy.get('redeemed_wh'))}")
    e.add_row("settled (delivered + order fills)", kwh(energy.get("settled_wh")))
    e.add_row("ledger's own hashing energy", joules(total.get("energy_j")) + f" ({total.get('hashes', 0):,} hashes)"
              if total else "-")
    e.add_row("hashing kWh per settled kWh", f"{ratio:.2e}" if ratio else "-")
    if run.node_energy:
        whole = run.energy_summary()
        flag = "estimated" if whole["estimated"] else "measured"
        e.add_row(f"ledger's whole energy, all nodes ({flag})", joules(whole["whole_kwh"] * 3.6e6))
        per_settled = whole["whole_kwh_per_settled_kwh"]
        e.add_row("whole kWh per settled kWh", f"{per_settled:.2e}" if per_settled else "-")
        per_day = whole["whole_kwh_per_sim_day"]
        e.add_row("whole energy per simulated day", joules(per_day * 3.6e6) if per_day else "-")
    if stats.reposts or stats.refusals or stats.node_failures:
        e.add_row("re-posted / refused / node failures",
                  f"{stats.reposts} / {sum(stats.refusals.values())} / {stats.node_failures}")
    parts.append(e)

    if run.market is not None:
        ms = run.market.stats
        m = Table(title="market", title_justify="left", show_header=False)
        m.add_column("what")
        m.add_column("value", justify="right")
        m.add_row("trades open / delivered / settled",
                  f"{run.trades.get('open', 0)} / {run.trades.get('delivered', 0)} / {run.trades.get('settled', 0)}")
        m.add_row("txs accepted", ", ".join(f"{k} {v}" for k, v in sorted(ms.accepted.items())) or "-")
        refused = _top(ms.refused, 4)
        m.add_row("txs refused (stale views)", refused or "-")
        parts.append(m)

    if run.options.tamper:
        t = Table(title="tamper", title_justify="left")
        for col in ("tamper", "expected", "ledger said", "ok"):
            t.add_column(col)
        for name, expected in EXPECTED.items():
            got = stats.tamper.get(name)
            said = ", ".join(f"{r} x{n}" for r, n in got.items()) if got else "(not yet)"
            ok = Text("yes", style="green") if got and set(got) == {expected} else \
                Text("NO", style="red") if got else Text("-")
            t.add_row(name, expected, said, ok)
        parts.append(t)
    return Group(*parts)


def _top(counter: Any, n: int) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common(n))


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """A few lines people read after a run (the full summary is in summary.json)."""
    s = summary["simulator"]
    chain = summary["chain"]
    lines = [
        f"stopped by: {summary.get('stopped_by', '-')}",
        f"readings: {s['readings']} made, {s['accepted']} accepted, {s['confirmed']} on chain "
        f"({s['reposts']} re-posted, refusals {s['refusals'] or 'none'})",
        f"exported (accepted): {s['export_wh_accepted']} Wh; minted this run: {summary['minted_wh_this_run']} Wh; "
        f"consumed {chain.get('consumed_wh')} Wh, redeemed {chain.get('redeemed_wh')} Wh, "
        f"settled {chain.get('settled_wh')} Wh",
    ]
    if summary.get("market"):
        accepted = ", ".join(f"{k} {v}" for k, v in sorted(summary["market"]["accepted"].items())) or "none"
        trades = ", ".join(f"{k} {v}" for k, v in sorted(summary["trades"].items())) or "none"
        lines.append(f"market: txs accepted {accepted}; trades {trades}")
    energy = summary.get("energy") or {}
    if energy.get("nodes_j"):
        def ratio(v: float | None) -> str:
            return f"{v:.2e}" if v else "-"
        flag = "estimated" if energy.get("estimated") else "measured"
        per_day = energy.get("whole_kwh_per_sim_day")
        lines.append(f"ledger energy ({flag}): whole {energy['whole_kwh'] * 3.6e6:.1f} J on "
                     f"{len(energy['nodes_j'])} nodes, hashing {energy['hashing_kwh'] * 3.6e6:.3g} J; per settled "
                     f"kWh: whole {ratio(energy.get('whole_kwh_per_settled_kwh'))}, hashing "
                     f"{ratio(energy.get('hashing_kwh_per_settled_kwh'))}"
                     + (f"; {per_day:.3g} kWh per simulated day" if per_day else ""))
        agents = energy.get("agents") or {}
        if agents:
            lines.append("verification share of the energy bought: " + ", ".join(
                f"{name} buyers {ratio(a['share'])} ({a['trades']} trades, {a['bought_wh']} Wh)"
                for name, a in agents.items()))
    agreement = summary.get("agreement") or {}
    if agreement.get("height") is not None:
        lines.append(f"nodes at height {agreement['height']}: "
                     + ("same block" if agreement.get("agree") else f"differ {agreement.get('hashes')}"))
    if s["tamper"]:
        lines.append("tamper: " + "; ".join(f"{k} -> {', '.join(v['got'])}" for k, v in s["tamper"].items()))
    if summary.get("ocmf"):  # OCMF meters (devnet/ocmf.py)
        o = summary["ocmf"]
        lines.append(f"ocmf: {', '.join(m['serial'] + ' ' + m['curve'] + ' ' + str(m['accepted']) for m in o['meters'])}"
                     f" records on chain; minted this run {o['minted_wh_this_run']} Wh; "
                     + ", ".join(f"{k}={v}" for k, v in o["checks"].items() if v is not None)
                     + ("; tamper: " + "; ".join(f"{k} -> {', '.join(v['got'])}" for k, v in o["tamper"].items())
                        if o["tamper"] else ""))
    checks = summary["checks"]
    lines.append("checks: " + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in checks.items() if v is not None))
    return lines
