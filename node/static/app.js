// kwhledger dashboard: pages by URL hash (#/block/12, #/account/kwh..., ...), built from the node's own JSON
// views, charts drawn as inline SVG. No third-party code; every text from the chain goes in as text, never HTML.
"use strict";

const COIN = 1e9;
const main = document.getElementById("main");
let timer = null;      // the live page's polling timer
let generation = 0;    // bumps on every navigation, so a late answer never draws over a newer page

// ---- helpers ------------------------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const ns = ["svg", "g", "rect", "line", "path", "text", "polyline", "circle", "title"].includes(tag);
  const e = ns ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") e.textContent = String(v);
    else if (k === "style") e.style.cssText = String(v);  // CSSOM: allowed by the page's CSP, unlike the attribute
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
  }
}

async function api(path, method = "GET", headers = {}) {
  const resp = await fetch(path, {method, headers: Object.assign({Accept: "application/json"}, headers),
                                  cache: "no-store", credentials: "same-origin"});
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

// personal data (ADR 012): a 401/403 means "sign in as its owner", not "broken"
const isPrivate = (e) => e instanceof ApiError && (e.status === 401 || e.status === 403);
const privateNote = (id, what) => h("p", {class: "muted private", id, text:
  `${what} ${reader.key ? "belongs to another account" : "is personal data"}: sign in as its owner, an auditor or ` +
  "an authority with 'kwh-wallet --name NAME dashboard' and open the link it prints."});
const orPrivate = (promise) => promise.catch((e) => { if (isPrivate(e)) return null; throw e; });
let reader = {role: "public", full: false, key: null, address: null};  // who this page reads as
// ask only for what the reader may see (a refused request would still be a console error)
const mayRead = (owner) => reader.full || (reader.address !== null && reader.address === owner);
const unless = (ok, promise) => ok ? orPrivate(promise()) : Promise.resolve(null);

const fmt = {
  int: (n) => (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en-US"),
  wh: (wh) => {
    if (wh === null || wh === undefined) return "–";
    const a = Math.abs(wh);
    if (a >= 1e6) return (wh / 1e6).toLocaleString("en-US", {maximumFractionDigits: 3}) + " MWh";
    if (a >= 1e3) return (wh / 1e3).toLocaleString("en-US", {maximumFractionDigits: 3}) + " kWh";
    return Number(wh).toLocaleString("en-US") + " Wh";
  },
  coin: (units) => (units === null || units === undefined) ? "–" :
    (units / COIN).toLocaleString("en-US", {maximumFractionDigits: 9}),
  pricekwh: (ppw) => (ppw * 1000 / COIN).toLocaleString("en-US", {maximumFractionDigits: 6}),
  joules: (j) => {
    if (j === null || j === undefined) return "–";
    if (j > 0 && j < 1) return (j * 1000).toLocaleString("en-US", {maximumFractionDigits: 2}) + " mJ";
    if (j < 3600) return j.toLocaleString("en-US", {maximumFractionDigits: 2}) + " J";
    if (j < 3.6e6) return (j / 3600).toLocaleString("en-US", {maximumFractionDigits: 3}) + " Wh";
    return (j / 3.6e6).toLocaleString("en-US", {maximumFractionDigits: 3}) + " kWh";
  },
  time: (ms) => Number.isFinite(ms) ? new Date(ms).toLocaleString("sv-SE").replace("T", " ") : "–",
  clock: (ms) => new Date(ms).toLocaleTimeString("en-GB"),
  hour: (s) => new Date(s * 1000).toLocaleString("sv-SE", {month: "2-digit", day: "2-digit", hour: "2-digit"}) + "h",
  short: (hex, n = 10) => hex ? hex.slice(0, n) + "…" : "–",
  sci: (x) => (x === null || x === undefined) ? "–" : Number(x).toExponential(3),
};

const link = {
  block: (ref, text) => h("a", {href: `#/block/${ref}`, class: "mono", text: text ?? ref}),
  tx: (id, text) => h("a", {href: `#/tx/${id}`, class: "mono", text: text ?? fmt.short(id, 16)}),
  account: (addr, text) => addr ? h("a", {href: `#/account/${addr}`, class: "mono", text: text ?? fmt.short(addr, 14)}) : "–",
  meter: (id, text) => h("a", {href: `#/meter/${id}`, class: "mono", text: text ?? id}),
  lot: (id, text) => h("a", {href: `#/lot/${id}`, class: "mono", text: text ?? fmt.short(id, 16)}),
};

// `raw`: the number as the JSON API gives it, in data-value (so tests and tools can compare exactly)
function card(label, value, id, raw) {
  return h("div", {class: "card"}, h("div", {class: "label", text: label}),
           h("div", {class: "value", id, text: value, "data-value": raw === undefined || raw === null ? null : String(raw)}));
}

function table(columns, rows, id) {
  // columns: [[header, (row) => cell, "num"?]]
  return h("table", {id},
    h("thead", {}, h("tr", {}, columns.map(([t, , cls]) => h("th", {class: cls, text: t})))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, columns.map(([, f, cls]) => h("td", {class: cls}, f(r)))))
      : h("tr", {}, h("td", {colspan: columns.length, class: "muted", text: "none"}))));
}

