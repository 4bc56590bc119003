//! What the operator reads of the deputies: `/positions`, `/pnl`, `/risk`. A snapshot per
//! deputy ([`Snapshot`]: its state, equity, baseline, positions with the venue's marks, the
//! day's and all-time figures of its fills, its caps) is gathered by the orchestrator, and
//! rendered here by pure functions. Every USD value is the orchestrator's estimate from the
//! venue's marks, and says so. Funding: paper accrues it hourly (`store/funding.rs`) and
//! `/pnl` shows it; live it is inside the venue's account value only, and `/pnl` says so.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use vigil_protocol::{AgentId, AssetSymbol};

use super::engine::{equity_of, gate_of};
use super::venues::VenueEquity;
use super::{RiskState, StateGate, unrealised, utc_day};
use crate::config::{AgentConfig, DeputyLimits, PerpRisk};
use crate::firewall::risk_perp::fixed::Fx;
use crate::firewall::risk_perp::usd;
use crate::operator;
use crate::scheduler::{Orchestrator, perps_live, unix_now};
use crate::store::{FillTotals, PerpPositionRow};

/// The label every USD figure carries.
pub(crate) const ESTIMATE: &str =
    "USD values are the orchestrator's estimate from the venue's marks";

/// One deputy as the operator reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub agent: AgentId,
    /// `paper` or `live`.
    pub mode: &'static str,
    pub gate: StateGate,
    /// Every venue together (`None`: a part is unknown; `Err`: the venue did not answer, the
    /// text says why).
    pub equity: Result<Option<Fx>, String>,
    /// Each venue's part (`venues.rs`).
    pub parts: VenueEquity,
    /// The day's baseline.
    pub baseline: Option<Fx>,
    /// Every coin of the book (flat ones too), with the venue's mark when it gave one.
    pub book: Vec<(String, PerpPositionRow, Option<Fx>)>,
    /// Realised PnL and fees of today's fills, per coin.
    pub today: Vec<(String, FillTotals)>,
    pub caps: BTreeMap<AssetSymbol, PerpRisk>,
    pub limits: Option<DeputyLimits>,
    /// Each Aave reserve the deputy supplied or owes (the paper book on paper, the Pool live).
    pub aave: Vec<AaveLine>,
}

/// One reserve of the deputy's Aave position as the operator reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AaveLine {
    pub asset: String,
    /// Base units of the token.
    pub supplied: u128,
    pub borrowed: u128,
    pub decimals: u8,
    /// The oracle's price of one whole token (USD with 8 decimals).
    pub price: Fx,
    /// On paper: the interest earned on what was supplied and accrued on what is owed since
    /// the start, base units (live it is inside the Pool's balances).
    pub interest: Option<(u128, u128)>,
}

impl Snapshot {
    /// An empty snapshot of `agent` (the gatherer fills it in).
    pub(crate) fn of(agent: &AgentConfig, mode: &'static str) -> Snapshot {
        Snapshot {
            agent: agent.id.clone(),
            mode,
            gate: StateGate::default(),
            equity: Ok(None),
            parts: VenueEquity::default(),
            baseline: None,
            book: Vec::new(),
            today: Vec::new(),
            caps: agent.risk.perps.clone(),
            limits: agent.risk.deputy,
            aave: Vec::new(),
        }
    }
}

/// Which of the three the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figures {
    /// `/positions`.
    Positions,
    /// `/pnl`.
    Pnl,
    /// `/risk`.
    Risk,
}

impl Orchestrator {
    /// The text of `/positions`, `/pnl` or `/risk` for every deputy.
    pub async fn deputy_figures(&self, which: Figures) -> String {
        let mut snaps = Vec::new();
        for agent in self.agents() {
            if agent.hyperliquid_network.is_some() {
                snaps.push(self.snapshot(agent).await);
            }
        }
        match which {
            Figures::Positions => positions(&snaps),
            Figures::Pnl => pnl(&snaps),
            Figures::Risk => risk(&snaps),
        }
    }

