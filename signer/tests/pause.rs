//! The per-agent pause against the real confined signer over its socket: set by the asker
//! (and by the approver: any peer may tighten), then transfers and an opening perp order are
//! refused with `agent_paused` while a reduce-only order, a cancel and a lower leverage are
//! still signed; still paused after `kill -9`; the asker cannot clear it (`approver_only`), a
//! wrong code does not, the operator's code through the approver does. A grant made before the
//! pause is not collected while it lasts, and an old resume request never clears a later pause.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use vigil_protocol::{AwaitingKind, Client, NewResume, Op, OperatorRequestId, ResumeAgentRequest};
use vigil_testkit::Signer;
use vigil_testkit::operator::fresh_step;
use vigil_testkit::requests::{SOME_BLOCKHASH, err, ok, pay};

/// A Solana recipient the policy allows.
const PAYEE: &str = SOME_BLOCKHASH;

fn policy() -> String {
    format!(
        r#"version = 1
[agents.trader]
actions = ["transfer", "perp_order", "perp_cancel", "perp_leverage", "perp_schedule_cancel"]
networks = ["solana:devnet", "hyperliquid:testnet"]
recipients = ["{PAYEE}"]
rate_limit_per_minute = 60
[agents.trader.assets.SOL]
chain = "solana"
per_tx_cap = "2000000000"
velocity_24h = "10000000000"
approval_threshold = "500000000"
[agents.trader.assets.ETH]
chain = "hyperliquid"
per_tx_cap = "2000000000"
velocity_24h = "10000000000"
approval_threshold = "2000000000"

[networks."hyperliquid:testnet"]
perps.ETH = {{ coin = "ETH", index = 1, sz_decimals = 4, max_leverage = 5, max_position_notional = "5000000000" }}
"#
    )
}

fn start() -> Signer {
    Signer::with(&["trader"]).policy_toml(&policy()).start()
}

fn call(c: &mut Client, op: Value) -> vigil_protocol::Response {
    let mut r = op;
    r["v"] = json!(1);
    r["id"] = json!("r1");
    c.call_raw(&serde_json::to_vec(&r).unwrap()).unwrap()
}

fn hl(mut i: Value) -> Value {
    i["chain"] = json!("hyperliquid");
    i["network"] = json!("testnet");
    i
}

fn order(reduce_only: bool) -> Value {
    hl(
        json!({"kind": "perp_order", "asset": "ETH", "side": "sell", "size": "0.2", "limit_px": "2500", "tif": "ioc", "reduce_only": reduce_only}),
    )
}

fn leverage(n: u32) -> Value {
    hl(json!({"kind": "perp_leverage", "asset": "ETH", "leverage": n, "cross": true}))
}

fn sign_hl(c: &mut Client, key: &str, intent: Value) -> vigil_protocol::Response {
    call(
        c,
        json!({"op": "sign", "agent": "trader", "intent": intent, "context": {"perp_position": "0.5"}, "idempotency_key": key}),
    )
}

fn pause(c: &mut Client, reason: &str) -> Value {
    ok(call(
        c,
        json!({"op": "pause_agent", "agent": "trader", "reason": reason}),
    ))
}

fn request_resume(c: &mut Client, key: &str) -> Value {
    ok(c.call(Op::RequestResume(NewResume {
        agent: "trader".parse().unwrap(),
        idempotency_key: key.parse().unwrap(),
    }))
    .unwrap())
}

/// The agent's pause as `status` shows it (`null` when not paused).
fn status_pause(s: &Signer) -> Value {
    let status = ok(s.client().call(Op::Status).unwrap());
    status["agents"][0]
        .get("paused")
        .cloned()
        .unwrap_or(Value::Null)
}

fn rule_of(resp: vigil_protocol::Response) -> Option<String> {
    err(resp).1
}