function kv(pairs, id) {
  return h("dl", {class: "kv", id}, pairs.flatMap(([k, v]) => [h("dt", {text: k}), h("dd", {}, v)]));
}

function badge(text) { return h("span", {class: `badge ${text}`, text}); }
function panel(title, ...body) { return h("section", {class: "panel"}, title ? h("h2", {text: title}) : null, ...body); }
function render(...nodes) { main.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false)); }
function query() { const i = location.hash.indexOf("?"); return new URLSearchParams(i < 0 ? "" : location.hash.slice(i + 1)); }

// ---- charts (inline SVG) ------------------------------------------------------------------------------------
const W = 900, H = 260, PAD = {l: 64, r: 64, t: 12, b: 34};

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function axisY(svg, max, fmtTick, side) {
  const x = side === "right" ? W - PAD.r : PAD.l;
  for (let i = 0; i <= 4; i++) {
    const y = PAD.t + (H - PAD.t - PAD.b) * (1 - i / 4);
    if (side !== "right") svg.append(h("line", {class: "grid", x1: PAD.l, x2: W - PAD.r, y1: y, y2: y}));
    svg.append(h("text", {x: side === "right" ? x + 6 : x - 6, y: y + 4, "text-anchor": side === "right" ? "start" : "end",
                          text: fmtTick(max * i / 4)}));
  }
}

function legend(series) {
  return h("div", {class: "legend"}, series.map((s) => h("span", {}, h("i", {style: `background:${s.color}`}), s.name)));
}

// Grouped bars: labels[i] under each group; series: [{name, color, values}]
function barChart(id, labels, series, fmtTick) {
  const svg = h("svg", {class: "chart", id, viewBox: `0 0 ${W} ${H}`, role: "img"});
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  axisY(svg, max, fmtTick);
  const n = Math.max(1, labels.length), plotW = W - PAD.l - PAD.r, plotH = H - PAD.t - PAD.b;
  const gw = plotW / n, bw = Math.max(1, (gw * 0.8) / series.length);
  const every = Math.ceil(n / 12);
  labels.forEach((label, i) => {
    series.forEach((s, j) => {
      const v = s.values[i] || 0, bh = plotH * v / max;
      svg.append(h("rect", {x: PAD.l + i * gw + gw * 0.1 + j * bw, y: PAD.t + plotH - bh, width: bw, height: bh,
                            fill: s.color}, h("title", {text: `${s.name} ${label}: ${fmtTick(v)}`})));
    });
    if (i % every === 0) svg.append(h("text", {x: PAD.l + i * gw + gw / 2, y: H - PAD.b + 16, "text-anchor": "middle", text: label}));
  });
  return h("div", {}, legend(series), svg);
}

// Lines over x; series: [{name, color, values, axis: "left"|"right", fmt, bars?}]
function lineChart(id, xs, xLabel, series) {
  const svg = h("svg", {class: "chart", id, viewBox: `0 0 ${W} ${H}`, role: "img"});
  const plotW = W - PAD.l - PAD.r, plotH = H - PAD.t - PAD.b;
  const n = Math.max(2, xs.length);
  for (const side of ["left", "right"]) {
    const ss = series.filter((s) => s.axis === side);
    if (!ss.length) continue;
    const max = niceMax(Math.max(0, ...ss.flatMap((s) => s.values.filter((v) => v !== null))));
    axisY(svg, max, ss[0].fmt, side);
    for (const s of ss) {
      if (s.bars) {
        const bw = Math.max(1, plotW / n * 0.7);
        s.values.forEach((v, i) => {
          if (v === null) return;
          const bh = plotH * v / max;
          svg.append(h("rect", {x: PAD.l + plotW * i / (n - 1) - bw / 2, y: PAD.t + plotH - bh, width: bw, height: bh,
                                fill: s.color, opacity: 0.75}));
        });
        continue;
      }
      let d = "";
      s.values.forEach((v, i) => {
        if (v === null) return;
        const x = PAD.l + plotW * i / (n - 1), y = PAD.t + plotH * (1 - v / max);
        d += (d && s.values[i - 1] !== null ? "L" : "M") + x.toFixed(1) + "," + y.toFixed(1);
      });
      if (d) svg.append(h("path", {d, fill: "none", stroke: s.color, "stroke-width": 2}));
    }
  }
  const every = Math.ceil(xs.length / 10);
  xs.forEach((x, i) => {
    if (i % every === 0) svg.append(h("text", {x: PAD.l + plotW * i / (n - 1), y: H - PAD.b + 16, "text-anchor": "middle", text: x}));
  });
  svg.append(h("text", {x: W / 2, y: H - 4, "text-anchor": "middle", text: xLabel}));
  return h("div", {}, legend(series), svg);
}

