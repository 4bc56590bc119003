//! The scheduler (`Orchestrator::run`) against the real confined signer, paper agents on
//! 1-second schedules and the scripted provider (slowed by `delay_ms` where a test needs
//! decisions to last): due agents decide concurrently up to `max_concurrent_decisions`, one
//! agent never has two decisions at once, a backlog is skipped rather than made up, and each
//! agent's records are those a one-at-a-time run gives.
//!
//! The provider counts the calls in progress at once ([`vigil_orchestrator::Overlap`]); the
//! state file says how many decisions each agent made. Neither is the scheduler's own count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use vigil_orchestrator::{Orchestrator, Overlap, Provider};
use vigil_testkit::config::{AgentSpec, ConfigBuilder, SCRIPTED};
use vigil_testkit::{Reply, Script, Signer};

/// `n` agent ids.
fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("a{i:02}")).collect()
}

/// An orchestrator over a fresh state in `dir`: `agents` on 1 s schedules, paying the dev
/// peer from `script`, at most `bound` decisions at once.
fn orchestrator(
    signer: &Signer,
    dir: &Path,
    agents: &[String],
    bound: usize,
    script: &Script,
) -> Arc<Orchestrator> {
    let script_path = dir.join("script.toml");
    script.write(&script_path);
    let mut config = ConfigBuilder::new(&signer.socket(), &dir.join("state.sqlite"))
        .scripted(&script_path)
        .concurrency(bound);
    for id in agents {
        config = config.agent(
            AgentSpec::new(id)
                .every(1)
                .peer("dev-peer", &signer.dev_peer()),
        );
    }
    Arc::new(config.orchestrator())
}

/// Runs the scheduler for `secs`, then drops it (which stops the decisions in progress).
async fn run_for(orchestrator: &Arc<Orchestrator>, secs: f64) {
    let run = Arc::clone(orchestrator).run();
    assert!(
        tokio::time::timeout(Duration::from_secs_f64(secs), run)
            .await
            .is_err(),
        "the scheduler runs until it is dropped"
    );
}

/// What the scripted provider saw overlap.
fn overlap(orchestrator: &Orchestrator) -> Overlap {
    match orchestrator.provider(SCRIPTED) {
        Some(Provider::Scripted(p)) => p.overlap(),
        other => panic!("expected the scripted provider, got {other:?}"),
    }
}

/// Each agent's recorded decisions, oldest first: the reply, what layer 1 parsed, the outcome,
/// the layer and the rule (not the time or the idempotency key, which carry the clock).
fn records(orchestrator: &Orchestrator) -> BTreeMap<String, Vec<String>> {
    let store = orchestrator.store().lock().unwrap();
    orchestrator
        .agents()
        .iter()
        .map(|a| {
            let mut rows = store.agent(&a.id).decisions(1000).unwrap();
            rows.reverse();
            let rows = rows
                .into_iter()
                .map(|r| {
                    let d = r.decision;
                    format!(
                        "{} | {:?} | {:?} | {:?} | {:?}",
                        d.reply, d.parsed_json, d.outcome, d.layer, d.rule
                    )
                })
                .collect();
            (a.id.to_string(), rows)
        })
        .collect()
}

