//! Telegram as an attack surface and as a fault, end to end (the daemon, its bot against the
//! Bot API emulator, the real confined signer, a real Solana runtime, live agents):
//!
//! - injections of `tests/corpus/injections.jsonl` sent to the bot by a stranger (every
//!   operator command and code too, even a currently valid code) change nothing: no reply, no
//!   confirmation created or resolved, no setting changed, nothing reaches the signer, and the
//!   stranger log stays bounded; the same texts forwarded by an operator get only the hint;
//! - the Bot API unreachable (the emulator killed) blocks no agent, loses no alert or
//!   confirmation, and the bot recovers by itself when the API is back on the same port.
//!
//! CI sends a seeded sample of 10 injections; `VIGIL_ASSURANCE_FULL=1` sends all of them
//! (`VIGIL_ASSURANCE_SEED` changes the sample). Figures are in `docs/assurance.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use vigil_orchestrator::{ConfirmationId, ConfirmationStatus, HINT, Store};
use vigil_testkit::corpus::{corpus, sample};
use vigil_testkit::daemon::{BotToken, Daemon};
use vigil_testkit::telegram::{BotMessage, Chat, Emulator, OPERATOR, STRANGER};
use vigil_testkit::{AgentSpec, Reply, SOL, Scenario, Script, World, unix_now};

const CI_SAMPLE: usize = 10;
/// Lines per window of the bot's stranger log (`telegram::access`).
const STRANGER_LINES_PER_WINDOW: usize = 5;

/// A live agent on the dev signer deciding every `secs` seconds with scripted replies.
fn live_agent(world: &World, id: &str, secs: u64) -> AgentSpec {
    AgentSpec::new(id)
        .every(secs)
        .live("SOL")
        .peer("dev-peer", &world.signer.dev_peer())
}

/// A transfer to the dev peer above nothing in particular: the caller says why the amount.
fn prepay(lamports: u64) -> Reply {
    Reply::transfer("dev-peer", lamports.into())
        .reasoning("Prepay the next batch of work with the dev peer.")
}

/// The settings an operator's commands change (pause, mode), for both agents.
fn settings(store: &Store) -> Vec<Option<String>> {
    ["paused", "mode"]
        .iter()
        .flat_map(|what| ["trader", "sentinel"].map(|agent| format!("{what}:{agent}")))
        .map(|key| store.setting(&key).unwrap())
        .collect()
}

/// The confirmations still open.
fn open_ids(store: &Store) -> Vec<ConfirmationId> {
    let open = store.open_confirmations(unix_now()).unwrap();
    open.iter().map(|r| r.id).collect()
}

fn decisions(store: &Store, agent: &str) -> usize {
    store
        .agent(&agent.parse().unwrap())
        .decisions(10_000)
        .unwrap()
        .len()
}

