"""Market agents: the devnet's wallets trading the energy their meters mint, through every market rule.

Roles (from the wallet's meter, devnet/genesis.py):
  * producers (rooftop solar) post prepaid offers for a delivery window and deliver into the trades
    buyers open; one trade in four (each seller's 2nd, 6th, ...) is delivered only half (a cloudy
    afternoon), so the ledger's refund at window end is exercised too; they also sell on the order book;
  * consumers (households) accept offers (the price is locked in escrow: prepayment), place buy orders,
    and redeem the Wh they received against the consumption their meters reported;
  * prosumers sell what they do not need and redeem their own Wh against their own night-time
    consumption (tokens as storage);
  * traders buy on offers and the book and resell with a markup, and sometimes hand Wh to a consumer.
Agents cancel offers nobody took and orders that rested too long.

Consumers buy in one of two ways, alternately (the 1st, 3rd, ... consumer and the 2nd, 4th, ...), so a run
compares them: "quote" consumers ask a node what verifying a purchase costs the network (GET /energy/quote
for the accept and the delivery) and buy enough per trade that the verification stays below
MAX_VERIFY_SHARE of the energy bought (bigger trades when verification is dear relative to the energy,
buying ahead of their need); "fixed" consumers buy FIXED_TRADE_WH at a time. `verification_shares` says what
share of the energy each kind bought went to verifying its purchases.

Agents trade only with each other and only at sane prices: they never accept an offer, or place an order
that would fill against one, from a wallet that is not an agent (the `person-NN` wallets are for people and
stay untouched), and they accept offers and cross the book only at prices within PRICE_BAND of the market
price (25 coin/kWh): an offer at 500 coin/kWh is absurd and is left alone. Offers' windows are in real time (the
ledger judges them by block time), a few ticks long.

Each tick an agent reads its account (and the shared open offers, open trades and order book), decides
with its own seeded random generator, and posts its transactions with consecutive nonces from the node's
`next_nonce`. A refusal ends the agent's tick (later nonces would not fit); refusals are counted per
reason: agents act on slightly stale views, so some (an offer someone else just filled) are expected.
"""
from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ledger.fees import required_fee
from ledger.keys import AccountKey, parse_address
from ledger.tx import (BUY, COIN, SELL, AcceptOffer, Body, CancelOffer, CancelOrder, Deliver, PlaceOrder, PostOffer,
                       Redeem, TransferWh, encode_tx, sign_tx)

from .client import NodePool, NodeUnavailable, reason_of
from .layout import Devnet

log = logging.getLogger("devnet.market")

BASE_PRICE_PER_WH = 25 * COIN // 1000  # 25 coin per kWh
PRICE_BAND = (0.5, 1.3)  # agents buy only between these multiples of the market price
AGENT_ROLES = ("producer", "consumer", "prosumer", "trader")
FIXED_TRADE_WH = 100  # what a "fixed" consumer buys per trade
MAX_TRADE_WH = 3000  # the most any agent prepays in one trade
MAX_VERIFY_SHARE = 1e-7  # a "quote" consumer keeps verification below this share of the energy it buys
PURCHASE_KINDS = ("accept_offer", "deliver")  # the transactions one prepaid purchase takes
BUY_STRATEGIES = ("quote", "fixed")
QUOTE_EVERY_S = 5.0
PARTIAL_DELIVERY_EVERY = 4  # one trade in four is delivered only half (the buyer is refunded the rest)
BODY_KIND = {PostOffer: "post_offer", AcceptOffer: "accept_offer", Deliver: "deliver", CancelOffer: "cancel_offer",
             PlaceOrder: "place_order", CancelOrder: "cancel_order", Redeem: "redeem", TransferWh: "transfer_wh"}


@dataclass
class Agent:
    name: str
    role: str  # producer, consumer, prosumer, trader
    key: AccountKey
    home: int
    rng: random.Random
    last_nonce: int = -1
    stuck_ticks: int = 0
    trades_seen: int = 0
    partial: dict[str, bool] = field(default_factory=dict)  # trade id -> deliver only half
    strategy: str = ""  # consumers: "quote" or "fixed" (how much to buy per trade); others: ""

    @property
    def address(self) -> str:
        return self.key.address_text

    @property
    def sells(self) -> bool:
        return self.role in ("producer", "prosumer")

    @property
    def buys(self) -> bool:
        return self.role in ("consumer", "trader")

    @property
    def redeems(self) -> bool:
        return self.role in ("consumer", "prosumer")


@dataclass
class MarketStats:
    ticks: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # kind -> txs posted
    accepted: Counter[str] = field(default_factory=Counter)  # kind -> txs a node took
    refused: Counter[str] = field(default_factory=Counter)  # "kind:reason" -> count
    node_failures: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "sent": dict(self.sent), "accepted": dict(self.accepted),
                "refused": dict(self.refused), "node_failures": self.node_failures}


