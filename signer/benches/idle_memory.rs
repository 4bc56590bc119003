//! Benchmark: the signer's resident memory while idle, with two agents, confined exactly as in
//! production (release build; as root it starts as root and drops to `nobody`). Measured
//! twice: right after start, and again after a burst of signed transfers (so that the code
//! of the signing path is resident too) once every client has gone. `VmRSS` is what is
//! resident now, `VmHWM` the most ever resident (it includes start-up: the keystore's KDF).
//! OpenSSH's `ssh-agent` holding one key is measured the same way, as the reference.
//!
//! Run: `tests/bench/memory` (or `cargo bench -p vigil-signer --bench idle_memory
//! --ignore-rust-version` after a release build of the workspace's binaries).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vigil_protocol::{Client, Network};
use vigil_testkit::Signer;
use vigil_testkit::measure::Memory;
use vigil_testkit::policy::{AgentRules, Policy};
use vigil_testkit::requests::{SOME_BLOCKHASH, sign_op, transfer};
use vigil_testkit::ssh_agent::SshAgent;

/// Signatures in the burst between the two measurements.
const BURST: usize = 2000;
/// Concurrent clients in the burst.
const CLIENTS: usize = 4;
/// How long the process is left alone before it is measured.
const SETTLE: Duration = Duration::from_secs(2);
/// The target: idle `VmRSS` at most this many KiB.
const TARGET_KIB: u64 = 4 * 1024;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut signer = Signer::start(&["trader", "sentinel"]);
    let (to, back) = (signer.address("sentinel"), signer.address("trader"));
    // Room for the burst: no approvals, no effective caps (the policy still has two agents).
    signer.install_policy(
        &Policy::new()
            .agent(
                "trader",
                AgentRules::unbounded(1000, 4_000_000_000).recipients(&[&to]),
            )
            .agent(
                "sentinel",
                AgentRules::unbounded(1000, 4_000_000_000).recipients(&[&back]),
            ),
    );
    let pid = signer.pid();
    std::thread::sleep(SETTLE);
    let fresh = Memory::of(pid);
    println!("vigil-signer, idle after start           {fresh}");

    let socket = signer.socket();
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let (socket, to) = (&socket, &to);
            s.spawn(move || {
                let mut client = Client::connect(socket, Duration::from_secs(30)).unwrap();
                for i in 0..BURST / CLIENTS {
                    let op = sign_op(
                        "trader",
                        transfer(to, 1, Network::Devnet),
                        &format!("m{c}-{i}"),
                        SOME_BLOCKHASH,
                    );
                    assert!(
                        client.call(op).unwrap().outcome.is_ok(),
                        "burst sign refused"
                    );
                }
            });
        }
    });
    std::thread::sleep(SETTLE);
    let after = Memory::of(pid);
    println!("vigil-signer, idle after {BURST} signatures {after}");
    signer.kill9();

    match SshAgent::start(dir.path()) {
        Ok(agent) => {
            for _ in 0..100 {
                agent.sign_once();
            }
            std::thread::sleep(SETTLE);
            println!(
                "ssh-agent, one ed25519 key, idle          {}",
                Memory::of(agent.pid())
            );
        }
        Err(e) => println!("ssh-agent reference skipped: {e}"),
    }

    let worst = fresh.rss_kib.max(after.rss_kib);
    println!();
    println!(
        "target: idle VmRSS {:.2} MiB (the larger of the two) vs 4 MiB → {}",
        mib(worst),
        if worst <= TARGET_KIB {
            "met"
        } else {
            "NOT met"
        }
    );
}

fn mib(kib: u64) -> f64 {
    // KiB counts of a process are far below 2^52: exact.
    #[allow(clippy::cast_precision_loss)]
    let kib = kib as f64;
    kib / 1024.0
}
