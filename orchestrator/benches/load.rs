//! Load benchmark (on demand, `tests/bench/load [minutes]`): the real `vigil-orchestrator`
//! daemon (release build), started as systemd would with a generated config of 100 paper
//! agents on 1-second schedules, the scripted provider (its replies immediate) and the real
//! confined release signer (`dry_run`), SQLite with synchronous=FULL, for N minutes (default
//! 10).
//!
//! Everything is read from the daemon itself, not from this process: the decisions and their
//! latency excluding the LLM from its log (the scheduler logs each decision with
//! `latency_us`, its wall time minus the time spent waiting for the LLM), the rows in its
//! SQLite file, and its resident memory from `/proc/<pid>/status` (VmRSS sampled every
//! second, and VmHWM). Reported as numbers against the targets of issue 19 ("Scale": at least
//! 100 decisions/s, p99 at most 50 ms, RSS under 40 MiB), never as a pass or a fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use vigil_testkit::config::{AgentSpec, ConfigBuilder};
use vigil_testkit::daemon::{BotToken, Daemon};
use vigil_testkit::measure::Samples;
use vigil_testkit::{Reply, Script, Signer};

const AGENTS: usize = 100;

fn main() {
    // `[minutes [max_concurrent_decisions]]` (cargo bench adds `--bench`, which is skipped).
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let minutes: f64 = args.first().map_or(10.0, |m| {
        m.parse()
            .unwrap_or_else(|_| panic!("minutes: {m:?} is not a number; e.g. 2 or 0.5"))
    });
    let bound_arg: Option<usize> = args.get(1).map(|b| {
        b.parse().unwrap_or_else(|_| {
            panic!("max_concurrent_decisions: {b:?} is not a whole number; e.g. 8")
        })
    });
    let ids: Vec<String> = (0..AGENTS).map(|i| format!("a{i:03}")).collect();
    let signer = Signer::start(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("script.toml");
    Script::new()
        .default_replies([Reply::transfer("dev-peer", 1000)
            .reasoning("Pay the dev peer a tiny amount for this round of work.")])
        .write(&script);
    let db = work.path().join("load.sqlite");
    let mut config = ConfigBuilder::new(&signer.socket(), &db).scripted(&script);
    if let Some(bound) = bound_arg {
        config = config.concurrency(bound);
    }
    for id in &ids {
        config = config.agent(
            AgentSpec::new(id)
                .every(1)
                .peer("dev-peer", &signer.dev_peer()),
        );
    }
    let config_path = config.write(&work.path().join("orchestrator.toml"));
    let bound = config.build().max_concurrent_decisions;

    let daemon = Daemon::start(work.path(), &config_path, BotToken::Missing);
    let pid = daemon.pid();
    wait_for(&daemon, "vigil-orchestrator running");
    let start_size = db_size(&db);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(minutes * 60.0);
    let mut rss_max = 0u64;
    let mut rss_sum = 0u64;
    let mut rss_n = 0u64;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(1));
        let rss = status_kib(pid, "VmRSS:");
        rss_max = rss_max.max(rss);
        rss_sum += rss;
        rss_n += 1;
    }
    let elapsed = started.elapsed();
    let rss_end = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    let log = daemon.log_text();
    daemon.kill();

    let (latencies, outcomes, behind) = read_log(&log);
    let rows = decision_rows(&db);
    let grown = db_size(&db).saturating_sub(start_size);
    let samples = Samples::new(latencies, elapsed);
    let n = samples.len();
    let pct = |per_mille| samples.percentile_us(per_mille) / 1e3;
    println!(
        "load: the vigil-orchestrator daemon (release), {AGENTS} paper agents on 1 s schedules, \
         scripted provider, real confined signer, max_concurrent_decisions = {bound}"
    );
    println!("  duration            {:.0} s", elapsed.as_secs_f64());
    println!(
        "  decisions           {n} in the log, {rows} rows in SQLite ({:.1}/s; target >= 100/s, \
         the schedules ask for {AGENTS}/s)",
        samples.rate()
    );
    println!(
        "  latency excl. LLM   p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms \
         (target p99 <= 50 ms)",
        pct(500),
        pct(900),
        pct(990),
        pct(1000)
    );
    println!(
        "  daemon RSS          {rss_end} KiB at the end, {} KiB mean, {rss_max} KiB max sampled, \
         {hwm} KiB peak (VmHWM) (target < 40 MiB = 40960 KiB)",
        rss_sum / rss_n.max(1)
    );
    println!(
        "  SQLite (db+wal+shm) {start_size} -> {} bytes: {:.0} KiB per 1,000 decisions",
        start_size + grown,
        grown as f64 / 1024.0 / (rows.max(1) as f64 / 1000.0)
    );
    println!("  behind schedule     {behind} streaks of skipped slots logged");
    println!("  outcomes            {outcomes:?}");
}

/// Waits up to 60 s for `needle` in the daemon's log.
fn wait_for(daemon: &Daemon, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !daemon.log_text().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "the daemon did not log {needle:?} within 60 s:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The decisions' latencies excluding the LLM, their outcomes (by kind), and the streaks of
/// skipped slots, from the daemon's log lines.
fn read_log(log: &str) -> (Vec<Duration>, BTreeMap<String, usize>, usize) {
    let mut latencies = Vec::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut behind = 0;
    for line in log.lines() {
        if line.contains("behind schedule") {
            behind += 1;
        }
        if !line.contains(" decision ") {
            continue;
        }
        let Some(us) = field(line, "latency_us=").and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        latencies.push(Duration::from_micros(us));
        let mut kind = field(line, "outcome=")
            .map(|o| o.split([' ', '{', '(']).next().unwrap_or(o).to_string())
            .unwrap_or_default();
        if let Some(layer) = field(line, "layer: ") {
            kind = format!("{kind} at {}", layer.trim_end_matches(','));
        }
        *outcomes.entry(kind).or_default() += 1;
    }
    (latencies, outcomes, behind)
}

/// The text after `key` up to the next space.
fn field<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split(' ').next()
}

/// The rows of the daemon's `decisions` table.
fn decision_rows(db: &Path) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM decisions", [], |r| r.get(0))
        .unwrap();
    u64::try_from(rows).unwrap()
}

/// The SQLite file with its WAL and shared memory, in bytes.
fn db_size(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum()
}

/// A `/proc/<pid>/status` field in KiB (0 if it cannot be read).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
