//! The `vigil-approver` daemon alone, as the operator uses it: the real binary against the
//! Telegram Bot API emulator and a scripted signer on a Unix socket (it lists what the test
//! puts in `awaiting`/`events` and records every code-bearing op it receives). What these
//! tests prove is the approver's half of the boundary: a code reaches the signer only as the
//! answer to the request whose message it replies to, from an operator's private chat, and
//! nothing is lost or shown twice across a restart. The real signer's half (roles by peer
//! uid) and both bots together are in `approval_path.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use vigil_protocol::{
    AwaitingItem, AwaitingKind, AwaitingResult, ErrorKind, EventsResult, Op, OperatorEvent,
    OperatorEventKind, Response, parse_request, read_frame, write_frame,
};
use vigil_testkit::daemon::{BotToken, Daemon, start_approver, write_approver_config};
use vigil_testkit::host::{binary, scratch};
use vigil_testkit::telegram::{BotMessage, Chat, Emulator, OPERATOR, STRANGER};
use vigil_testkit::unix_now;

/// The code the scripted signer accepts.
const GOOD: &str = "246810";

/// What the scripted signer lists, and what it received.
#[derive(Debug, Default)]
struct Script {
    items: Vec<AwaitingItem>,
    events: Vec<OperatorEvent>,
    /// (op, id, code, current code) of every code-bearing op received.
    answers: Vec<(String, String, String, Option<String>)>,
}

/// A signer that answers from a [`Script`].
struct FakeSigner {
    socket: PathBuf,
    script: Arc<Mutex<Script>>,
}

