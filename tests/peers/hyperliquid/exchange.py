"""A loopback Hyperliquid exchange for Vigil's tests, whose judges of a signature are two
independent implementations: the official Python SDK (hyperliquid-python-sdk, pinned in
requirements.txt) and the npm package @nktkas/hyperliquid (nktkas_check.mjs, a child process).
It tests encoding and signing; it is not a matching engine.

    python exchange.py PORT STATE.json [--mainnet]

STATE.json: {"users": {"<master address>": {"usdc": "10000", "agents": ["<agent address>", ...]}},
             "mids": {"BTC": "97000", "ETH": "2500", "SOL": "150"}, "now_ms": null,
             "path": null | {"seed", "step_ms", "vol_bps", "start_ms"?, "events"?} (market_path.py),
             "funding": {"ETH": "0.0001"} (hourly rate per coin; longs pay when positive),
             "second_verifier": null | [argv] (replaces `node nktkas_check.mjs`, for tests),
             "require_canonical": false}

POST /exchange takes the payload the SDK's `Exchange._post_action` sends
({"action", "nonce", "signature", "vaultAddress", "expiresAfter"}) and answers as the exchange
does ({"status": "ok", "response": ...} or {"status": "err", "response": "<why>"}):
- both verifiers must recover the same signer, or the answer is an `err` naming both results
  (and the disagreement is in /_test/log);
- both hash an L1 action with its keys as received (the JSON's order); nktkas also says whether
  that is the canonical order (its schema's, the order the real exchange re-serialises in, so
  the one it hashes): logged as "canonical", refused when require_canonical is set;
- L1 actions (order, cancel, scheduleCancel, updateLeverage) must recover (with the SDK's
  `recover_agent_or_user_from_l1_action`, on the network given by --testnet/--mainnet) to a
  master or to one of its approved agents; user-signed actions (usdSend, withdraw3, approveAgent) must
  recover to the master itself (`recover_user_from_user_signed_action`), never to an agent;
- nonces as the exchange checks them: unique per signer, larger than the smallest of its last
  100, within (now - 2 days, now + 1 day);
- orders: a buy at or above the mid (a sell at or below) fills at the mid, taker fee 0.045%;
  otherwise Gtc/Alo rest, Ioc is cancelled; reduce-only never grows or flips a position;
  leverage at most the asset's maximum; a scheduled cancel-all fires when its time has passed.
POST /info answers meta, allMids, clearinghouseState, openOrders, userFills, fundingHistory,
userFunding. Mids follow the seeded path when there is one; resting orders the path crosses
fill as maker (0.015%) at the instant it crosses them, and funding is paid on the hour, when
the clock reaches those instants.
POST /_test/path_mid {"coin", "at_ms"} reads the path's mid at any time, the clock unmoved;
POST /_test/mids pins marks (overriding the path for those coins; resting orders that now cross
fill); GET /_test/log lists every accepted action with its recovered signer (and any
disagreement of the verifiers); POST /_test/now sets the clock in ms (null: the real clock).
"""

import json
import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from market_path import MarketPath, PathError

from hyperliquid.utils.signing import (
    USD_SEND_SIGN_TYPES,
    WITHDRAW_SIGN_TYPES,
    recover_agent_or_user_from_l1_action,
    recover_user_from_user_signed_action,
)

UNIVERSE = [
    {"name": "BTC", "szDecimals": 5, "maxLeverage": 40},
    {"name": "ETH", "szDecimals": 4, "maxLeverage": 25},
    {"name": "SOL", "szDecimals": 2, "maxLeverage": 20},
]
TAKER_FEE = Decimal("0.00045")
MAKER_FEE = Decimal("0.00015")
# The SDK has no constant for approveAgent's fields: these are the ones its `sign_agent` signs.
APPROVE_AGENT_SIGN_TYPES = [
    {"name": "hyperliquidChain", "type": "string"},
    {"name": "agentAddress", "type": "address"},
    {"name": "agentName", "type": "string"},
    {"name": "nonce", "type": "uint64"},
]
USER_SIGNED = {
    "usdSend": ("HyperliquidTransaction:UsdSend", USD_SEND_SIGN_TYPES),
    "withdraw3": ("HyperliquidTransaction:Withdraw", WITHDRAW_SIGN_TYPES),
    "approveAgent": ("HyperliquidTransaction:ApproveAgent", APPROVE_AGENT_SIGN_TYPES),
}
L1 = {"order", "cancel", "scheduleCancel", "updateLeverage"}
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
HERE = os.path.dirname(os.path.abspath(__file__))


