//! Hyperliquid in the orchestrator's config: `hyperliquid_urls` (the exchange's API per
//! network), the `[hyperliquid]` table (the venue's taker fee, the paper model's slippage,
//! the dead-man switch's keeper), and an agent's per-perpetual risk settings
//! (`[agents.risk.perps.<COIN>]`).
//!
//! These are the orchestrator's own limits, checked by layer 2 before the signer is asked;
//! the signed policy's ceilings (`[networks."hyperliquid:<network>"]`) are enforced by the
//! signer independently, whatever is written here.

use std::collections::BTreeMap;

use serde::Deserialize;
use vigil_protocol::{AssetSymbol, Network, truncate};

use super::{ConfigError, endpoint, invalid};

/// The venue's taker fee on the base tier: 0.045 % = 450 parts per million.
const DEFAULT_TAKER_FEE_PPM: u32 = 450;
/// The paper model's default slippage from the mark, basis points.
const DEFAULT_PAPER_SLIPPAGE_BPS: u32 = 5;
/// How often the keeper refreshes the dead-man switch, seconds.
const DEFAULT_KEEPER_EVERY_SECS: u64 = 60;
/// How far ahead the keeper schedules the cancel-all, seconds.
const DEFAULT_CANCEL_AFTER_SECS: u32 = 120;
/// The exchange refuses a `scheduleCancel` less than 5 s ahead.
const MIN_CANCEL_AFTER_SECS: u32 = 5;
/// The highest leverage Hyperliquid offers on any perpetual.
const MAX_LEVERAGE: u32 = 50;
/// The widest slippage bound accepted: 10 %.
const MAX_SLIPPAGE_BPS: u32 = 1000;
/// The highest order rate accepted, per minute.
const MAX_ORDERS_PER_MINUTE: u32 = 600;

/// The `[hyperliquid]` settings, checked; every field has a default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HyperliquidSettings {
    /// The venue's taker fee, parts per million of the notional (450 = 0.045 %): what a
    /// paper fill pays.
    pub taker_fee_ppm: u32,
    /// How far from the mark a paper fill lands, against the order (never past its limit).
    pub paper_slippage_bps: u32,
    /// Seconds between two refreshes of a live agent's dead-man switch.
    pub keeper_every_secs: u64,
    /// Seconds ahead the switch is set: the agent's orders die this long after the last
    /// refresh.
    pub cancel_after_secs: u32,
}

