//! `vigil`: the operator CLI. `vigil demo` runs the real, separate signer process and the
//! orchestrator's default agents on a throwaway dev state against an in-process Solana runtime,
//! printing what each layer allows, refuses and holds for the operator.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { keep } => demo::run(keep),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: {e:#}");
            ExitCode::FAILURE
        }
    }
}