class Rejected(Exception):
    pass


def d(x):
    return Decimal(str(x))


def s(x):
    """Decimal as the exchange writes numbers (plain, normalised)."""
    x = x.normalize()
    return "0" if x == 0 else format(x, "f")


class SecondVerifier:
    """@nktkas/hyperliquid (nktkas_check.mjs): one JSON line per payload, one answer per line."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def check(self, payload, is_mainnet):
        req = dict(payload, network="mainnet" if is_mainnet else "testnet")
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except OSError as e:
            raise Rejected("the second verifier (@nktkas/hyperliquid) is gone: %s" % e)
        if not line:
            raise Rejected("the second verifier (@nktkas/hyperliquid) exited (code %s)" % self.proc.poll())
        answer = json.loads(line)
        if "error" in answer:
            raise Rejected("@nktkas/hyperliquid could not check the action: %s" % answer["error"])
        return answer


class Exchange:
    def __init__(self, state, is_mainnet):
        self.lock = threading.Lock()
        self.is_mainnet = is_mainnet
        self.mids = {k: d(v) for k, v in state["mids"].items()}
        self.overrides = {}  # coin -> pinned mid (POST /_test/mids)
        self.now_ms = state.get("now_ms")
        self.settled_ms = self.now()
        path = state.get("path")
        self.path = None if path is None else MarketPath(path, state["mids"], self.now())
        self.funding = {k: d(v) for k, v in (state.get("funding") or {}).items()}
        self.require_canonical = state.get("require_canonical") is True
        self.verifier = SecondVerifier(state.get("second_verifier")
                                       or ["node", os.path.join(HERE, "nktkas_check.mjs")])
        self.users = {}
        self.agent_of = {}
        for user, u in state["users"].items():
            user = user.lower()
            self.users[user] = {
                "usdc": d(u["usdc"]),
                "positions": {},  # coin -> {"szi", "entry"}
                "leverage": {},  # coin -> (is_cross, n)
                "orders": [],  # open orders
                "fills": [],
                "funding": [],  # userFunding entries
                "cum_funding": {},  # coin -> {"allTime", "sinceOpen", "sinceChange"}, paid > 0
                "scheduled_cancel": None,
            }
            for agent in u.get("agents", []):
                self.agent_of[agent.lower()] = user
        self.nonces = {}  # signer -> sorted list of its last 100
        self.log = []
        self.next_oid = 1000

    def now(self):
        return self.now_ms if self.now_ms is not None else int(time.time() * 1000)

    # -- the market: path, pinned mids, crossing orders, funding ------------------------------

    def mid(self, coin, t=None):
        if coin in self.overrides:
            return self.overrides[coin]
        if self.path is not None and coin in self.path.walks:
            return self.path.mid(coin, self.now() if t is None else t)
        return self.mids[coin]

    def all_mids(self):
        return {c: self.mid(c) for c in list(self.mids) + [c for c in self.overrides if c not in self.mids]}

    def fill_crossed(self, u, t):
        rest = []
        for o in u["orders"]:
            mid, px, buy = self.mid(o["coin"], t), d(o["limitPx"]), o["side"] == "B"
            if (buy and mid <= px) or (not buy and mid >= px):
                self.fill(u, o["coin"], buy, d(o["sz"]), px, MAKER_FEE, o["oid"], t)
            else:
                rest.append(o)
        u["orders"] = rest

    def pay_funding(self, u, t):
        for coin, p in u["positions"].items():
            rate = self.funding.get(coin)
            if rate is None or p["szi"] == 0:
                continue
            paid = p["szi"] * self.mid(coin, t) * rate
            u["usdc"] -= paid
            cum = u["cum_funding"].setdefault(coin, {"allTime": Decimal(0), "sinceOpen": Decimal(0),
                                                     "sinceChange": Decimal(0)})
            for k in cum:
                cum[k] += paid
            u["funding"].append({"time": t, "hash": "0x" + "0" * 64, "delta": {
                "type": "funding", "coin": coin, "usdc": s(-paid), "szi": s(p["szi"]),
                "fundingRate": s(rate), "nSamples": None}})

    def advance(self):
        """Walks the clock from the last settled instant to now: at every instant where a mid
        may change (path steps and events) or funding is due (the hour), in order, the
        dead-man switch fires, resting orders the mids cross fill, funding is paid."""
        now = self.now()
        after, self.settled_ms = self.settled_ms, max(self.settled_ms, now)
        instants = set(self.path.changes(after, now)) if self.path is not None else set()
        hours = range((after // HOUR_MS + 1) * HOUR_MS, now + 1, HOUR_MS) if self.funding else ()
        instants.update(hours)
        for t in sorted(instants | {now}):
            for u in self.users.values():
                self.expire_scheduled(u, t)
                self.fill_crossed(u, t)
                if t % HOUR_MS == 0 and t in instants:
                    self.pay_funding(u, t)

    # -- checks -----------------------------------------------------------------------------

    def check_nonce(self, signer, nonce):
        now = self.now()
        if not (now - 2 * DAY_MS < nonce < now + DAY_MS):
            raise Rejected("Invalid nonce: outside the window of (now - 2 days, now + 1 day)")
        seen = self.nonces.setdefault(signer, [])
        if nonce in seen:
            raise Rejected("Invalid nonce: already used")
        if len(seen) >= 100 and nonce <= seen[0]:
            raise Rejected("Invalid nonce: smaller than the smallest of the last 100")
        seen.append(nonce)
        seen.sort()
        del seen[:-100]

    def second_opinion(self, payload, sdk_signer):
        """@nktkas/hyperliquid must recover the signer the official SDK recovered."""
        answer = self.verifier.check(payload, self.is_mainnet)
        if answer.get("signer") != sdk_signer:
            self.log.append({"disagreement": {"sdk": sdk_signer, "nktkas": answer.get("signer")},
                             "payload": payload})
            raise Rejected("the verifiers disagree: the official SDK recovered %s, @nktkas/hyperliquid "
                           "recovered %s" % (sdk_signer, answer.get("signer")))
        self.canonical = answer.get("canonical")

    def authenticate(self, payload):
        action = payload["action"]
        kind = action.get("type")
        sig = payload["signature"]
        if kind in USER_SIGNED:
            primary, types = USER_SIGNED[kind]
            expected_chain = "Mainnet" if self.is_mainnet else "Testnet"
            if action.get("hyperliquidChain") != expected_chain:
                raise Rejected("hyperliquidChain is not " + expected_chain)
            signer = recover_user_from_user_signed_action(
                dict(action), sig, types, primary, self.is_mainnet
            ).lower()
            self.second_opinion(payload, signer)
            if signer not in self.users:
                raise Rejected("User or API Wallet %s does not exist." % signer)
            return signer, signer
        if kind in L1:
            signer = recover_agent_or_user_from_l1_action(
                action, sig, payload.get("vaultAddress"), payload["nonce"],
                payload.get("expiresAfter"), self.is_mainnet,
            ).lower()
            self.second_opinion(payload, signer)
            user = signer if signer in self.users else self.agent_of.get(signer)
            if user is None:
                raise Rejected("User or API Wallet %s does not exist." % signer)
            return signer, user
        raise Rejected("unknown action type %r" % kind)

    # -- trading ----------------------------------------------------------------------------

    def coin(self, asset):
        if not isinstance(asset, int) or not 0 <= asset < len(UNIVERSE):
            raise Rejected("Invalid asset %r" % asset)
        return UNIVERSE[asset]["name"]

    def fill(self, u, coin, is_buy, sz, px, fee_rate, oid, at):
        pos = u["positions"].setdefault(coin, {"szi": Decimal(0), "entry": Decimal(0)})
        cum = u["cum_funding"].get(coin)
        if cum is not None:
            cum["sinceChange"] = Decimal(0)
        signed = sz if is_buy else -sz
        closed = Decimal(0)
        old = pos["szi"]
        if old == 0 or (old > 0) == (signed > 0):
            total = old + signed
            pos["entry"] = (pos["entry"] * abs(old) + px * sz) / abs(total)
            pos["szi"] = total
        else:
            reduce = min(abs(old), sz)
            closed = (px - pos["entry"]) * reduce * (1 if old > 0 else -1)
            pos["szi"] = old + signed
            if pos["szi"] == 0:
                pos["entry"] = Decimal(0)
            elif (pos["szi"] > 0) != (old > 0):
                pos["entry"] = px
            if cum is not None and (pos["szi"] == 0 or (pos["szi"] > 0) != (old > 0)):
                cum["sinceOpen"] = Decimal(0)
        fee = px * sz * fee_rate
        u["usdc"] += closed - fee
        u["fills"].append({
            "coin": coin, "px": s(px), "sz": s(sz), "side": "B" if is_buy else "A",
            "time": at, "fee": s(fee), "oid": oid, "closedPnl": s(closed),
            "crossed": fee_rate == TAKER_FEE, "startPosition": s(old),
        })
        return {"filled": {"totalSz": s(sz), "avgPx": s(px), "oid": oid}}

    def place(self, u, o):
        coin = self.coin(o["a"])
        is_buy, px, sz, reduce_only = o["b"], d(o["p"]), d(o["s"]), o["r"]
        if sz <= 0 or px <= 0:
            return {"error": "Order has invalid size or price."}
        lev = u["leverage"].get(coin, (True, 20))[1]
        if reduce_only:
            szi = u["positions"].get(coin, {"szi": Decimal(0)})["szi"]
            if szi == 0 or (szi > 0) == is_buy or sz > abs(szi):
                return {"error": "Reduce only order would increase position."}
        else:
            notional = sum(abs(p["szi"]) * self.mid(c) for c, p in u["positions"].items()) + px * sz
            if notional / lev > u["usdc"]:
                return {"error": "Insufficient margin to place order."}
        self.next_oid += 1
        oid = self.next_oid
        mid = self.mid(coin)
        crosses = px >= mid if is_buy else px <= mid
        tif = o["t"].get("limit", {}).get("tif", "Gtc")
        if crosses and tif != "Alo":
            return self.fill(u, coin, is_buy, sz, mid, TAKER_FEE, oid, self.now())
        if crosses and tif == "Alo":
            return {"error": "Post only order would have immediately matched."}
        if tif == "Ioc":
            return {"error": "Order could not immediately match against any resting orders."}
        u["orders"].append({
            "coin": coin, "limitPx": s(px), "oid": oid, "side": "B" if is_buy else "A",
            "sz": s(sz), "timestamp": self.now(), "reduceOnly": reduce_only, "cloid": o.get("c"),
        })
        return {"resting": {"oid": oid}}

    def expire_scheduled(self, u, now):
        t = u["scheduled_cancel"]
        if t is not None and now >= t:
            u["orders"] = []
            u["scheduled_cancel"] = None

    def apply(self, user, action):
        u = self.users[user]
        kind = action["type"]
        if kind == "order":
            statuses = [self.place(u, o) for o in action["orders"]]
            return {"type": "order", "data": {"statuses": statuses}}
        if kind == "cancel":
            statuses = []
            for c in action["cancels"]:
                coin = self.coin(c["a"])
                before = len(u["orders"])
                u["orders"] = [o for o in u["orders"] if not (o["oid"] == c["o"] and o["coin"] == coin)]
                statuses.append("success" if len(u["orders"]) < before else
                                {"error": "Order was never placed, already canceled, or filled."})
            return {"type": "cancel", "data": {"statuses": statuses}}
        if kind == "scheduleCancel":
            t = action.get("time")
            if t is not None and t < self.now() + 5000:
                raise Rejected("Scheduled cancel time too early, must be at least 5 seconds from now.")
            u["scheduled_cancel"] = t
            return {"type": "default"}
        if kind == "updateLeverage":
            coin = self.coin(action["asset"])
            n = action["leverage"]
            if not isinstance(n, int) or not 1 <= n <= UNIVERSE[action["asset"]]["maxLeverage"]:
                raise Rejected("Invalid leverage value")
            u["leverage"][coin] = (action["isCross"], n)
            return {"type": "default"}
        if kind == "approveAgent":
            agent = action["agentAddress"].lower()
            if agent in self.users:
                raise Rejected("an account cannot be registered as an API wallet")
            if agent in self.agent_of and self.agent_of[agent] != user:
                raise Rejected("API wallet %s is registered to another account" % agent)
            self.agent_of[agent] = user
            return {"type": "default"}
        if kind in USER_SIGNED:
            amount = d(action["amount"])
            if amount <= 0 or amount > u["usdc"]:
                raise Rejected("Insufficient balance for transfer")
            u["usdc"] -= amount
            dest = action["destination"].lower()
            if kind == "usdSend" and dest in self.users:
                self.users[dest]["usdc"] += amount
            return {"type": "default"}
        raise Rejected("unknown action type %r" % kind)

    def exchange(self, payload):
        with self.lock:
            try:
                self.advance()
                for key in ("action", "nonce", "signature"):
                    if key not in payload:
                        raise Rejected("missing %s" % key)
                self.canonical = None
                signer, user = self.authenticate(payload)
                if self.require_canonical and self.canonical is False:
                    raise Rejected("the action's keys are not in the exchange's canonical order (its schema's, "
                                   "per @nktkas/hyperliquid): the real exchange hashes that order and would "
                                   "recover another signer")
                self.check_nonce(signer, payload["nonce"])
                response = self.apply(user, payload["action"])
            except Rejected as e:
                return {"status": "err", "response": str(e)}
            except (KeyError, TypeError, ValueError, ArithmeticError) as e:
                return {"status": "err", "response": "Failed to deserialize the JSON body: %s" % e}
            self.log.append({"signer": signer, "user": user, "canonical": self.canonical, "payload": payload})
            return {"status": "ok", "response": response}

    # -- info -------------------------------------------------------------------------------

    def state_of(self, user):
        u = self.users[user]
        positions, ntl, margin, upnl = [], Decimal(0), Decimal(0), Decimal(0)
        for coin, p in u["positions"].items():
            if p["szi"] == 0:
                continue
            mark = self.mid(coin)
            value = abs(p["szi"]) * mark
            pnl = (mark - p["entry"]) * p["szi"]
            is_cross, lev = u["leverage"].get(coin, (True, 20))
            cum = u["cum_funding"].get(coin, {"allTime": 0, "sinceOpen": 0, "sinceChange": 0})
            ntl += value
            margin += value / lev
            upnl += pnl
            positions.append({"type": "oneWay", "position": {
                "coin": coin, "szi": s(p["szi"]), "entryPx": s(p["entry"]),
                "positionValue": s(value), "unrealizedPnl": s(pnl),
                "leverage": {"type": "cross" if is_cross else "isolated", "value": lev},
                "marginUsed": s(value / lev),
                "cumFunding": {k: s(d(v)) for k, v in cum.items()},
            }})
        account = u["usdc"] + upnl
        return {
            "assetPositions": positions,
            "marginSummary": {"accountValue": s(account), "totalNtlPos": s(ntl),
                              "totalRawUsd": s(u["usdc"]), "totalMarginUsed": s(margin)},
            "withdrawable": s(max(account - margin, Decimal(0))),
            "time": self.now(),
        }

    def funding_history(self, req):
        coin = req.get("coin")
        rate = self.funding.get(coin)
        start, end = req.get("startTime"), req.get("endTime")
        if not isinstance(start, int):
            return {"status": "err", "response": "fundingHistory needs startTime (ms)"}
        if rate is None:
            return []
        end = min(self.now() if end is None else end, self.now())
        hours = range((start + HOUR_MS - 1) // HOUR_MS * HOUR_MS, end + 1, HOUR_MS)
        return [{"coin": coin, "fundingRate": s(rate), "premium": "0", "time": h} for h in hours[:500]]

    def info(self, req):
        with self.lock:
            self.advance()
            kind = req.get("type")
            if kind == "meta":
                return {"universe": UNIVERSE}
            if kind == "allMids":
                return {k: s(v) for k, v in self.all_mids().items()}
            if kind == "fundingHistory":
                return self.funding_history(req)
            user = str(req.get("user", "")).lower()
            if user not in self.users:
                return {"status": "err", "response": "unknown user"}
            u = self.users[user]
            if kind == "clearinghouseState":
                return self.state_of(user)
            if kind == "openOrders":
                return [{k: o[k] for k in ("coin", "limitPx", "oid", "side", "sz", "timestamp")} for o in u["orders"]]
            if kind == "userFills":
                return list(reversed(u["fills"]))
            if kind == "userFunding":
                start, end = req.get("startTime", 0), req.get("endTime") or self.now()
                return [f for f in u["funding"] if start <= f["time"] <= end]
            return {"status": "err", "response": "unknown info type %r" % kind}

    def set_mids(self, mids):
        with self.lock:
            self.advance()
            for k, v in mids.items():
                self.overrides[k] = d(v)
            for u in self.users.values():
                self.fill_crossed(u, self.now())

    def path_mid(self, req):
        """The path's mid of {"coin", "at_ms"} (ignoring pinned mids), without moving the clock."""
        if self.path is None:
            return {"error": "this exchange was started without a path"}
        req = req if isinstance(req, dict) else {}
        coin, at = req.get("coin"), req.get("at_ms")
        if coin not in self.path.walks or not isinstance(at, int):
            return {"error": "/_test/path_mid takes {\"coin\": one of %s, \"at_ms\": ms}" % sorted(self.path.walks)}
        with self.lock:
            return {"mid": s(self.path.mid(coin, at))}

    def set_now(self, now_ms):
        with self.lock:
            self.advance()  # up to the old clock, then
            self.now_ms = now_ms
            self.advance()  # on to the new one


