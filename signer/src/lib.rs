//! `vigil-signer`: the enclave of Vigil. It holds the agents' keys, enforces the signed
//! policy, builds and signs transactions itself, records every spend durably before a
//! signature leaves, and keeps a hash-chained audit log. It never opens a network socket.
//!
//! Start-up order and the trust argument: `docs/security-model.md`.

#![deny(unsafe_code)]

// The sub-APIs of the signer's own binaries and of the offline ceremony (`vigil-ceremony`
// writes keystores, signs policies and builds the stick's manifest with these very formats).
pub mod audit;
pub mod console;
pub mod daemon;
pub mod devinit;
pub mod import;
pub mod keyring;
pub mod keystore;
pub mod policy;
pub mod sandbox;

// Internal: the request engine and what it holds.
mod approval;
mod chains;
mod engine;
mod error;
mod keys;
mod ledger;
mod operator_events;
mod pause;
mod requests;
mod server;

pub use approval::{DEFAULT_GRANT_TTL_SECS, DEFAULT_TTL_SECS, STEP_SECS, code_matches};
pub use chains::solana::address_of as solana_address_of;
pub use error::Error;
pub use keys::{Ed25519Key, NewAgentKey, Secp256k1Key, new_agent_key};
pub use ledger::carry::MAX_TTL_SECS;
