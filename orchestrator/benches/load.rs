//! Load benchmark (on demand, `tests/bench/load [minutes]`): 100 agents on 1-second
//! schedules against the scripted provider, for N minutes (default 10), with the real
//! confined signer (`dry_run`, paper mode) and SQLite (synchronous=FULL).
//!
//! The loop is the scheduler's (`Orchestrator::run`: a 250 ms tick, every due agent decides
//! once, in order, then is due again a schedule later) driven through `Orchestrator::decide`,
//! so each decision can be timed. The scripted provider answers at once, so a decision's wall
//! time is its latency excluding the LLM. Reports decisions/s, latency percentiles, the
//! process's resident memory (the orchestrator library in this process; the signer is its
//! own process) and the SQLite file growth (db + WAL) per 1,000 decisions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vigil_orchestrator::{Config, Mode, Orchestrator, Outcome, Peer, SignerClient, Store};
use vigil_testkit::measure::Samples;
use vigil_testkit::{Reply, Script, Signer};

const AGENTS: usize = 100;

fn main() {
    let minutes: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10.0);
    let ids: Vec<String> = (0..AGENTS).map(|i| format!("a{i:03}")).collect();
    let signer = Signer::start(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    let peer = signer.dev_peer();
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("script.toml");
    Script::new()
        .default_replies([Reply::transfer("dev-peer", 1000)
            .reasoning("Pay the dev peer a tiny amount for this round of work.")])
        .write(&script);
    let mut config = Config::default_config();
    config.signer_socket = signer.socket();
    config.state_db = work.path().join("load.sqlite");
    config.solana_rpc_url = None;
    for p in config.providers.values_mut() {
        if p.script.is_some() {
            p.script = Some(script.clone());
        }
    }
    let template = config
        .agents
        .iter()
        .find(|a| a.id.as_str() == "trader")
        .unwrap()
        .clone();
    config.agents = ids
        .iter()
        .map(|id| {
            let mut a = template.clone();
            a.id = id.parse().unwrap();
            a.mode = Mode::Paper;
            a.schedule_secs = 1;
            a.risk.peers = vec![Peer {
                label: "dev-peer".into(),
                address: peer.clone(),
            }];
            a
        })
        .collect();
    let agents = config.agents.clone();
    let db = config.state_db.clone();
    let store = Store::open(&db).unwrap();
    let client = SignerClient::new(&signer.socket(), Duration::from_secs(10));
    let orchestrator = Orchestrator::new(config, store, client).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let size = || -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
            .map(|m| m.len())
            .sum()
    };
    let start_size = size();
    let mut samples: Vec<Duration> = Vec::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut rss_max = 0u64;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(minutes * 60.0);
    runtime.block_on(async {
        let mut next: BTreeMap<usize, Instant> = BTreeMap::new();
        while Instant::now() < until {
            for (i, agent) in agents.iter().enumerate() {
                let now = Instant::now();
                if next.get(&i).is_none_or(|due| now >= *due) {
                    let t = Instant::now();
                    let d = orchestrator.decide(agent, Vec::new()).await;
                    samples.push(t.elapsed());
                    let kind = match &d.outcome {
                        Outcome::PaperFilled { .. } => "paper_filled".to_string(),
                        Outcome::Held { layer, .. } => format!("held:{layer}"),
                        Outcome::Refused { layer, rule, .. } => format!("refused:{layer}:{rule}"),
                        other => format!("{other:?}").chars().take(20).collect(),
                    };
                    *outcomes.entry(kind).or_default() += 1;
                    next.insert(i, now + Duration::from_secs(agent.schedule_secs.max(1)));
                }
            }
            rss_max = rss_max.max(rss_kib());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let grown = size().saturating_sub(start_size);
    let samples = Samples::new(samples, started.elapsed());
    let n = samples.len();
    let pct = |per_mille| samples.percentile_us(per_mille) / 1e3;
    println!("load: {AGENTS} agents, 1 s schedules, scripted provider, paper mode, real signer");
    println!("  duration            {elapsed:.0} s");
    println!(
        "  decisions           {n} ({:.1}/s; the schedule asks for {AGENTS}/s)",
        samples.rate()
    );
    println!(
        "  latency excl. LLM   p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        pct(500),
        pct(900),
        pct(990),
        pct(1000)
    );
    println!(
        "  RSS                 {} KiB now, {} KiB max sampled, {} KiB peak (VmHWM)",
        rss_kib(),
        rss_max,
        status_kib("VmHWM:")
    );
    println!(
        "  SQLite (db+wal+shm) {start_size} -> {} bytes: {:.0} KiB per 1,000 decisions",
        size(),
        grown as f64 / 1024.0 / (n as f64 / 1000.0)
    );
    println!("  outcomes            {outcomes:?}");
}

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