fn counts(records: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, usize> {
    records.iter().map(|(a, r)| (a.clone(), r.len())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_agents_decide_concurrently_up_to_the_bound_and_no_further() {
    let agents = ids(12);
    let signer = Signer::start(&agents.iter().map(String::as_str).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let script = Script::new()
        .delay_ms(400)
        .default_replies([Reply::transfer("dev-peer", 1000)]);
    let orch = orchestrator(&signer, dir.path(), &agents, 3, &script);
    run_for(&orch, 3.0).await;
    assert_eq!(
        overlap(&orch),
        Overlap {
            calls: 3,
            calls_of_one_agent: 1
        },
        "12 agents due within the first second, 3 may run at once"
    );
    // Three at a time, 400 ms each, for 3 s: at most 3 x 7 decisions ended, though the 12
    // agents' schedules ask for 36.
    let total: usize = counts(&records(&orch)).values().sum();
    assert!((9..=21).contains(&total), "{total} decisions recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_still_deciding_is_not_started_again() {
    let agents = ids(2);
    let signer = Signer::start(&agents.iter().map(String::as_str).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    // Each decision lasts 1.5 s, longer than the agents' 1 s period.
    let script = Script::new()
        .delay_ms(1500)
        .default_replies([Reply::transfer("dev-peer", 1000)]);
    let orch = orchestrator(&signer, dir.path(), &agents, 8, &script);
    run_for(&orch, 4.2).await;
    assert_eq!(overlap(&orch).calls_of_one_agent, 1);
    assert_eq!(
        overlap(&orch).calls,
        2,
        "the two agents did overlap each other"
    );
    // a00 decides from 0 to 1.5 s and 1.5 to 3 s, a01 from 0.5 to 2 s and 2 to 3.5 s; the
    // third of each is still running at 4.2 s. A slot per second regardless would have ended
    // three or four.
    let recorded = counts(&records(&orch));
    assert_eq!(
        recorded,
        BTreeMap::from([("a00".into(), 2), ("a01".into(), 2)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_skipped_not_made_up() {
    let agents = ids(4);
    let signer = Signer::start(&agents.iter().map(String::as_str).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let script = Script::new().default_replies([Reply::transfer("dev-peer", 1000)]);
    let orch = orchestrator(&signer, dir.path(), &agents, 8, &script);
    let run = tokio::spawn({
        let orch = Arc::clone(&orch);
        async move { orch.run().await }
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The signer stops answering for 6 s: every decision begun waits on it; the slots of
    // those 6 s pass.
    let pid = signer.pid().to_string();
    let signal = |sig: &str| {
        let status = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    tokio::time::sleep(Duration::from_secs(6)).await;
    signal("-CONT");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    // 8.7 s of 1 s slots is 8 or 9 per agent if missed slots were made up. Skipped, each agent
    // has at most its two slots before the stall (at 0-0.75 s and 1 s for a00), the one it
    // was stuck in, and two after (the one that was due when the signer answered again, late
    // by less than a period, and the next).
    let recorded = counts(&records(&orch));
    for (agent, n) in &recorded {
        assert!((2..=5).contains(n), "{agent}: {n} decisions ({recorded:?})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_records_what_a_one_at_a_time_run_records() {
    let agents = ids(6);
    let signer = Signer::start(&agents.iter().map(String::as_str).collect::<Vec<_>>());
    let replies = |i: usize| {
        [
            Reply::transfer("dev-peer", 1000 + i as u128)
                .reasoning("The first payment of this round."),
            Reply::hold(),
            Reply::transfer("dev-peer", 5000 * (i as u128 + 1))
                .reasoning("The second payment of this round."),
            Reply::text("not JSON at all"),
        ]
    };
    let script = agents
        .iter()
        .enumerate()
        .fold(Script::new(), |s, (i, id)| s.agent(id, replies(i)));
    let one = tempfile::tempdir().unwrap();
    let many = tempfile::tempdir().unwrap();
    let sequential = orchestrator(&signer, one.path(), &agents, 1, &script);
    let concurrent = orchestrator(&signer, many.path(), &agents, 8, &script);
    tokio::join!(run_for(&sequential, 3.5), run_for(&concurrent, 3.5));
    let (a, b) = (records(&sequential), records(&concurrent));
    for id in &agents {
        let (a, b) = (&a[id], &b[id]);
        let common = a.len().min(b.len());
        assert!(common >= 3, "{id}: {} and {} decisions", a.len(), b.len());
        assert_eq!(a[..common], b[..common], "{id}");
        assert!(a.iter().any(|r| r.contains("PaperFilled")), "{a:#?}");
    }
}