// Order book depth: cumulative Wh against price, buys falling to the left, sells rising to the right.
function depthChart(id, depth) {
  const svg = h("svg", {class: "chart", id, viewBox: `0 0 ${W} ${H}`, role: "img"});
  const plotW = W - PAD.l - PAD.r, plotH = H - PAD.t - PAD.b;
  const prices = [...depth.buys, ...depth.sells].map((l) => l.price_per_wh);
  const maxWh = niceMax(Math.max(0, ...[...depth.buys, ...depth.sells].map((l) => l.cum_wh)));
  axisY(svg, maxWh, fmt.wh);
  if (!prices.length) {
    svg.append(h("text", {x: W / 2, y: H / 2, "text-anchor": "middle", text: "no open orders"}));
    return h("div", {}, svg);
  }
  let lo = Math.min(...prices), hi = Math.max(...prices);
  if (lo === hi) { lo = lo * 0.9; hi = hi * 1.1 + 1; }
  const px = (p) => PAD.l + plotW * (p - lo) / (hi - lo), py = (w) => PAD.t + plotH * (1 - w / maxWh);
  const step = (levels, color) => {
    if (!levels.length) return;
    let d = `M${px(levels[0].price_per_wh)},${py(0)}`;
    let prev = 0;
    for (const l of levels) { d += `L${px(l.price_per_wh)},${py(prev)}L${px(l.price_per_wh)},${py(l.cum_wh)}`; prev = l.cum_wh; }
    const last = levels[levels.length - 1];
    const edge = levels === depth.buys ? PAD.l : W - PAD.r;
    d += `L${edge},${py(last.cum_wh)}`;
    svg.append(h("path", {d, fill: "none", stroke: color, "stroke-width": 2}));
  };
  step(depth.buys, "var(--buy)");
  step(depth.sells, "var(--sell)");
  for (let i = 0; i <= 4; i++) {
    const p = lo + (hi - lo) * i / 4;
    svg.append(h("text", {x: px(p), y: H - PAD.b + 16, "text-anchor": "middle", text: (p * 1000 / COIN).toFixed(3)}));
  }
  svg.append(h("text", {x: W / 2, y: H - 4, "text-anchor": "middle", text: "price (coin per kWh)"}));
  return h("div", {}, legend([{name: "buy orders (cumulative)", color: "var(--buy)"},
                              {name: "sell orders (cumulative)", color: "var(--sell)"}]), svg);
}

// ---- pages --------------------------------------------------------------------------------------------------
function blocksTable(blocks, id) {
  return table([
    ["height", (b) => link.block(b.height), "num"],
    ["time", (b) => fmt.time(b.timestamp_ms)],
    ["hash", (b) => link.block(b.hash, fmt.short(b.hash, 16))],
    ["proposer", (b) => h("span", {class: "mono", text: fmt.short(b.proposer, 12)})],
    ["txs", (b) => fmt.int(b.txs), "num"],
    ["difficulty", (b) => fmt.int(b.difficulty), "num"],
    ["hashes", (b) => fmt.int(b.hashes), "num"],
    ["energy", (b) => fmt.joules(b.energy_mj / 1000), "num"],
  ], blocks, id);
}

function txAmount(t) {
  if (t.kind === "reading") return `+${fmt.wh(t.export_wh)} / −${fmt.wh(t.import_wh)}`;
  if (t.amount !== undefined) return fmt.coin(t.amount) + " coin";
  if (t.wh !== undefined) return fmt.wh(t.wh);
  return "";
}

function txsTable(txs, id) {
  return table([
    ["txid", (t) => link.tx(t.txid)],
    ["kind", (t) => t.kind],
    ["from", (t) => t.kind === "reading" ? link.meter(t.meter_id, fmt.short(t.meter_id, 12)) : link.account(t.sender)],
    ["to", (t) => link.account(t.to)],
    ["amount", (t) => txAmount(t), "num"],
    ["block", (t) => t.height !== undefined ? link.block(t.height) : "pending", "num"],
  ], txs, id);
}

async function overview(gen) {
  const draw = async () => {
    // blocks and transactions up to the head that /status gave, so the page shows one moment of the chain
    const st = await api("/status");
    const [bl, tx] = await Promise.all([api(`/dashboard/api/blocks?limit=10&before=${st.height + 1}`),
                                        api(`/dashboard/api/txs?limit=10&before=${st.height + 1}`)]);
    if (gen !== generation) return;
    const times = bl.blocks.map((b) => b.timestamp_ms);
    const blockTime = times.length > 1 ? (times[0] - times[times.length - 1]) / (times.length - 1) / 1000 : null;
    render(
      h("h1", {text: "Overview"}),
      h("div", {class: "cards"},
        card("chain", st.chain_id, "ov-chain"),
        card("height", fmt.int(st.height), "ov-height", st.height),
        card("finalized", st.finalized_height === undefined || st.finalized_height === null ? "–" : fmt.int(st.finalized_height), "ov-finalized", st.finalized_height),
        card("block time", blockTime === null ? "–" : blockTime.toFixed(2) + " s", "ov-blocktime"),
        card("mempool", fmt.int(st.mempool), "ov-mempool", st.mempool),
        card("peers", `${st.peers.filter((p) => p.connected !== false).length} / ${st.peers.length}`, "ov-peers"),
      ),
      h("p", {class: "muted"}, "head ", link.block(st.head, st.head), " · ",
        st.authority ? "authority node" : "observer node", st.syncing ? " · syncing" : "", " · ",
        badge("live"), " updated ", h("span", {id: "ov-updated", text: fmt.clock(Date.now())})),
      panel("Peers", table([
        ["url", (p) => p.url], ["key", (p) => h("span", {class: "mono", text: fmt.short(p.key, 16)})],
        ["height", (p) => fmt.int(p.height), "num"],
        ["connected", (p) => p.connected === false ? badge("down") : badge("live")],
      ], st.peers, "ov-peer-table")),
      panel("Recent blocks", blocksTable(bl.blocks, "ov-blocks"), h("div", {class: "pager"}, h("a", {href: "#/blocks", text: "all blocks →"}))),
      panel("Recent transactions", txsTable(tx.txs, "ov-txs")));
    return st.height;
  };
  let shown = await draw();
  timer = setInterval(async () => {
    try {
      const st = await api("/status");
      if (gen !== generation) return;
      if (st.height !== shown) shown = await draw();
      else {
        const mp = document.getElementById("ov-mempool");
        mp.textContent = fmt.int(st.mempool);
        mp.dataset.value = String(st.mempool);
        document.getElementById("ov-updated").textContent = fmt.clock(Date.now());
      }
    } catch (e) { /* the next poll tries again */ }
  }, 1500);
}

