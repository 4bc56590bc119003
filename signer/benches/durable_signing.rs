//! Benchmark: durable signing of Solana transfers over the signer socket, against two
//! references measured in the same run on the same machine:
//! - the floor: one small append + fdatasync in the same filesystem;
//! - OpenSSH's ssh-agent signing ed25519 over its Unix socket (needs `ssh-agent`,
//!   `ssh-keygen`, `ssh-add` on PATH: `apt-get install openssh-client`).
//!
//! Set TMPDIR to measure another filesystem.
//!
//! Run: `cargo bench -p vigil-signer --bench durable_signing --ignore-rust-version`
//! (or `tests/bench/run`). Prints a table and the two target ratios of issue 2.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vigil_protocol::{
    Amount, Chain, Client, Context, Intent, Network, Op, SignRequest, TransferIntent,
};

const BLOCKHASH: &str = "4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM";
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
        fsync.p50_us(),
        fsync.p99_us()
    );

    let mut signer = common::Signer::start(&["bench", "peer"], None);
    let to = signer.address("peer");
    signer.install_policy(&bench_policy(&to));
    let socket = signer.socket.clone();
    let seq = sequential(|i| sign_once(&socket, &to, i), SEQ_N);
    let seq_rate = SEQ_N as f64 / seq.total.as_secs_f64();
    println!(
        "{:<44} p50 {:>8.1} µs  p99 {:>8.1} µs  {:>8.0} signs/s",
        "vigil-signer, 1 client, sequential",
        seq.p50_us(),
        seq.p99_us(),
        seq_rate
    );
    let par = parallel(
        |c, i| sign_once(&socket, &to, 1_000_000 * (c + 1) + i),
        CLIENTS,
        PER_CLIENT,
    );
    println!(
        "{:<44} p50 {:>8.1} µs  p99 {:>8.1} µs  {:>8.0} signs/s",
        format!("vigil-signer, {CLIENTS} clients"),
        par.0.p50_us(),
        par.0.p99_us(),
        par.1
    );
    signer.kill9();

    let agent = match SshAgent::start(dir.path()) {
        Ok(a) => a,
        Err(e) => {
            println!("ssh-agent reference skipped: {e}");
            return;
        }
    };
    let ssh_seq = sequential(|_| agent.sign_once(), SEQ_N / 3);
    let ssh_seq_rate = (SEQ_N / 3) as f64 / ssh_seq.total.as_secs_f64();
    println!(
        "{:<44} p50 {:>8.1} µs  p99 {:>8.1} µs  {:>8.0} signs/s",
        "ssh-agent ed25519, 1 client",
        ssh_seq.p50_us(),
        ssh_seq.p99_us(),
        ssh_seq_rate
    );
    let ssh_par = parallel(|_, _| agent.sign_once(), CLIENTS, PER_CLIENT / 3);
    println!(
        "{:<44} p50 {:>8.1} µs  p99 {:>8.1} µs  {:>8.0} signs/s",
        format!("ssh-agent ed25519, {CLIENTS} clients"),
        ssh_par.0.p50_us(),
        ssh_par.0.p99_us(),
        ssh_par.1
    );

    let latency_target = 2.0 * (fsync.p50_us() + 50.0);
    println!();
    println!(
        "target 1: sequential p50 {:.1} µs vs 2 × (fdatasync p50 + 50 µs) = {:.1} µs → ratio {:.2} (must be < 1.00)",
        seq.p50_us(),
        latency_target,
        seq.p50_us() / latency_target
    );
    println!(
        "target 2: {CLIENTS}-client throughput {:.0}/s vs ssh-agent {:.0}/s → {:.1}x (must be ≥ 10x)",
        par.1,
        ssh_par.1,
        par.1 / ssh_par.1
    );
}

struct Samples {
    sorted: Vec<Duration>,
    total: Duration,
}

