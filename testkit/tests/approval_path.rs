//! Issue 14 end to end, with both bots: the real confined signer (its approver uid 4244), the
//! `vigil-orchestrator` daemon with its bot on one Bot API emulator, the `vigil-approver`
//! daemon with its own bot on a second one, and a real Solana runtime. The operator's code
//! reaches the signer only as a reply in the approver's chat; a code in the orchestrator's
//! chat does nothing; what a compromised orchestrator forges is shown as the signer renders it
//! and gets nothing signed; the approver restarting mid-approval loses nothing; with the
//! approver down, requests wait and expire and nothing falls back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vigil_orchestrator::ConfirmationId;
use vigil_protocol::{ApproveRequest, ConfirmationPurpose, Context, Network, NewConfirmation, Op};
use vigil_testkit::approver::signer_id_of;
use vigil_testkit::daemon::BotToken;
use vigil_testkit::operator::fresh_step;
use vigil_testkit::requests::{err, ok, pay, sign_op, transfer, unique_blockhash};
use vigil_testkit::telegram::{BotMessage, Chat, OPERATOR};
use vigil_testkit::{AgentSpec, Reply, SOL, Scenario, Script, require_root};

/// 0.8 SOL: above the dev policy's 0.5 SOL approval threshold, below its 1 SOL cap.
const ABOVE: u64 = 800_000_000;