async function blocksPage(gen) {
  const before = query().get("before");
  const bl = await api("/dashboard/api/blocks?limit=25" + (before ? `&before=${encodeURIComponent(before)}` : ""));
  if (gen !== generation) return;
  render(h("h1", {text: "Blocks"}), panel(null, blocksTable(bl.blocks, "blocks-table"),
    h("div", {class: "pager"}, before ? h("a", {href: "#/blocks", text: "← newest"}) : null,
      bl.next !== null ? h("a", {id: "blocks-older", href: `#/blocks?before=${bl.next}`, text: "older →"}) : null)));
}

async function blockPage(gen, ref) {
  const b = await api(`/blocks/${encodeURIComponent(ref)}`);
  if (gen !== generation) return;
  const rows = b.txs.map((t, i) => Object.assign({height: b.height, index: i}, t));
  render(h("h1", {text: `Block ${fmt.int(b.height)}`}),
    panel("Header", kv([
      ["height", h("span", {id: "block-height", text: b.height})],
      ["hash", h("span", {class: "hash", id: "block-hash", text: b.hash})],
      ["previous", b.height > 0 ? link.block(b.prev_hash) : "–"],
      ["time", fmt.time(b.timestamp_ms)],
      ["proposer", h("span", {class: "hash", text: b.proposer})],
      ["difficulty (work)", fmt.int(b.difficulty)],
      ["hashes", h("span", {id: "block-hashes", text: fmt.int(b.hashes)})],
      ["mining energy", `${fmt.joules(b.energy_mj / 1000)} (${b.energy_estimated ? "estimated" : "measured"})`],
      ["tx root", h("span", {class: "hash", text: b.tx_root})],
      ["state root", h("span", {class: "hash", text: b.state_root})],
      ["nonce", fmt.int(b.nonce)],
    ], "block-header")),
    h("div", {class: "pager"}, b.height > 0 ? link.block(b.height - 1, "← previous") : null,
      h("a", {href: `#/block/${b.height + 1}`, text: "next →"})),
    b.txs.length || !b.tx_count ? panel(`Transactions (${b.txs.length})`, txsTable(rows, "block-txs"))
      : panel(`Transactions (${fmt.int(b.tx_count)})`, privateNote("block-private", "What a block's transactions say")));
}

const PARTY_FIELDS = ["sender", "to", "owner", "seller", "buyer"];
const LINKED = {meter_id: link.meter, offer_id: link.tx, trade_id: link.tx, order_id: link.tx};