#[test]
fn a_paused_agent_signs_only_what_reduces_and_stays_paused_across_kill_9_until_the_operators_code()
{
    let mut s = start();
    let mut c = s.client();
    // Before the pause: a leverage (the journal keeps 5x) and a transfer are signed.
    ok(sign_hl(&mut c, "l5", leverage(5)));
    ok(c.call(pay("trader", PAYEE, 1_000, "t0")).unwrap());

    let p = pause(&mut c, "loss_floor");
    assert_eq!(p["already_paused"], false, "{p}");
    assert!(p["ledger_seq"].as_u64().unwrap() > 0, "{p}");
    let pause_id = p["pause"]["pause_id"].as_str().unwrap().to_owned();
    assert_eq!(p["pause"]["reason"], "loss_floor");
    // Idempotent: a second pause (here by the approver: any peer may tighten) says so and
    // keeps the first.
    let again = ok(s
        .approver()
        .call(Op::PauseAgent(vigil_protocol::PauseAgentRequest {
            agent: "trader".parse().unwrap(),
            reason: vigil_protocol::PauseReason::Other,
        })));
    assert_eq!(again["already_paused"], true, "{again}");
    assert_eq!(again["pause"]["pause_id"], pause_id.as_str());
    assert_eq!(s.audit_events("agent_paused").len(), 1);
    assert_eq!(status_pause(&s)["pause_id"], pause_id.as_str());
    let hello = ok(c.call(Op::Hello).unwrap());
    assert_eq!(hello["agents"][0]["paused"]["reason"], "loss_floor");
    let (kind, _, _) = err(call(
        &mut c,
        json!({"op": "pause_agent", "agent": "nobody", "reason": "other"}),
    ));
    assert_eq!(kind, "unknown_agent");

    let paused_rules = |c: &mut Client, tag: &str| {
        let (kind, rule, message) = err(c
            .call(pay("trader", PAYEE, 1_000, &format!("t{tag}")))
            .unwrap());
        assert_eq!(
            (kind.as_str(), rule.as_deref()),
            ("policy_denied", Some("agent_paused"))
        );
        assert!(message.contains("request_resume"), "{message}");
        assert_eq!(
            rule_of(sign_hl(c, &format!("o{tag}"), order(false))).as_deref(),
            Some("agent_paused")
        );
        // dry_run answers the same (paper mode sees the pause).
        let dry = ok(call(
            c,
            json!({"op": "dry_run", "agent": "trader", "intent": order(false), "context": {"perp_position": "0.5"}}),
        ));
        assert_eq!(
            (dry["decision"].as_str(), dry["rule"].as_str()),
            (Some("deny"), Some("agent_paused"))
        );
        // What can only shrink the position is still signed.
        ok(sign_hl(c, &format!("r{tag}"), order(true)));
        ok(sign_hl(
            c,
            &format!("c{tag}"),
            hl(json!({"kind": "perp_cancel", "asset": "ETH", "oid": 77})),
        ));
        ok(sign_hl(
            c,
            &format!("s{tag}"),
            hl(json!({"kind": "perp_schedule_cancel", "in_secs": 60})),
        ));
    };
    paused_rules(&mut c, "1");
    // The leverage only down: 3x under 5x is signed; 4x is then above the last (3x).
    ok(sign_hl(&mut c, "l3", leverage(3)));
    assert_eq!(
        rule_of(sign_hl(&mut c, "l4", leverage(4))).as_deref(),
        Some("agent_paused")
    );

    // kill -9: the flag and the last leverage come back from the journal.
    s.restart();
    let mut c = s.client();
    assert_eq!(status_pause(&s)["pause_id"], pause_id.as_str());
    paused_rules(&mut c, "2");
    assert_eq!(
        rule_of(sign_hl(&mut c, "l4b", leverage(4))).as_deref(),
        Some("agent_paused")
    );
    ok(sign_hl(&mut c, "l2", leverage(2)));

    // The asker asks; it cannot answer, even with the right code.
    let created = request_resume(&mut c, "resume-1");
    let request_id: OperatorRequestId = created["request_id"].as_str().unwrap().parse().unwrap();
    let summary = created["summary"].as_str().unwrap();
    assert!(
        summary.contains("RESUME: agent trader")
            && summary.contains("for loss_floor")
            && summary.contains(" UTC"),
        "{summary}"
    );
    let op = s.operator();
    fresh_step(10);
    let (kind, _, _) = err(c
        .call(Op::ResumeAgent(ResumeAgentRequest {
            request_id: request_id.clone(),
            code: op.code(),
        }))
        .unwrap());
    assert_eq!(kind, "approver_only");
    assert_eq!(s.audit_events("peer_refused").len(), 1);

    // The approver shows it as the signer rendered it; a wrong code leaves the pause.
    let approver = s.approver();
    let item = approver.item(request_id.as_str());
    assert_eq!(
        (item.kind, item.summary.as_str()),
        (AwaitingKind::Resume, summary)
    );
    let (kind, _, _) = err(approver.answer_item(&item, op.wrong_code(), None));
    assert_eq!(kind, "operator_code_invalid");
    assert_eq!(status_pause(&s)["pause_id"], pause_id.as_str());
    assert_eq!(
        rule_of(c.call(pay("trader", PAYEE, 1_000, "t3")).unwrap()).as_deref(),
        Some("agent_paused")
    );

    // The operator's code clears it.
    let resumed = ok(approver.answer_item(&item, op.code(), None));
    assert_eq!(
        (resumed["agent"].as_str(), resumed["pause_id"].as_str()),
        (Some("trader"), Some(pause_id.as_str()))
    );
    assert_eq!(status_pause(&s), Value::Null);
    let st = ok(c
        .call(Op::RequestStatus(vigil_protocol::RequestStatusRequest {
            request_id: request_id.clone(),
        }))
        .unwrap());
    assert_eq!(st["status"], "granted");
    ok(c.call(pay("trader", PAYEE, 1_000, "t4")).unwrap());
    ok(sign_hl(&mut c, "o4", order(false)));
    assert_eq!(s.audit_events("agent_resumed").len(), 1);
    // The operator heard of both, in the approver's events.
    let kinds: Vec<String> = approver
        .events(0)
        .events
        .iter()
        .map(|e| e.kind.as_str().to_owned())
        .collect();
    for k in [
        "agent_paused",
        "resume_requested",
        "code_refused",
        "agent_resumed",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    assert!(s.audit_verifies());
}

#[test]
fn an_approval_granted_before_the_pause_is_not_collected_while_it_lasts() {
    let s = start();
    let mut c = s.client();
    let op = s.operator();
    let approver = s.approver();
    // 1 SOL: above the 0.5 SOL threshold.
    let needs = ok(c.call(pay("trader", PAYEE, 1_000_000_000, "big")).unwrap());
    assert_eq!(needs["status"], "needs_approval", "{needs}");
    let approval_id = needs["approval_id"].as_str().unwrap();
    let now = fresh_step(10);
    ok(approver.approve(approval_id, op.code_at(now)));

    pause(&mut c, "reconciliation");
    let (_, rule, message) = err(c.call(pay("trader", PAYEE, 1_000_000_000, "big")).unwrap());
    assert_eq!(rule.as_deref(), Some("agent_paused"), "{message}");
    assert!(s.signed().is_empty());

    // Resumed (the next step's code: each step is spent once), the grant is collected.
    let created = request_resume(&mut c, "resume-big");
    let item = approver.item(created["request_id"].as_str().unwrap());
    ok(approver.answer_item(&item, op.code_at(now + 30), None));
    let signed = ok(c.call(pay("trader", PAYEE, 1_000_000_000, "big")).unwrap());
    assert_eq!(signed["status"], "signed", "{signed}");
    assert_eq!(s.signed().len(), 1);
}

#[test]
fn an_old_resume_request_never_clears_a_later_pause() {
    let s = start();
    let mut c = s.client();
    let op = s.operator();
    let approver = s.approver();
    // Not paused: nothing to resume.
    let (kind, _, _) = err(c
        .call(Op::RequestResume(NewResume {
            agent: "trader".parse().unwrap(),
            idempotency_key: "k0".parse().unwrap(),
        }))
        .unwrap());
    assert_eq!(kind, "bad_request");

    let first = pause(&mut c, "operator")["pause"]["pause_id"].clone();
    let old = request_resume(&mut c, "old");
    let used = request_resume(&mut c, "used");
    // The same key for the same pause is the same request.
    assert_eq!(
        request_resume(&mut c, "used")["request_id"],
        used["request_id"]
    );
    let now = fresh_step(10);
    let used_item = approver.item(used["request_id"].as_str().unwrap());
    ok(approver.answer_item(&used_item, op.code_at(now), None));
    let second = pause(&mut c, "loss_floor")["pause"]["pause_id"].clone();
    assert_ne!(first, second);

    // The old request names the first pause: refused before any code is looked at.
    let old_item = approver.item(old["request_id"].as_str().unwrap());
    let (kind, _, message) = err(approver.answer_item(&old_item, op.code_at(now + 30), None));
    assert_eq!(kind, "approval_expired", "{message}");
    assert!(message.contains("paused again"), "{message}");
    assert_eq!(status_pause(&s)["pause_id"], second);
    assert!(s.audit_events("operator_code_refused").is_empty());
    // That code was not spent: it still clears the second pause through a new request.
    let fresh = request_resume(&mut c, "new");
    let item = approver.item(fresh["request_id"].as_str().unwrap());
    ok(approver.answer_item(&item, op.code_at(now + 30), None));
    assert_eq!(status_pause(&s), Value::Null);
}