    /// One deputy's snapshot: the venue's view (marks, live positions), the store's book.
    async fn snapshot(&self, agent: &AgentConfig) -> Snapshot {
        let agent = match self.store().lock() {
            Ok(store) => operator::with_mode_override(&store, agent),
            Err(_) => agent.clone(),
        };
        let live = perps_live::live_on_hyperliquid(&agent);
        let mut snap = Snapshot::of(&agent, if live { "live" } else { "paper" });
        let view = self.perp_view(&agent).await;
        let evm = self.evm_view(&agent.id, agent.mode).await;
        let sol = self.sol_wallet(&agent).await;
        let Ok(store) = self.store().lock() else {
            snap.equity = Err("state unavailable".into());
            return snap;
        };
        if let Ok(gate) = gate_of(&store, &agent.id) {
            snap.gate = gate;
        }
        let a = store.agent(&agent.id);
        snap.baseline = a
            .deputy()
            .ok()
            .and_then(|r| r.baseline)
            .and_then(|(day, b)| (day == utc_day(unix_now())).then_some(b));
        let view = match view {
            Ok(Some(view)) => view,
            Ok(None) => return snap,
            Err(why) => {
                snap.equity = Err(why);
                return snap;
            }
        };
        snap.equity = equity_of(&agent, &view, &store, live).map(|hyperliquid| {
            snap.parts = match &evm {
                Ok(evm) => VenueEquity::of(hyperliquid, evm.as_ref()),
                Err(why) => VenueEquity {
                    hyperliquid,
                    aave: Some(Err(format!("the EVM account could not be read: {why}"))),
                    solana: None,
                },
            };
            match &sol {
                Ok(Some((lamports, price))) => {
                    snap.parts = snap.parts.clone().with_solana(*lamports, Some(*price));
                }
                Ok(None) => {}
                Err(why) => {
                    snap.parts.solana = Some(Err(format!("the SOL wallet or price: {why}")));
                }
            }
            snap.parts.total()
        });
        let network = view.network;
        let book = a.perp_book(!live, network).unwrap_or_default();
        snap.book = book
            .into_iter()
            .map(|(coin, mut p)| {
                let parsed = coin.parse().ok();
                if live && let Some(c) = parsed {
                    // The venue's size is the truth for a live account.
                    p.size = view.position(c);
                }
                let mark = parsed.and_then(|c| view.marks.get(&c).copied());
                (coin, p, mark)
            })
            .collect();
        snap.today = a
            .perp_fill_totals(!live, network, utc_day(unix_now()))
            .unwrap_or_default();
        if let Ok(Some(evm)) = &evm {
            let paper = agent.mode == crate::config::Mode::Paper;
            let book = if paper {
                a.paper_aave_book(evm.network).unwrap_or_default()
            } else {
                Vec::new()
            };
            snap.aave = aave_lines(evm, paper.then_some(book.as_slice()));
        }
        snap
    }
}

/// The reserves of `evm`'s Aave position with something supplied or owed; with `book` (paper)
/// the interest booked on each.
fn aave_lines(
    evm: &crate::firewall::risk_evm::EvmView,
    book: Option<&[(String, crate::store::PaperAavePosition)]>,
) -> Vec<AaveLine> {
    let Some(aave) = &evm.aave else {
        return Vec::new();
    };
    aave.reserves
        .iter()
        .filter(|(_, r)| r.supplied > 0 || r.debt > 0)
        .map(|(symbol, r)| AaveLine {
            asset: symbol.to_string(),
            supplied: r.supplied,
            borrowed: r.debt,
            decimals: r.decimals,
            price: i128::try_from(r.price).map_or(Fx::ZERO, Fx::from_raw8),
            interest: book.map(|b| {
                b.iter()
                    .find(|(a, _)| a == symbol.as_str())
                    .map_or((0, 0), |(_, p)| (p.supply_interest, p.borrow_interest))
            }),
        })
        .collect()
}