async function txPage(gen, id) {
  const t = await api(`/tx/${encodeURIComponent(id)}`);
  if (gen !== generation) return;
  const body = t.tx || {};
  const fields = Object.entries(body).filter(([k]) => !["txid", "kind", "signature", "sender_key"].includes(k));
  const value = (k, v) => PARTY_FIELDS.includes(k) ? link.account(v, v) : LINKED[k] ? LINKED[k](v, v)
    : k === "amount" || k === "fee" ? `${fmt.coin(v)} coin` : /(^|_)(wh|register)$/.test(k) ? fmt.wh(v)
    : /^(interval_start|window_start|window_end)$/.test(k) ? fmt.time(v * 1000)
    : k === "price_per_wh" ? `${fmt.pricekwh(v)} coin/kWh` : h("span", {class: "mono", text: String(v)});
  // an offer's and a trade's id is the id of the tx that made them: show their state beside the tx
  const made = t.status !== "included" ? null : body.kind === "accept_offer" ? await api(`/trades/${t.txid}`).catch(() => null)
    : body.kind === "post_offer" ? await api(`/market/offers/${t.txid}`).catch(() => null) : null;
  if (gen !== generation) return;
  render(h("h1", {text: `Transaction`}),
    panel(null, kv([
      ["txid", h("span", {class: "hash", id: "tx-id", text: t.txid})],
      ["type", h("span", {id: "tx-kind", text: body.kind || "–"})],
      ["status", h("span", {id: "tx-status"}, badge(t.status), t.final === true ? " final" : "")],
      ...(t.height !== undefined ? [["block", link.block(t.height)], ["index in block", String(t.index)]] : []),
      ...(t.reason ? [["rejection reason", h("span", {id: "tx-reason", text: t.reason})], ["detail", t.detail || ""]] : []),
      ...fields.map(([k, v]) => [k, value(k, v)]),
    ], "tx-fields")),
    t.tx ? null : privateNote("tx-private", "What this transaction says"),
    made && made.trade_id ? panel("The trade it opened", kv([
      ["status", h("span", {id: "trade-status"}, badge(made.status))], ["seller", link.account(made.seller, made.seller)],
      ["buyer", link.account(made.buyer, made.buyer)], ["energy", fmt.wh(made.wh)],
      ["price", `${fmt.pricekwh(made.price_per_wh)} coin/kWh`], ["escrow", `${fmt.coin(made.escrow)} coin`],
      ["delivered", fmt.wh(made.delivered)], ["released to seller", `${fmt.coin(made.released)} coin`],
      ["refunded to buyer", `${fmt.coin(made.refunded)} coin`],
      ["window", `${fmt.time(made.window_start * 1000)} – ${fmt.time(made.window_end * 1000)}`]], "trade-fields")) : null,
    made && made.offer_id && !made.trade_id ? panel("The offer it posted", kv([
      ["status", badge(made.status)], ["remaining", `${fmt.wh(made.remaining)} of ${fmt.wh(made.wh)}`],
      ["price", `${fmt.pricekwh(made.price_per_wh)} coin/kWh`], ["source", made.source || "any"],
      ["window", `${fmt.time(made.window_start * 1000)} – ${fmt.time(made.window_end * 1000)}`]], "offer-fields")) : null);
}

async function accountPage(gen, addr) {
  const before = query().get("before"), offset = query().get("offset");
  const ok = mayRead(addr);
  const [a, lots, hist] = await Promise.all([
    unless(ok, () => api(`/accounts/${encodeURIComponent(addr)}`)),
    unless(ok, () => api(`/dashboard/api/accounts/${encodeURIComponent(addr)}/lots?limit=20` + (offset ? `&offset=${encodeURIComponent(offset)}` : ""))),
    unless(ok, () => api(`/dashboard/api/accounts/${encodeURIComponent(addr)}/history?limit=20` + (before ? `&before=${encodeURIComponent(before)}` : "")))]);
  if (gen !== generation) return;
  if (a === null || lots === null || hist === null) {
    render(h("h1", {text: "Account"}), h("p", {class: "hash", id: "acct-address", text: addr}),
      privateNote("acct-private", "An account's balances, lots and history"));
    return;
  }
  render(h("h1", {text: "Account"}), h("p", {class: "hash", id: "acct-address", text: a.address}),
    h("div", {class: "cards"},
      card("coin (free)", fmt.coin(a.coin), "acct-coin", a.coin), card("coin (locked)", fmt.coin(a.locked_coin), "acct-locked-coin", a.locked_coin),
      card("energy (free)", fmt.wh(a.wh), "acct-wh", a.wh), card("energy (locked)", fmt.wh(a.locked_wh), "acct-locked-wh", a.locked_wh),
      card("consumed", fmt.wh(a.consumed_wh), "acct-consumed", a.consumed_wh), card("redeemed", fmt.wh(a.redeemed_wh), "acct-redeemed", a.redeemed_wh),
      card("nonce", fmt.int(a.nonce), "acct-nonce", a.nonce)),
    panel(`Lots (${fmt.int(lots.total)}), with provenance`, table([
      ["lot", (l) => link.lot(l.lot_id)], ["Wh", (l) => fmt.int(l.wh), "num"], ["source", (l) => l.source],
      ["meter", (l) => l.meter_id ? link.meter(l.meter_id, fmt.short(l.meter_id, 12)) : "–"],
      ["interval", (l) => l.interval_start !== undefined ? fmt.time(l.interval_start * 1000) + ` (${l.interval_s / 60} min)` : "–"],
      ["reading", (l) => l.reading_id ? link.tx(l.reading_id) : "–"],
      ["minted in block", (l) => l.height !== undefined ? link.block(l.height) : "–", "num"],
    ], lots.lots, "acct-lots"),
      h("div", {class: "pager"}, lots.next !== null ? h("a", {href: `#/account/${a.address}?offset=${lots.next}`, text: "more lots →"}) : null)),
    panel("History", table([
      ["block", (e) => link.block(e.height), "num"], ["kind", (e) => e.kind], ["txid", (e) => link.tx(e.txid)],
    ], hist.history, "acct-history"),
      h("div", {class: "pager"}, before ? h("a", {href: `#/account/${a.address}`, text: "← newest"}) : null,
        hist.next !== null ? h("a", {id: "acct-older", href: `#/account/${a.address}?before=${hist.next}`, text: "older →"}) : null)));
}

