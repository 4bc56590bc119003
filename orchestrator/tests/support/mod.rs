//! Shared test support: the Solana node lives in `vigil-devnet` (a real Solana runtime behind
//! loopback JSON-RPC, also the chain of `vigil demo`); `signer` starts a real confined signer;
//! `live` builds a live Trader orchestrator on it; `adversary` is an obedient adversarial LLM;
//! `corpus` is the prompt-injection corpus and its seeded sample; `telegram` the Bot API emulator.

// `pub` is this support's API across the test crates that include it (unreachable from each).
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

pub mod adversary;
pub mod corpus;
pub mod live;
pub mod signer;
pub mod telegram;

pub use vigil_devnet::{Mode, SolanaNode};
