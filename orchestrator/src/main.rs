//! `vigil`: the operator CLI. Until the orchestrator lands (issue 4), `vigil demo` runs the
//! real, separate signer process on a throwaway dev state dir and walks through what it
//! allows, refuses and holds for the operator, printing each answer.

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
    /// Run a local demo: a dev keystore, the real signer process, and scripted requests.
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
