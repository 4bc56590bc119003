//! The Telegram operator interface end to end, as an operator uses it: the `vigil-orchestrator`
//! daemon (its bot, scheduler and SQLite state) against the Telegram Bot API emulator on
//! loopback, the real confined signer, and for live approvals a real Solana runtime behind a
//! loopback JSON-RPC node. Codes are computed from the dev keystore's approval secret, as the
//! operator's authenticator would, and carried to the signer by the approver peer (its own
//! uid: `vigil_testkit::Approver`), never through the orchestrator's bot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vigil_orchestrator::{ConfirmationId, ConfirmationStatus, Resolution};
use vigil_testkit::approver::signer_id_of;
use vigil_testkit::daemon::BotToken;
use vigil_testkit::host::wait_until;
use vigil_testkit::requests::{err, ok};
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
    // The state's size, and the compaction the daemon runs at start when none ever ran.
    assert!(
        status.text.contains(" (file + WAL), compacted "),
        "{}",
        status.text
    );

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
    let yes = first.button("Yes");
    assert!(yes.starts_with(&format!("yes:{id}:")), "{yes}");

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

    // Issue 15, finding 10: a button that names the row by its number alone (as an old
    // release's, or one shown before a database restore, whose row number now names another
    // item) does nothing; the buttons carry the row's random token.
    emulator.press(OPERATOR, &again, &format!("yes:{id}")).await;
    op.expect("out of date").await;
    emulator
        .press(OPERATOR, &again, &format!("yes:{id}:{}", "0".repeat(32)))
        .await;
    op.expect(&format!("does not belong to #{id}")).await;
    assert_eq!(
        store.confirmation(id).unwrap().status,
        ConfirmationStatus::Open
    );
    // A stranger's button press is ignored; the operator's is obeyed.
    emulator.press(STRANGER, &again, &again.button("Yes")).await;
    emulator.press(OPERATOR, &again, &again.button("Yes")).await;
    op.expect(&format!("#{id} approved")).await;
    let row = store.confirmation(id).unwrap();
    assert_eq!(row.status, ConfirmationStatus::Approved);
    assert_eq!(row.resolved_by, Some(OPERATOR));
    // Pressing again changes nothing.
    emulator.press(OPERATOR, &again, &again.button("No")).await;
    op.expect("already approved").await;
    assert!(emulator.bot_messages(STRANGER).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_answered_at_the_approver_and_a_code_here_does_nothing() {
    if !vigil_testkit::require_root("a second uid for the approver") {
        return;
    }
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
    let approver = world.signer.approver();
    let mut op = Chat::new(emulator, OPERATOR);

    // The signer's own summary, and where to answer: not here.
    let asked = op.expect("waits for your approval at the approver").await;
    assert!(asked.text.starts_with("#1 "), "{}", asked.text);
    assert!(asked.text.contains("0.8 SOL"), "{}", asked.text);
    assert!(asked.text.contains("approver bot's chat"), "{}", asked.text);
    assert!(!asked.text.contains("<code>"), "{}", asked.text);

    // A valid code typed into the orchestrator's chat, every way it used to be taken: nothing.
    let code = operator.code().expose_digits().to_owned();
    op.ask(&format!("/approve 1 {code}"), "nothing was sent")
        .await;
    emulator.send_reply(OPERATOR, &code, Some(&asked)).await;
    op.expect("Codes are never taken in this chat").await;
    op.ask(&code, "nothing was sent").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        chain.balance_of(&peer),
        0,
        "a code in the orchestrator's chat moved nothing"
    );
    assert!(world.signer.audit_events("approval_granted").is_empty());
    assert!(
        world.signer.audit_events("peer_refused").is_empty(),
        "not even forwarded"
    );

    // At the approver: the signer's summary; a wrong code moves nothing, the right one grants.
    // (The agent asks again every 3 s: each request is its own approval at the signer.)
    let item = approver.item(&signer_id_of(&world.store(), ConfirmationId(1)));
    assert_eq!(item.kind, vigil_protocol::AwaitingKind::Approval);
    assert!(
        item.summary.contains("0.8 SOL") && item.summary.contains(&peer),
        "{}",
        item.summary
    );
    let (kind, _, _) = err(approver.answer(&item.id, operator.wrong_code()));
    assert_eq!(kind, "approval_invalid_code");
    assert_eq!(chain.balance_of(&peer), 0, "a wrong code moved nothing");
    let t = vigil_testkit::operator::fresh_step(8);
    ok(approver.answer(&item.id, operator.code_at(t)));
    // The orchestrator collects the grant with a fresh blockhash, broadcasts, and says so.
    let done = op
        .expect("#1 approved in the approver's chat; the signer signed")
        .await;
    assert!(
        done.text.contains("chain: confirmed") || done.text.contains("chain: finalized"),
        "{}",
        done.text
    );
    assert_eq!(chain.balance_of(&peer), 800_000_000);
    assert_eq!(world.signer.signed().len(), 1);

    // The next request: the code just used is spent; two more wrong ones lock codes.
    op.expect("#2 waits for your approval at the approver")
        .await;
    let second = approver.item(&signer_id_of(&world.store(), ConfirmationId(2)));
    let (kind, _, msg) = err(approver.answer(&second.id, operator.code_at(t)));
    assert_eq!(kind, "approval_invalid_code");
    assert!(msg.contains("already used"), "{msg}");
    err(approver.answer(&second.id, operator.wrong_code()));
    let (kind, _, msg) = err(approver.answer(&second.id, operator.wrong_code()));
    assert!(msg.contains("locked"), "{kind}: {msg}");
    assert_eq!(chain.balance_of(&peer), 800_000_000, "nothing more moved");
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
async fn going_live_needs_the_phrase_here_and_a_code_at_the_approver() {
    if !vigil_testkit::require_root("a second uid for the approver") {
        return;
    }
    let (world, _daemon) = holding("trader", 3600).await;
    let operator = world.operator();
    let approver = world.signer.approver();
    let mut op = Chat::new(world.emulator(), OPERATOR);
    let store = world.store();

    let gate = op.ask("/live trader SOL", "type exactly").await;
    assert!(gate.text.contains("I accept the risk"), "{}", gate.text);
    // Anything but the exact phrase cancels the dialogue (the item stays pending).
    op.ask("i accept the risk", "not the exact phrase").await;
    op.ask(operator.code().expose_digits(), "nothing was sent")
        .await;
    assert_eq!(store.setting("mode:trader").unwrap(), None);
    assert!(
        approver.awaiting().is_empty(),
        "nothing reached the signer before the phrase"
    );

    op.ask("/approve 1", "type exactly").await;
    let accepted = op.ask("I accept the risk", "Phrase accepted for #1").await;
    assert!(
        accepted.text.contains(
            "GO LIVE: agent trader makes real SOL transfers on solana devnet, within the signed policy"
        ),
        "{}",
        accepted.text
    );
    // The code goes to the approver, for the request the signer rendered.
    let item = approver.only_item();
    assert!(
        item.summary.starts_with("GO LIVE: agent trader"),
        "{}",
        item.summary
    );
    let (kind, _, _) = err(approver.answer(&item.id, operator.wrong_code()));
    assert_eq!(kind, "operator_code_invalid");
    assert_eq!(store.setting("mode:trader").unwrap(), None);
    let t = vigil_testkit::operator::fresh_step(8);
    ok(approver.answer(&item.id, operator.code_at(t)));
    op.expect("#1 confirmed in the approver's chat: trader is LIVE for SOL")
        .await;
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
    let cap = approver.only_item();
    assert!(
        cap.summary
            .starts_with("SET CAP: trader's per_tx cap for SOL becomes 0.3 SOL"),
        "{}",
        cap.summary
    );
    let (kind, _, msg) = err(approver.answer(&cap.id, operator.code_at(t)));
    assert_eq!(kind, "operator_code_invalid");
    assert!(msg.contains("already used"), "{msg}");
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
    // Above the signed ceiling, the signer refuses to ask at all.
    op.ask("/setcap trader SOL per_tx 999000000000", "type exactly")
        .await;
    op.ask("I accept the risk", "the signer refused it [per_tx_cap]")
        .await;
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
    emulator.press(OPERATOR, &asked, &asked.button("Yes")).await;
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

/// `/positions`, `/pnl`, `/risk` and `/status` of a paper deputy: its book in the state file,
/// the marks from the loopback exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_pnl_and_risk_show_a_deputys_figures_from_the_venues_marks() {
    let world = Scenario::new().signer(&["deputy"]).telegram().start().await;
    world.script(&Script::holding(&["deputy"]));
    let exchange = vigil_testkit::hyperliquid::Exchange::start(&[]);
    {
        // A paper long of 0.5 ETH at 2400 with 3 USD realised and 1.25 USD of fees.
        // Opened once through the store, so that the schema is in place.
        drop(world.store());
        let db = rusqlite::Connection::open(world.state_path()).unwrap();
        db.execute(
            "INSERT INTO agents (id, first_seen) VALUES ('deputy', 1)",
            [],
        )
        .unwrap();
        db.execute(
            "INSERT INTO perp_positions (agent, mode, network, coin, size, entry_px, realized_pnl, fees)
             VALUES ('deputy', 'paper', 'testnet', 'ETH', '0.5', '2400', '3', '1.25')",
            [],
        )
        .unwrap();
    }
    let deputy = AgentSpec::new("deputy")
        .every(3600)
        .actions(&["perp_order", "perp_cancel", "hold"])
        .perp(
            "testnet",
            "ETH",
            vigil_testkit::config::PerpSpec {
                max_order_usd_micros: 500_000_000,
                max_position_usd_micros: 2_000_000_000,
                leverage: 3,
                max_slippage_bps: 50,
            },
        )
        .loss_floor(200_000_000);
    let _daemon = world.daemon(
        &world
            .config()
            .hyperliquid("testnet", exchange.url())
            .agent(deputy),
        BotToken::Given,
    );
    let mut op = Chat::new(world.emulator(), OPERATOR);
    let positions = op.ask("/positions", "Positions").await;
    assert!(
        positions
            .text
            .contains("long 0.5 ETH-PERP, entry 2400, mark 2500, ≈ $1250.00, 3x"),
        "{}",
        positions.text
    );
    assert!(
        positions.text.contains("orchestrator's estimate"),
        "{}",
        positions.text
    );
    // 3 − 1.25 + 0.5 × (2500 − 2400) = 51.75 (no funding hour booked: the row has no open time).
    let pnl = op.ask("/pnl", "PnL").await;
    assert!(
        pnl.text
            .contains("unrealised 50.00, fees 1.25, funding 0.00, net 51.75"),
        "{}",
        pnl.text
    );
    let risk = op.ask("/risk", "Risk").await;
    assert!(
        risk.text.contains("deputy [paper]: ACTIVE"),
        "{}",
        risk.text
    );
    assert!(
        risk.text
            .contains("ETH: order ≤ 500.00 USD, position ≤ 2000.00 USD, 3x"),
        "{}",
        risk.text
    );
    let status = op.ask("/status", "Vigil status").await;
    assert!(status.text.contains("risk: active"), "{}", status.text);
}
