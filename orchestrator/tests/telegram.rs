//! The Telegram operator interface end to end, as an operator uses it: the `vigil-orchestrator`
//! daemon (its bot, scheduler and SQLite state) against the Telegram Bot API emulator on
//! loopback, the real confined signer, and for live approvals a real Solana runtime behind a
//! loopback JSON-RPC node. Codes are computed from the dev keystore's approval secret, as the
//! operator's authenticator would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use solana_pubkey::Pubkey;
use support::SolanaNode;
use support::signer::{RunningSigner, start_signer};
use support::telegram::{Chat, Daemon, Emulator, now, write_config};
use totp_rs::{Algorithm, Secret, TOTP};
use vigil_orchestrator::{
    ConfirmationId, ConfirmationKind, ConfirmationStatus, NewConfirmation, Resolution, Store,
};

const OPERATOR: i64 = 1001;
const STRANGER: i64 = 6666;

/// An agent that always holds, deciding every `secs` seconds, in paper mode.
fn holding_agent(id: &str, secs: u64) -> String {
    format!(
        r#"[[agents]]
id = "{id}"
system_prompt = "Hold."
provider = "scripted"
model = "scripted"
temperature = 0.1
max_tokens = 200
schedule_secs = {secs}
[agents.risk]
allowed_actions = ["transfer", "hold"]
max_fraction_per_tx_bps = 5000
"#
    )
}

fn hold_script(agents: &[&str]) -> String {
    agents
        .iter()
        .map(|a| {
            format!(
                "[agents.{a}]\nreplies = ['{{\"action\":\"hold\",\"confidence\":0.5,\"reasoning\":\"Nothing to do this round, holding.\"}}']\n"
            )
        })
        .collect()
}

fn totp(signer: &RunningSigner) -> TOTP {
    let secret = Secret::Encoded(signer.init["totp_secret_base32"].as_str().unwrap().into())
        .to_bytes()
        .unwrap();
    TOTP::new(Algorithm::SHA1, 6, 1, 30, secret, None, String::new()).unwrap()
}

/// A code that is not valid in the current window (neither the previous, this nor the next step).
fn wrong_code(totp: &TOTP) -> String {
    let t = now();
    let valid: Vec<String> = [t - 30, t, t + 30]
        .iter()
        .map(|&s| totp.generate(s))
        .collect();
    (0..10u32)
        .map(|i| format!("{:06}", 111_111 * i))
        .find(|c| !valid.contains(c))
        .unwrap()
}

