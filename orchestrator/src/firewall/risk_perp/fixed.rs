//! Exact decimals for the perpetuals' arithmetic: a signed value with 8 digits after the
//! point in an `i128` (Hyperliquid's wire numbers have at most 8), the perpetual's grid
//! (sizes to `szDecimals`, prices to 5 significant figures and `6 − szDecimals` decimals,
//! rounded down), and notionals in micro-USD. No floating point: a cap is compared exactly.

use std::fmt;

/// 10^8: one unit.
const ONE: i128 = 100_000_000;
/// Digits after the point.
const DECIMALS: u32 = 8;

/// A decimal with 8 digits after the point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fx(i128);

impl Fx {
    pub(crate) const ZERO: Fx = Fx(0);
    pub(crate) const ONE: Fx = Fx(ONE);

    /// Parses `-?digits(.digits)?`; digits past the 8th after the point are cut (towards
    /// zero). `None` for anything else or a value too large.
    pub(crate) fn parse(text: &str) -> Option<Fx> {
        let (neg, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || whole.len() > 20 || !plain(whole) || !plain(frac) {
            return None;
        }
        if digits.contains('.') && frac.is_empty() {
            return None;
        }
        let whole: i128 = whole.parse().ok()?;
        let cut = frac.get(..frac.len().min(DECIMALS as usize)).unwrap_or("");
        let padded = format!("{cut:0<8}");
        let frac: i128 = padded.parse().ok()?;
        let v = whole.checked_mul(ONE)?.checked_add(frac)?;
        Some(Fx(if neg { -v } else { v }))
    }

    /// Micro-units (e.g. micro-USD) as a value: `micros / 10^6`, exact.
    pub(crate) fn from_micros(micros: u64) -> Fx {
        Fx(i128::from(micros) * 100)
    }

    /// A value already counted with 8 decimals (Aave's USD base currency: 10^8 is one
    /// dollar).
    pub(crate) const fn from_raw8(raw: i128) -> Fx {
        Fx(raw)
    }

    /// The value counted with 8 decimals (the inverse of [`Fx::from_raw8`]).
    pub(crate) const fn raw8(self) -> i128 {
        self.0
    }

    pub(crate) fn abs(self) -> Fx {
        Fx(self.0.abs())
    }

    pub(crate) fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub(crate) fn add(self, o: Fx) -> Option<Fx> {
        self.0.checked_add(o.0).map(Fx)
    }

    pub(crate) fn sub(self, o: Fx) -> Option<Fx> {
        self.0.checked_sub(o.0).map(Fx)
    }

    pub(crate) fn neg(self) -> Fx {
        Fx(-self.0)
    }

    /// `self × other`, rounded towards zero to 8 decimals.
    pub(crate) fn mul(self, o: Fx) -> Option<Fx> {
        self.0.checked_mul(o.0).map(|p| Fx(p / ONE))
    }

    /// `self × bps / 10 000`, rounded towards zero.
    pub(crate) fn bps(self, bps: u32) -> Option<Fx> {
        self.0.checked_mul(i128::from(bps)).map(|p| Fx(p / 10_000))
    }

    /// `self × ppm / 1 000 000`, rounded towards zero (a fee in parts per million).
    pub(crate) fn ppm(self, ppm: u32) -> Option<Fx> {
        self.0
            .checked_mul(i128::from(ppm))
            .map(|p| Fx(p / 1_000_000))
    }

    /// `self / other`, rounded towards zero; `None` when `other` is zero.
    pub(crate) fn div(self, o: Fx) -> Option<Fx> {
        if o.0 == 0 {
            return None;
        }
        self.0.checked_mul(ONE).map(|p| Fx(p / o.0))
    }

    /// `|self × other|` in micro-USD, rounded up (a notional compared with a cap is never
    /// understated).
    pub(crate) fn notional_micros(self, o: Fx) -> Option<u128> {
        let p = self.0.checked_mul(o.0)?.unsigned_abs();
        // p has 16 decimals; micro-USD has 6.
        Some(p.div_ceil(10u128.pow(10)))
    }

    /// Rounded down (towards zero) to `decimals` digits after the point.
    pub(crate) fn floor_to(self, decimals: u32) -> Fx {
        if decimals >= DECIMALS {
            return self;
        }
        let step = 10i128.pow(DECIMALS - decimals);
        Fx(self.0 / step * step)
    }

    /// Rounded to `decimals` digits after the point, half away from zero (what an operator
    /// reads: 0.159 is 0.16, −0.155 is −0.16).
    pub(crate) fn round_to(self, decimals: u32) -> Fx {
        if decimals >= DECIMALS {
            return self;
        }
        let step = 10i128.pow(DECIMALS - decimals);
        let (whole, rest) = (self.0 / step, self.0 % step);
        let away = i128::from(rest.unsigned_abs() * 2 >= step.unsigned_abs());
        Fx((whole + self.0.signum() * away) * step)
    }

    /// A size on the perpetual's grid: `sz_decimals` digits, rounded down.
    pub(crate) fn size_grid(self, sz_decimals: u32) -> Fx {
        self.floor_to(sz_decimals)
    }

    /// A price on the perpetual's grid, rounded down: an integer price is always allowed;
    /// otherwise at most 5 significant figures and at most `6 − sz_decimals` decimals.
    pub(crate) fn price_grid(self, sz_decimals: u32) -> Fx {
        let max_decimals = 6u32.saturating_sub(sz_decimals);
        let whole = self.0.unsigned_abs() / ONE.unsigned_abs();
        let sig_decimals = if whole > 0 {
            5u32.saturating_sub(digits(whole))
        } else {
            // 0.000ddddd: the significant figures start after the leading zeros.
            let frac = self.0.unsigned_abs();
            if frac == 0 {
                return self;
            }
            DECIMALS - digits(frac) + 5
        };
        self.floor_to(max_decimals.min(sig_decimals))
    }
}

fn digits(n: u128) -> u32 {
    n.checked_ilog10().map_or(1, |l| l + 1)
}

impl fmt::Display for Fx {
    /// Plain decimal, no trailing zeros after the point (the exchange's wire form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        let one = ONE.unsigned_abs();
        let (whole, frac) = (a / one, a % one);
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let frac = format!("{frac:08}");
        write!(f, "{sign}{whole}.{}", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fx(s: &str) -> Fx {
        Fx::parse(s).unwrap()
    }

    #[test]
    fn parse_and_print_round_trip() {
        for (text, shown) in [
            ("0", "0"),
            ("2500", "2500"),
            ("2500.50", "2500.5"),
            ("-0.01", "-0.01"),
            ("0.00000001", "0.00000001"),
            ("1.123456789", "1.12345678"),
        ] {
            assert_eq!(fx(text).to_string(), shown, "{text}");
        }
        for bad in [
            "",
            "-",
            "1.",
            ".5",
            "1e3",
            "+1",
            "1,5",
            "123456789012345678901",
        ] {
            assert!(Fx::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_grid_rounds_down_like_the_exchange_counts() {
        // ETH: szDecimals 4, so prices have at most 2 decimals and 5 significant figures.
        assert_eq!(fx("0.123456").size_grid(4).to_string(), "0.1234");
        assert_eq!(fx("2512.345").price_grid(4).to_string(), "2512.3");
        assert_eq!(fx("2512").price_grid(4).to_string(), "2512");
        assert_eq!(fx("97123.9").price_grid(5).to_string(), "97123");
        assert_eq!(fx("123456.78").price_grid(5).to_string(), "123456");
        assert_eq!(fx("1.234567").price_grid(0).to_string(), "1.2345");
        assert_eq!(fx("0.001234567").price_grid(0).to_string(), "0.001234");
        assert_eq!(fx("0.00012345678").price_grid(0).to_string(), "0.000123");
        assert_eq!(fx("0.00012345678").price_grid(0).to_string().len(), 8);
        assert_eq!(fx("150.123").price_grid(2).to_string(), "150.12");
        assert_eq!(fx("0.9").size_grid(0).to_string(), "0");
    }

    #[test]
    fn notionals_are_exact_micro_usd_rounded_up() {
        assert_eq!(fx("0.5").notional_micros(fx("2500")), Some(1_250_000_000));
        assert_eq!(fx("0.00000001").notional_micros(fx("0.00000001")), Some(1));
        assert_eq!(fx("-2").notional_micros(fx("3")), Some(6_000_000));
        assert_eq!(fx("2500").bps(50), Some(fx("12.5")));
    }
}