async function meterPage(gen, id) {
  const m = await api(`/meters/${encodeURIComponent(id)}`);
  const r = await unless(mayRead(m.owner), () => api(`/dashboard/api/meters/${encodeURIComponent(id)}/readings?limit=96`));
  if (gen !== generation) return;
  const rd = r ? r.readings : [];
  render(h("h1", {text: "Meter"}), h("p", {class: "hash", id: "meter-id", text: m.meter_id}),
    h("div", {class: "cards"},
      card("export register", fmt.wh(m.export_register), "meter-export", m.export_register), card("import register", fmt.wh(m.import_register), "meter-import", m.import_register),
      card("minted", fmt.wh(m.minted_wh), "meter-minted", m.minted_wh), card("consumed", fmt.wh(m.consumed_wh), "meter-consumed", m.consumed_wh),
      card("counter", fmt.int(m.counter), "meter-counter", m.counter), card("state", m.active ? "active" : "revoked", "meter-state")),
    panel("Enrollment", kv([
      ["owner", link.account(m.owner, m.owner)], ["kind", m.kind], ["source", m.source || "–"],
      ["rated power", `${fmt.int(m.rated_w)} W`], ["interval", `${m.interval_s / 60} min`],
      ["enrolled in block", link.block(m.enrolled_height)], ["next interval starts", fmt.time(m.next_start * 1000)],
      ["public key (P-256)", h("span", {class: "hash", text: m.public})]])),
    r ? null : privateNote("meter-private", "A meter's registers and readings (a household's load curve)"),
    r === null ? null : panel(`Exported and imported energy per interval (last ${rd.length} readings)`,
      barChart("meter-chart", rd.map((x) => fmt.time(x.interval_start * 1000).slice(5, 16)),
        [{name: "exported", color: "var(--export)", values: rd.map((x) => x.export_wh)},
         {name: "imported", color: "var(--import)", values: rd.map((x) => x.import_wh)}], fmt.wh)),
    r === null ? null : panel("Readings", table([
      ["interval", (x) => fmt.time(x.interval_start * 1000)], ["exported", (x) => fmt.wh(x.export_wh), "num"],
      ["imported", (x) => fmt.wh(x.import_wh), "num"], ["block", (x) => link.block(x.height), "num"],
      ["reading", (x) => link.tx(x.txid)],
    ], rd.slice(-20).reverse(), "meter-readings")));
}

async function lotPage(gen, id) {
  const r = await api(`/lots/${encodeURIComponent(id)}`);
  if (gen !== generation) return;
  const l = r.lot;
  render(h("h1", {text: "Lot"}), h("p", {class: "hash", id: "lot-id", text: l.lot_id}),
    panel("Provenance", kv([
      ["meter", link.meter(l.meter_id, l.meter_id)], ["producer", link.account(l.producer, l.producer)],
      ["interval", `${fmt.time(l.interval_start * 1000)} (${l.interval_s / 60} min)`],
      ["minted", fmt.wh(l.minted_wh)], ["source", l.source || "–"],
      ["reading", link.tx(l.reading_id, l.reading_id)], ["minted in block", link.block(l.height)]], "lot-provenance")),
    panel("Movements", table([
      ["tx", (m) => link.tx(m.txid)], ["kind", (m) => m.kind], ["from", (m) => link.account(m.from)],
      ["to", (m) => link.account(m.to)], ["Wh", (m) => fmt.int(m.wh), "num"]], r.movements, "lot-movements")));
}

