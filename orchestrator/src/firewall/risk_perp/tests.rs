//! Tables of perpetuals' decisions for layer 2: what passes (rounded to the grid) and which
//! rule refuses each of the others.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use vigil_protocol::TimeInForce;

use super::*;
use crate::firewall::schema::{Action, PerpOrderFields};

fn sym(s: &str) -> AssetSymbol {
    s.parse().unwrap()
}

fn fx(s: &str) -> Fx {
    Fx::parse(s).unwrap()
}

/// ETH: 500 USD per order, 2000 USD of position, 3x, 1 % from the mark.
fn profile() -> RiskProfile {
    RiskProfile {
        allowed_actions: [Action::Hold, Action::PerpOrder, Action::PerpCancel]
            .into_iter()
            .collect::<BTreeSet<_>>(),
        max_fraction_per_tx_bps: 1000,
        asset_fraction_bps: BTreeMap::new(),
        min_health_factor_milli: None,
        peers: vec![],
        deputy: None,
        perps: BTreeMap::from([
            (
                sym("ETH"),
                PerpRisk {
                    max_order_micros: 500_000_000,
                    max_position_micros: 2_000_000_000,
                    leverage: 3,
                    max_slippage_bps: 100,
                    max_orders_per_minute: 5,
                },
            ),
            (
                sym("DOGE"),
                PerpRisk {
                    max_order_micros: 500_000_000,
                    max_position_micros: 2_000_000_000,
                    leverage: 3,
                    max_slippage_bps: 100,
                    max_orders_per_minute: 5,
                },
            ),
        ]),
    }
}

/// ETH at 2500 (szDecimals 4), BTC listed but not traded; a long of 0.2 ETH and a resting
/// bid of 0.1 (oid 7).
fn view() -> PerpView {
    let meta = |index, sz_decimals| PerpMeta {
        index,
        sz_decimals,
        max_leverage: 25,
    };
    PerpView {
        network: Network::Testnet,
        perps: BTreeMap::from([(sym("BTC"), meta(0, 5)), (sym("ETH"), meta(1, 4))]),
        marks: BTreeMap::from([(sym("BTC"), fx("97000")), (sym("ETH"), fx("2500"))]),
        positions: BTreeMap::from([(sym("ETH"), fx("0.2"))]),
        open_orders: BTreeMap::from([(
            sym("ETH"),
            vec![ViewOrder {
                oid: 7,
                buy: true,
                size: fx("0.1"),
            }],
        )]),
        account_value: fx("10000"),
        master: None,
        gate: crate::deputy::StateGate::default(),
        equity: fx("10000"),
        orders_last_minute: 0,
        taker_fee_ppm: 450,
        paper_slippage_bps: 5,
    }
}

fn order(coin: &str, side: Side, size: &str, px: &str, reduce_only: bool) -> AgentDecision {
    AgentDecision {
        action: Action::PerpOrder,
        asset: Some(sym(coin)),
        to: None,
        amount: None,
        perp: Some(PerpDecision::Order(PerpOrderFields {
            side,
            size: size.parse().unwrap(),
            limit_px: px.parse().unwrap(),
            tif: TimeInForce::Gtc,
            reduce_only,
        })),
        confidence_milli: 500,
        reasoning: "a reason of at least twenty characters".into(),
    }
}

fn cancel(coin: &str, oid: u64) -> AgentDecision {
    AgentDecision {
        action: Action::PerpCancel,
        perp: Some(PerpDecision::Cancel { oid }),
        ..order(coin, Side::Buy, "1", "1", false)
    }
}

