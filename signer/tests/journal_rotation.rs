//! The journal's rotation and retention against the real confined signer over its socket: with a
//! tiny `--journal-rotate-bytes` many segments are sealed while it signs; every figure the
//! operator reads (`status`: spends, limits, pauses; the audit head) is the same after a
//! restart that replays only the live segment, and again after retention deleted the old
//! segments; an idempotent retry of a transfer signed segments ago returns the same signature,
//! and an approval asked for segments ago is still waiting; `audit-verify` verifies every
//! present segment, says what was rotated away, and names the line of an edited sealed segment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use vigil_protocol::Op;
use vigil_testkit::requests::{ok, pay};
use vigil_testkit::{SOL, Signer};

/// Sealed segments in the signer's ledger dir.
fn sealed(s: &Signer) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s.state().join("ledger"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit.0"))
        .collect();
    names.sort();
    names
}

/// What the operator reads in `status`, without the head (which a restart moves by its
/// `started` entry).
fn figures(s: &Signer) -> (Value, u64, String) {
    let st = ok(s.client().call(Op::Status).unwrap());
    (
        st["agents"].clone(),
        st["ledger_seq"].as_u64().unwrap(),
        st["audit_head"].as_str().unwrap().to_owned(),
    )
}

fn verify(s: &Signer, extra: &[&str]) -> (Value, String) {
    let out = s.audit_verify(extra);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

#[test]
fn figures_survive_rotation_restart_and_retention() {
    let rotate = [
        "--journal-rotate-bytes",
        "4096",
        "--journal-keep-segments",
        "1000",
    ];
    let mut s = Signer::with(&["trader", "sentinel"]).args(&rotate).start();
    let to = s.address("sentinel");
    let mut c = s.client();
    let first = ok(c.call(pay("trader", &to, 1_000, "first")).unwrap());
    let waiting = ok(c.call(pay("trader", &to, SOL * 3 / 4, "wait")).unwrap());
    assert!(waiting["approval_id"].is_string(), "{waiting}");
    ok(c.call(Op::PauseAgent(vigil_protocol::PauseAgentRequest {
        agent: "sentinel".parse().unwrap(),
        reason: vigil_protocol::PauseReason::Operator,
    }))
    .unwrap());
    for i in 0..50u64 {
        ok(c.call(pay("trader", &to, 1_000 + i, &format!("t{i}")))
            .unwrap());
    }
    drop(c);
    let segments = sealed(&s);
    assert!(segments.len() >= 5, "{segments:?}");
    let (agents, _, head) = figures(&s);
    assert_eq!(
        s.spent("trader"),
        u128::from(1_000 + (0..50u64).map(|i| 1_000 + i).sum::<u64>())
    );
    let sentinel = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == "sentinel");
    assert!(sentinel.unwrap()["paused"].is_object(), "{agents}");

    // A restart replays the live segment only: the same figures.
    s.restart();
    let (after, seq, _) = figures(&s);
    assert_eq!(after, agents);
    let (report, _) = verify(&s, &["--expect-head", &head]);
    assert_eq!(
        report["segments"].as_u64().unwrap(),
        sealed(&s).len() as u64 + 1
    );
    assert_eq!(
        report["checkpoints_checked"].as_u64().unwrap(),
        sealed(&s).len() as u64
    );
    assert_eq!(report["rotated_away_through_seq"], 0);
    assert_eq!(report["head_seq"].as_u64().unwrap(), seq);

    // A retry of the first transfer, signed many segments ago, returns the same signature
    // (read back from the checkpoint that carries it); the approval still waits.
    let mut c = s.client();
    assert_eq!(
        ok(c.call(pay("trader", &to, 1_000, "first")).unwrap()),
        first
    );
    let still = ok(c.call(pay("trader", &to, SOL * 3 / 4, "wait")).unwrap());
    assert_eq!(still["approval_id"], waiting["approval_id"]);
    drop(c);

    // Retention keeps two sealed segments: the rest are deleted at the next start.
    s.set_serve_args(&[
        "--journal-rotate-bytes",
        "4096",
        "--journal-keep-segments",
        "2",
        "--journal-keep-days",
        "0",
    ]);
    s.restart();
    assert_eq!(sealed(&s).len(), 2, "{:?}", sealed(&s));
    let (kept, _, _) = figures(&s);
    assert_eq!(kept, agents);
    let (report, stderr) = verify(&s, &[]);
    let gone = report["rotated_away_through_seq"].as_u64().unwrap();
    assert!(gone > 40, "{report}");
    assert!(
        stderr.contains(&format!("history before seq {} was rotated away", gone + 1)),
        "{stderr}"
    );
    assert!(stderr.contains("the backups hold it"), "{stderr}");
    let mut c = s.client();
    assert_eq!(
        ok(c.call(pay("trader", &to, 1_000, "first")).unwrap()),
        first
    );
    let granted = s.approver().approve(
        waiting["approval_id"].as_str().unwrap(),
        s.operator().code(),
    );
    assert_eq!(ok(granted)["status"], "granted");
    let signed = ok(c.call(pay("trader", &to, SOL * 3 / 4, "wait")).unwrap());
    assert_eq!(signed["status"], "signed");
    drop(c);

    // An edited sealed segment is named by file and line.
    s.kill9();
    let victim = s.state().join("ledger").join(&sealed(&s)[1]);
    let text = std::fs::read_to_string(&victim).unwrap();
    let lines = text.lines().count();
    let at = text.rfind("\"ts\":").unwrap() + 5;
    let edited = format!("{}9{}", &text[..at], &text[at..]);
    std::fs::write(&victim, edited).unwrap();
    let out = s.audit_verify(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&sealed(&s)[1]), "{stderr}");
    assert!(stderr.contains(&format!("line {lines}")), "{stderr}");
}