impl FakeSigner {
    fn start(dir: &Path) -> FakeSigner {
        let socket = dir.join("signer.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        // The approver runs as its own uid (testkit's APPROVER_UID when the tests are root).
        std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = script.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let script = shared.clone();
                std::thread::spawn(move || {
                    while let Ok(frame) = read_frame(&mut conn) {
                        let req = parse_request(&frame).unwrap();
                        let resp = answer(&script, req.id, req.op);
                        if write_frame(&mut conn, resp.to_json().as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeSigner { socket, script }
    }

    fn list(&self, item: AwaitingItem) {
        self.script.lock().unwrap().items.push(item);
    }

    fn unlist(&self, id: &str) {
        self.script.lock().unwrap().items.retain(|i| i.id != id);
    }

    fn event(&self, seq: u64, kind: OperatorEventKind, text: &str) {
        let ts = unix_now();
        self.script.lock().unwrap().events.push(OperatorEvent {
            seq,
            ts,
            kind,
            text: text.into(),
        });
    }

    fn answers(&self) -> Vec<(String, String, String, Option<String>)> {
        self.script.lock().unwrap().answers.clone()
    }
}

fn answer(script: &Mutex<Script>, id: vigil_protocol::RequestId, op: Op) -> Response {
    let mut s = script.lock().unwrap();
    let (name, target, code, current) = match &op {
        Op::Awaiting => {
            return Response::ok(
                id,
                &AwaitingResult {
                    items: s.items.clone(),
                },
            );
        }
        Op::Events(e) => {
            let events: Vec<_> = s
                .events
                .iter()
                .filter(|x| x.seq > e.since_seq)
                .cloned()
                .collect();
            let head_seq = s.events.last().map_or(0, |x| x.seq);
            return Response::ok(
                id,
                &EventsResult {
                    events,
                    head_seq,
                    truncated: false,
                },
            );
        }
        Op::Approve(a) => ("approve", a.approval_id.to_string(), a.code.clone(), None),
        Op::Confirm(c) => ("confirm", c.request_id.to_string(), c.code.clone(), None),
        Op::SetCap(c) => ("set_limit", c.request_id.to_string(), c.code.clone(), None),
        Op::ResumeAgent(r) => (
            "resume_agent",
            r.request_id.to_string(),
            r.code.clone(),
            None,
        ),
        Op::ImportConfirm(i) => (
            "import_confirm",
            i.manifest_digest.as_str().to_owned(),
            i.code.clone(),
            i.current_code
                .as_ref()
                .map(|c| c.expose_digits().to_owned()),
        ),
        other => panic!("the approver sent {}", other.name()),
    };
    s.answers.push((
        name.into(),
        target.clone(),
        code.expose_digits().into(),
        current,
    ));
    if code.expose_digits() != GOOD {
        return Response::error(
            Some(id),
            ErrorKind::ApprovalInvalidCode,
            None,
            String::from("wrong code"),
        );
    }
    let summary = s
        .items
        .iter()
        .find(|i| i.id == target)
        .map(|i| i.summary.clone());
    s.items.retain(|i| i.id != target);
    Response::ok(
        id,
        &json!({"status": "granted", "summary": summary.unwrap_or_default()}),
    )
}

fn item(id: &str, kind: AwaitingKind, summary: &str, ttl: u64) -> AwaitingItem {
    AwaitingItem {
        id: id.into(),
        kind,
        summary: summary.into(),
        expires_at: if ttl == 0 { 0 } else { unix_now() + ttl },
        created_seq: 1,
        current_code_required: false,
    }
}

/// A scripted signer, the emulator and the approver.
fn world() -> (tempfile::TempDir, FakeSigner, Emulator, Daemon) {
    let work = scratch();
    let signer = FakeSigner::start(work.path());
    let emulator = Emulator::start();
    let daemon = start_approver(work.path(), &emulator.url, &signer.socket, BotToken::Given);
    (work, signer, emulator, daemon)
}

/// Waits until the scripted signer received `n` answers.
async fn answers_reach(
    signer: &FakeSigner,
    n: usize,
) -> Vec<(String, String, String, Option<String>)> {
    for _ in 0..100 {
        let got = signer.answers();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the signer received {:?}, not {n} answers",
        signer.answers()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_carries_the_code_for_exactly_the_request_it_replies_to() {
    let (_work, signer, emulator, _daemon) = world();
    signer.list(item(
        "a-first",
        AwaitingKind::Approval,
        "agent trader sends 2 SOL to 9xQe",
        300,
    ));
    signer.list(item(
        "r-second",
        AwaitingKind::SetCap,
        "per_tx cap of trader to 1 SOL",
        300,
    ));
    let mut op = Chat::new(&emulator, OPERATOR);
    let first = op.expect("Approval a-first").await;
    let second = op.expect("Cap change r-second").await;
    assert!(
        first.text.contains("agent trader sends 2 SOL to 9xQe"),
        "{}",
        first.text
    );
    assert!(
        first.text.contains("Reply to this message"),
        "{}",
        first.text
    );

    // A wrong code to the second: the signer's refusal, said as it is.
    emulator.send_reply(OPERATOR, "111111", Some(&second)).await;
    op.expect("Refused by the signer (approval_invalid_code)")
        .await;
    // The right code to the second: exactly set_limit for r-second.
    emulator.send_reply(OPERATOR, GOOD, Some(&second)).await;
    op.expect("Granted by the signer: Cap change r-second")
        .await;
    let got = answers_reach(&signer, 2).await;
    assert_eq!(
        got[1],
        ("set_limit".into(), "r-second".into(), GOOD.into(), None)
    );
    // Then the first, with approve.
    emulator.send_reply(OPERATOR, GOOD, Some(&first)).await;
    op.expect("Granted by the signer: Approval a-first").await;
    let got = answers_reach(&signer, 3).await;
    assert_eq!(
        got[2],
        ("approve".into(), "a-first".into(), GOOD.into(), None)
    );
    // A reply to a request already answered sends nothing.
    emulator.send_reply(OPERATOR, GOOD, Some(&first)).await;
    op.expect("no longer waiting").await;
    // Each request was shown once, however many rounds ran.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let shown = op
        .seen
        .iter()
        .chain(&emulator.bot_messages(OPERATOR).await)
        .filter(|m| {
            m.text.starts_with("Approval a-first") && m.text.contains("Reply to this message")
        })
        .count();
    assert_eq!(shown, 1);
    assert_eq!(signer.answers().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_is_announced_and_a_code_replying_to_its_resume_clears_it() {
    let (_work, signer, emulator, _daemon) = world();
    signer.event(
        5,
        OperatorEventKind::AgentPaused,
        "agent trader is paused (loss_floor, pause pz-1)",
    );
    signer.list(item(
        "rq-resume",
        AwaitingKind::Resume,
        "RESUME: agent trader: clear the pause set at 2026-05-01 12:00:00 UTC for loss_floor (pause pz-1)",
        300,
    ));
    let mut op = Chat::new(&emulator, OPERATOR);
    let paused = op.expect("[PAUSED #5").await;
    assert!(
        paused.text.contains("agent trader is paused"),
        "{}",
        paused.text
    );
    let shown = op.expect("Resume rq-resume").await;
    assert!(
        shown
            .text
            .contains("clear the pause set at 2026-05-01 12:00:00 UTC for loss_floor")
            && shown.text.contains("Reply to this message"),
        "{}",
        shown.text
    );
    emulator.send_reply(OPERATOR, "111111", Some(&shown)).await;
    op.expect("Refused by the signer (approval_invalid_code)")
        .await;
    emulator.send_reply(OPERATOR, GOOD, Some(&shown)).await;
    let granted = op.expect("Granted by the signer: Resume rq-resume").await;
    assert!(
        granted.text.contains("The pause is cleared"),
        "{}",
        granted.text
    );
    let got = answers_reach(&signer, 2).await;
    assert_eq!(
        got[1],
        ("resume_agent".into(), "rq-resume".into(), GOOD.into(), None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_anywhere_but_a_reply_in_the_operators_chat_go_nowhere() {
    let (_work, signer, emulator, daemon) = world();
    signer.list(item(
        "a-only",
        AwaitingKind::Approval,
        "agent trader sends 2 SOL",
        300,
    ));
    let mut op = Chat::new(&emulator, OPERATOR);
    let request = op.expect("Approval a-only").await;
    let reply_to = json!({"message_id": request.message_id, "date": unix_now(),
        "chat": {"id": OPERATOR, "type": "private", "first_name": "bot chat"},
        "from": {"id": 666, "is_bot": true, "first_name": "Vigil Test Bot"}, "text": request.text});
    let from_op = json!({"id": OPERATOR, "is_bot": false, "first_name": "op"});
    // The operator's reply, in a group the bot was added to.
    emulator
        .send_message_json(json!({"from": from_op, "date": unix_now(), "text": GOOD,
        "chat": {"id": -100_200, "type": "group", "title": "ops"}, "reply_to_message": reply_to}))
        .await;
    // Forwarded into the operator's chat, and sent via an inline bot.
    let private = json!({"id": OPERATOR, "type": "private", "first_name": "op"});
    emulator.send_message_json(json!({"from": from_op, "chat": private, "date": unix_now(), "text": GOOD,
        "reply_to_message": reply_to,
        "forward_origin": {"type": "user", "date": unix_now(), "sender_user": {"id": 5, "is_bot": false, "first_name": "x"}}})).await;
    emulator.send_message_json(json!({"from": from_op, "chat": private, "date": unix_now(), "text": GOOD,
        "reply_to_message": reply_to, "via_bot": {"id": 777, "is_bot": true, "first_name": "inline"}})).await;
    // A stranger's reply in their own chat.
    emulator.send_reply(STRANGER, GOOD, Some(&request)).await;
    // A code on its own, and a reply to a message that is not a request.
    emulator.send(OPERATOR, GOOD).await;
    let hint = op
        .expect("answers only the request whose message it replies to")
        .await;
    emulator.send_reply(OPERATOR, GOOD, Some(&hint)).await;
    op.expect("not a request, so nothing was sent").await;
    // A reply that is not a code.
    emulator
        .send_reply(OPERATOR, "approve #1 246810", Some(&request))
        .await;
    op.expect("Not sent").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(signer.answers().is_empty(), "{:?}", signer.answers());
    assert!(emulator.bot_messages(STRANGER).await.is_empty());
    assert!(emulator.bot_messages(-100_200).await.is_empty());
    let log = daemon
        .wait_for_log("update dropped without a reply", 5)
        .await;
    for reason in ["NotPrivate", "Forwarded", "ViaBot", "Stranger"] {
        assert!(log.contains(reason), "{reason} not logged:\n{log}");
    }
    // The request still waits, and the right reply still works.
    emulator.send_reply(OPERATOR, GOOD, Some(&request)).await;
    op.expect("Granted").await;
    assert_eq!(answers_reach(&signer, 1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loses_nothing_and_shows_nothing_twice() {
    let (work, signer, emulator, daemon) = world();
    signer.list(item("a-before", AwaitingKind::Approval, "sends 3 SOL", 300));
    signer.event(1, OperatorEventKind::Started, "signer started");
    signer.event(
        2,
        OperatorEventKind::ApprovalRequested,
        "approval requested",
    );
    signer.event(
        3,
        OperatorEventKind::CapSet,
        "per_tx cap of trader set to 1 SOL",
    );
    let mut op = Chat::new(&emulator, OPERATOR);
    let before: BotMessage = op.expect("Approval a-before").await;
    op.expect("signer started").await;
    op.expect("per_tx cap of trader set").await;
    daemon.kill();
    // While it is down: a new request, a new event.
    signer.list(item("a-during", AwaitingKind::Approval, "sends 4 SOL", 300));
    signer.event(4, OperatorEventKind::Lockout, "codes locked for 15 minutes");
    let _daemon = start_approver(work.path(), &emulator.url, &signer.socket, BotToken::Given);
    op.expect("Approval a-during").await;
    op.expect("codes locked").await;
    // The reply to the message shown before the restart still answers its request.
    emulator.send_reply(OPERATOR, GOOD, Some(&before)).await;
    op.expect("Granted by the signer: Approval a-before").await;
    assert_eq!(answers_reach(&signer, 1).await[0].1, "a-before");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut all: Vec<String> = op.seen.iter().map(|m| m.text.clone()).collect();
    all.extend(
        emulator
            .bot_messages(OPERATOR)
            .await
            .into_iter()
            .map(|m| m.text),
    );
    let count = |needle: &str| all.iter().filter(|t| t.contains(needle)).count();
    assert_eq!(count("Approval a-before\n"), 1, "{all:#?}");
    assert_eq!(count("signer started"), 1, "{all:#?}");
    assert_eq!(count("codes locked"), 1, "{all:#?}");
    assert_eq!(
        count("approval requested"),
        0,
        "shown as a request, not announced: {all:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_vanished_request_takes_no_code() {
    let (_work, signer, emulator, _daemon) = world();
    signer.list(item("a-short", AwaitingKind::Approval, "sends 1 SOL", 2));
    signer.list(item("a-gone", AwaitingKind::Approval, "sends 5 SOL", 300));
    let mut op = Chat::new(&emulator, OPERATOR);
    let short = op.expect("Approval a-short").await;
    let gone = op.expect("Approval a-gone").await;
    // The signer drops a-gone (answered elsewhere); a-short passes its deadline while listed.
    signer.unlist("a-gone");
    tokio::time::sleep(Duration::from_secs(3)).await;
    emulator.send_reply(OPERATOR, GOOD, Some(&short)).await;
    op.expect("has expired: nothing was sent").await;
    emulator.send_reply(OPERATOR, GOOD, Some(&gone)).await;
    op.expect("no longer waiting").await;
    assert!(signer.answers().is_empty(), "{:?}", signer.answers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_replaces_keys_needs_both_codes() {
    let (_work, signer, emulator, _daemon) = world();
    let digest = "ab".repeat(32);
    let mut it = item(
        &digest,
        AwaitingKind::Import,
        "import 2 agent keys (replaces)",
        0,
    );
    it.current_code_required = true;
    signer.list(it);
    let mut op = Chat::new(&emulator, OPERATOR);
    let shown = op.expect("Key import abab").await;
    assert!(
        shown.text.contains("No deadline") && shown.text.contains("in use today"),
        "{}",
        shown.text
    );
    emulator.send_reply(OPERATOR, GOOD, Some(&shown)).await;
    op.expect("a space").await;
    emulator
        .send_reply(OPERATOR, &format!("{GOOD} 135791"), Some(&shown))
        .await;
    op.expect("Granted by the signer: Key import").await;
    let got = answers_reach(&signer, 1).await;
    assert_eq!(
        got[0],
        (
            "import_confirm".into(),
            digest,
            GOOD.into(),
            Some("135791".into())
        )
    );
}

#[test]
fn without_its_token_it_refuses_to_start_and_says_how_to_fix_it() {
    let work = scratch();
    let config = write_approver_config(
        work.path(),
        "http://127.0.0.1:9",
        Path::new("/nonexistent.sock"),
    );
    let out = std::process::Command::new(binary("vigil-approver"))
        .arg("--config")
        .arg(&config)
        .env("CREDENTIALS_DIRECTORY", work.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("vigil-approver-bot-token") && err.contains("LoadCredential"),
        "{err}"
    );
    // A config with an unknown key names it.
    std::fs::write(&config, "operators = [1]\nwhitelist = [2]\n").unwrap();
    let out = std::process::Command::new(binary("vigil-approver"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("whitelist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_announces_only_recent_events_and_awaiting_shows_requests_again() {
    let work = scratch();
    let signer = FakeSigner::start(work.path());
    for seq in 1..=50 {
        signer.event(
            seq,
            OperatorEventKind::CapSet,
            &format!("cap change number {seq}."),
        );
    }
    signer.list(item(
        "a-again",
        AwaitingKind::Approval,
        "sends 1.5 SOL",
        300,
    ));
    let emulator = Emulator::start();
    let _daemon = start_approver(work.path(), &emulator.url, &signer.socket, BotToken::Given);
    let mut op = Chat::new(&emulator, OPERATOR);
    let first = op.expect("Approval a-again").await;
    op.expect("cap change number 50.").await;
    // Only the last 20 of a backlog nobody was shown: no flood into Telegram's rate limits.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut texts: Vec<String> = op.seen.iter().map(|m| m.text.clone()).collect();
    texts.extend(
        emulator
            .bot_messages(OPERATOR)
            .await
            .into_iter()
            .map(|m| m.text),
    );
    assert!(
        texts.iter().any(|t| t.contains("cap change number 31.")),
        "{texts:#?}"
    );
    assert!(
        !texts.iter().any(|t| t.contains("cap change number 30.")),
        "{texts:#?}"
    );
    // /awaiting shows the request again as a new message; a reply to it answers the request.
    emulator.send(OPERATOR, "/awaiting").await;
    op.expect("1 waiting: reply to each message above").await;
    let again = op.expect("Approval a-again").await;
    assert_ne!(again.message_id, first.message_id);
    emulator.send_reply(OPERATOR, GOOD, Some(&again)).await;
    op.expect("Granted by the signer: Approval a-again").await;
    assert_eq!(answers_reach(&signer, 1).await[0].1, "a-again");
}
