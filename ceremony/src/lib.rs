//! `vigil-ceremony`: the offline key ceremony of Vigil. On an air-gapped machine it makes
//! the agents' keys, the policy key and the operator's approval secret from the OS CSPRNG,
//! enrols the approval secret in the operator's authenticator (QR code, code typed back),
//! signs the operator's policy, and writes the encrypted keystore, the signed policy and a
//! signed public manifest to a USB stick, which `vigil-signer import` checks on the
//! appliance. Guide: `docs/key-ceremony.md`.
//!
//! The keystore, policy and manifest formats are the signer's own (`vigil_signer::keystore`,
//! `vigil_signer::policy`, `vigil_signer::import::manifest`): nothing is re-implemented here.
//! `restore` rebuilds a keystore from the paper backup.

#![forbid(unsafe_code)]

pub mod backup;
pub mod config;
pub mod error;
pub mod network;
pub mod new;
pub mod output;
pub mod passphrase;
pub mod policy_sign;
pub mod qr;
pub mod restore;

pub use error::CeremonyError;