#[test]
fn table_of_perp_decisions() {
    use Side::{Buy, Sell};
    type Want = Result<(&'static str, &'static str), RiskRule>;
    let mut held = view();
    held.gate = crate::deputy::StateGate::reconciling(
        "the venue shows an ETH position the store does not".into(),
    );
    let mut no_mark = view();
    no_mark.marks.clear();
    let mut short = view();
    short.positions.insert(sym("ETH"), fx("-0.3"));
    let mut with_transfer = order("ETH", Buy, "0.1", "2500", false);
    with_transfer.action = Action::Transfer;
    let mut incomplete = order("ETH", Buy, "0.1", "2500", false);
    incomplete.perp = None;
    let cases: Vec<(&str, AgentDecision, PerpView, Want)> = vec![
        (
            "a buy at the mark",
            order("ETH", Buy, "0.1", "2500", false),
            view(),
            Ok(("0.1", "2500")),
        ),
        (
            "rounded down to the grid",
            order("ETH", Buy, "0.123456", "2512.3456", false),
            view(),
            Ok(("0.1234", "2512.3")),
        ),
        (
            "a buy at the slippage bound",
            order("ETH", Buy, "0.1", "2525", false),
            view(),
            Ok(("0.1", "2525")),
        ),
        (
            "a buy past the slippage bound",
            order("ETH", Buy, "0.1", "2525.1", false),
            view(),
            Err(RiskRule::PerpSlippage),
        ),
        (
            "a sell at the lower bound",
            order("ETH", Sell, "0.1", "2475", false),
            view(),
            Ok(("0.1", "2475")),
        ),
        (
            "a sell below the lower bound",
            order("ETH", Sell, "0.1", "2474.9", false),
            view(),
            Err(RiskRule::PerpSlippage),
        ),
        (
            "a buy far below the mark rests: allowed",
            order("ETH", Buy, "0.1", "1000", false),
            view(),
            Ok(("0.1", "1000")),
        ),
        (
            "order notional exactly at the cap",
            order("ETH", Buy, "0.2", "2500", false),
            view(),
            Ok(("0.2", "2500")),
        ),
        (
            "order notional one step over the cap",
            order("ETH", Buy, "0.2001", "2500", false),
            view(),
            Err(RiskRule::PerpOrderNotional),
        ),
        (
            "100x the cap",
            order("ETH", Buy, "20", "2500", false),
            view(),
            Err(RiskRule::PerpOrderNotional),
        ),
        // 0.2 held + 0.1 resting + 0.2 = 0.5 ETH = 1250 USD: within 2000.
        (
            "position within the cap",
            order("ETH", Buy, "0.2", "2500", false),
            view(),
            Ok(("0.2", "2500")),
        ),
        // 0.6 held + 0.1 resting + 0.2 = 0.9 ETH = 2250 USD: over 2000.
        (
            "position past the cap counting the resting bid",
            order("ETH", Buy, "0.2", "2500", false),
            {
                let mut p = view();
                p.positions.insert(sym("ETH"), fx("0.6"));
                p
            },
            Err(RiskRule::PerpPositionNotional),
        ),
        (
            "a sell against a long is not counted with the bid",
            order("ETH", Sell, "0.2", "2500", false),
            {
                let mut p = view();
                p.positions.insert(sym("ETH"), fx("0.7"));
                p
            },
            Ok(("0.2", "2500")),
        ),
        (
            "reduce-only sell of a long",
            order("ETH", Sell, "0.2", "2480", true),
            view(),
            Ok(("0.2", "2480")),
        ),
        (
            "reduce-only larger than the position",
            order("ETH", Sell, "0.15", "2480", true),
            {
                let mut p = view();
                p.positions.insert(sym("ETH"), fx("0.1"));
                p
            },
            Err(RiskRule::PerpReduceOnly),
        ),
        (
            "reduce-only in the growing direction",
            order("ETH", Buy, "0.1", "2500", true),
            view(),
            Err(RiskRule::PerpReduceOnly),
        ),
        (
            "reduce-only buy of a short",
            order("ETH", Buy, "0.1", "2500", true),
            short.clone(),
            Ok(("0.1", "2500")),
        ),
        (
            "reduce-only when flat",
            order("ETH", Sell, "0.1", "2500", true),
            {
                let mut p = view();
                p.positions.clear();
                p
            },
            Err(RiskRule::PerpReduceOnly),
        ),
        (
            "opening held by reconciliation",
            order("ETH", Buy, "0.1", "2500", false),
            held.clone(),
            Err(RiskRule::PerpReconcile),
        ),
        (
            "reduce-only passes while held",
            order("ETH", Sell, "0.1", "2500", true),
            held.clone(),
            Ok(("0.1", "2500")),
        ),
        (
            "a perpetual the agent does not trade",
            order("BTC", Buy, "0.001", "97000", false),
            view(),
            Err(RiskRule::PerpNotTraded),
        ),
        (
            "a perpetual the venue does not list",
            order("DOGE", Buy, "1", "1", false),
            view(),
            Err(RiskRule::PerpNotTraded),
        ),
        (
            "no mark",
            order("ETH", Buy, "0.1", "2500", false),
            no_mark,
            Err(RiskRule::PerpNoMark),
        ),
        (
            "a size below the grid",
            order("ETH", Buy, "0.00001", "2500", false),
            view(),
            Err(RiskRule::PerpGrid),
        ),
        (
            "not an allowed action",
            with_transfer,
            view(),
            Err(RiskRule::ActionNotAllowed),
        ),
        (
            "no perp fields",
            incomplete,
            view(),
            Err(RiskRule::Incomplete),
        ),
    ];
    for (name, decision, view, want) in cases {
        let got = check_perp(&decision, &profile(), &view);
        match (got, want) {
            (Ok(c), Ok((size, px))) => {
                let Intent::PerpOrder(o) = &c.intent else {
                    panic!("{name}: {:?}", c.intent)
                };
                assert_eq!((o.size.as_str(), o.limit_px.as_str()), (size, px), "{name}");
                assert_eq!(o.network, Network::Testnet, "{name}");
                assert_eq!(c.mark, Some(fx("2500")), "{name}");
                assert_eq!(c.risk.leverage, 3, "{name}");
            }
            (Err(r), Err(rule)) => {
                assert_eq!(r.rule, rule, "{name}: {}", r.message);
                assert!(!r.message.is_empty(), "{name}");
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn a_cancel_needs_an_open_order_on_that_perpetual() {
    let c = check_perp(&cancel("ETH", 7), &profile(), &view()).unwrap();
    assert_eq!(
        c.intent,
        Intent::PerpCancel(PerpCancelIntent {
            chain: Chain::Hyperliquid,
            network: Network::Testnet,
            asset: sym("ETH"),
            oid: 7
        })
    );
    assert_eq!(c.position.as_str(), "0.2");
    let r = check_perp(&cancel("ETH", 8), &profile(), &view()).unwrap_err();
    assert_eq!(r.rule, RiskRule::PerpOrderNotOpen);
    assert!(r.message.contains("the open ones are: 7"), "{}", r.message);
}

#[test]
fn refusals_say_what_to_do() {
    let r = check_perp(
        &order("ETH", Side::Buy, "20", "2500", false),
        &profile(),
        &view(),
    )
    .unwrap_err();
    assert!(
        r.message.contains("50000.00 USD") && r.message.contains("500.00 USD"),
        "{}",
        r.message
    );
    let r = check_perp(
        &order("ETH", Side::Buy, "0.1", "2600", false),
        &profile(),
        &view(),
    )
    .unwrap_err();
    assert!(r.message.contains("at most 2525"), "{}", r.message);
}

/// The deputy's gates: the order rate, the leverage cap and the risk state, each refusing
/// where it should and letting everything else through.
#[test]
fn the_deputys_gates_refuse_where_they_should_and_nowhere_else() {
    use crate::deputy::{RiskState, StateCause, StateGate};
    use Side::{Buy, Sell};
    let with = |f: &dyn Fn(&mut PerpView)| {
        let mut v = view();
        f(&mut v);
        v
    };
    let gate = |state, cause| StateGate {
        state,
        cause: Some(cause),
        detail: "a reason".into(),
    };
    let open = || order("ETH", Buy, "0.2", "2500", false);
    let reduce = || order("ETH", Sell, "0.1", "2490", true);
    let rate_4 = with(&|v| v.orders_last_minute = 4);
    let rate_5 = with(&|v| v.orders_last_minute = 5);
    // 0.2 held + 0.1 resting + 0.2 = 0.5 ETH = 1250 USD; 3x of 417 = 1251: allowed; 3x of
    // 416 = 1248: refused. A BTC position elsewhere counts at its mark.
    let equity_417 = with(&|v| v.equity = fx("417"));
    let equity_416 = with(&|v| v.equity = fx("416"));
    let btc_too = with(&|v| {
        v.equity = fx("417");
        v.positions.insert(sym("BTC"), fx("0.001"));
    });
    let venue_max_2 = with(&|v| {
        if let Some(m) = v.perps.get_mut(&sym("ETH")) {
            m.max_leverage = 2;
        }
    });
    let reducing = with(&|v| v.gate = gate(RiskState::Reducing, StateCause::LossFloor));
    let halted = with(&|v| v.gate = gate(RiskState::Halted, StateCause::LossFloor));
    let cases: Vec<(&str, AgentDecision, &PerpView, Option<RiskRule>)> = vec![
        ("4 orders in the last minute, cap 5", open(), &rate_4, None),
        (
            "5 orders in the last minute",
            open(),
            &rate_5,
            Some(RiskRule::PerpOrderRate),
        ),
        (
            "a reduce-only order counts too",
            reduce(),
            &rate_5,
            Some(RiskRule::PerpOrderRate),
        ),
        ("a cancel is not an order", cancel("ETH", 7), &rate_5, None),
        ("leverage within 3x of equity", open(), &equity_417, None),
        (
            "leverage past 3x of equity",
            open(),
            &equity_416,
            Some(RiskRule::PerpLeverage),
        ),
        (
            "another perpetual's position counts",
            open(),
            &btc_too,
            Some(RiskRule::PerpLeverage),
        ),
        (
            "reducing is never leverage-capped",
            reduce(),
            &equity_416,
            None,
        ),
        (
            "configured leverage above the venue's maximum",
            open(),
            &venue_max_2,
            Some(RiskRule::PerpLeverage),
        ),
        (
            "reducing past the venue's maximum",
            reduce(),
            &venue_max_2,
            None,
        ),
        (
            "Reducing: an opening order",
            open(),
            &reducing,
            Some(RiskRule::RiskState),
        ),
        ("Reducing: a reduce-only order", reduce(), &reducing, None),
        ("Reducing: a cancel", cancel("ETH", 7), &reducing, None),
        (
            "Halted: an opening order",
            open(),
            &halted,
            Some(RiskRule::RiskState),
        ),
        (
            "Halted: even a reduce-only order (the engine closes)",
            reduce(),
            &halted,
            Some(RiskRule::RiskState),
        ),
        (
            "Halted: even a cancel",
            cancel("ETH", 7),
            &halted,
            Some(RiskRule::RiskState),
        ),
    ];
    for (name, decision, view, want) in cases {
        let got = check_perp(&decision, &profile(), view)
            .map(|_| ())
            .map_err(|r| r.rule);
        assert_eq!(got, want.map_or(Ok(()), Err), "{name}");
    }
}