/// Base units of a token with `decimals` as a decimal number (`1500000` of 6 → `1.5`).
fn token_amount(units: u128, decimals: u8) -> String {
    let digits = format!("{units:0>width$}", width = usize::from(decimals) + 1);
    let (whole, frac) = digits.split_at(digits.len() - usize::from(decimals));
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole.to_owned()
    } else {
        format!("{whole}.{frac}")
    }
}

/// `units` of the line's token at its oracle price, USD (rounded down to 10^-8).
fn aave_usd(line: &AaveLine, units: u128) -> String {
    let value = 10i128
        .checked_pow(u32::from(line.decimals))
        .and_then(|scale| {
            let units = i128::try_from(units).ok()?;
            units.checked_mul(line.price.raw8()).map(|v| v / scale)
        })
        .map(Fx::from_raw8);
    value.map_or_else(
        || "too large to state".into(),
        |v| format!("≈ ${}", money(v)),
    )
}

fn money(v: Fx) -> String {
    let cents = v
        .mul(Fx::parse("100").unwrap_or(Fx::ZERO))
        .unwrap_or(Fx::ZERO);
    // Two decimals, rounded half away from zero, sign kept.
    let s = cents.round_to(0).to_string();
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let digits = format!("{digits:0>3}");
    let (whole, frac) = digits.split_at(digits.len() - 2);
    format!("{sign}{whole}.{frac}")
}

/// Each venue's part: `Hyperliquid 9850.50, Aave 1499.75, Solana 375.63`.
fn parts_text(parts: &VenueEquity) -> String {
    let mut out = vec![format!(
        "Hyperliquid {}",
        parts.hyperliquid.map_or_else(|| "unknown".into(), money)
    )];
    if let Some(Ok(a)) = &parts.aave {
        out.push(format!(
            "Aave {}",
            a.net().map_or_else(|| "unknown".into(), money)
        ));
    }
    if let Some(Ok(sol)) = &parts.solana {
        out.push(format!("Solana {}", money(*sol)));
    }
    out.join(", ")
}

/// Why the total equity is unknown.
fn unknown_part(parts: &VenueEquity) -> String {
    match (&parts.aave, &parts.solana) {
        (Some(Err(why)), _) => format!("Aave: {why}"),
        (_, Some(Err(why))) => format!("Solana: {why}"),
        _ if parts.hyperliquid.is_none() => "a Hyperliquid position has no mark".into(),
        _ => "a figure is too large to state".into(),
    }
}

fn state_text(gate: &StateGate) -> String {
    match gate.state {
        RiskState::Active => "ACTIVE".into(),
        s => format!("{} ({})", s.as_str().to_uppercase(), gate.detail),
    }
}

/// `/positions`.
pub(crate) fn positions(snaps: &[Snapshot]) -> String {
    let mut out = format!("Positions ({ESTIMATE}):");
    if snaps.is_empty() {
        out.push_str("\nno agent trades perpetuals");
    }
    for s in snaps {
        let _ = write!(out, "\n{} [{}, {}]:", s.agent, s.mode, state_text(&s.gate));
        let open: Vec<_> = s
            .book
            .iter()
            .filter(|(_, p, _)| !p.size.is_zero())
            .collect();
        if open.is_empty() && s.aave.is_empty() {
            out.push_str("\n  flat");
        }
        for (coin, p, mark) in open {
            let side = if p.size.is_negative() {
                "short"
            } else {
                "long"
            };
            let lev = coin
                .parse::<AssetSymbol>()
                .ok()
                .and_then(|c| s.caps.get(&c))
                .map_or_else(|| "?".into(), |r| r.leverage.to_string());
            let value = mark
                .and_then(|m| p.size.notional_micros(m))
                .map_or_else(|| "no mark".into(), |n| format!("≈ ${}", usd(n)));
            let mark = mark.map_or_else(|| "none".into(), |m| m.to_string());
            let _ = write!(
                out,
                "\n  {side} {} {coin}-PERP, entry {}, mark {mark}, {value}, {lev}x",
                p.size.abs(),
                p.entry_px
            );
        }
        for line in &s.aave {
            let _ = write!(
                out,
                "\n  Aave {} {}: supplied {} {}, owed {} {} (oracle {})",
                line.asset,
                if line.interest.is_some() {
                    "[paper]"
                } else {
                    "[live]"
                },
                token_amount(line.supplied, line.decimals),
                aave_usd(line, line.supplied),
                token_amount(line.borrowed, line.decimals),
                aave_usd(line, line.borrowed),
                line.price
            );
        }
    }
    out
}

