//! Benchmark: durable signing of Solana transfers over the signer socket, against two
//! references measured in the same run on the same machine:
//! - the floor: one small append + fdatasync in the same filesystem;
//! - OpenSSH's ssh-agent signing ed25519 over its Unix socket (needs `ssh-agent`,
//!   `ssh-keygen`, `ssh-add` on PATH: `apt-get install openssh-client`).
//!
//! Set TMPDIR to measure another filesystem.
//!
//! Run: `cargo bench -p vigil-signer --bench durable_signing --ignore-rust-version`
//! (or `tests/bench/run`). Prints a table, the signer's CPU time and sleeps per request by
//! thread (the serving thread and the `vigil-audit` writer), and the two target ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use vigil_protocol::{Client, Network};
use vigil_testkit::Signer;
use vigil_testkit::measure::{Samples, Usage, process_cpu};
use vigil_testkit::policy::{AgentRules, Policy};
use vigil_testkit::requests::{SOME_BLOCKHASH, sign_op, transfer};
use vigil_testkit::ssh_agent::SshAgent;
const SEQ_N: usize = 3000;
const CLIENTS: usize = 8;
const PER_CLIENT: usize = 1500;

fn main() {
    // Everything lives under $TMPDIR (the harness's signer too), so the floor and the
    // signer's ledger are measured on the same filesystem.
    let dir = tempfile::tempdir().unwrap();
    println!(
        "vigil durable-signing benchmark (state in {})",
        dir.path().display()
    );

    let fsync = fdatasync_floor(dir.path());
    println!(
        "{:<44} p50 {:>8.1} µs  p99 {:>8.1} µs",
        "append + fdatasync (floor)",
        fsync.percentile_us(500),
        fsync.percentile_us(990)
    );

    let mut signer = Signer::start(&["bench", "peer"]);
    let to = signer.address("peer");
    // Room for the benchmark: no approvals, no effective caps.
    signer.install_policy(&Policy::new().agent(
        "bench",
        AgentRules::unbounded(1000, 4_000_000_000).recipients(&[&to]),
    ));
    let socket = signer.socket();
    let pid = signer.pid();
    let before = Usage::of(pid);
    let seq = sequential(|i| sign_once(&socket, &to, i), SEQ_N);
    let seq_usage = Usage::of(pid).since(&before);
    let seq_rate = seq.rate();
    println!(
        "{:<44} p50 {:>8.1} µs  p99 {:>8.1} µs  {:>8.0} signs/s",
        "vigil-signer, 1 client, sequential",
        seq.percentile_us(500),
        seq.percentile_us(990),
        seq_rate
    );
    let before = Usage::of(pid);
    let clients_before = process_cpu(std::process::id());
    let par = parallel(
        |c, i| sign_once(&socket, &to, 1_000_000 * (c + 1) + i),
        CLIENTS,
        PER_CLIENT,
    );
    let par_usage = Usage::of(pid).since(&before);
    let clients_cpu = process_cpu(std::process::id()).saturating_sub(clients_before);
    println!(
        "{:<44} p50 {:>8.1} µs  p99 {:>8.1} µs  {:>8.0} signs/s",
        format!("vigil-signer, {CLIENTS} clients"),
        par.percentile_us(500),
        par.percentile_us(990),
        par.rate()
    );
    signer.kill9();
    for (phase, usage, n) in [
        ("sequential", &seq_usage, SEQ_N + SEQ_N / 10),
        ("8 clients", &par_usage, CLIENTS * PER_CLIENT),
    ] {
        for line in usage.per_op(n) {
            println!("  signer thread, {phase:<10}: {line}");
        }
    }
    println!(
        "  bench clients, 8 clients : CPU {:>6.1} µs/op (all 8 client threads)",
        clients_cpu.as_secs_f64() * 1e6 / (CLIENTS * PER_CLIENT) as f64
    );

    let agent = match SshAgent::start(dir.path()) {
        Ok(a) => a,
        Err(e) => {
            println!("ssh-agent reference skipped: {e}");
            return;
        }
    };
    let ssh_seq = sequential(|_| agent.sign_once(), SEQ_N / 3);
    let ssh_seq_rate = ssh_seq.rate();
    println!(
        "{:<44} p50 {:>8.1} µs  p99 {:>8.1} µs  {:>8.0} signs/s",
        "ssh-agent ed25519, 1 client",
        ssh_seq.percentile_us(500),
        ssh_seq.percentile_us(990),
        ssh_seq_rate
    );
    let ssh_par = parallel(|_, _| agent.sign_once(), CLIENTS, PER_CLIENT / 3);
    println!(
        "{:<44} p50 {:>8.1} µs  p99 {:>8.1} µs  {:>8.0} signs/s",
        format!("ssh-agent ed25519, {CLIENTS} clients"),
        ssh_par.percentile_us(500),
        ssh_par.percentile_us(990),
        ssh_par.rate()
    );

    let latency_target = 2.0 * (fsync.percentile_us(500) + 50.0);
    println!();
    println!(
        "target 1: sequential p50 {:.1} µs vs 2 × (fdatasync p50 + 50 µs) = {:.1} µs → ratio {:.2} (must be < 1.00)",
        seq.percentile_us(500),
        latency_target,
        seq.percentile_us(500) / latency_target
    );
    println!(
        "target 2: {CLIENTS}-client throughput {:.0}/s vs ssh-agent {:.0}/s → {:.1}x (must be ≥ 10x)",
        par.rate(),
        ssh_par.rate(),
        par.rate() / ssh_par.rate()
    );
}

fn sequential(mut f: impl FnMut(usize), n: usize) -> Samples {
    for i in 0..n / 10 {
        f(usize::MAX - i); // warm-up
    }
    let start = Instant::now();
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i);
        v.push(t.elapsed());
    }
    Samples::new(v, start.elapsed())
}

fn parallel(f: impl Fn(usize, usize) + Sync, clients: usize, per: usize) -> Samples {
    let start = Instant::now();
    let all: Vec<Vec<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let f = &f;
                s.spawn(move || {
                    (0..per)
                        .map(|i| {
                            let t = Instant::now();
                            f(c, i);
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    Samples::new(all.into_iter().flatten().collect(), start.elapsed())
}

fn fdatasync_floor(dir: &Path) -> Samples {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("floor.log"))
        .unwrap();
    let line = [b'x'; 700];
    sequential(
        |_| {
            f.write_all(&line).unwrap();
            f.sync_data().unwrap();
        },
        2000,
    )
}

thread_local! {
    static CONN: std::cell::RefCell<Option<Client>> = const { std::cell::RefCell::new(None) };
}

fn sign_once(socket: &Path, to: &str, i: usize) {
    CONN.with(|c| {
        let mut c = c.borrow_mut();
        let client =
            c.get_or_insert_with(|| Client::connect(socket, Duration::from_secs(30)).unwrap());
        let op = sign_op(
            "bench",
            transfer(to, 1, Network::Devnet),
            &format!("b{i}"),
            SOME_BLOCKHASH,
        );
        let resp = client.call(op).unwrap();
        assert!(
            resp.outcome.is_ok(),
            "bench sign refused: {:?}",
            resp.outcome
        );
    });
}
