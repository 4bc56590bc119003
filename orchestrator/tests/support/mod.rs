//! Shared test support: the Solana node lives in `vigil-devnet` (a real Solana runtime behind
//! loopback JSON-RPC, also the chain of `vigil demo`); `signer` starts a real confined signer.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub mod signer;
pub mod telegram;

pub use vigil_devnet::{Mode, SolanaNode};