impl Samples {
    fn new(mut v: Vec<Duration>, total: Duration) -> Self {
        v.sort();
        Self { sorted: v, total }
    }
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.sorted.len() as f64 - 1.0) * p).round() as usize;
        self.sorted[i].as_secs_f64() * 1e6
    }
    fn p50_us(&self) -> f64 {
        self.pct(0.50)
    }
    fn p99_us(&self) -> f64 {
        self.pct(0.99)
    }
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

fn parallel(f: impl Fn(usize, usize) + Sync, clients: usize, per: usize) -> (Samples, f64) {
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
    let total = start.elapsed();
    let n = clients * per;
    (
        Samples::new(all.into_iter().flatten().collect(), total),
        n as f64 / total.as_secs_f64(),
    )
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
        let op = Op::Sign(SignRequest {
            agent: "bench".parse().unwrap(),
            intent: Intent::Transfer(TransferIntent {
                chain: Chain::Solana,
                network: Network::Devnet,
                asset: vigil_protocol::AssetSymbol::SOL,
                to: to.into(),
                amount: Amount::from_base_units(1),
            }),
            context: Context {
                recent_blockhash: Some(BLOCKHASH.into()),
            },
            idempotency_key: format!("b{i}").parse().unwrap(),
        });
        let resp = client.call(op).unwrap();
        assert!(
            resp.outcome.is_ok(),
            "bench sign refused: {:?}",
            resp.outcome
        );
    });
}

/// A policy with room for the benchmark: no approvals, no effective caps.
fn bench_policy(to: &str) -> String {
    format!(
        "version = 1\n[agents.bench]\nactions = [\"transfer\"]\nnetworks = [\"solana:devnet\"]\nrecipients = [\"{to}\"]\n\
         rate_limit_per_minute = 4000000000\n[agents.bench.assets.SOL]\nchain = \"solana\"\nper_tx_cap = \"1000\"\n\
         velocity_24h = \"1000000000000\"\napproval_threshold = \"1000\"\n"
    )
}

/// Minimal SSH agent protocol client (draft-miller-ssh-agent): list identities, sign.
struct SshAgent {
    child: Child,
    socket: PathBuf,
    key_blob: Vec<u8>,
}

impl SshAgent {
    fn start(dir: &Path) -> Result<Self, String> {
        let socket = dir.join("ssh-agent.sock");
        let key = dir.join("id_ed25519");
        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .output();
        match keygen {
            Ok(o) if o.status.success() => {}
            _ => return Err("ssh-keygen not available (apt-get install openssh-client)".into()),
        }
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            if Instant::now() > deadline {
                return Err("ssh-agent did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let added = Command::new("ssh-add")
            .arg("-q")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &socket)
            .output()
            .map_err(|e| e.to_string())?;
        if !added.status.success() {
            return Err(format!(
                "ssh-add failed: {}",
                String::from_utf8_lossy(&added.stderr)
            ));
        }
        let mut s = UnixStream::connect(&socket).map_err(|e| e.to_string())?;
        let reply = call(&mut s, &[11]);
        if reply.first() != Some(&12) {
            return Err("unexpected identities answer".into());
        }
        let (blob, _) = read_string(&reply[5..]);
        Ok(Self {
            child,
            socket,
            key_blob: blob.to_vec(),
        })
    }

    fn sign_once(&self) {
        thread_local! {
            static SSH: std::cell::RefCell<Option<UnixStream>> = const { std::cell::RefCell::new(None) };
        }
        SSH.with(|c| {
            let mut c = c.borrow_mut();
            let s = c.get_or_insert_with(|| UnixStream::connect(&self.socket).unwrap());
            let mut msg = vec![13];
            put_string(&mut msg, &self.key_blob);
            put_string(&mut msg, &[0x5a; 200]); // about the size of a Solana message
            msg.extend_from_slice(&0u32.to_be_bytes());
            let reply = call(s, &msg);
            assert_eq!(reply.first(), Some(&14), "ssh-agent refused to sign");
        });
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(s: &mut UnixStream, msg: &[u8]) -> Vec<u8> {
    let mut out = (msg.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    s.write_all(&out).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    buf
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn read_string(b: &[u8]) -> (&[u8], &[u8]) {
    let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    (&b[4..4 + n], &b[4 + n..])
}
