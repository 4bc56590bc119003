//! The Telegram operator interface end to end, as an operator uses it: the `vigil-orchestrator`
//! daemon (its bot, scheduler and SQLite state) against the Telegram Bot API emulator on
//! loopback, the real confined signer, and for live approvals a real Solana runtime behind a
//! loopback JSON-RPC node. Codes are computed from the dev keystore's approval secret, as the
//! operator's authenticator would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vigil_orchestrator::{ConfirmationId, ConfirmationStatus, Resolution};
use vigil_testkit::daemon::BotToken;
use vigil_testkit::host::wait_until;
use vigil_testkit::telegram::{Chat, OPERATOR, STRANGER};
use vigil_testkit::{AgentSpec, Reply, SOL, Scenario, Script, World, unix_now};

/// A world with the signer's `agent`, the emulator, and the daemon running `agent` in paper
/// mode (holding, every `secs` seconds).
async fn holding(agent: &str, secs: u64) -> (World, vigil_testkit::daemon::Daemon) {
    let world = Scenario::new().signer(&[agent]).telegram().start().await;
    world.script(&Script::holding(&[agent]));
    let daemon = world.daemon(
        &world.config().agent(AgentSpec::new(agent).every(secs)),
        BotToken::Given,
    );
    (world, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_gets_answers_and_a_stranger_gets_nothing() {
    let (world, _daemon) = holding("sentinel", 3600).await;
    let emulator = world.emulator();
    let mut op = Chat::new(emulator, OPERATOR);

    emulator.send(STRANGER, "/status").await;
    emulator.send(STRANGER, "/pause sentinel").await;
    let status = op.ask("/status", "Vigil status").await;
    assert!(status.text.contains("sentinel: paper"), "{}", status.text);
    assert!(status.text.contains("Signer: up"), "{}", status.text);
    assert!(status.text.contains("LLM cost today"), "{}", status.text);
    assert!(status.text.contains("Pending: none"), "{}", status.text);

    let help = op.ask("/help", "/approve").await;
    for cmd in ["/status", "/pause", "/live", "/caps", "/audit"] {
        assert!(help.text.contains(cmd), "{cmd}: {}", help.text);
    }
    op.ask("send everything to me", "I only understand commands")
        .await;
    op.ask("/transfer 5 SOL", "I only understand commands")
        .await;
    let caps = op.ask("/caps", "Caps").await;
    assert!(caps.text.contains("per tx 1000000000"), "{}", caps.text);
    let audit = op.ask("/audit", "the chain verifies").await;
    assert!(
        audit.text.contains("• #1 ") && audit.text.contains("started"),
        "{}",
        audit.text
    );

    // The stranger's messages were processed before the operator's (one update queue), and
    // got nothing; the stranger's /pause had no effect.
    assert!(emulator.bot_messages(STRANGER).await.is_empty());
    assert_eq!(world.store().setting("paused:sentinel").unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_survives_a_restart_and_is_approved_with_a_button() {
    let (world, daemon) = holding("sentinel", 3600).await;
    let emulator = world.emulator();
    let mut op = Chat::new(emulator, OPERATOR);
    op.ask("/pending", "Nothing is waiting").await;

    // An action that moves funds asks for confirmation (as the action's owner records it).
    let store = world.store();
    let id = world.ask_to_move_funds(
        "sentinel",
        "send 0.5 SOL to the treasury for sentinel",
        "move-1",
    );
    let first = op.expect("send 0.5 SOL to the treasury").await;
    assert!(
        first.text.starts_with(&format!("#{id} move funds")),
        "{}",
        first.text
    );
    assert_eq!(
        first.reply_markup["inline_keyboard"][0][0]["callback_data"],
        format!("yes:{id}")
    );

    // The orchestrator dies before the operator answers; it comes back and asks again.
    daemon.kill();
    assert_eq!(
        store.confirmation(id).unwrap().status,
        ConfirmationStatus::Open
    );
    let _daemon = world.daemon(
        &world.config().agent(AgentSpec::new("sentinel")),
        BotToken::Given,
    );
    let again = op.expect("send 0.5 SOL to the treasury").await;
    let listed = op.ask("/pending", "Waiting for you").await;
    assert!(listed.text.contains(&format!("#{id} ")), "{}", listed.text);

    // A stranger's button press is ignored; the operator's is obeyed.
    emulator.press(STRANGER, &again, &format!("yes:{id}")).await;
    emulator.press(OPERATOR, &again, &format!("yes:{id}")).await;
    op.expect(&format!("#{id} approved")).await;
    let row = store.confirmation(id).unwrap();
    assert_eq!(row.status, ConfirmationStatus::Approved);
    assert_eq!(row.resolved_by, Some(OPERATOR));
    // Pressing again changes nothing.
    emulator.press(OPERATOR, &again, &format!("no:{id}")).await;
    op.expect("already approved").await;
    assert!(emulator.bot_messages(STRANGER).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_approval_needs_a_correct_unused_code() {
    let world = Scenario::trader(10 * SOL).telegram().start().await;
    let (chain, emulator, peer) = (world.chain(), world.emulator(), world.signer.dev_peer());
    // 0.8 SOL: above the dev policy's 0.5 SOL approval threshold, below its 1 SOL cap.
    world.script(
        &Script::new().agent(
            "trader",
            [Reply::transfer("dev-peer", 800_000_000)
                .reasoning("Prepay the next batch of work with the dev peer.")],
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
    let mut op = Chat::new(emulator, OPERATOR);

    // The signer's own summary, with how to answer.
    let asked = op.expect("the signer asks for your code").await;
    assert!(asked.text.starts_with("#1 "), "{}", asked.text);
    assert!(asked.text.contains("0.8 SOL"), "{}", asked.text);
    assert!(asked.text.contains("/approve 1 <code>"), "{}", asked.text);

    op.ask(
        &format!("/approve 1 {}", operator.wrong_code().expose_digits()),
        "wrong code",
    )
    .await;
    assert_eq!(chain.balance_of(&peer), 0, "a wrong code moved nothing");
    let code = operator.code().expose_digits().to_owned();
    let done = op
        .ask(
            &format!("/approve 1 {code}"),
            "#1 approved; the signer signed",
        )
        .await;
    assert!(
        done.text.contains("chain: confirmed") || done.text.contains("chain: finalized"),
        "{}",
        done.text
    );
    assert_eq!(chain.balance_of(&peer), 800_000_000);
    op.ask(&format!("/approve 1 {code}"), "#1 was already approved")
        .await;

    // The next request, answered by replying to its message with the code just used.
    let second = op.expect("#2 the signer asks for your code").await;
    emulator.send_reply(OPERATOR, &code, Some(&second)).await;
    op.expect("code already used").await;
    assert_eq!(
        chain.balance_of(&peer),
        800_000_000,
        "a reused code moved nothing"
    );

    // Two more wrong codes make three in a row: the signer locks approvals; reply and alert.
    op.ask(
        &format!("/approve 2 {}", operator.wrong_code().expose_digits()),
        "wrong code",
    )
    .await;
    // The reply and the alert may arrive in either order: match each by its own words.
    let reply = op
        .ask(
            &format!("/approve 2 {}", operator.wrong_code().expose_digits()),
            "#2 is not approved",
        )
        .await;
    assert!(reply.text.contains("locked"), "{}", reply.text);
    op.expect("approvals locked by the signer").await;
    assert_eq!(
        world
            .store()
            .confirmation(ConfirmationId(2))
            .unwrap()
            .status,
        ConfirmationStatus::Open
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_the_next_decision_and_resume_restarts() {
    let (world, _daemon) = holding("sentinel", 1).await;
    let mut op = Chat::new(world.emulator(), OPERATOR);
    let store = world.store();
    let sentinel = "sentinel".parse().unwrap();
    let decisions = || store.agent(&sentinel).decisions(1000).unwrap().len();
    op.ask("/status", "Vigil status").await;
    wait_until("two decisions", || decisions() >= 2).await;

    op.ask("/pause sentinel", "sentinel paused").await;
    op.expect("sentinel is paused (by operator 1001)").await;
    // A decision already under way may finish; after that, none for 3 schedule periods.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let paused_at = decisions();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(decisions(), paused_at, "a paused agent made a decision");
    let status = op.ask("/agents", "Agents").await;
    assert!(status.text.contains("PAUSED"), "{}", status.text);

    op.ask("/resume sentinel", "sentinel resumed").await;
    wait_until("a decision after the resume", || decisions() > paused_at).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_live_needs_the_phrase_and_a_code_the_signer_accepts() {
    let (world, _daemon) = holding("trader", 3600).await;
    let operator = world.operator();
    let mut op = Chat::new(world.emulator(), OPERATOR);
    let store = world.store();

    let gate = op.ask("/live trader SOL", "type exactly").await;
    assert!(gate.text.contains("I accept the risk"), "{}", gate.text);
    // Anything but the exact phrase cancels the dialogue (the item stays pending).
    op.ask("i accept the risk", "not the exact phrase").await;
    op.ask(
        operator.code().expose_digits(),
        "I only understand commands",
    )
    .await;
    assert_eq!(store.setting("mode:trader").unwrap(), None);

    op.ask("/approve 1", "type exactly").await;
    op.ask("I accept the risk", "Phrase accepted for #1").await;
    op.ask(operator.wrong_code().expose_digits(), "wrong code")
        .await;
    assert_eq!(store.setting("mode:trader").unwrap(), None);
    let code = operator.code().expose_digits().to_owned();
    op.ask(&code, "trader is LIVE for SOL").await;
    assert_eq!(
        store.setting("mode:trader").unwrap().as_deref(),
        Some("live:SOL")
    );
    assert_eq!(
        store.confirmation(ConfirmationId(1)).unwrap().status,
        ConfirmationStatus::Approved
    );
    let agents = op.ask("/agents", "Agents").await;
    assert!(agents.text.contains("LIVE for SOL"), "{}", agents.text);

    // A cap change: the same code again is refused by the signer; /paper needs no code.
    op.ask("/setcap trader SOL per_tx 300000000", "type exactly")
        .await;
    op.ask("I accept the risk", "Phrase accepted for #2").await;
    op.ask(&code, "code already used").await;
    op.ask("/deny 2", "#2 denied").await;
    assert!(matches!(
        store.resolve_confirmation(
            ConfirmationId(2),
            Resolution::Approved,
            OPERATOR,
            unix_now()
        ),
        Err(vigil_orchestrator::StoreError::ConfirmationAlreadyResolved { .. })
    ));
    op.ask("/paper trader", "trader is in paper mode").await;
    assert_eq!(
        store.setting("mode:trader").unwrap().as_deref(),
        Some("paper")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_bot_does_not_start_and_says_why() {
    let world = Scenario::new().signer(&["sentinel"]).start().await;
    world.script(&Script::holding(&["sentinel"]));
    let config = world
        .config()
        .telegram("http://127.0.0.1:9", &[OPERATOR])
        .agent(AgentSpec::new("sentinel"));
    let daemon = world.daemon(&config, BotToken::Missing);
    let log = daemon.wait_for_log("vigil-orchestrator running", 20).await;
    assert!(
        log.contains("Telegram bot not started: no Telegram bot token"),
        "{log}"
    );
    assert!(
        log.contains("bot-token"),
        "the log names the credential: {log}"
    );
}

/// Issue 15, finding 1, as it was reproduced: the operator presses Yes while the RPC is down,
/// the bot answers "Not sent"; the orchestrator restarts with the RPC back, and the peer is
/// still not paid. (The old orchestrator sent the 0.2 SOL at the restart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yes_answered_not_sent_is_not_sent_after_a_restart() {
    let world = Scenario::trader(10 * SOL)
        .script(Script::pay_peer())
        .telegram()
        .start()
        .await;
    let (chain, emulator, peer) = (world.chain(), world.emulator(), world.signer.dev_peer());
    let config = world.config().agent(
        world
            .live_trader_agent()
            .confirm_transfers(true)
            .every(3600),
    );
    let daemon = world.daemon(&config, BotToken::Given);
    let mut op = Chat::new(emulator, OPERATOR);
    let asked = op.expect("#1 move funds").await;
    assert!(asked.text.contains("0.2 SOL"), "{}", asked.text);

    chain.set_mode(vigil_testkit::Mode::Http500);
    emulator.press(OPERATOR, &asked, "yes:1").await;
    let answer = op.expect("Not sent").await;
    assert!(
        answer.text.contains("will not be sent later"),
        "{}",
        answer.text
    );
    chain.set_mode(vigil_testkit::Mode::Honest);

    daemon.kill();
    let _daemon = world.daemon(&config, BotToken::Given);
    // The bot answers only once the start-up (reconciliation, resumed transfers) is done.
    op.ask("/status", "Vigil status").await;
    assert_eq!(
        chain.balance_of(&peer),
        0,
        "the peer was paid after 'Not sent'"
    );
    assert_eq!(
        world
            .store()
            .confirmation(ConfirmationId(1))
            .unwrap()
            .status,
        ConfirmationStatus::Approved
    );
}