/// `/pnl`.
pub(crate) fn pnl(snaps: &[Snapshot]) -> String {
    let mut out = format!("PnL ({ESTIMATE}):");
    if snaps.is_empty() {
        out.push_str("\nno agent trades perpetuals");
    }
    for s in snaps {
        let _ = write!(out, "\n{} [{}]:", s.agent, s.mode);
        if s.book.is_empty() {
            out.push_str("\n  no fills yet");
        }
        let mut total = Fx::ZERO;
        for (coin, p, mark) in &s.book {
            let today = s
                .today
                .iter()
                .find(|(c, _)| c == coin)
                .map(|(_, t)| *t)
                .unwrap_or_default();
            let open = mark.and_then(|m| unrealised(p, m));
            let since = p
                .realized_pnl
                .sub(p.fees)
                .and_then(|v| v.add(p.funding))
                .and_then(|v| v.add(open.unwrap_or(Fx::ZERO)))
                .unwrap_or(Fx::ZERO);
            let funding = if s.mode == "paper" {
                money(p.funding)
            } else {
                "in the venue's account value".to_owned()
            };
            total = total.add(since).unwrap_or(total);
            let _ = write!(
                out,
                "\n  {coin}: today realised {}, fees {}; since start realised {}, unrealised {}, \
                 fees {}, funding {funding}, net {}",
                money(today.realized_pnl),
                money(today.fees),
                money(p.realized_pnl),
                open.map_or_else(|| "no mark".into(), money),
                money(p.fees),
                money(since)
            );
        }
        if !s.book.is_empty() {
            let _ = write!(out, "\n  net since start: {} USD", money(total));
        }
        match &s.parts.aave {
            Some(Ok(a)) => {
                let _ = write!(
                    out,
                    "\n  Aave (the oracle's prices): collateral {}, debt {}, net {} USD",
                    money(a.collateral),
                    money(a.debt),
                    a.net().map_or_else(|| "unknown".into(), money)
                );
            }
            Some(Err(why)) => {
                let _ = write!(out, "\n  Aave unknown: {why}");
            }
            None => {}
        }
        for line in &s.aave {
            if let Some((earned, paid)) = line.interest {
                let _ = write!(
                    out,
                    "\n  Aave {} [paper] interest since start: earned {} {}, paid {} {}",
                    line.asset,
                    token_amount(earned, line.decimals),
                    aave_usd(line, earned),
                    token_amount(paid, line.decimals),
                    aave_usd(line, paid)
                );
            }
        }
        match &s.parts.solana {
            Some(Ok(sol)) => {
                let _ = write!(
                    out,
                    "\n  Solana (the SOL price source): wallet {} USD",
                    money(*sol)
                );
            }
            Some(Err(why)) => {
                let _ = write!(out, "\n  Solana unknown: {why}");
            }
            None => {}
        }
    }
    out
}

