"""A loopback Hyperliquid exchange for Vigil's tests, whose only judge of a signature is the
official Python SDK (hyperliquid-python-sdk, pinned in requirements.txt).

    python exchange.py PORT STATE.json

STATE.json: {"users": {"<master address>": {"usdc": "10000", "agents": ["<agent address>", ...]}},
             "mids": {"BTC": "97000", "ETH": "2500", "SOL": "150"}, "now_ms": null}

POST /exchange takes the payload the SDK's `Exchange._post_action` sends
({"action", "nonce", "signature", "vaultAddress", "expiresAfter"}) and answers as the exchange
does ({"status": "ok", "response": ...} or {"status": "err", "response": "<why>"}):
- L1 actions (order, cancel, scheduleCancel, updateLeverage) must recover (with the SDK's
  `recover_agent_or_user_from_l1_action`, on the network given by --testnet/--mainnet) to a
  master or to one of its approved agents; user-signed actions (usdSend, withdraw3) must
  recover to the master itself (`recover_user_from_user_signed_action`), never to an agent;
- nonces as the exchange checks them: unique per signer, larger than the smallest of its last
  100, within (now - 2 days, now + 1 day);
- orders: a buy at or above the mid (a sell at or below) fills at the mid, taker fee 0.045%;
  otherwise Gtc/Alo rest, Ioc is cancelled; reduce-only never grows or flips a position;
  leverage at most the asset's maximum; a scheduled cancel-all fires when its time has passed.
POST /info answers meta, allMids, clearinghouseState, openOrders, userFills.
POST /_test/mids sets marks (resting orders that now cross fill, as maker at 0.015%);
GET /_test/log lists every accepted action with its recovered signer; POST /_test/now sets
the clock in ms (null: the real clock).
"""

import json
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
USER_SIGNED = {
    "usdSend": ("HyperliquidTransaction:UsdSend", USD_SEND_SIGN_TYPES),
    "withdraw3": ("HyperliquidTransaction:Withdraw", WITHDRAW_SIGN_TYPES),
}
L1 = {"order", "cancel", "scheduleCancel", "updateLeverage"}
DAY_MS = 86_400_000


class Rejected(Exception):
    pass


def d(x):
    return Decimal(str(x))


def s(x):
    """Decimal as the exchange writes numbers (plain, normalised)."""
    x = x.normalize()
    return "0" if x == 0 else format(x, "f")


