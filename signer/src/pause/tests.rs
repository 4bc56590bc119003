//! The pause's rule by table: each class of intent, with and without a pause, and the flags
//! rebuilt from journal entries as serving left them.

use vigil_protocol::{AgentId, Intent, Network, OperatorRequestId, PauseId, PauseReason, Rule};

use super::*;
use crate::audit::Entry;
use crate::ledger::{Event, HlSigned, Ledger};
use crate::policy::Verdict;

fn agent() -> AgentId {
    "trader".parse().unwrap()
}

fn pause(id: &str) -> Pause {
    Pause {
        id: id.parse().unwrap(),
        since: 1_777_636_800,
        reason: PauseReason::LossFloor,
    }
}

fn intent(json: &str) -> Intent {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

const HL: &str = r#""chain":"hyperliquid","network":"testnet""#;

fn order(reduce_only: bool) -> Intent {
    intent(&format!(
        r#"{{"kind":"perp_order",{HL},"asset":"ETH","side":"sell","size":"0.5","limit_px":"2500","tif":"ioc","reduce_only":{reduce_only}}}"#
    ))
}

fn leverage(n: u32, cross: bool) -> Intent {
    intent(&format!(
        r#"{{"kind":"perp_leverage",{HL},"asset":"ETH","leverage":{n},"cross":{cross}}}"#
    ))
}

/// Notes a `perp_leverage` of ETH on testnet, with its value when the entry recorded one.
fn note_leverage(ledger: &mut Ledger, value: Option<(u32, bool)>) {
    ledger.note_hyperliquid(
        &agent(),
        &HlSigned {
            network: Network::Testnet,
            key: "0x1111111111111111111111111111111111111111".into(),
            nonce: 1,
            leverage_set: Some("ETH".parse().unwrap()),
            leverage: value.map(|(l, _)| l),
            cross: value.map(|(_, c)| c),
            registered: None,
        },
    );
}

/// A ledger in which the agent last set ETH to 5x cross through the signer.
fn ledger_with_leverage() -> Ledger {
    let mut ledger = Ledger::default();
    note_leverage(&mut ledger, Some((5, true)));
    ledger
}

fn decided(intent: &Intent, paused: bool, ledger: &Ledger) -> Option<Rule> {
    let p = pause("pz-1");
    with_pause(
        Verdict::Allow,
        paused.then_some(&p),
        ledger,
        &agent(),
        intent,
    )
    .rule()
}

#[test]
fn each_class_of_intent_while_paused() {
    let ledger = ledger_with_leverage();
    let evm = r#""chain":"evm","network":"devnet","asset":"USDC""#;
    let refused = Some(Rule::AgentPaused);
    let table: Vec<(&str, Intent, Option<Rule>)> = vec![
        (
            "solana transfer",
            intent(
                r#"{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"x","amount":"5"}"#,
            ),
            refused,
        ),
        (
            "evm transfer",
            intent(&format!(
                r#"{{"kind":"transfer",{evm},"to":"0xab","amount":"5"}}"#
            )),
            refused,
        ),
        (
            "aave supply",
            intent(&format!(r#"{{"kind":"aave_supply",{evm},"amount":"5"}}"#)),
            refused,
        ),
        (
            "aave borrow",
            intent(&format!(r#"{{"kind":"aave_borrow",{evm},"amount":"5"}}"#)),
            refused,
        ),
        (
            "aave withdraw all",
            intent(&format!(
                r#"{{"kind":"aave_withdraw",{evm},"amount":"all"}}"#
            )),
            None,
        ),
        (
            "aave withdraw",
            intent(&format!(r#"{{"kind":"aave_withdraw",{evm},"amount":"5"}}"#)),
            None,
        ),
        (
            "aave repay all",
            intent(&format!(
                r#"{{"kind":"aave_repay",{evm},"amount":"all","up_to":"9"}}"#
            )),
            None,
        ),
        (
            "aave repay",
            intent(&format!(r#"{{"kind":"aave_repay",{evm},"amount":"5"}}"#)),
            None,
        ),
        ("opening order", order(false), refused),
        ("reduce-only order", order(true), None),
        (
            "cancel",
            intent(&format!(
                r#"{{"kind":"perp_cancel",{HL},"asset":"ETH","oid":7}}"#
            )),
            None,
        ),
        (
            "dead-man switch",
            intent(&format!(
                r#"{{"kind":"perp_schedule_cancel",{HL},"in_secs":60}}"#
            )),
            None,
        ),
        (
            "dead-man switch cleared",
            intent(&format!(r#"{{"kind":"perp_schedule_cancel",{HL}}}"#)),
            None,
        ),
        ("lower leverage", leverage(3, true), None),
        ("same leverage", leverage(5, true), refused),
        ("higher leverage", leverage(10, true), refused),
        (
            "lower leverage, other margin mode",
            leverage(3, false),
            refused,
        ),
        (
            "withdrawal",
            intent(&format!(
                r#"{{"kind":"perp_withdraw",{HL},"asset":"USDC","to":"0x0000000000000000000000000000000000000001","amount":"5"}}"#
            )),
            refused,
        ),
        (
            "api key registration",
            intent(&format!(r#"{{"kind":"perp_register_api_key",{HL}}}"#)),
            refused,
        ),
    ];
    for (name, i, expect) in table {
        assert_eq!(decided(&i, true, &ledger), expect, "{name} while paused");
        // Without a pause the policy's verdict stands, whatever the class.
        assert_eq!(decided(&i, false, &ledger), None, "{name} not paused");
    }
}

#[test]
fn a_leverage_the_signer_never_saw_is_refused_while_paused() {
    // No leverage recorded (or only by an earlier release, which did not record its value).
    let mut ledger = Ledger::default();
    assert_eq!(
        decided(&leverage(1, true), true, &ledger),
        Some(Rule::AgentPaused)
    );
    note_leverage(&mut ledger, None);
    assert!(ledger.hl_leverage_set(&agent(), Network::Testnet, "ETH".parse().unwrap()));
    assert_eq!(
        decided(&leverage(1, true), true, &ledger),
        Some(Rule::AgentPaused)
    );
    // Another network's leverage says nothing of this one's.
    let other = intent(
        r#"{"kind":"perp_leverage","chain":"hyperliquid","network":"mainnet","asset":"ETH","leverage":1,"cross":true}"#,
    );
    assert_eq!(
        decided(&other, true, &ledger_with_leverage()),
        Some(Rule::AgentPaused)
    );
}

#[test]
fn the_pause_overrides_an_approval_and_a_policy_refusal_but_not_an_allowed_class() {
    let ledger = Ledger::default();
    let p = pause("pz-1");
    let transfer = intent(
        r#"{"kind":"transfer","chain":"solana","network":"devnet","asset":"SOL","to":"x","amount":"5"}"#,
    );
    let needs = Verdict::NeedsApproval {
        message: "above".into(),
    };
    let v = with_pause(needs, Some(&p), &ledger, &agent(), &transfer);
    let Verdict::Deny { rule, message } = v else {
        panic!("{v:?}")
    };
    assert_eq!(rule, Rule::AgentPaused);
    assert!(
        message.contains("pz-1") && message.contains("loss_floor"),
        "{message}"
    );
    assert!(message.contains("request_resume"), "{message}");
    let denied = Verdict::Deny {
        rule: Rule::PerTxCap,
        message: "cap".into(),
    };
    assert_eq!(
        with_pause(denied.clone(), Some(&p), &ledger, &agent(), &transfer).rule(),
        Some(Rule::AgentPaused)
    );
    // A reduce-only order keeps the policy's own verdict, refusal included.
    assert_eq!(
        with_pause(denied, Some(&p), &ledger, &agent(), &order(true)).rule(),
        Some(Rule::PerTxCap)
    );
}

#[test]
fn aave_repay_and_withdraw_keep_the_policys_verdict_while_supply_and_borrow_are_refused() {
    // The loss floor's closing flow repays and withdraws for a paused agent: the pause must
    // neither refuse them nor lift what the policy says of them (a refusal, an approval).
    let ledger = Ledger::default();
    let p = pause("pz-1");
    let evm = r#""chain":"evm","network":"devnet","asset":"USDC""#;
    let kinds = [
        (
            format!(r#"{{"kind":"aave_repay",{evm},"amount":"5"}}"#),
            true,
        ),
        (
            format!(r#"{{"kind":"aave_repay",{evm},"amount":"all","up_to":"9"}}"#),
            true,
        ),
        (
            format!(r#"{{"kind":"aave_withdraw",{evm},"amount":"5"}}"#),
            true,
        ),
        (
            format!(r#"{{"kind":"aave_withdraw",{evm},"amount":"all"}}"#),
            true,
        ),
        (
            format!(r#"{{"kind":"aave_supply",{evm},"amount":"5"}}"#),
            false,
        ),
        (
            format!(r#"{{"kind":"aave_borrow",{evm},"amount":"5"}}"#),
            false,
        ),
    ];
    let verdicts = [
        Verdict::Allow,
        Verdict::NeedsApproval {
            message: "above the threshold".into(),
        },
        Verdict::Deny {
            rule: Rule::AllNotAllowed,
            message: "no allow_all".into(),
        },
    ];
    for (json, reduces) in &kinds {
        let i = intent(json);
        assert_eq!(while_paused(&i) == WhilePaused::Allowed, *reduces, "{json}");
        for verdict in &verdicts {
            let got = with_pause(verdict.clone(), Some(&p), &ledger, &agent(), &i);
            if *reduces {
                assert_eq!(&got, verdict, "{json} keeps the policy's verdict");
            } else {
                let Verdict::Deny { rule, message } = got else {
                    panic!("{json}: {got:?}")
                };
                assert_eq!(rule, Rule::AgentPaused, "{json}");
                assert!(
                    message.contains("withdrawals to the agent itself"),
                    "{message}"
                );
            }
        }
    }
}

fn entry(seq: u64, event: Event) -> Entry<Event> {
    Entry {
        seq,
        ts: 1_000 + seq,
        prev: [0; 32],
        hash: [0; 32],
        mac: None,
        event,
    }
}

fn paused(id: &str, reason: PauseReason) -> Event {
    Event::AgentPaused {
        agent: agent(),
        pause_id: id.parse().unwrap(),
        reason,
    }
}

fn resumed(id: &str) -> Event {
    Event::AgentResumed {
        agent: agent(),
        pause_id: id.parse().unwrap(),
        totp_step: 1,
        request_id: "rq-1".parse::<OperatorRequestId>().unwrap(),
    }
}

#[test]
fn replay_rebuilds_the_flag_and_an_old_clearing_never_clears_a_later_pause() {
    let mut p = Pauses::default();
    p.replay_entry(&entry(1, paused("pz-a", PauseReason::Operator)));
    let got = p.get(&agent()).unwrap();
    assert_eq!(
        (got.id.as_str(), got.since, got.reason),
        ("pz-a", 1_001, PauseReason::Operator)
    );
    // Set while set: the first pause stays.
    p.replay_entry(&entry(2, paused("pz-b", PauseReason::LossFloor)));
    assert_eq!(p.get(&agent()).unwrap().id.as_str(), "pz-a");
    p.replay_entry(&entry(3, resumed("pz-a")));
    assert!(p.get(&agent()).is_none());
    p.replay_entry(&entry(4, paused("pz-c", PauseReason::Reconciliation)));
    // A second clearing of pz-a (two requests for one pause) leaves pz-c in force.
    p.replay_entry(&entry(5, resumed("pz-a")));
    assert_eq!(p.get(&agent()).unwrap().id.as_str(), "pz-c");
    assert!(!p.clear(&agent(), &"pz-a".parse::<PauseId>().unwrap()));
    assert!(p.clear(&agent(), &"pz-c".parse::<PauseId>().unwrap()));
    assert!(p.set(&agent(), pause("pz-d")));
    assert!(!p.set(&agent(), pause("pz-e")));
}

#[test]
fn times_read_in_utc() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(1_777_636_800), "2026-05-01 12:00:00 UTC");
    assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
    assert_eq!(
        pause("pz-1").describe(),
        "set at 2026-05-01 12:00:00 UTC for loss_floor"
    );
}