/// `/risk`.
pub(crate) fn risk(snaps: &[Snapshot]) -> String {
    let mut out = format!("Risk ({ESTIMATE}):");
    if snaps.is_empty() {
        out.push_str("\nno agent trades perpetuals");
    }
    for s in snaps {
        let _ = write!(out, "\n{} [{}]: {}", s.agent, s.mode, state_text(&s.gate));
        match (&s.equity, s.baseline, s.limits) {
            (Err(why), _, _) => {
                let _ = write!(out, "\n  equity unknown: {why}");
            }
            (Ok(None), _, _) => {
                let _ = write!(out, "\n  equity unknown: {}", unknown_part(&s.parts));
            }
            (Ok(Some(e)), baseline, limits) => {
                let _ = write!(out, "\n  equity {} USD", money(*e));
                if s.parts.aave.is_some() || s.parts.solana.is_some() {
                    let _ = write!(out, " ({})", parts_text(&s.parts));
                }
                if let Some(b) = baseline {
                    let _ = write!(out, ", baseline today {} USD", money(b));
                }
                match (limits, baseline) {
                    (Some(l), Some(b)) => {
                        let floor = super::usd_fx(l.daily_loss_floor_micros);
                        let distance = e.sub(b).and_then(|c| c.add(floor)).unwrap_or(Fx::ZERO);
                        let _ = write!(
                            out,
                            ", floor {} USD, distance to the floor {} USD",
                            money(floor),
                            money(distance)
                        );
                    }
                    (None, _) => out.push_str(", no daily loss floor configured"),
                    (Some(_), None) => out.push_str(", baseline taken at the next tick"),
                }
            }
        }
        for (coin, r) in &s.caps {
            let _ = write!(
                out,
                "\n  {coin}: order ≤ {} USD, position ≤ {} USD, {}x, limit within {} bps of the \
                 mark, ≤ {} orders/min",
                usd(u128::from(r.max_order_micros)),
                usd(u128::from(r.max_position_micros)),
                r.leverage,
                r.max_slippage_bps,
                r.max_orders_per_minute
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::deputy::StateCause;

    fn f(s: &str) -> Fx {
        Fx::parse(s).unwrap()
    }

    fn snap() -> Snapshot {
        Snapshot {
            agent: "perps".parse().unwrap(),
            mode: "paper",
            gate: StateGate::default(),
            equity: Ok(Some(f("9850.5"))),
            parts: VenueEquity {
                hyperliquid: Some(f("9850.5")),
                aave: None,
                solana: None,
            },
            baseline: Some(f("10000")),
            book: vec![
                (
                    "ETH".into(),
                    PerpPositionRow {
                        size: f("0.5"),
                        entry_px: f("2500"),
                        realized_pnl: f("20"),
                        fees: f("1.5"),
                        funding: f("-0.05"),
                    },
                    Some(f("2400")),
                ),
                (
                    "BTC".into(),
                    PerpPositionRow {
                        size: Fx::ZERO,
                        entry_px: Fx::ZERO,
                        realized_pnl: f("-3.25"),
                        fees: f("0.25"),
                        funding: Fx::ZERO,
                    },
                    Some(f("97000")),
                ),
            ],
            today: vec![(
                "ETH".into(),
                FillTotals {
                    realized_pnl: f("20"),
                    fees: f("0.75"),
                },
            )],
            caps: BTreeMap::from([(
                "ETH".parse().unwrap(),
                PerpRisk {
                    max_order_micros: 500_000_000,
                    max_position_micros: 2_000_000_000,
                    leverage: 3,
                    max_slippage_bps: 50,
                    max_orders_per_minute: 30,
                },
            )]),
            limits: Some(DeputyLimits {
                daily_loss_floor_micros: 200_000_000,
                paper_cash_micros: 10_000_000_000,
            }),
            aave: Vec::new(),
        }
    }

    #[test]
    fn money_has_two_decimals_and_its_sign() {
        assert_eq!(money(f("9850.5")), "9850.50");
        assert_eq!(money(f("-0.256")), "-0.26");
        // 2 h × 0.4 ETH × 1987.62 × 0.0001 of funding paid: −0.159..., read as −0.16.
        assert_eq!(money(f("-0.15900960")), "-0.16");
        assert_eq!(money(f("0.155")), "0.16");
        assert_eq!(money(f("-0.155")), "-0.16");
        assert_eq!(money(f("0.15499999")), "0.15");
        assert_eq!(money(f("-0.004")), "0.00");
        assert_eq!(money(f("-0.005")), "-0.01");
        assert_eq!(money(f("0.05")), "0.05");
        assert_eq!(money(Fx::ZERO), "0.00");
    }

    #[test]
    fn positions_show_side_size_entry_mark_usd_and_leverage() {
        let text = positions(&[snap()]);
        assert!(text.contains(ESTIMATE), "{text}");
        assert!(
            text.contains(
                "perps [paper, ACTIVE]:\n  long 0.5 ETH-PERP, entry 2500, mark 2400, ≈ $1200.00, 3x"
            ),
            "{text}"
        );
        assert!(
            !text.contains("BTC"),
            "flat coins are not positions: {text}"
        );
        let mut flat = snap();
        flat.book.truncate(0);
        assert!(positions(&[flat]).contains("\n  flat"));
        assert!(positions(&[]).contains("no agent trades perpetuals"));
    }

    /// 2.000001 WETH supplied at 2 000 USD and 1 000.5 USDC owed at 1 USD on paper, with
    /// 0.000001 WETH earned and 0.5 USDC of interest owed: the amounts in whole tokens, their
    /// USD at the oracle (2.000001 × 2000 = 4000.002 → 4000.00; 1000.5; 0.002 → 0.00; 0.5).
    #[test]
    fn paper_aave_positions_and_interest_show_in_positions_and_pnl() {
        let mut s = snap();
        s.aave = vec![
            AaveLine {
                asset: "USDC".into(),
                supplied: 0,
                borrowed: 1_000_500_000,
                decimals: 6,
                price: f("1"),
                interest: Some((0, 500_000)),
            },
            AaveLine {
                asset: "WETH".into(),
                supplied: 2_000_001_000_000_000_000,
                borrowed: 0,
                decimals: 18,
                price: f("2000"),
                interest: Some((1_000_000_000_000, 0)),
            },
        ];
        let text = positions(std::slice::from_ref(&s));
        assert!(
            text.contains(
                "\n  Aave USDC [paper]: supplied 0 ≈ $0.00, owed 1000.5 ≈ $1000.50 (oracle 1)"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\n  Aave WETH [paper]: supplied 2.000001 ≈ $4000.00, owed 0 ≈ $0.00 (oracle 2000)"
            ),
            "{text}"
        );
        let text = pnl(std::slice::from_ref(&s));
        assert!(
            text.contains(
                "Aave USDC [paper] interest since start: earned 0 ≈ $0.00, paid 0.5 ≈ $0.50"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "Aave WETH [paper] interest since start: earned 0.000001 ≈ $0.00, paid 0 ≈ $0.00"
            ),
            "{text}"
        );
        // Live, the interest is inside the Pool's balances: no interest line.
        s.aave[0].interest = None;
        assert!(positions(std::slice::from_ref(&s)).contains("Aave USDC [live]"));
        assert!(!pnl(std::slice::from_ref(&s)).contains("USDC [paper] interest"));
        assert_eq!(token_amount(1_500_000, 6), "1.5");
        assert_eq!(token_amount(7, 6), "0.000007");
        assert_eq!(token_amount(0, 18), "0");
        assert_eq!(token_amount(42, 0), "42");
    }

    #[test]
    fn pnl_adds_realised_unrealised_fees_and_funding_per_coin_and_in_total() {
        let text = pnl(&[snap()]);
        // ETH: 20 − 1.5 − 0.05 + 0.5 × (2400 − 2500) = −31.55; BTC: −3.25 − 0.25 = −3.5.
        assert!(
            text.contains("ETH: today realised 20.00, fees 0.75; since start realised 20.00, unrealised -50.00, fees 1.50, funding -0.05, net -31.55"),
            "{text}"
        );
        assert!(
            text.contains("BTC: today realised 0.00, fees 0.00"),
            "{text}"
        );
        assert!(text.contains("net since start: -35.05 USD"), "{text}");
        let mut live = snap();
        live.mode = "live";
        assert!(
            pnl(&[live]).contains("funding in the venue's account value"),
            "live funding is the venue's"
        );
    }

    #[test]
    fn risk_shows_state_caps_equity_baseline_and_the_distance_to_the_floor() {
        let mut s = snap();
        let text = risk(std::slice::from_ref(&s));
        // 9850.5 − 10000 + 200 = 50.5 left before the floor.
        assert!(
            text.contains("perps [paper]: ACTIVE\n  equity 9850.50 USD, baseline today 10000.00 USD, floor 200.00 USD, distance to the floor 50.50 USD"),
            "{text}"
        );
        assert!(
            text.contains("ETH: order ≤ 500.00 USD, position ≤ 2000.00 USD, 3x, limit within 50 bps of the mark, ≤ 30 orders/min"),
            "{text}"
        );
        s.gate = StateGate {
            state: RiskState::Halted,
            cause: Some(StateCause::LossFloor),
            detail: "loss floor hit".into(),
        };
        s.limits = None;
        let text = risk(&[s]);
        assert!(text.contains("HALTED (loss floor hit)"), "{text}");
        assert!(text.contains("no daily loss floor configured"), "{text}");
    }

    #[test]
    fn risk_and_pnl_show_each_venues_part_and_why_a_total_is_unknown() {
        let mut s = snap();
        // Aave: 3000 USD of collateral, 1500.255 of debt; the total 9850.5 + 1499.745.
        s.parts.aave = Some(super::super::venues::aave_equity(
            alloy_primitives::U256::from(300_000_000_000u64),
            alloy_primitives::U256::from(150_025_500_000u64),
        ));
        s.equity = Ok(s.parts.total());
        let text = risk(std::slice::from_ref(&s));
        assert!(
            text.contains("equity 11350.25 USD (Hyperliquid 9850.50, Aave 1499.75), baseline"),
            "{text}"
        );
        let text = pnl(std::slice::from_ref(&s));
        assert!(
            text.contains(
                "Aave (the oracle's prices): collateral 3000.00, debt 1500.26, net 1499.75 USD"
            ),
            "{text}"
        );
        // With a SOL wallet: 2.5 SOL at 150.25 = 375.625; 11350.245 + 375.625 = 11725.87.
        s.parts = s
            .parts
            .clone()
            .with_solana(2_500_000_000, Some(f("150.25")));
        s.equity = Ok(s.parts.total());
        let text = risk(std::slice::from_ref(&s));
        assert!(
            text.contains("equity 11725.87 USD (Hyperliquid 9850.50, Aave 1499.75, Solana 375.63)"),
            "{text}"
        );
        assert!(
            pnl(std::slice::from_ref(&s))
                .contains("Solana (the SOL price source): wallet 375.63 USD"),
            "the Solana part in /pnl"
        );
        s.parts.solana = Some(Err("the SOL wallet or price: source down".into()));
        s.equity = Ok(s.parts.total());
        assert!(
            risk(std::slice::from_ref(&s)).contains("equity unknown: Solana: the SOL wallet"),
            "a failed Solana part makes the total unknown"
        );
        s.parts.solana = None;
        s.parts.aave = Some(Err("the EVM account could not be read: node down".into()));
        s.equity = Ok(s.parts.total());
        let text = risk(std::slice::from_ref(&s));
        assert!(
            text.contains("equity unknown: Aave: the EVM account could not be read: node down"),
            "{text}"
        );
        assert!(pnl(&[s]).contains("Aave unknown: the EVM account"));
    }
}