class Exchange:
    def __init__(self, state, is_mainnet):
        self.lock = threading.Lock()
        self.is_mainnet = is_mainnet
        self.mids = {k: d(v) for k, v in state["mids"].items()}
        self.now_ms = state.get("now_ms")
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
                "scheduled_cancel": None,
            }
            for agent in u.get("agents", []):
                self.agent_of[agent.lower()] = user
        self.nonces = {}  # signer -> sorted list of its last 100
        self.log = []
        self.next_oid = 1000

    def now(self):
        return self.now_ms if self.now_ms is not None else int(time.time() * 1000)

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
            if signer not in self.users:
                raise Rejected("User or API Wallet %s does not exist." % signer)
            return signer, signer
        if kind in L1:
            signer = recover_agent_or_user_from_l1_action(
                action, sig, payload.get("vaultAddress"), payload["nonce"],
                payload.get("expiresAfter"), self.is_mainnet,
            ).lower()
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

    def fill(self, u, coin, is_buy, sz, px, fee_rate, oid):
        pos = u["positions"].setdefault(coin, {"szi": Decimal(0), "entry": Decimal(0)})
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
        fee = px * sz * fee_rate
        u["usdc"] += closed - fee
        u["fills"].append({
            "coin": coin, "px": s(px), "sz": s(sz), "side": "B" if is_buy else "A",
            "time": self.now(), "fee": s(fee), "oid": oid, "closedPnl": s(closed),
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
            notional = sum(abs(p["szi"]) * self.mids[c] for c, p in u["positions"].items()) + px * sz
            if notional / lev > u["usdc"]:
                return {"error": "Insufficient margin to place order."}
        self.next_oid += 1
        oid = self.next_oid
        mid = self.mids[coin]
        crosses = px >= mid if is_buy else px <= mid
        tif = o["t"].get("limit", {}).get("tif", "Gtc")
        if crosses and tif != "Alo":
            return self.fill(u, coin, is_buy, sz, mid, TAKER_FEE, oid)
        if crosses and tif == "Alo":
            return {"error": "Post only order would have immediately matched."}
        if tif == "Ioc":
            return {"error": "Order could not immediately match against any resting orders."}
        u["orders"].append({
            "coin": coin, "limitPx": s(px), "oid": oid, "side": "B" if is_buy else "A",
            "sz": s(sz), "timestamp": self.now(), "reduceOnly": reduce_only, "cloid": o.get("c"),
        })
        return {"resting": {"oid": oid}}

    def expire_scheduled(self, u):
        t = u["scheduled_cancel"]
        if t is not None and self.now() >= t:
            u["orders"] = []
            u["scheduled_cancel"] = None

    def apply(self, user, action):
        u = self.users[user]
        self.expire_scheduled(u)
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
                for key in ("action", "nonce", "signature"):
                    if key not in payload:
                        raise Rejected("missing %s" % key)
                signer, user = self.authenticate(payload)
                self.check_nonce(signer, payload["nonce"])
                response = self.apply(user, payload["action"])
            except Rejected as e:
                return {"status": "err", "response": str(e)}
            except (KeyError, TypeError, ValueError, ArithmeticError) as e:
                return {"status": "err", "response": "Failed to deserialize the JSON body: %s" % e}
            self.log.append({"signer": signer, "user": user, "payload": payload})
            return {"status": "ok", "response": response}

    # -- info -------------------------------------------------------------------------------

    def state_of(self, user):
        u = self.users[user]
        positions, ntl, margin, upnl = [], Decimal(0), Decimal(0), Decimal(0)
        for coin, p in u["positions"].items():
            if p["szi"] == 0:
                continue
            mark = self.mids[coin]
            value = abs(p["szi"]) * mark
            pnl = (mark - p["entry"]) * p["szi"]
            is_cross, lev = u["leverage"].get(coin, (True, 20))
            ntl += value
            margin += value / lev
            upnl += pnl
            positions.append({"type": "oneWay", "position": {
                "coin": coin, "szi": s(p["szi"]), "entryPx": s(p["entry"]),
                "positionValue": s(value), "unrealizedPnl": s(pnl),
                "leverage": {"type": "cross" if is_cross else "isolated", "value": lev},
                "marginUsed": s(value / lev),
            }})
        account = u["usdc"] + upnl
        return {
            "assetPositions": positions,
            "marginSummary": {"accountValue": s(account), "totalNtlPos": s(ntl),
                              "totalRawUsd": s(u["usdc"]), "totalMarginUsed": s(margin)},
            "withdrawable": s(max(account - margin, Decimal(0))),
            "time": self.now(),
        }

    def info(self, req):
        with self.lock:
            kind = req.get("type")
            if kind == "meta":
                return {"universe": UNIVERSE}
            if kind == "allMids":
                return {k: s(v) for k, v in self.mids.items()}
            user = str(req.get("user", "")).lower()
            if user not in self.users:
                return {"status": "err", "response": "unknown user"}
            u = self.users[user]
            self.expire_scheduled(u)
            if kind == "clearinghouseState":
                return self.state_of(user)
            if kind == "openOrders":
                return [{k: o[k] for k in ("coin", "limitPx", "oid", "side", "sz", "timestamp")} for o in u["orders"]]
            if kind == "userFills":
                return list(reversed(u["fills"]))
            return {"status": "err", "response": "unknown info type %r" % kind}

    def set_mids(self, mids):
        with self.lock:
            for k, v in mids.items():
                self.mids[k] = d(v)
            for u in self.users.values():
                rest = []
                for o in u["orders"]:
                    mid, px, buy = self.mids[o["coin"]], d(o["limitPx"]), o["side"] == "B"
                    if (buy and mid <= px) or (not buy and mid >= px):
                        self.fill(u, o["coin"], buy, d(o["sz"]), px, MAKER_FEE, o["oid"])
                    else:
                        rest.append(o)
                u["orders"] = rest


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
            if self.path == "/_test/now":
                with exchange.lock:
                    exchange.now_ms = body
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
    serve(int(args[0]), Exchange(state, is_mainnet))


if __name__ == "__main__":
    main()