async function energyPage(gen) {
  const [e, whole] = await Promise.all([api("/dashboard/api/energy?hours=48&blocks=200"), api("/energy?limit=100")]);
  if (gen !== generation) return;
  const t = e.totals, bh = e.by_block_hour, ih = e.by_interval_hour, bl = e.blocks;
  render(h("h1", {text: "Energy"}),
    h("div", {class: "cards"},
      card("minted", fmt.wh(t.minted_wh), "en-minted", t.minted_wh), card("consumed (metered)", fmt.wh(t.consumed_wh), "en-consumed", t.consumed_wh),
      card("redeemed", fmt.wh(t.redeemed_wh), "en-redeemed", t.redeemed_wh), card("settled", fmt.wh(t.settled_wh), "en-settled", t.settled_wh),
      card("ledger's hashing energy", fmt.joules(t.energy_j), "en-energy", t.energy_j),
      card("ledger kWh per settled kWh", fmt.sci(t.ledger_kwh_per_settled_kwh), "en-ratio", t.ledger_kwh_per_settled_kwh),
      card("grid surplus now", `${fmt.int(e.grid.surplus_w)} W`, "en-surplus"),
      card("difficulty now", fmt.int(e.grid.difficulty), "en-difficulty")),
    panel("Metered energy per hour of interval (what the meters measured)",
      barChart("chart-metered", ih.map((x) => fmt.hour(x.hour)),
        [{name: "exported (minted)", color: "var(--export)", values: ih.map((x) => x.export_wh)},
         {name: "imported (consumed)", color: "var(--import)", values: ih.map((x) => x.import_wh)}], fmt.wh)),
    panel("Ledger activity per hour of block time",
      barChart("chart-hourly", bh.map((x) => fmt.hour(x.hour)),
        [{name: "minted", color: "var(--minted)", values: bh.map((x) => x.minted_wh)},
         {name: "consumed", color: "var(--consumed)", values: bh.map((x) => x.consumed_wh)},
         {name: "redeemed", color: "var(--redeemed)", values: bh.map((x) => x.redeemed_wh)},
         {name: "settled", color: "var(--settled)", values: bh.map((x) => x.settled_wh)}], fmt.wh)),
    panel("The ledger's energy per kWh it settled, per hour of block time",
      barChart("chart-ratio", bh.map((x) => fmt.hour(x.hour)), [
        {name: "ledger kWh (hashing) per settled kWh", color: "var(--energy)",
         values: bh.map((x) => x.settled_wh > 0 ? (x.energy_j / 3.6e6) / (x.settled_wh / 1000) : 0)}], fmt.sci)),
    panel(`The ledger's own hashing energy per block against the grid surplus signal (last ${bl.length} blocks)`,
      lineChart("chart-mining", bl.map((b) => String(b.height)), "block height", [
        {name: "hashing energy per block (left)", color: "var(--energy)", values: bl.map((b) => b.energy_j), axis: "left",
         fmt: (v) => fmt.joules(v), bars: true},
        {name: "grid surplus this node had when the block arrived (right, W)", color: "var(--surplus)", axis: "right",
         fmt: (v) => Number(v).toLocaleString("en-US", {maximumFractionDigits: 2}),
         values: bl.map((b) => b.surplus_w === null ? null : Math.max(0, b.surplus_w))},
      ]),
      h("p", {class: "muted", text: "The surplus signal is not on chain: blank for blocks that came before this " +
        "node's dashboard was first opened. A shortage (≤ 0 W) mines at the genesis minimum difficulty."})),
    verifyingPanel(whole, bl),
    panel("Proof-of-work difficulty per block",
      lineChart("chart-difficulty", bl.map((b) => String(b.height)), "block height", [
        {name: "difficulty", color: "var(--difficulty)", values: bl.map((b) => b.difficulty), axis: "left", fmt: fmt.int}]),
      h("p", {class: "muted", text: `Series cover blocks ${e.indexed_from}–${e.indexed_to}; the totals above cover the whole chain.` +
        (e.indexed_to + 10 < e.head ? " The node is still reading the chain for these series: reload in a moment." : "")})));
}

// What verifying costs (issue 16): this node's whole energy (signatures, state, storage, hashing, peers, API),
// and the network's estimate (times the validating nodes), beside the proposers' hashing alone.
function verifyingPanel(whole, bl) {
  const n = whole.node, how = n.estimated ? "estimated: CPU time × watts per core" : "measured (RAPL)";
  const hashingAt = new Map(bl.map((b) => [b.height, b.energy_j]));
  const blocks = n.blocks.filter((b) => hashingAt.has(b.height)).reverse();  // oldest first
  const cats = Object.keys(n.breakdown_j);
  const hashing = blocks.reduce((a, b) => a + hashingAt.get(b.height), 0);
  const ratio = hashing > 0 ? blocks.reduce((a, b) => a + b.energy_j * n.validators, 0) / hashing : null;
  return panel(`What verifying costs: this node's whole energy since it started (${how})`,
    h("div", {class: "cards"},
      card("this node, whole", fmt.joules(n.energy_j), "en-node-energy", n.energy_j),
      card(`the network (× ${n.validators} validating nodes)`, fmt.joules(n.energy_j * n.validators), "en-network-energy",
        n.energy_j * n.validators),
      card("transactions applied", fmt.int(n.txs_applied), "en-node-txs", n.txs_applied),
      card("network whole energy ÷ hashing, blocks below", ratio === null ? "–" : `${fmt.int(Math.round(ratio))}×`,
        "en-whole-vs-hashing", ratio)),
    barChart("chart-node-breakdown", cats, [{name: "joules by what they were spent on", color: "var(--energy)",
      values: cats.map((c) => n.breakdown_j[c])}], fmt.joules),
    barChart("chart-node-blocks", blocks.map((b) => String(b.height)), [
      {name: `whole energy per block, network estimate (× ${n.validators})`, color: "var(--consumed)",
       values: blocks.map((b) => b.energy_j * n.validators)},
      {name: "the proposer's hashing for the block", color: "var(--energy)", values: blocks.map((b) => hashingAt.get(b.height))}],
      fmt.joules),
    h("p", {class: "muted", text: "Every node checks every signature, applies the state, writes to disk and talks to " +
      "its peers; the hashing charts above count the proposer's proof of work only. Not counted: network gear, the " +
      "meters themselves (README, \"What verifying costs\")."}));
}