/// The approver's message showing request `id`, waiting for it.
async fn shown(chat: &mut Chat<'_>, id: &str) -> BotMessage {
    chat.expect(&format!("Approval {id}\n")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_in_the_approvers_chat_across_its_restart_and_never_from_the_orchestrators() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let world = Scenario::trader(10 * SOL)
        .telegram()
        .approver()
        .start()
        .await;
    let peer = world.signer.dev_peer();
    world.script(
        &Script::new().agent(
            "trader",
            [Reply::transfer("dev-peer", u128::from(ABOVE))
                .reasoning("Prepay the next batch of work.")],
        ),
    );
    let _daemon = world.daemon(
        &world.config().agent(
            AgentSpec::new("trader")
                .every(3)
                .live("SOL")
                .peer("dev-peer", &peer),
        ),
        BotToken::Given,
    );
    let operator = world.operator();
    let mut orch = Chat::new(world.emulator(), OPERATOR);
    let asked = orch.expect("waits for your approval at the approver").await;
    let id = signer_id_of(&world.store(), ConfirmationId(1));

    // The approver's chat shows the signer's own summary under the signer's id.
    let approver_bot = world.approver_bot();
    let mut appr = Chat::new(approver_bot, OPERATOR);
    let before = shown(&mut appr, &id).await;
    assert!(
        before.text.contains("0.8 SOL") && before.text.contains(&peer),
        "{}",
        before.text
    );

    // A valid code in the orchestrator's chat, as a reply and on its own: nothing moves.
    let code = operator.code().expose_digits().to_owned();
    world
        .emulator()
        .send_reply(OPERATOR, &code, Some(&asked))
        .await;
    orch.expect("Codes are never taken in this chat").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        world.chain().balance_of(&peer),
        0,
        "a code in the orchestrator's chat moved nothing"
    );
    assert!(world.signer.audit_events("approval_granted").is_empty());

    // The approver restarts (killed, as a crash) mid-approval; a reply to the message it showed
    // before still answers exactly that request.
    world.kill_approver();
    world.start_approver();
    world.approver_log("confined").await;
    let t = fresh_step(8);
    approver_bot
        .send_reply(OPERATOR, operator.code_at(t).expose_digits(), Some(&before))
        .await;
    appr.expect(&format!(
        "Granted by the signer: Approval {}",
        &id[..id.len().min(16)]
    ))
    .await;
    // The orchestrator collects the one signature the grant allows, and the transfer lands.
    let done = orch
        .expect("#1 approved in the approver's chat; the signer signed")
        .await;
    assert!(
        done.text.contains("chain: confirmed") || done.text.contains("chain: finalized"),
        "{}",
        done.text
    );
    assert_eq!(world.chain().balance_of(&peer), ABOVE);
    assert_eq!(world.signer.signed().len(), 1);
    // The request shown before the restart was not shown again after it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut texts: Vec<String> = appr.seen.iter().map(|m| m.text.clone()).collect();
    texts.extend(
        approver_bot
            .bot_messages(OPERATOR)
            .await
            .into_iter()
            .map(|m| m.text),
    );
    let times = texts
        .iter()
        .filter(|t| t.starts_with(&format!("Approval {id}\n")))
        .count();
    assert_eq!(times, 1, "{texts:#?}");
    // The grant was announced in the approver's chat, from the signer's journal.
    assert!(texts.iter().any(|t| t.contains("[Signer #")), "{texts:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_compromised_orchestrator_forges_is_shown_truly_and_signs_nothing() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let world = Scenario::trader(10 * SOL).approver().start().await;
    let peer = world.signer.dev_peer();
    let operator = world.operator();
    let mut asker = world.signer.client();
    // A flood of transfers above the threshold, and a "paper" request naming the same transfer.
    let mut approvals = Vec::new();
    for i in 0..4 {
        let pending = ok(asker
            .call(pay("trader", &peer, ABOVE, &format!("flood-{i}")))
            .unwrap());
        approvals.push(pending["approval_id"].as_str().unwrap().to_owned());
    }
    let paper = ok(asker
        .call(Op::RequestConfirmation(NewConfirmation {
            purpose: ConfirmationPurpose::PaperApproval {
                agent: "trader".parse().unwrap(),
                intent: Box::new(transfer(&peer, ABOVE, Network::Devnet)),
                context: Context::default(),
            },
            idempotency_key: "looks-harmless".parse().unwrap(),
        }))
        .unwrap());
    let paper_id = paper["request_id"].as_str().unwrap().to_owned();
    // The orchestrator's uid with a valid current code: refused, whatever it answers.
    let t = fresh_step(10);
    let (kind, _, _) = err(asker
        .call(Op::Approve(ApproveRequest {
            approval_id: approvals[0].parse().unwrap(),
            code: operator.code_at(t),
        }))
        .unwrap());
    assert_eq!(kind, "approver_only");

    // The approver shows each as the signer rendered it: the real amount and recipient, and the
    // paper one marked PAPER.
    let approver_bot = world.approver_bot();
    let mut appr = Chat::new(approver_bot, OPERATOR);
    for id in &approvals {
        let m = shown(&mut appr, id).await;
        assert!(
            m.text.contains("0.8 SOL") && m.text.contains(&peer),
            "{}",
            m.text
        );
    }
    let forged = appr.expect(&format!("Confirmation {paper_id}")).await;
    assert!(forged.text.contains("PAPER"), "{}", forged.text);
    // The operator, fooled or not, confirms the paper one: that grants no signature.
    approver_bot
        .send_reply(
            OPERATOR,
            operator.code_at(fresh_step(8)).expose_digits(),
            Some(&forged),
        )
        .await;
    appr.expect("Granted by the signer: Confirmation").await;
    for (i, _) in approvals.iter().enumerate() {
        let again = ok(asker
            .call(sign_op(
                "trader",
                transfer(&peer, ABOVE, Network::Devnet),
                &format!("flood-{i}"),
                &unique_blockhash(7, i as u64),
            ))
            .unwrap());
        assert!(
            again.get("approval_id").is_some(),
            "signed without a grant: {again}"
        );
    }
    assert!(
        world.signer.signed().is_empty(),
        "nothing above the threshold is signed"
    );
    assert_eq!(world.chain().balance_of(&peer), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_approver_down_requests_wait_expire_and_nothing_falls_back() {
    if !require_root("a second uid for the approver") {
        return;
    }
    let world = Scenario::trader(10 * SOL)
        .signer_args(&["--approval-ttl", "4"])
        .approver()
        .start()
        .await;
    world.kill_approver();
    let peer = world.signer.dev_peer();
    let mut asker = world.signer.client();
    let pending = ok(asker
        .call(pay("trader", &peer, ABOVE, "while-down"))
        .unwrap());
    let id = pending["approval_id"].as_str().unwrap().to_owned();
    // It waits at the signer (seen by the approver's uid), nothing is signed meanwhile.
    let peer_view = world.signer.approver();
    assert_eq!(peer_view.item(&id).id, id);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        peer_view.awaiting().iter().all(|i| i.id != id),
        "expired: no longer awaiting"
    );
    assert!(world.signer.signed().is_empty());
    assert_eq!(world.chain().balance_of(&peer), 0);
    // The approver coming back shows nothing of what expired.
    world.start_approver();
    world.approver_log("confined").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let texts: Vec<String> = world
        .approver_bot()
        .bot_messages(OPERATOR)
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert!(
        texts
            .iter()
            .all(|t| !t.starts_with(&format!("Approval {id}"))),
        "{texts:#?}"
    );
}