@dataclass
class View:
    """What every agent sees in one tick."""
    now: float
    height: int
    offers: list[dict[str, Any]]
    trades: list[dict[str, Any]]
    buys: list[dict[str, Any]]
    sells: list[dict[str, Any]]
    purchase_quote_wh: float | None = None  # network Wh to verify one purchase (accept + delivery), now


def quote_trade_wh(purchase_quote_wh: float | None, max_share: float = MAX_VERIFY_SHARE) -> int:
    """How much a "quote" consumer buys per trade: enough that verifying the purchase costs at most
    `max_share` of the energy bought, between FIXED_TRADE_WH and MAX_TRADE_WH (FIXED_TRADE_WH while no quote
    is known)."""
    if purchase_quote_wh is None or purchase_quote_wh <= 0:
        return FIXED_TRADE_WH
    return max(FIXED_TRADE_WH, min(MAX_TRADE_WH, math.ceil(round(purchase_quote_wh / max_share, 6))))


def verification_shares(trades: list[dict[str, Any]], strategies: dict[str, str],
                        cost_wh: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Per buying strategy: prepaid trades, Wh delivered, network Wh spent verifying them (the accept, and a
    delivery if any was made, at `cost_wh` per kind) and that as a share of the Wh bought."""
    out = {name: {"trades": 0, "bought_wh": 0, "verify_wh": 0.0, "share": None} for name in BUY_STRATEGIES}
    for t in trades:
        strategy = strategies.get(t["buyer"])
        if strategy not in out:
            continue
        row = out[strategy]
        row["trades"] += 1
        row["bought_wh"] += int(t["delivered"])
        row["verify_wh"] += cost_wh.get("accept_offer", 0.0) + (cost_wh.get("deliver", 0.0) if t["delivered"] else 0.0)
    for row in out.values():
        row["share"] = row["verify_wh"] / row["bought_wh"] if row["bought_wh"] else None
    return out


class Market:
    def __init__(self, devnet: Devnet, pool: NodePool, *, seed: int | None = None, tick_s: float = 2.0,
                 window_s: float = 30.0, stale_blocks: int = 12) -> None:
        self.devnet = devnet
        self.pool = pool
        self.tick_s = tick_s
        self.window_s = window_s
        self.stale_blocks = stale_blocks
        seed = devnet.seed if seed is None else seed
        self.seed = seed
        genesis = devnet.genesis()
        self.min_fee = genesis.min_fee
        self.block_interval_s = genesis.block_interval_ms / 1000
        homes = {m.owner_wallet: m.home for m in devnet.meters}
        names = [n.name for n in devnet.nodes]
        self.agents = []
        consumers = 0
        for i, w in enumerate(w for w in devnet.wallets if w.role in AGENT_ROLES):
            home = names.index(homes[w.name]) if homes.get(w.name) in names else i % len(names)
            strategy = ""
            if w.role == "consumer":
                strategy = BUY_STRATEGIES[consumers % len(BUY_STRATEGIES)]
                consumers += 1
            self.agents.append(Agent(w.name, w.role, devnet.wallet_key(w.name), home,
                                     random.Random(f"{seed}/{w.name}"), strategy=strategy))
        self.consumers = [a.address for a in self.agents if a.role == "consumer"]
        self.agent_addresses = frozenset(a.address for a in self.agents)
        self.stats = MarketStats()
        self.trading = True
        self._rng = random.Random(f"{seed}/market")
        self._quote: tuple[float, float] | None = None  # (valid until, network Wh per purchase)

    def stop_trading(self) -> None:
        """No new offers, orders or trades from now on; sellers still deliver into open trades and
        consumers still redeem (stop `run` to end those too). Open trades settle at their window's end."""
        self.trading = False

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.tick()
            except NodeUnavailable:
                self.stats.node_failures += 1
            try:
                await asyncio.wait_for(stop.wait(), max(0.05, self.tick_s - (time.monotonic() - started)))
            except asyncio.TimeoutError:
                pass

    async def _view(self) -> View:
        status = await self.pool.get_ok("/status")
        offers = (await self.pool.get_ok("/market/offers?status=open"))["offers"]
        trades = (await self.pool.get_ok("/trades?status=open"))["trades"]
        book = await self.pool.get_ok("/market/orderbook")
        return View(time.time(), int(status["height"]), offers, trades, book["buys"], book["sells"],
                    await self._purchase_quote())

    async def _purchase_quote(self) -> float | None:
        """What verifying one purchase (its accept and its delivery) costs the network now, in Wh (asked
        every QUOTE_EVERY_S at most: it moves slowly)."""
        if self._quote is not None and time.monotonic() < self._quote[0]:
            return self._quote[1]
        total = await self._ask_quote()
        if total is not None:
            self._quote = (time.monotonic() + QUOTE_EVERY_S, total)
        return total

    async def _ask_quote(self) -> float | None:
        total = 0.0
        for kind in PURCHASE_KINDS:
            try:
                quote = await self.pool.get_ok(f"/energy/quote?type={kind}")
            except NodeUnavailable:
                return None
            if not isinstance(quote, dict) or not isinstance(quote.get("network_wh"), (int, float)):
                return None
            total += float(quote["network_wh"])
        return total

    def strategies(self) -> dict[str, str]:
        """Buyer address -> buying strategy, for `verification_shares`."""
        return {a.address: a.strategy for a in self.agents if a.strategy}

    async def tick(self) -> None:
        view = await self._view()
        agents = list(self.agents)
        self._rng.shuffle(agents)
        await asyncio.gather(*(self._act(a, view) for a in agents))
        self.stats.ticks += 1

    async def _act(self, agent: Agent, view: View) -> None:
        try:
            _i, acct = await self.pool.get(f"/accounts/{agent.address}", agent.home)
        except NodeUnavailable:
            self.stats.node_failures += 1
            return
        if not isinstance(acct, dict) or "next_nonce" not in acct:
            return
        if int(acct["next_nonce"]) > int(acct["nonce"]) and int(acct["nonce"]) == agent.last_nonce:
            agent.stuck_ticks += 1
            if agent.stuck_ticks * self.tick_s > max(6.0, 10 * self.block_interval_s):
                # pending txs that never reach a block: the node holds them but did not pass them on
                agent.home = (agent.home + 1) % len(self.pool.urls)
                agent.stuck_ticks = 0
                log.info("%s: txs pending too long, moving to %s", agent.name, self.pool.urls[agent.home])
                return
        else:
            agent.stuck_ticks = 0
        agent.last_nonce = int(acct["nonce"])
        bodies = self.plan(agent, acct, view)
        nonce = int(acct["next_nonce"])
        for body in bodies:
            kind = BODY_KIND[type(body)]
            tx = sign_tx(agent.key, self.devnet.chain_id, nonce, required_fee(self.min_fee, body), body)
            self.stats.sent[kind] += 1
            try:
                _i, status, data = await self.pool.post_tx(encode_tx(tx), agent.home)
            except NodeUnavailable:
                self.stats.node_failures += 1
                return
            reason = reason_of(status, data)
            if reason != "ok":
                self.stats.refused[f"{kind}:{reason}"] += 1
                log.debug("%s %s refused: %s", agent.name, kind, data)
                return
            self.stats.accepted[kind] += 1
            nonce += 1

    # decisions ------------------------------------------------------------------------------------
    @staticmethod
    def fair(price_per_wh: int) -> bool:
        """A price an agent would pay: within PRICE_BAND of the market price."""
        low, high = PRICE_BAND
        return BASE_PRICE_PER_WH * low <= price_per_wh <= BASE_PRICE_PER_WH * high

    def _would_fill_person(self, side: str, price: int, view: View) -> bool:
        """Would an order at `price` match a resting order of a wallet that is not an agent?"""
        if side == BUY:
            return any(o["owner"] not in self.agent_addresses and o["price_per_wh"] <= price for o in view.sells)
        return any(o["owner"] not in self.agent_addresses and o["price_per_wh"] >= price for o in view.buys)

    def plan(self, agent: Agent, acct: dict[str, Any], view: View) -> list[Body]:
        """The agent's transactions for this tick (pure: depends on the view and the agent's generator)."""
        rng = agent.rng
        me = agent.address
        out: list[Body] = []
        wh = int(acct["wh"])
        coin = int(acct["coin"])
        uncovered = int(acct["consumed_wh"]) - int(acct["redeemed_wh"])
        deliver_until = view.now + 2 * self.block_interval_s
        fee = self.min_fee

        if agent.sells:
            # deliver into open trades (in full, or half for a share of trades), oldest first
            committed = 0
            for t in sorted((t for t in view.trades if t["seller"] == me), key=lambda t: t["height"]):
                if t["trade_id"] not in agent.partial:  # the 2nd trade of each seller, then every 4th
                    agent.partial[t["trade_id"]] = agent.trades_seen % PARTIAL_DELIVERY_EVERY == 1
                    agent.trades_seen += 1
                target = t["wh"] // 2 if agent.partial[t["trade_id"]] else t["wh"]
                want = max(0, target - t["delivered"])
                if t["window_start"] <= view.now and deliver_until < t["window_end"] and want and wh:
                    amount = min(want, wh)
                    out.append(Deliver(bytes.fromhex(t["trade_id"]), amount))
                    wh -= amount
                    want -= amount
                committed += want
            my_offers = [o for o in view.offers if o["seller"] == me]
            committed += sum(o["remaining"] for o in my_offers)
            reserve = max(0, uncovered) if agent.role == "prosumer" else 0
            free = wh - committed - reserve
            if self.trading and len(my_offers) < 2 and free >= 200:
                amount = max(100, min(5000, int(free * rng.uniform(0.2, 0.5))))
                price = int(BASE_PRICE_PER_WH * rng.uniform(0.85, 1.15))
                start = int(view.now) - 2
                out.append(PostOffer(amount, price, start, int(view.now + self.window_s), rng.choice(("solar", ""))))
                free -= amount
            if self.trading and free >= 100 and rng.random() < 0.35:
                amount = max(50, min(2000, int(free * 0.2)))
                price = int(BASE_PRICE_PER_WH * rng.uniform(0.9, 1.2))
                if not self._would_fill_person(SELL, price, view):
                    out.append(PlaceOrder(SELL, amount, price))
                    wh -= amount
            for o in my_offers:  # nobody wanted it: withdraw
                if o["remaining"] == o["wh"] and view.height - o["height"] > self.stale_blocks // 2 \
                        and rng.random() < 0.3:
                    out.append(CancelOffer(bytes.fromhex(o["offer_id"])))
                    break

        if agent.redeems and uncovered > 0 and wh > 0:
            amount = min(uncovered, wh)
            out.append(Redeem(amount))
            wh -= amount
            uncovered -= amount

        if agent.buys and self.trading:
            incoming = sum(t["wh"] - t["delivered"] for t in view.trades if t["buyer"] == me)
            resting = sum(o["remaining"] for o in view.buys if o["owner"] == me)
            appetite = 3000 if agent.role == "trader" else 0
            need = max(0, uncovered - wh) + appetite - incoming - resting
            offers = sorted((o for o in view.offers if o["seller"] != me and o["remaining"] > 0
                             and o["seller"] in self.agent_addresses and self.fair(o["price_per_wh"])
                             and o["window_end"] > view.now + 4 * self.block_interval_s + 2),
                            key=lambda o: (o["price_per_wh"], rng.random()))
            if agent.strategy == "quote" and need > 50 and offers:
                size = quote_trade_wh(view.purchase_quote_wh)
                big = [o for o in offers if o["remaining"] >= size]  # one verified purchase, not several
                offers = big or sorted(offers, key=lambda o: -o["remaining"])
            if need > 50 and offers:
                o = offers[0]
                if agent.strategy == "quote":
                    amount = min(o["remaining"], quote_trade_wh(view.purchase_quote_wh))  # may buy ahead of need
                elif agent.strategy == "fixed":
                    amount = min(o["remaining"], FIXED_TRADE_WH)
                else:
                    amount = min(o["remaining"], need, MAX_TRADE_WH)
                if amount * o["price_per_wh"] + 4 * fee <= coin:
                    out.append(AcceptOffer(bytes.fromhex(o["offer_id"]), amount))
                    o["remaining"] -= amount  # the view is shared: the next buyer this tick sees what is left
                    coin -= amount * o["price_per_wh"]
                    need -= amount
            if need > 50 and rng.random() < 0.35:
                amount = min(need, 1500)
                asks = [o["price_per_wh"] for o in view.sells if o["owner"] in self.agent_addresses]
                best_ask = min(asks) if asks else None
                if best_ask is not None and self.fair(best_ask) and rng.random() < 0.6:
                    price = best_ask  # cross the spread: fills at once
                else:
                    price = int(BASE_PRICE_PER_WH * rng.uniform(0.8, 1.0))  # rest on the book
                if amount * price + 4 * fee <= coin and not self._would_fill_person(BUY, price, view):
                    out.append(PlaceOrder(BUY, amount, price))
                    coin -= amount * price

        if agent.role == "trader" and self.trading and wh > 0:
            if rng.random() < 0.3 and not self._would_fill_person(SELL, int(BASE_PRICE_PER_WH * 1.1), view):
                amount = min(wh, 1000)
                out.append(PlaceOrder(SELL, amount, int(BASE_PRICE_PER_WH * 1.1)))
                wh -= amount
            elif self.consumers and rng.random() < 0.15:
                amount = min(wh, 100)
                out.append(TransferWh(parse_address(rng.choice(self.consumers)), amount))
                wh -= amount

        for o in view.buys + view.sells:  # orders resting too long: take them back
            if o["owner"] == me and view.height - o["height"] > self.stale_blocks and rng.random() < 0.3:
                out.append(CancelOrder(bytes.fromhex(o["order_id"])))
                break
        return out