async function marketPage(gen) {
  const m = await api("/dashboard/api/market?limit=20");
  if (gen !== generation) return;
  const c = m.recent_trade_counts, n = m.recent_trades_counted;
  const orderCols = [["price (coin/kWh)", (o) => fmt.pricekwh(o.price_per_wh), "num"], ["remaining", (o) => fmt.wh(o.remaining), "num"],
                     ["owner", (o) => link.account(o.owner)], ["order", (o) => link.tx(o.order_id)]];
  render(h("h1", {text: "Market"}),
    h("div", {class: "cards"}, card(`open (of the last ${n} trades)`, fmt.int(c.open || 0), "mk-open", c.open || 0),
      card("delivered", fmt.int(c.delivered || 0), "mk-delivered", c.delivered || 0), card("settled (released or refunded)", fmt.int(c.settled || 0), "mk-settled", c.settled || 0),
      card("open offers shown", fmt.int(m.offers.length), "mk-offers")),
    panel("Order book depth", depthChart("chart-depth", m.depth)),
    h("div", {class: "grid2"}, panel("Buy orders (best first)", table(orderCols, m.book.buys, "mk-buys")),
      panel("Sell orders (best first)", table(orderCols, m.book.sells, "mk-sells"))),
    panel("Open offers (prepaid, newest first)", table([
      ["offer", (o) => link.tx(o.offer_id)], ["seller", (o) => link.account(o.seller)],
      ["remaining", (o) => fmt.wh(o.remaining), "num"], ["of", (o) => fmt.wh(o.wh), "num"],
      ["price (coin/kWh)", (o) => fmt.pricekwh(o.price_per_wh), "num"], ["source", (o) => o.source || "any"],
      ["window ends", (o) => fmt.time(o.window_end * 1000)]], m.offers, "mk-offer-table")),
    panel(reader.full ? "Trades (newest first)" : "Your trades among the newest",
      reader.full ? null : privateNote("mk-trades-private", "A trade between two accounts"), table([
      ["trade", (t) => link.tx(t.trade_id)], ["seller", (t) => link.account(t.seller)], ["buyer", (t) => link.account(t.buyer)],
      ["Wh", (t) => fmt.int(t.wh), "num"], ["escrow", (t) => fmt.coin(t.escrow), "num"],
      ["delivered", (t) => fmt.wh(t.delivered), "num"], ["released", (t) => fmt.coin(t.released), "num"],
      ["refunded", (t) => fmt.coin(t.refunded), "num"], ["status", (t) => badge(t.status)]], m.trades, "mk-trades")));
}

// ---- routing and search -------------------------------------------------------------------------------------
// ---- sign-in: kwh-wallet dashboard prints <node>/#/signin/<credential>; the fragment never leaves the browser
function showReader() {
  const el = document.getElementById("reader");
  el.replaceChildren(reader.key
    ? h("span", {}, h("span", {id: "reader-role", text: reader.role}), " ", link.account(reader.address, fmt.short(reader.address, 14)),
        " ", h("button", {id: "sign-out", type: "button", onclick: signOut, text: "sign out"}))
    : h("span", {id: "reader-role", class: "muted", title: "sign in: kwh-wallet --name NAME dashboard", text: "public view"}));
}

async function refreshReader() {
  try { reader = await api("/dashboard/session"); } catch (e) { /* keep what we had */ }
  showReader();
}

async function signOut() {
  await api("/dashboard/session", "DELETE").catch(() => null);
  await refreshReader();
  route();
}

async function signInPage(gen, credential) {
  history.replaceState(null, "", "#/");  // the one-use credential leaves the address bar and the history
  reader = await api("/dashboard/session", "POST", {Authorization: credential});
  showReader();
  if (gen !== generation) return;
  location.hash = reader.address ? `#/account/${reader.address}` : "#/";
}

const ROUTES = {"": overview, blocks: blocksPage, block: blockPage, tx: txPage, account: accountPage,
                meter: meterPage, lot: lotPage, energy: energyPage, market: marketPage, signin: signInPage};

async function route() {
  clearInterval(timer);
  timer = null;
  const gen = ++generation;
  const path = location.hash.replace(/^#\/?/, "").split("?")[0];
  const [page, arg] = path.split("/").map(decodeURIComponent);
  const handler = ROUTES[page || ""];
  document.querySelectorAll("header nav a").forEach((a) =>
    a.classList.toggle("active", a.dataset.nav === (page || "overview") || (page === "block" && a.dataset.nav === "blocks")));
  document.body.dataset.page = page || "overview";
  document.body.dataset.ready = "0";
  if (!handler) { render(h("p", {class: "error", text: `no page ${path}`})); return; }
  try {
    await handler(gen, arg);
  } catch (e) {
    if (gen !== generation) return;
    render(h("h1", {text: "Not shown"}), h("p", {class: "error", id: "page-error",
      text: e instanceof ApiError ? `${e.code || "error"}: ${e.message}` : String(e)}));
  }
  if (gen === generation) {
    document.body.dataset.readyMs = String(Math.round(performance.now()));  // since navigation start (bench)
    document.body.dataset.ready = "1";
  }
}

document.getElementById("search").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = document.getElementById("search-q").value.trim();
  if (!q) return;
  try {
    const r = await api(`/dashboard/api/search?q=${encodeURIComponent(q)}`);
    location.hash = `#/${r.kind}/${r.ref}`;
  } catch (e) {
    generation++;
    clearInterval(timer);
    render(h("h1", {text: "Search"}), h("p", {class: "error", id: "search-error", text: e.message}));
  }
});

api("/status").then((st) => { document.getElementById("chain-id").textContent = st.chain_id; }).catch(() => {});
window.addEventListener("hashchange", route);
refreshReader().then(route);  // who reads first: a page asks only for what its reader may see