/// The journal flags may come from the environment (the NixOS module's services.vigil.journal
/// sets them so): a value out of bounds there stops the start before anything is read, naming
/// the flag; a flag on the command line wins over the environment.
#[test]
fn journal_settings_come_from_the_environment_too() {
    let state = tempfile::tempdir().unwrap();
    let serve = |env: &[(&str, &str)], args: &[&str]| {
        let out = std::process::Command::new(vigil_testkit::host::binary("vigil-signer"))
            .env_clear()
            .envs(env.iter().copied())
            .args(["serve", "--state-dir"])
            .arg(state.path())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = serve(&[("VIGIL_JOURNAL_ROTATE_BYTES", "1")], &[]);
    assert!(
        !ok && err.contains("--journal-rotate-bytes 1 is out of bounds"),
        "{err}"
    );
    let (ok, err) = serve(&[("VIGIL_JOURNAL_KEEP_DAYS", "40000")], &[]);
    assert!(
        !ok && err.contains("--journal-keep-days 40000 is out of bounds"),
        "{err}"
    );
    let (ok, err) = serve(&[("VIGIL_JOURNAL_KEEP_SEGMENTS", "many")], &[]);
    assert!(!ok && err.contains("journal-keep-segments"), "{err}");
    // The command line wins: the same bad environment, a good flag, and the start goes on to
    // its next refusal (no keys in an empty state dir), not the journal's.
    let (ok, err) = serve(
        &[("VIGIL_JOURNAL_ROTATE_BYTES", "1")],
        &["--journal-rotate-bytes", "65536"],
    );
    assert!(!ok && !err.contains("journal-rotate-bytes"), "{err}");
}

/// A rotation that fails before sealing anything (here `audit.jsonl.next` is a directory, so
/// the next segment cannot be written) turns rotation off until the restart: signing goes on
/// in one segment, nothing is lost, and `status` names the problem for the operator; once the
/// cause is gone, a restart rotates again and the problem is no longer reported.
#[test]
fn a_failed_rotation_shows_in_status_and_signing_goes_on() {
    let mut s = Signer::with(&["trader", "sentinel"])
        .args(&["--journal-rotate-bytes", "4096"])
        .start();
    let to = s.address("sentinel");
    let blocker = s.state().join("ledger").join("audit.jsonl.next");
    std::fs::create_dir(&blocker).unwrap();
    let mut c = s.client();
    for i in 0..30u64 {
        ok(c.call(pay("trader", &to, 1_000 + i, &format!("t{i}")))
            .unwrap());
    }
    let st = ok(c.call(Op::Status).unwrap());
    let problem = st["journal_problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("could not be rotated") && problem.contains("restart the signer"),
        "{st}"
    );
    assert!(sealed(&s).is_empty(), "{:?}", sealed(&s));
    assert_eq!(
        s.spent("trader"),
        u128::from((0..30u64).map(|i| 1_000 + i).sum::<u64>())
    );
    drop(c);
    std::fs::remove_dir(&blocker).unwrap();
    s.restart();
    let mut c = s.client();
    ok(c.call(pay("trader", &to, 5, "after")).unwrap());
    let st = ok(c.call(Op::Status).unwrap());
    assert!(st.get("journal_problem").is_none(), "{st}");
    assert!(
        !sealed(&s).is_empty(),
        "rotation is on again after the restart"
    );
}
