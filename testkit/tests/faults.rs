//! Outage drills against the live pipeline (real confined signer, real Solana runtime): the
//! chain RPC down, slow or lying; the LLM provider down or answering garbage; the state dirs
//! of the orchestrator and the signer full. In each the agent holds (or the transfer fails
//! without moving funds), the reason names the fault, and the next decision after the fault
//! ends goes through by itself. A full disk refuses new work with a clear error and loses
//! nothing already recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vigil_orchestrator::{Outcome, Store};
use vigil_testkit::adversary::{Adversary, Fault, Target};
use vigil_testkit::host::require_root;
use vigil_testkit::{Mode, SOL, Scenario, Script};

/// Trader funded with 20 SOL, paying the dev peer small amounts ([`Script::small_payments`]).
fn paying_trader() -> Scenario {
    Scenario::trader(20 * SOL).script(Script::small_payments())
}

fn landed(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Signed { chain, .. } if chain == "confirmed" || chain == "finalized")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_down_slow_or_lying_holds_moves_nothing_and_recovers() {
    let world = paying_trader().start().await;
    let (node, peer) = (world.chain(), world.signer.dev_peer());
    let (orchestrator, agent) = world.orchestrator(&world.live_trader());

    // (fault, what the decision under it must be)
    type Check = fn(&Outcome) -> bool;
    let cases: [(Mode, Check); 6] = [
        (
            Mode::Http500,
            |o| matches!(o, Outcome::Held { layer, reason } if layer == "rpc" && reason.contains("500")),
        ),
        (
            Mode::ShortBlockhash,
            |o| matches!(o, Outcome::Held { layer, reason } if layer == "rpc" && reason.contains("blockhash")),
        ),
        // A node lying that the balance is 0: layer 2 refuses any amount.
        (
            Mode::WrongBalance(0),
            |o| matches!(o, Outcome::Refused { layer, rule, .. } if layer == "2" && rule == "FractionOfBalance"),
        ),
        // A blockhash the chain never made: signed, refused by the chain, nothing moves.
        (
            Mode::ForeignBlockhash,
            |o| matches!(o, Outcome::Signed { chain, .. } if chain.starts_with("failed")),
        ),
        // A node that answers another signature: reported as failed, not as landed.
        (
            Mode::WrongSignature,
            |o| matches!(o, Outcome::Signed { chain, .. } if chain.contains("answered signature")),
        ),
        // Slow but honest: the decision waits and lands.
        (Mode::Slow(Duration::from_millis(150)), landed),
    ];
    for (mode, check) in cases {
        let before = node.balance_of(&peer);
        node.set_mode(mode);
        let d = orchestrator.decide(&agent, Vec::new()).await;
        assert!(check(&d.outcome), "{mode:?}: {:?}", d.outcome);
        if !matches!(mode, Mode::Slow(_)) {
            assert_eq!(node.balance_of(&peer), before, "{mode:?} moved funds");
        }
        // The fault ends: the next decision lands by itself.
        node.set_mode(Mode::Honest);
        let d = orchestrator.decide(&agent, Vec::new()).await;
        assert!(landed(&d.outcome), "after {mode:?}: {:?}", d.outcome);
        assert!(node.balance_of(&peer) > before);
    }
    // Reconciliation reports the two signed transfers that never landed, and nothing else.
    let report = orchestrator.reconcile().await;
    assert_eq!(report.len(), 2, "{report:#?}");
    assert!(
        report.iter().all(|l| l.contains("did not land")),
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_down_or_garbage_holds_and_recovers() {
    let world = paying_trader().start().await;
    let llm = Adversary::start(Target::dev_trader()).await;
    let (orchestrator, agent) = world.orchestrator(
        &world
            .config()
            .openai("remote", &llm.base_url())
            .agent(world.live_trader_agent().provider("remote", "obedient-1")),
    );
    let cases = [
        (Fault::Down, "llm", "HTTP 500"),
        (Fault::Garbage, "llm", "malformed"),
        (Fault::Prose, "1", "no valid reply after 2 corrections"),
    ];
    for (fault, layer, why) in cases {
        llm.set_fault(fault);
        let d = orchestrator.decide(&agent, Vec::new()).await;
        assert!(
            matches!(&d.outcome, Outcome::Held { layer: l, reason } if l == layer && reason.contains(why)),
            "{fault:?}: {:?}",
            d.outcome
        );
        llm.set_fault(Fault::None);
        let d = orchestrator.decide(&agent, Vec::new()).await;
        assert!(landed(&d.outcome), "after {fault:?}: {:?}", d.outcome);
    }
    // Nothing was signed while the provider failed: three recoveries, three signatures.
    assert_eq!(world.signer.signed().len(), 3);
}

/// A tmpfs of `size` mounted at a new temp dir; unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=1777"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "mount -t tmpfs failed (the disk-full drill runs as root, as CI does)"
        );
        SmallFs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem to the last byte; returns the filler to remove later.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            if f.write_all(&block).and_then(|()| f.sync_all()).is_err() {
                break;
            }
        }
        // Then the last partial block.
        while f.write_all(&[0u8; 512]).is_ok() {}
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disks_refuse_new_work_clearly_and_lose_nothing() {
    if !require_root("the disk-full drill mounts a tmpfs") {
        return;
    }
    let signer_fs = SmallFs::mount("8m");
    let state_fs = SmallFs::mount("8m");
    let scenario = paying_trader().signer_in(signer_fs.path());
    let mut world = scenario.work_in(state_fs.path()).start().await;
    let config = world.live_trader();
    let db = config.state_db_path().to_owned();
    let (orchestrator, agent) = world.orchestrator(&config);
    let signer = &mut world.signer;
    for _ in 0..3 {
        assert!(landed(
            &orchestrator.decide(&agent, Vec::new()).await.outcome
        ));
    }
    let decisions_before = orchestrator
        .store()
        .lock()
        .unwrap()
        .agent(&agent.id)
        .decisions(100)
        .unwrap();
    let signed_before = signer.audit_events("signed");
    assert_eq!(signed_before.len(), 3);

    // The orchestrator's disk is full: it refuses to claim new work, says why, signs nothing.
    let filler = state_fs.fill();
    let d = orchestrator.decide(&agent, Vec::new()).await;
    assert!(
        matches!(&d.outcome, Outcome::Held { layer, reason } if layer == "state" && reason.contains("cannot claim execution") && reason.contains("full")),
        "{:?}",
        d.outcome
    );
    assert_eq!(signer.audit_events("signed").len(), 3, "nothing signed");
    std::fs::remove_file(&filler).unwrap();
    // Recorded state intact, and work resumes by itself.
    {
        let store = orchestrator.store().lock().unwrap();
        store.integrity_check().unwrap();
        let after = store.agent(&agent.id).decisions(100).unwrap();
        assert!(after.len() >= decisions_before.len());
    }
    assert!(landed(
        &orchestrator.decide(&agent, Vec::new()).await.outcome
    ));

    // The signer's disk is full: it refuses to sign (the spend cannot be made durable) with
    // an `internal` refusal, releases no signature, and keeps its records.
    // A small append can still fit in the last page of its file, so a few more signatures
    // may be recorded before the refusal; each of them must be in the log afterwards.
    let filler = signer_fs.fill();
    let mut signed_while_full = Vec::new();
    let refusal = loop {
        let d = orchestrator.decide(&agent, Vec::new()).await;
        match d.outcome {
            Outcome::Signed { signature, .. } if signed_while_full.len() < 30 => {
                signed_while_full.push(signature);
            }
            other => break other,
        }
    };
    assert!(
        matches!(&refusal, Outcome::Refused { layer, rule, message } if layer == "3" && rule == "internal" && !message.is_empty()),
        "{refusal:?}"
    );
    let d = orchestrator.decide(&agent, Vec::new()).await;
    assert!(
        !matches!(d.outcome, Outcome::Signed { .. }),
        "signs nothing more until restarted: {:?}",
        d.outcome
    );
    std::fs::remove_file(&filler).unwrap();
    // Space back; the signer (which stops signing after a failed write) is restarted.
    signer.kill9();
    signer.restart();
    assert!(
        signer.audit_verifies(),
        "the audit chain verifies after the full disk"
    );
    let signed: Vec<String> = signer
        .audit_events("signed")
        .iter()
        .map(|e| e["signature"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(signed.len(), 4 + signed_while_full.len());
    for s in &signed_while_full {
        assert!(signed.contains(s), "{s} released but not recorded");
    }
    // The client's connection to the killed signer is stale: the client reconnects (the
    // request never reached the old signer), so the first decision after the restart lands.
    let d = orchestrator.decide(&agent, Vec::new()).await;
    assert!(landed(&d.outcome), "{:?}", d.outcome);
    drop(orchestrator);
    Store::open(&db).unwrap().integrity_check().unwrap();
}
