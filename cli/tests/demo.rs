//! `vigil demo`, the README's main command, run as a user would: it must finish on its own,
//! show every layer at work (a paper fill, a layer-2 refusal of the injected instruction, an
//! action held for the operator, a live transfer landed on the in-process chain with the
//! operator's code carried by the approver peer, the same code refused from the orchestrator's
//! uid, a verifying audit chain), and leave no process behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn demo_runs_every_layer_and_leaves_nothing_running() {
    let signer = std::path::Path::new(env!("CARGO_BIN_EXE_vigil")).with_file_name("vigil-signer");
    assert!(
        signer.is_file(),
        "{} is missing: build the whole workspace first (tests/run does)",
        signer.display()
    );
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["demo", "--keep"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(took < Duration::from_secs(60), "demo took {took:?}");
    let approver_lines = [
        "the approver shows rq-",
        "confirmed in the approver's chat: paper fill recorded",
        "sends that valid code itself (a compromised orchestrator): approver_only",
        "an agent guesses the code 000000: approval_invalid_code",
        "the approver carries the operator's code (the same one: nothing was spent): {",
        "the same code again (replay): approval_used",
        "collects the grant: the same request, a fresh blockhash: SIGNED transfer 0.8 SOL",
        "→ Confirmed",
        "dev peer balance on chain: 0 SOL → 0.8 SOL",
    ];
    // The approver is a second uid: only a demo run as root has one.
    let root_only: &[&str] = if vigil_devnet::is_root() {
        &approver_lines
    } else {
        &["no second uid (run the demo as root to see the approver)"]
    };
    for expected in root_only.iter().copied().chain([
        "agent trader        solana:devnet ",
        "pins solana:devnet to genesis hash EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG",
        "a node of Solana mainnet-beta behind the RPC URL is refused",
        "ALERT 🚫 wrong network",
        "answers devnet's genesis hash",
        "labelled mainnet (trader has no mainnet key, the policy names none): policy_denied",
        "funded on chain: 10 SOL",
        "paper fill (all three layers allowed)",
        "layer 1 rejected a reply",
        "experimental  refused by layer 2 [PeerNotAllowed]",
        "needs the operator's approval (layer 3 threshold)",
        "on chain still 10 SOL",
        "audit-verify: {\"ok\": true",
        // EVM on paper: the signer's own exact approval before the supply, a cap refusal.
        "agent trader        evm:devnet ",
        "supply 100 USDC to the Aave Pool: ALLOW",
        "approve exactly 100 USDC (100000000 base units) to the Aave Pool 0xCe85503De9399D4dECa3c0b2bb3e9e7CFCBf9C6B; then supply 100 USDC",
        "on evm devnet (chain id 31337), nonces 0-1",
        "send 0.01 ETH to sentinel: ALLOW",
        "supply 5000 USDC (above the 1000 USDC per request): DENY [per_tx_cap]",
        // The deputy: a paper fill at the mark, the 0.5 ETH it proposes refused by its
        // position cap (0.4 held + 0.5), the crash closing it and the signer's pause.
        "paper fill (all three layers allowed): PAPER buy 0.4 ETH at",
        "refused by layer 2 [PerpPositionNotional]: the ETH position could reach 0.9 (now 0.4,",
        // Funding by the market's clock: two hours of the scripted rate on the long.
        "funding -0.16, net -2.67",
        "loss floor hit: equity",
        "trader paused = loss_floor",
    ]) {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    // The attacker's address never appears in anything that was signed or filled.
    for line in stdout.lines().filter(|l| {
        l.contains("SIGNED") || l.contains("signed and sent") || l.contains("paper fill")
    }) {
        assert!(
            !line.contains("9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"),
            "{line}"
        );
    }
    // Nothing left running on the demo's state dir (kept with --keep so it can be named).
    let kept = stdout
        .lines()
        .find_map(|l| l.strip_prefix("State kept in "))
        .and_then(|l| l.split(' ').next())
        .expect("the kept state dir is named");
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(kept))
        .collect();
    assert!(leftovers.is_empty(), "still running: {leftovers:?}");
    std::fs::remove_dir_all(kept).unwrap();
}