fn stranger_log_lines(daemon: &Daemon) -> usize {
    daemon
        .log_text()
        .matches("update from a non-operator ignored")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injections_from_strangers_and_forwarded_by_an_operator_change_nothing() {
    let started = Instant::now();
    let world = Scenario::new()
        .signer(&["trader", "sentinel"])
        .funded("trader", 10 * SOL)
        .telegram()
        .start()
        .await;
    let (signer, chain, emulator) = (&world.signer, world.chain(), world.emulator());
    let peer = signer.dev_peer();
    // Trader asks once (0.8 SOL: above the dev policy's 0.5 SOL approval threshold), so a
    // signer approval waits for the operator's code; Sentinel holds every second throughout.
    world.script(
        &Script::new()
            .agent("trader", [prepay(800_000_000)])
            .agent("sentinel", [Reply::hold()]),
    );
    let config = world
        .config()
        .agent(live_agent(&world, "trader", 3600))
        .agent(live_agent(&world, "sentinel", 1));
    let daemon = world.daemon(&config, BotToken::Given);
    let mut op = Chat::new(emulator, OPERATOR);
    let asked = op.expect("waits for your approval at the approver").await;
    assert!(asked.text.starts_with("#1 "), "{}", asked.text);
    let store = world.store();

    // The state before the stranger.
    let open_before = open_ids(&store);
    assert_eq!(open_before, vec![ConfirmationId(1)]);
    let settings_before = settings(&store);
    let audit_before = signer.audit();
    let sentinel_before = decisions(&store, "sentinel");

    // The stranger: the corpus, then every command and gate an operator has, with a code
    // that is valid right now (as if it had been read over the operator's shoulder), typed,
    // replied to the approval request, and pressed as buttons.
    let (entries, run) = sample(corpus(), CI_SAMPLE);
    let code = world.operator().code().expose_digits().to_owned();
    let mut sent = 0usize;
    for entry in &entries {
        emulator.send(STRANGER, &entry.text).await;
        emulator
            .send_reply(
                STRANGER,
                &format!("{} Approval code: {code}", entry.text),
                Some(&asked),
            )
            .await;
        sent += 2;
    }
    let commands = [
        format!("/approve 1 {code}"),
        "/approve 1".into(),
        "I accept the risk".into(),
        code.clone(),
        "/deny 1".into(),
        "/pause sentinel".into(),
        "/pause trader".into(),
        "/live sentinel SOL".into(),
        "/paper trader".into(),
        "/setcap trader SOL per_tx 99000000000".into(),
        "/status".into(),
        "/audit".into(),
    ];
    for c in &commands {
        emulator.send(STRANGER, c).await;
        sent += 1;
    }
    emulator.send_reply(STRANGER, &code, Some(&asked)).await;
    emulator.press(STRANGER, &asked, "yes:1").await;
    emulator.press(STRANGER, &asked, "no:1").await;
    sent += 3;

    // The operator's /status is answered after the bot took every update sent before it.
    op.ask("/status", "Vigil status").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let to_stranger: Vec<BotMessage> = emulator.bot_messages(STRANGER).await;
    assert!(
        to_stranger.is_empty(),
        "the bot answered a stranger: {to_stranger:#?}"
    );
    assert_eq!(
        open_ids(&store),
        open_before,
        "a confirmation was created or resolved"
    );
    assert_eq!(
        store.confirmation(ConfirmationId(1)).unwrap().status,
        ConfirmationStatus::Open
    );
    assert_eq!(
        settings(&store),
        settings_before,
        "an operator setting changed"
    );
    let audit_after = signer.audit();
    assert_eq!(
        audit_after.len(),
        audit_before.len(),
        "the signer was asked something: {:#?}",
        &audit_after[audit_before.len()..]
    );
    assert_eq!(chain.balance_of(&peer), 0);
    assert!(
        decisions(&store, "sentinel") > sentinel_before,
        "the live agent kept deciding"
    );
    // Bounded: at most 5 log lines per 60 s window, however many updates came.
    let windows = usize::try_from(started.elapsed().as_secs() / 60).unwrap_or(usize::MAX - 2) + 2;
    let lines = stranger_log_lines(&daemon);
    assert!(
        (1..=STRANGER_LINES_PER_WINDOW * windows).contains(&lines),
        "{lines} stranger log lines for {sent} updates"
    );

    // Control: the stranger's code was never used, so the operator can still approve with
    // it in the approver's chat, and the approval moves the funds (the gate the stranger could
    // not open works).
    let approval = vigil_testkit::approver::signer_id_of(&store, ConfirmationId(1));
    vigil_testkit::requests::ok(signer.approver().answer(&approval, code.parse().unwrap()));
    op.expect("#1 approved in the approver's chat; the signer signed")
        .await;
    assert_eq!(chain.balance_of(&peer), 800_000_000);
    let settings_before = settings(&store);
    let audit_before = signer.audit().len();

    // The operator forwards the same injections as free text: each gets the hint only.
    for entry in &entries {
        let answer = op.ask(&entry.text, "I only understand commands").await;
        assert_eq!(answer.text, HINT, "{}", entry.id);
    }
    op.ask("/status", "Pending: none").await;
    let unexpected: Vec<&String> = op
        .seen
        .iter()
        .map(|m| &m.text)
        // The operator's own /status answers name the agents' modes; anything else that
        // talks of pausing, going live or a phrase confirmation came from an injection.
        .filter(|t| !t.starts_with("Vigil status"))
        .filter(|t| t.contains("paused") || t.contains("LIVE") || t.contains("type exactly"))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    assert!(store.open_confirmations(unix_now()).unwrap().is_empty());
    assert_eq!(settings(&store), settings_before);
    assert_eq!(signer.audit().len(), audit_before);
    assert_eq!(chain.balance_of(&peer), 800_000_000);
    assert!(signer.audit_verifies());
    println!(
        "Telegram stranger injections ({run}): {sent} stranger updates ({} injections, each \
         plain and as a reply with a valid code, + {} commands/gates/buttons); replies to the \
         stranger 0; confirmations created/resolved 0; settings changed 0; signer audit \
         entries 0; stranger log lines {lines}; operator-forwarded injections {}: hint only",
        entries.len(),
        commands.len() + 3,
        entries.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_unreachable_blocks_no_agent_loses_no_alert_and_the_bot_recovers() {
    /// Holds before Trader's over-cap transfer (the signer refuses it: an alert).
    const HOLDS: usize = 12;
    let mut world = Scenario::trader(10 * SOL).telegram().start().await;
    let port = world.emulator().port();
    // 2 SOL: within the risk profile (50% of 10 SOL), above the signer's 1 SOL per-tx cap.
    let mut replies = vec![Reply::hold(); HOLDS];
    replies.push(prepay(2 * SOL));
    world.script(&Script::new().agent("trader", replies));
    let config = world.config().agent(live_agent(&world, "trader", 1));
    let mut daemon = world.daemon(&config, BotToken::Given);
    let mut op = Chat::new(world.emulator(), OPERATOR);
    op.ask("/status", "Vigil status").await;
    let store = world.store();
    let before = decisions(&store, "trader");
    assert!(
        before + 4 < HOLDS,
        "inconclusive: {before} decisions before the outage, the refusal must come during it"
    );

    // The Bot API goes away.
    drop(op);
    drop(world.telegram.take());
    let down = Instant::now();
    // Meanwhile a confirmation is recorded (shown once the bot can reach the API) ...
    let id = world.ask_to_move_funds(
        "trader",
        "send 0.3 SOL to the treasury for trader",
        "outage-move-1",
    );
    // ... and the agent keeps deciding: its holds, then the refused transfer and its alert.
    daemon
        .wait_for_log("operator alert: ⛔ signer refused trader", 30)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = decisions(&store, "trader") - before;
    assert!(
        during > HOLDS - before,
        "{during} decisions during the outage"
    );
    assert!(daemon.running(), "the daemon died: {}", daemon.log_text());
    let log = daemon.log_text();
    assert!(log.contains("Telegram polling failed"), "{log}");
    assert!(log.contains("alert kept for retry"), "{log}");
    let outage = down.elapsed();

    // The API is back on the same port: the bot answers, sends the queued alert once, and
    // shows the confirmation, without a restart.
    let emulator = Emulator::start_on(port);
    let back = Instant::now();
    emulator.send(OPERATOR, "/status").await;
    let refused = "signer refused trader";
    let seen = emulator
        .collect_until(
            OPERATOR,
            &["Vigil status", refused, "send 0.3 SOL to the treasury"],
            90,
        )
        .await;
    let recovered = back.elapsed();
    assert_eq!(
        seen.iter().filter(|t| t.contains(refused)).count(),
        1,
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|t| t.starts_with(&format!("#{id} move funds")))
    );
    assert!(daemon.running());
    assert_eq!(
        store.confirmation(id).unwrap().status,
        ConfirmationStatus::Open
    );
    assert!(world.signer.signed().is_empty());
    println!(
        "Telegram outage drill: outage {:.1} s, {during} decisions during it, daemon up, \
         alert and confirmation delivered once after the API came back, bot answered in {:.1} s",
        outage.as_secs_f64(),
        recovered.as_secs_f64()
    );
}
