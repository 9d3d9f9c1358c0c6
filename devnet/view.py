"""What `kwh-devnet` shows: the live view of a running devnet and the nodes' status table (rich)."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

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


def nodes_table(rows: list[dict[str, Any]], title: str = "nodes") -> Table:
    t = Table(title=title, title_justify="left", expand=False)
    for col in ("node", "role", "url", "state", "height", "head", "peers", "mempool"):
        t.add_column(col, justify="right" if col in ("height", "peers", "mempool") else "left",
                     overflow="fold")
    for r in rows:
        if r.get("up"):
            state = Text("syncing", style="yellow") if r.get("syncing") else Text("up", style="green")
        elif r.get("exit") is not None:
            state = Text(f"exited {r['exit']}", style="red")
        else:
            state = Text("down", style="red")
        t.add_row(r["name"], r["role"], r["url"], state, str(r.get("height", "-")), short(r.get("head")),
                  str(r.get("peers", "-")), str(r.get("mempool", "-")))
    return t


def render(run: DevnetRun) -> Group:
    """The live view: nodes, meters and energy, market, tamper results."""
    sim, stats, energy = run.sim, run.sim.stats, run.energy
    tz = timezone(timedelta(seconds=run.devnet.site.tz_offset_s))
    sim_now = datetime.fromtimestamp(stats.sim_now or run.clock.now(), tz)
    elapsed = int(time.time() - run.started)
    clock = "real time" if run.clock.caught_up else f"x{run.options.speed:g}"
    header = Text.assemble(("kwh-devnet", "bold"), f"  chain {run.devnet.chain_id}  {run.devnet.root}  ",
                           (run.phase, "cyan"), f"  {elapsed // 60}:{elapsed % 60:02d} elapsed  ",
                           "simulated ", (sim_now.strftime("%Y-%m-%d %H:%M %Z"), "bold"), f" ({clock})")
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
    e.add_row("minted on chain (this run)",
              kwh(minted - stats.baseline_minted_wh if minted is not None else None))
    e.add_row("minted on chain (all time)", kwh(minted))
    e.add_row("consumed (metered) / redeemed", f"{kwh(energy.get('consumed_wh'))} / {kwh(energy.get('redeemed_wh'))}")
    e.add_row("settled (delivered + order fills)", kwh(energy.get("settled_wh")))
    e.add_row("ledger's own hashing energy", joules(total.get("energy_j")) + f" ({total.get('hashes', 0):,} hashes)"
              if total else "-")
    e.add_row("hashing kWh per settled kWh", f"{ratio:.2e}" if ratio else "-")
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
        f"readings: {s['readings']} made, {s['accepted']} accepted, {s['confirmed']} on chain "
        f"({s['reposts']} re-posted, refusals {s['refusals'] or 'none'})",
        f"exported (accepted): {s['export_wh_accepted']} Wh; minted this run: {summary['minted_wh_this_run']} Wh; "
        f"consumed {chain.get('consumed_wh')} Wh, redeemed {chain.get('redeemed_wh')} Wh, "
        f"settled {chain.get('settled_wh')} Wh",
    ]
    if summary.get("market"):
        lines.append(f"market: accepted {summary['market']['accepted']}, trades {summary['trades']}")
    if s["tamper"]:
        lines.append("tamper: " + "; ".join(f"{k} -> {', '.join(v['got'])}" for k, v in s["tamper"].items()))
    checks = summary["checks"]
    lines.append("checks: " + ", ".join(f"{k}={v}" for k, v in checks.items() if v is not None))
    return lines