fn open_store(work: &Path) -> Store {
    Store::open(&work.join("state.sqlite3")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_gets_answers_and_a_stranger_gets_nothing() {
    let signer = start_signer("sentinel");
    let emulator = Emulator::start();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("script.toml"), hold_script(&["sentinel"])).unwrap();
    let config = write_config(
        work.path(),
        &signer.socket(),
        None,
        &emulator.url,
        OPERATOR,
        &holding_agent("sentinel", 3600),
    );
    let _daemon = Daemon::start(work.path(), &config, true);
    let mut op = Chat::new(&emulator, OPERATOR);

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
    let store = open_store(work.path());
    assert_eq!(store.setting("paused:sentinel").unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_survives_a_restart_and_is_approved_with_a_button() {
    let signer = start_signer("sentinel");
    let emulator = Emulator::start();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("script.toml"), hold_script(&["sentinel"])).unwrap();
    let config = write_config(
        work.path(),
        &signer.socket(),
        None,
        &emulator.url,
        OPERATOR,
        &holding_agent("sentinel", 3600),
    );
    let daemon = Daemon::start(work.path(), &config, true);
    let mut op = Chat::new(&emulator, OPERATOR);
    op.ask("/pending", "Nothing is waiting").await;

    // An action that moves funds asks for confirmation (as the action's owner records it).
    let store = open_store(work.path());
    let id = store
        .create_confirmation(&NewConfirmation {
            kind: ConfirmationKind::MoveFunds,
            agent: Some("sentinel".parse().unwrap()),
            summary: "send 0.5 SOL to the treasury for sentinel".into(),
            payload_json: "{}".into(),
            idempotency_key: "move-1".into(),
            created_at: now(),
            expires_at: now() + 600,
        })
        .unwrap();
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
    let _daemon = Daemon::start(work.path(), &config, true);
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
    let signer = start_signer("trader");
    let node = SolanaNode::start().await.unwrap();
    let trader: Pubkey = signer.init["agents"][0]["addresses"]["solana"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let peer_text = signer.init["dev_peer"].as_str().unwrap().to_string();
    let peer: Pubkey = peer_text.parse().unwrap();
    node.airdrop(&trader, 10_000_000_000).unwrap();
    let emulator = Emulator::start();
    let work = tempfile::tempdir().unwrap();
    // 0.8 SOL: above the dev policy's 0.5 SOL approval threshold, below its 1 SOL cap.
    std::fs::write(
        work.path().join("script.toml"),
        r#"[agents.trader]
replies = ['{"action":"transfer","asset":"SOL","to":"dev-peer","amount":"800000000","confidence":0.9,"reasoning":"Prepay the next batch of work with the dev peer."}']
"#,
    )
    .unwrap();
    let agent = format!(
        r#"[[agents]]
id = "trader"
system_prompt = "Pay the dev peer."
provider = "scripted"
model = "scripted"
temperature = 0.1
max_tokens = 200
schedule_secs = 3
mode = "live"
live_assets = ["SOL"]
[agents.risk]
allowed_actions = ["transfer", "hold"]
max_fraction_per_tx_bps = 5000
peers = [{{ label = "dev-peer", address = "{peer_text}" }}]
"#
    );
    let config = write_config(
        work.path(),
        &signer.socket(),
        Some(&node.url),
        &emulator.url,
        OPERATOR,
        &agent,
    );
    let _daemon = Daemon::start(work.path(), &config, true);
    let totp = totp(&signer);
    let mut op = Chat::new(&emulator, OPERATOR);

    // The signer's own summary, with how to answer.
    let asked = op.expect("the signer asks for your code").await;
    assert!(asked.text.starts_with("#1 "), "{}", asked.text);
    assert!(asked.text.contains("0.8 SOL"), "{}", asked.text);
    assert!(asked.text.contains("/approve 1 <code>"), "{}", asked.text);

    op.ask(&format!("/approve 1 {}", wrong_code(&totp)), "wrong code")
        .await;
    assert_eq!(node.balance(&peer), 0, "a wrong code moved nothing");
    let code = totp.generate(now());
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
    assert_eq!(node.balance(&peer), 800_000_000);
    op.ask(&format!("/approve 1 {code}"), "#1 was already approved")
        .await;

    // The next request, answered by replying to its message with the code just used.
    let second = op.expect("#2 the signer asks for your code").await;
    emulator.send_reply(OPERATOR, &code, Some(&second)).await;
    op.expect("code already used").await;
    assert_eq!(
        node.balance(&peer),
        800_000_000,
        "a reused code moved nothing"
    );

    // Two more wrong codes make three in a row: the signer locks approvals; reply and alert.
    op.ask(&format!("/approve 2 {}", wrong_code(&totp)), "wrong code")
        .await;
    // The reply and the alert may arrive in either order: match each by its own words.
    let reply = op
        .ask(
            &format!("/approve 2 {}", wrong_code(&totp)),
            "#2 is not approved",
        )
        .await;
    assert!(reply.text.contains("locked"), "{}", reply.text);
    op.expect("approvals locked by the signer").await;
    let store = open_store(work.path());
    assert_eq!(
        store.confirmation(ConfirmationId(2)).unwrap().status,
        ConfirmationStatus::Open
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_the_next_decision_and_resume_restarts() {
    let signer = start_signer("sentinel");
    let emulator = Emulator::start();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("script.toml"), hold_script(&["sentinel"])).unwrap();
    let config = write_config(
        work.path(),
        &signer.socket(),
        None,
        &emulator.url,
        OPERATOR,
        &holding_agent("sentinel", 1),
    );
    let _daemon = Daemon::start(work.path(), &config, true);
    let mut op = Chat::new(&emulator, OPERATOR);
    let store = open_store(work.path());
    let sentinel = "sentinel".parse().unwrap();
    let decisions = || store.agent(&sentinel).decisions(1000).unwrap().len();
    op.ask("/status", "Vigil status").await;
    wait_until(|| decisions() >= 2).await;

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
    wait_until(|| decisions() > paused_at).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_live_needs_the_phrase_and_a_code_the_signer_accepts() {
    let signer = start_signer("trader");
    let emulator = Emulator::start();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("script.toml"), hold_script(&["trader"])).unwrap();
    let config = write_config(
        work.path(),
        &signer.socket(),
        None,
        &emulator.url,
        OPERATOR,
        &holding_agent("trader", 3600),
    );
    let _daemon = Daemon::start(work.path(), &config, true);
    let totp = totp(&signer);
    let mut op = Chat::new(&emulator, OPERATOR);
    let store = open_store(work.path());

    let gate = op.ask("/live trader SOL", "type exactly").await;
    assert!(gate.text.contains("I accept the risk"), "{}", gate.text);
    // Anything but the exact phrase cancels the dialogue (the item stays pending).
    op.ask("i accept the risk", "not the exact phrase").await;
    op.ask(&totp.generate(now()), "I only understand commands")
        .await;
    assert_eq!(store.setting("mode:trader").unwrap(), None);

    op.ask("/approve 1", "type exactly").await;
    op.ask("I accept the risk", "Phrase accepted for #1").await;
    op.ask(&wrong_code(&totp), "wrong code").await;
    assert_eq!(store.setting("mode:trader").unwrap(), None);
    let code = totp.generate(now());
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
        store.resolve_confirmation(ConfirmationId(2), Resolution::Approved, OPERATOR, now()),
        Err(vigil_orchestrator::StoreError::ConfirmationAlreadyResolved { .. })
    ));
    op.ask("/paper trader", "trader is in paper mode").await;
    assert_eq!(
        store.setting("mode:trader").unwrap().as_deref(),
        Some("paper")
    );
}

#[test]
fn without_a_token_the_bot_does_not_start_and_says_why() {
    let signer = start_signer("sentinel");
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("script.toml"), hold_script(&["sentinel"])).unwrap();
    let config = write_config(
        work.path(),
        &signer.socket(),
        None,
        "http://127.0.0.1:9",
        OPERATOR,
        &holding_agent("sentinel", 3600),
    );
    let daemon = Daemon::start(work.path(), &config, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !daemon.log_text().contains("vigil-orchestrator running") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = daemon.log_text();
    assert!(
        log.contains("Telegram bot not started: no Telegram bot token"),
        "{log}"
    );
    assert!(
        log.contains("bot-token"),
        "the log names the credential: {log}"
    );
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