def serve(port, exchange):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/_test/log":
                with exchange.lock:
                    return self.answer(200, exchange.log)
            self.answer(404, {"error": "not found"})

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            if n > 1 << 20:
                return self.answer(413, {"error": "body too large"})
            try:
                body = json.loads(self.rfile.read(n))
            except ValueError:
                return self.answer(422, {"error": "Failed to deserialize the JSON body"})
            if self.path == "/exchange":
                return self.answer(200, exchange.exchange(body))
            if self.path == "/info":
                return self.answer(200, exchange.info(body))
            if self.path == "/_test/mids":
                exchange.set_mids(body)
                return self.answer(200, {"ok": True})
            if self.path == "/_test/path_mid":
                return self.answer(200, exchange.path_mid(body))
            if self.path == "/_test/now":
                if body is not None and (not isinstance(body, int) or isinstance(body, bool) or body < 0):
                    return self.answer(422, {"error": "/_test/now takes a time in ms (an integer) or null"})
                exchange.set_now(body)
                return self.answer(200, {"ok": True})
            self.answer(404, {"error": "not found"})

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    is_mainnet = "--mainnet" in sys.argv
    with open(args[1]) as f:
        state = json.load(f)
    try:
        exchange = Exchange(state, is_mainnet)
    except PathError as e:
        sys.exit("exchange.py: bad state file %s: %s" % (args[1], e))
    serve(int(args[0]), exchange)


if __name__ == "__main__":
    main()
