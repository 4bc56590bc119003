//! `vigil-signer`: the enclave of Vigil. It holds the agents' keys, enforces the signed
//! policy, builds and signs transactions itself, records every spend durably before a
//! signature leaves, and keeps a hash-chained audit log. It never opens a network socket.
//!
//! Start-up order and the trust argument: `docs/security-model.md`.

#![deny(unsafe_code)]

pub mod approval;
pub mod audit;
pub mod chains;
pub mod daemon;
pub mod devinit;
pub mod engine;
pub mod error;
pub mod import;
pub mod keys;
pub mod keystore;
pub mod ledger;
pub mod policy;
pub mod sandbox;
pub mod server;

pub use error::Error;
