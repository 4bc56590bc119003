"""Seeded synthetic market paths for the loopback Hyperliquid exchange (exchange.py).

A path is given in the exchange's state file:

    "path": {"seed": 7, "step_ms": 1000, "vol_bps": 30, "start_ms": 1700000000000,
             "events": [{"at_ms": 1700000060000, "coin": "ETH", "move_bps": -2000}]}

Each coin's mid at time t is

    start price x PRODUCT over steps i with start_ms + i*step_ms <= t of (1 + vol_bps/10^4 * z_i)
                x PRODUCT over its events with at_ms <= t of (1 + move_bps/10^4)

rounded to 5 significant figures (as the exchange quotes prices). z_i is uniform in [-1, 1)
from splitmix64, seeded per coin from the seed and the FNV-1a hash of the coin's name: the
same seed gives the same mids on every machine and every Python version (Python's `random`
promises neither). Arithmetic is Decimal with 28 digits, also deterministic. `start_ms`
defaults to the exchange's clock when it starts. Events are gaps and crashes: a one-off move
at an instant, which is also an instant where resting orders may be crossed.
"""

from decimal import ROUND_HALF_EVEN, Context, Decimal

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
CTX = Context(prec=28, rounding=ROUND_HALF_EVEN)
MAX_STEPS = 5_000_000
BPS = Decimal(10_000)


class PathError(ValueError):
    """A path in the state file that cannot be followed; the message says what to fix."""


def splitmix64(state):
    """One splitmix64 step: (new state, output)."""
    state = (state + GAMMA) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def five_significant(x):
    """x rounded to 5 significant figures, written plainly (no exponent)."""
    if x == 0:
        return x
    exp = x.adjusted() - 4
    return x.quantize(Decimal(1).scaleb(exp), rounding=ROUND_HALF_EVEN, context=CTX).normalize(CTX)


def _int(spec, key, low, default=None):
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise PathError("path.%s must be an integer >= %d, not %r" % (key, low, value))
    return value


class CoinWalk:
    """One coin's random walk: the products of its steps, computed once and kept."""

    def __init__(self, seed, coin, start, vol):
        self.state = (seed ^ fnv1a64(coin)) & MASK
        self.start = start
        self.vol = vol
        self.levels = [start]  # levels[i]: the unrounded price after i steps

    def level(self, steps):
        while len(self.levels) <= steps:
            self.state, z = splitmix64(self.state)
            u = CTX.divide(Decimal(z >> 11), Decimal(1 << 52))  # [0, 2)
            factor = CTX.add(Decimal(1), CTX.multiply(self.vol, CTX.subtract(u, Decimal(1))))
            self.levels.append(CTX.multiply(self.levels[-1], factor))
        return self.levels[steps]


class MarketPath:
    """The seeded mids of every coin, as a function of the exchange's clock."""

    def __init__(self, spec, mids, now_ms):
        if not isinstance(spec, dict):
            raise PathError("path must be an object {seed, step_ms, vol_bps, start_ms?, events?}")
        unknown = set(spec) - {"seed", "step_ms", "vol_bps", "start_ms", "events"}
        if unknown:
            raise PathError("path has unknown fields %s (known: seed, step_ms, vol_bps, start_ms, events)"
                            % sorted(unknown))
        seed = _int(spec, "seed", 0)
        self.step_ms = _int(spec, "step_ms", 1)
        vol_bps = _int(spec, "vol_bps", 0)
        if vol_bps >= 10_000:
            raise PathError("path.vol_bps must be below 10000 (a step of 100%% or more), not %d" % vol_bps)
        self.start_ms = _int(spec, "start_ms", 0, now_ms)
        vol = CTX.divide(Decimal(vol_bps), BPS)
        self.walks = {coin: CoinWalk(seed, coin, Decimal(price), vol) for coin, price in mids.items()}
        self.events = []
        for i, e in enumerate(spec.get("events", [])):
            if not isinstance(e, dict) or set(e) != {"at_ms", "coin", "move_bps"}:
                raise PathError("path.events[%d] must be {at_ms, coin, move_bps}, not %r" % (i, e))
            if e["coin"] not in self.walks:
                raise PathError("path.events[%d].coin %r is not one of the mids %s"
                                % (i, e["coin"], sorted(self.walks)))
            move = e["move_bps"]
            if not isinstance(move, int) or isinstance(move, bool) or not -10_000 < move <= 1_000_000:
                raise PathError("path.events[%d].move_bps must be an integer above -10000, not %r" % (i, move))
            _int(e, "at_ms", 0)
            self.events.append((e["at_ms"], e["coin"], CTX.add(Decimal(1), CTX.divide(Decimal(move), BPS))))
        self.events.sort(key=lambda ev: ev[0])

    def steps_at(self, t):
        if t < self.start_ms:
            return 0
        steps = (t - self.start_ms) // self.step_ms
        if steps > MAX_STEPS:
            raise PathError("the clock is %d steps past the path's start (at most %d): set start_ms nearer, "
                            "or a longer step_ms" % (steps, MAX_STEPS))
        return steps

    def mid(self, coin, t):
        """The coin's mid at time t (ms), 5 significant figures."""
        x = self.walks[coin].level(self.steps_at(t))
        for at, c, factor in self.events:
            if at > t:
                break
            if c == coin:
                x = CTX.multiply(x, factor)
        return five_significant(x)

    def mids(self, t):
        return {coin: self.mid(coin, t) for coin in self.walks}

    def changes(self, after, until):
        """The instants in (after, until] where some mid may change: steps and events, in order."""
        if until <= after:
            return []
        first = max(self.steps_at(after) + 1, 1) if after >= self.start_ms else 1
        last = self.steps_at(until)
        times = {self.start_ms + i * self.step_ms for i in range(first, last + 1)}
        times.update(at for at, _, _ in self.events if after < at <= until)
        return sorted(t for t in times if after < t <= until)
