//! Benchmark (on demand, `tests/bench/run`): the orchestrator's cost per decision excluding the
//! LLM, and its idle memory.
//! - 1,000 paper decisions of one agent with the scripted provider (whose reply is immediate,
//!   so a decision's wall time is the time from the LLM's reply to the signer's answer plus the
//!   records): prompt, cost gate, layer 1, layer 2, the real confined signer's `dry_run`,
//!   the execution claim, the paper fill and the decision record in SQLite (synchronous=FULL).
//! - The `vigil-orchestrator` daemon's resident memory once it has started and is idle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use vigil_orchestrator::{Config, Outcome, Peer, Provider, ScriptedProvider, SignerClient, Store};
use vigil_testkit::config::{devnet_inputs, free_deps};
use vigil_testkit::measure::Samples;
use vigil_testkit::{Reply, Script, Signer};

const DECISIONS: u64 = 1_000;

fn main() {
    // The default config's three agents, so the idle daemon below finds a key for each.
    let signer = Signer::start(&["trader", "sentinel", "experimental"]);
    let peer = signer.dev_peer();
    let work = tempfile::tempdir().unwrap();
    let reply = Reply::transfer("dev-peer", 1_000_000)
        .reasoning("Pay the dev peer a small amount for this batch of work.");
    let provider = Provider::Scripted(
        ScriptedProvider::from_toml(&Script::new().agent("trader", [reply.clone()]).to_toml())
            .unwrap(),
    );
    let store = std::sync::Mutex::new(Store::open(&work.path().join("bench.sqlite")).unwrap());
    let client = Mutex::new(SignerClient::new(&signer.socket(), Duration::from_secs(10)));
    let deps = free_deps(&provider, &store, &client);
    let mut trader = Config::default_config()
        .agents
        .into_iter()
        .find(|a| a.id.as_str() == "trader")
        .unwrap();
    trader.risk.peers = vec![Peer {
        label: "dev-peer".into(),
        address: peer,
    }];

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = 1_800_000_000u64;
    let mut samples = Vec::with_capacity(usize::try_from(DECISIONS).unwrap());
    let began = Instant::now();
    runtime.block_on(async {
        for i in 0..DECISIONS {
            let inputs = devnet_inputs(start + i);
            let t = Instant::now();
            let decided = vigil_orchestrator::decide(&trader, &inputs, &deps).await;
            samples.push(t.elapsed());
            assert!(
                matches!(decided.outcome, Outcome::PaperFilled { .. }),
                "{:?}",
                decided.outcome
            );
        }
    });
    let samples = Samples::new(samples, began.elapsed());
    println!(
        "decision excluding the LLM (paper, real signer dry_run, SQLite FULL), {DECISIONS} decisions:"
    );
    println!(
        "  p50 {:.0} µs   p90 {:.0} µs   p99 {:.0} µs",
        samples.percentile_us(500),
        samples.percentile_us(900),
        samples.percentile_us(990)
    );

    // Idle RSS of the daemon.
    let exe = std::env::current_exe().unwrap();
    let daemon = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("vigil-orchestrator");
    if !daemon.is_file() {
        println!("idle RSS skipped: {} not built", daemon.display());
        return;
    }
    let script = work.path().join("script.toml");
    Script::new().default_replies([reply]).write(&script);
    let mut config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/default-config.toml"
    ))
    .unwrap();
    config = config.replace("/etc/vigil/scripted-replies.json", script.to_str().unwrap());
    let cfg_path = work.path().join("orchestrator.toml");
    let mut parsed: toml::Table = toml::from_str(&config).unwrap();
    parsed.insert(
        "signer_socket".into(),
        toml::Value::String(signer.socket().to_string_lossy().into()),
    );
    // Paper agents need no chain: without an RPC URL the daemon checks no node (the
    // default's public devnet URL cannot be reached from a loopback-only benchmark).
    parsed.remove("solana_rpc_url");
    parsed.insert(
        "state_db".into(),
        toml::Value::String(work.path().join("daemon.sqlite").to_string_lossy().into()),
    );
    std::fs::write(&cfg_path, toml::to_string(&parsed).unwrap()).unwrap();
    let mut child = Command::new(&daemon)
        .arg("--config")
        .arg(&cfg_path)
        .env("VIGIL_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: ? kB")
        .to_string();
    let _ = child.kill();
    let _ = child.wait();
    println!("vigil-orchestrator idle (3 agents, after its first round): {rss}");
}