impl Default for HyperliquidSettings {
    fn default() -> Self {
        HyperliquidSettings {
            taker_fee_ppm: DEFAULT_TAKER_FEE_PPM,
            paper_slippage_bps: DEFAULT_PAPER_SLIPPAGE_BPS,
            keeper_every_secs: DEFAULT_KEEPER_EVERY_SECS,
            cancel_after_secs: DEFAULT_CANCEL_AFTER_SECS,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHyperliquid {
    taker_fee_ppm: Option<u32>,
    paper_slippage_bps: Option<u32>,
    keeper_every_secs: Option<u64>,
    cancel_after_secs: Option<u32>,
}

impl RawHyperliquid {
    pub(super) fn check(self) -> Result<HyperliquidSettings, ConfigError> {
        let d = HyperliquidSettings::default();
        let s = HyperliquidSettings {
            taker_fee_ppm: self.taker_fee_ppm.unwrap_or(d.taker_fee_ppm),
            paper_slippage_bps: self.paper_slippage_bps.unwrap_or(d.paper_slippage_bps),
            keeper_every_secs: self.keeper_every_secs.unwrap_or(d.keeper_every_secs),
            cancel_after_secs: self.cancel_after_secs.unwrap_or(d.cancel_after_secs),
        };
        if s.taker_fee_ppm > 10_000 {
            return Err(invalid(
                "hyperliquid.taker_fee_ppm",
                format!(
                    "{} is more than 10000 (1 %): give parts per million, e.g. 450 for the venue's 0.045 %",
                    s.taker_fee_ppm
                ),
            ));
        }
        if s.paper_slippage_bps > MAX_SLIPPAGE_BPS {
            return Err(invalid(
                "hyperliquid.paper_slippage_bps",
                format!(
                    "{} is more than {MAX_SLIPPAGE_BPS} (10 %): give basis points, e.g. 5",
                    s.paper_slippage_bps
                ),
            ));
        }
        if s.keeper_every_secs < 5 {
            return Err(invalid(
                "hyperliquid.keeper_every_secs",
                "must be at least 5 seconds (the exchange rate-limits the dead-man switch)",
            ));
        }
        if s.cancel_after_secs < MIN_CANCEL_AFTER_SECS
            || u64::from(s.cancel_after_secs) <= s.keeper_every_secs
        {
            return Err(invalid(
                "hyperliquid.cancel_after_secs",
                format!(
                    "{} must be at least {MIN_CANCEL_AFTER_SECS} and more than keeper_every_secs ({}), \
                     or the orders die between two refreshes; e.g. twice keeper_every_secs",
                    s.cancel_after_secs, s.keeper_every_secs
                ),
            ));
        }
        Ok(s)
    }
}

/// `hyperliquid_urls`: the API's base URL per network (`testnet`, `mainnet`).
pub(super) fn check_urls(
    raw: &BTreeMap<String, String>,
) -> Result<BTreeMap<Network, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, url) in raw {
        let key = format!("hyperliquid_urls.{}", truncate(name));
        let network = network(name).map_err(|reason| invalid(&key, reason))?;
        endpoint::parse(url, endpoint::Service::ChainRpc)
            .map_err(|reason| invalid(&key, reason))?;
        out.insert(network, url.clone());
    }
    Ok(out)
}

/// A Hyperliquid network's name: `testnet` or `mainnet` (the exchange has no devnet).
pub(super) fn network(name: &str) -> Result<Network, String> {
    match name {
        "testnet" => Ok(Network::Testnet),
        "mainnet" => Ok(Network::Mainnet),
        other => Err(format!(
            "{:?} is not a Hyperliquid network: write \"testnet\" or \"mainnet\"",
            truncate(other)
        )),
    }
}

/// An agent's limits on one perpetual, checked by layer 2 (`firewall/risk_perp.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerpRisk {
    /// Largest order notional (size × limit price), micro-USD.
    pub max_order_micros: u64,
    /// Largest position notional after an order (|position| × mark), micro-USD.
    pub max_position_micros: u64,
    /// The leverage set (cross) before the agent's first order on this perpetual.
    pub leverage: u32,
    /// How far from the mark a limit price may be: a buy at most mark × (1 + bps), a sell at
    /// least mark × (1 − bps).
    pub max_slippage_bps: u32,
    /// How many orders (all perpetuals of the agent together) may pass layer 2 in any 60 s
    /// while this perpetual's order is checked.
    pub max_orders_per_minute: u32,
}

/// The deputy's loss floor and paper cash (`[agents.risk.deputy]`, `docs/deputies.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeputyLimits {
    /// The daily loss floor, micro-USD: at equity − the day's baseline ≤ −this, the deputy
    /// halts and closes everything.
    pub daily_loss_floor_micros: u64,
    /// The paper account's starting cash, micro-USD (paper equity starts here).
    pub paper_cash_micros: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeputy {
    daily_loss_floor_usd_micros: u64,
    #[serde(default = "default_paper_cash")]
    paper_cash_usd_micros: u64,
}

/// 10 000 USD of paper cash.
fn default_paper_cash() -> u64 {
    10_000_000_000
}

/// 30 orders a minute.
fn default_orders_per_minute() -> u32 {
    30
}

