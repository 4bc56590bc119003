//! `vigil`: the operator CLI. `vigil demo` runs the real, separate signer process and the
//! orchestrator's default agents on a throwaway dev state against an in-process Solana runtime,
//! printing what each layer allows, refuses and holds for the operator. `vigil market-recording`
//! writes a seeded local-market window (`vigil_devnet::hyperliquid`) as the recording a
//! proposal check replays.

#![forbid(unsafe_code)]

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Vigil: LLM agents with wallets, keys out of reach.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local demo: a dev keystore, the real signer, the agents on a local Solana runtime.
    Demo {
        /// Keep the demo's state dir instead of deleting it at the end.
        #[arg(long)]
        keep: bool,
    },
    /// Write a recorded market window for `vigil-orchestrator proposal check --recording`:
    /// the local market's seeded BTC/ETH path, hourly steps.
    MarketRecording {
        /// The path's seed (the same seed, the same window).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The largest move per step, basis points.
        #[arg(long, default_value_t = 50)]
        vol_bps: u32,
        /// How many hourly steps.
        #[arg(long, default_value_t = 168)]
        steps: u64,
        /// Where the JSON goes (written atomically).
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { keep } => demo::run(keep),
        Command::MarketRecording {
            seed,
            vol_bps,
            steps,
            out,
        } => market_recording(seed, vol_bps, steps, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the seeded path's first `steps` steps (from 2026-01-01) to `out`: a temp file
/// beside it, fsynced, renamed, the directory fsynced.
fn market_recording(
    seed: u64,
    vol_bps: u32,
    steps: u64,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    if !(1..=100_000).contains(&steps) {
        anyhow::bail!("--steps {steps}: give 1 to 100000 steps");
    }
    let path = vigil_devnet::hyperliquid::MarketPath::btc_eth(seed, vol_bps, 1_767_225_600_000);
    let json = serde_json::to_vec_pretty(&path.recording("testnet", steps))?;
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = dir.join(".market-recording.tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&json)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    println!(
        "{steps} steps of BTC and ETH (seed {seed}) written to {}",
        out.display()
    );
    Ok(())
}