/// `[agents.risk.deputy]`, checked.
pub(super) fn check_deputy(prefix: &str, raw: RawDeputy) -> Result<DeputyLimits, ConfigError> {
    if raw.daily_loss_floor_usd_micros == 0 {
        return Err(invalid(
            format!("{prefix}.deputy.daily_loss_floor_usd_micros"),
            "is 0: give the largest daily loss in micro-USD, e.g. 200_000_000 for 200 USD",
        ));
    }
    if raw.paper_cash_usd_micros == 0 {
        return Err(invalid(
            format!("{prefix}.deputy.paper_cash_usd_micros"),
            "is 0: give the paper account's starting cash in micro-USD, e.g. 10_000_000_000",
        ));
    }
    Ok(DeputyLimits {
        daily_loss_floor_micros: raw.daily_loss_floor_usd_micros,
        paper_cash_micros: raw.paper_cash_usd_micros,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPerpRisk {
    max_order_usd_micros: u64,
    max_position_usd_micros: u64,
    leverage: u32,
    max_slippage_bps: u32,
    #[serde(default = "default_orders_per_minute")]
    max_orders_per_minute: u32,
}

/// `[agents.risk.perps.<COIN>]`, each checked.
pub(super) fn check_perps(
    prefix: &str,
    raw: BTreeMap<String, RawPerpRisk>,
) -> Result<BTreeMap<AssetSymbol, PerpRisk>, ConfigError> {
    let mut out = BTreeMap::new();
    for (coin, r) in raw {
        let key = |field: &str| format!("{prefix}.perps.{}{field}", truncate(&coin));
        let asset = coin.parse::<AssetSymbol>().map_err(|_| {
            invalid(
                key(""),
                "is not a perpetual's coin: use 1-10 upper-case letters or digits, e.g. ETH",
            )
        })?;
        if r.max_order_usd_micros == 0 {
            return Err(invalid(
                key(".max_order_usd_micros"),
                "is 0: give the largest order in micro-USD, e.g. 500_000_000 for 500 USD",
            ));
        }
        if r.max_position_usd_micros < r.max_order_usd_micros {
            return Err(invalid(
                key(".max_position_usd_micros"),
                format!(
                    "{} is less than max_order_usd_micros ({}): a position holds at least one order",
                    r.max_position_usd_micros, r.max_order_usd_micros
                ),
            ));
        }
        if !(1..=MAX_LEVERAGE).contains(&r.leverage) {
            return Err(invalid(
                key(".leverage"),
                format!("{} is out of range: give 1 to {MAX_LEVERAGE}", r.leverage),
            ));
        }
        if !(1..=MAX_SLIPPAGE_BPS).contains(&r.max_slippage_bps) {
            return Err(invalid(
                key(".max_slippage_bps"),
                format!(
                    "{} is out of range: give 1 to {MAX_SLIPPAGE_BPS} basis points, e.g. 50 for 0.5 %",
                    r.max_slippage_bps
                ),
            ));
        }
        if !(1..=MAX_ORDERS_PER_MINUTE).contains(&r.max_orders_per_minute) {
            return Err(invalid(
                key(".max_orders_per_minute"),
                format!(
                    "{} is out of range: give 1 to {MAX_ORDERS_PER_MINUTE}",
                    r.max_orders_per_minute
                ),
            ));
        }
        out.insert(
            asset,
            PerpRisk {
                max_order_micros: r.max_order_usd_micros,
                max_position_micros: r.max_position_usd_micros,
                leverage: r.leverage,
                max_slippage_bps: r.max_slippage_bps,
                max_orders_per_minute: r.max_orders_per_minute,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::{Config, DEFAULT_CONFIG_TOML};
    use super::*;
    use crate::firewall::Action;

    /// The default config with a perpetuals trader added (first agent's position kept).
    fn with(top: &str, agent: &str, perps: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "{top}\n{DEFAULT_CONFIG_TOML}\n[[agents]]\nid = \"perps\"\nprovider = \"scripted\"\n\
             model = \"scripted\"\ntemperature = 0.1\nmax_tokens = 400\nschedule_secs = 60\n\
             system_prompt = \"You trade ETH perpetuals.\"\n{agent}\n[agents.risk]\n\
             allowed_actions = [\"hold\", \"perp_order\", \"perp_cancel\"]\n\
             max_fraction_per_tx_bps = 1000\n{perps}\n"
        );
        Config::from_toml(&text)
    }

    const URLS: &str = "hyperliquid_urls = { testnet = \"https://api.hyperliquid-testnet.xyz\" }";
    const NET: &str = "hyperliquid_network = \"testnet\"";
    const ETH: &str = "[agents.risk.perps.ETH]\nmax_order_usd_micros = 500_000_000\n\
                       max_position_usd_micros = 2_000_000_000\nleverage = 3\nmax_slippage_bps = 50";

    #[test]
    fn a_perpetuals_trader_loads_with_its_limits_and_the_defaults() {
        let c = with(URLS, NET, ETH).unwrap();
        let a = c.agents.iter().find(|a| a.id.as_str() == "perps").unwrap();
        assert_eq!(a.hyperliquid_network, Some(Network::Testnet));
        assert!(a.risk.allowed_actions.contains(&Action::PerpOrder));
        let eth = a.risk.perps[&"ETH".parse::<AssetSymbol>().unwrap()];
        assert_eq!(
            (
                eth.max_order_micros,
                eth.max_position_micros,
                eth.leverage,
                eth.max_slippage_bps
            ),
            (500_000_000, 2_000_000_000, 3, 50)
        );
        assert_eq!(c.hyperliquid, HyperliquidSettings::default());
        assert_eq!(c.hyperliquid.taker_fee_ppm, 450);
        assert_eq!(c.hyperliquid_urls.len(), 1);
        // The [hyperliquid] table, after everything else (a TOML table ends the top level).
        let text = format!(
            "{DEFAULT_CONFIG_TOML}\n[hyperliquid]\ntaker_fee_ppm = 350\npaper_slippage_bps = 2\n\
             keeper_every_secs = 30\ncancel_after_secs = 90"
        );
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(
            c.hyperliquid,
            HyperliquidSettings {
                taker_fee_ppm: 350,
                paper_slippage_bps: 2,
                keeper_every_secs: 30,
                cancel_after_secs: 90
            }
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad_perp = |field: &str, value: &str| {
            let perps = ETH
                .lines()
                .map(|l| {
                    if l.starts_with(field) {
                        format!("{field} = {value}")
                    } else {
                        l.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            with(URLS, NET, &perps).unwrap_err()
        };
        let cases: Vec<(ConfigError, &str, &str)> = vec![
            (
                with(URLS, "", ETH).unwrap_err(),
                "agents[3].hyperliquid_network",
                "is missing",
            ),
            (
                with(URLS, NET, "").unwrap_err(),
                "agents[3].risk.perps",
                "is empty",
            ),
            (
                with("", NET, ETH).unwrap_err(),
                "agents[3].hyperliquid_network",
                "hyperliquid_urls",
            ),
            (
                with(URLS, "hyperliquid_network = \"devnet\"", ETH).unwrap_err(),
                "agents[3].hyperliquid_network",
                "testnet",
            ),
            (
                with(
                    "hyperliquid_urls = { devnet = \"https://x.example\" }",
                    NET,
                    ETH,
                )
                .unwrap_err(),
                "hyperliquid_urls.devnet",
                "not a Hyperliquid network",
            ),
            (
                with("hyperliquid_urls = { testnet = \"ftp://x\" }", NET, ETH).unwrap_err(),
                "hyperliquid_urls.testnet",
                "",
            ),
            (
                bad_perp("max_order_usd_micros", "0"),
                "agents[3].risk.perps.ETH.max_order_usd_micros",
                "is 0",
            ),
            (
                bad_perp("max_position_usd_micros", "1"),
                "agents[3].risk.perps.ETH.max_position_usd_micros",
                "less than",
            ),
            (
                bad_perp("leverage", "51"),
                "agents[3].risk.perps.ETH.leverage",
                "1 to 50",
            ),
            (
                bad_perp("leverage", "0"),
                "agents[3].risk.perps.ETH.leverage",
                "1 to 50",
            ),
            (
                bad_perp("max_slippage_bps", "0"),
                "agents[3].risk.perps.ETH.max_slippage_bps",
                "1 to 1000",
            ),
            (
                with(URLS, NET, &ETH.replace("perps.ETH", "perps.eth")).unwrap_err(),
                "agents[3].risk.perps.eth",
                "coin",
            ),
        ];
        for (e, key, word) in cases {
            assert_eq!(e.key(), Some(key), "{e}");
            assert!(e.to_string().contains(word), "{e}");
        }
        let e = with(URLS, NET, &format!("{ETH}\nmax_leverage = 3")).unwrap_err();
        assert!(e.to_string().contains("max_leverage"), "{e}");
        for (table, key) in [
            ("taker_fee_ppm = 20000", "hyperliquid.taker_fee_ppm"),
            (
                "paper_slippage_bps = 2000",
                "hyperliquid.paper_slippage_bps",
            ),
            ("keeper_every_secs = 1", "hyperliquid.keeper_every_secs"),
            ("cancel_after_secs = 60", "hyperliquid.cancel_after_secs"),
        ] {
            let text = format!("{DEFAULT_CONFIG_TOML}\n[hyperliquid]\n{table}");
            let e = Config::from_toml(&text).unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
        }
    }
}
