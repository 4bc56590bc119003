//! `vigil-approver`: the one process that carries an operator's code to the signer.
//!
//! It has one job: show the operator exactly what the signer is about to do, and carry the
//! operator's answer back for exactly that request. It polls the signer's `awaiting` (what
//! waits for a code, with the summaries the *signer* rendered) and `events` (what the journal
//! recorded), posts each item once to every operator's private chat with its own Telegram
//! bot, and takes a code only as a reply to such a message: the message replied to decides
//! which request the code answers ([`state`] maps the bot's message ids to request ids,
//! durably, so a restart loses nothing). It runs no agent, holds no LLM, reads none of the
//! orchestrator's state, and the signer refuses a code from any other peer
//! (`docs/protocol.md`, "Roles").
//!
//! Modules: [`config`] (the TOML file and the token credential), [`confine`] (its walls:
//! seccomp table and landlock rules for the shared `vigil-sandbox`), [`state`] (the durable
//! message map and the announcement cursor), [`rules`] (what an operator's message means:
//! pure, tested by tables), [`signer`] (the socket calls), [`telegram`] (the bot and the poll
//! loop).

#![forbid(unsafe_code)]

pub mod config;
pub mod confine;
pub mod rules;
pub mod signer;
pub mod state;
pub mod telegram;

pub use config::{Config, read_token};
pub use state::Store;

use std::path::PathBuf;

/// Everything that can go wrong in the approver, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ApproverError {
    /// The config file cannot be read.
    #[error("cannot read the config {0}: {1}; give --config or VIGIL_APPROVER_CONFIG")]
    ReadConfig(PathBuf, std::io::Error),
    /// The config file is not valid.
    #[error("config {0}: {1}")]
    Config(PathBuf, String),
    /// No bot token credential.
    #[error(
        "no Telegram bot token: the systemd credential {0:?} is not in $CREDENTIALS_DIRECTORY; \
         add LoadCredential={0}:<file> (or LoadCredentialEncrypted=) to vigil-approver.service \
         and start it again (docs/operator-guide.md, \"The approver's bot\")"
    )]
    NoToken(String),
    /// The token credential exists but cannot be used.
    #[error("the bot token credential {0} is unusable: {1}")]
    Token(PathBuf, String),
    /// The state file cannot be read or written.
    #[error("approver state {0}: {1}")]
    State(PathBuf, String),
    /// The signer could not be reached or answered something unusable.
    #[error("signer at {0}: {1}")]
    Signer(PathBuf, String),
    /// A wall could not be raised: the approver does not run unconfined.
    #[error("confinement: {0}")]
    Sandbox(#[from] vigil_sandbox::SandboxError),
    /// The Bot API could not be used.
    #[error("Telegram Bot API: {0}")]
    Telegram(String),
}

/// Unix seconds now (0 if the clock is before 1970: every deadline then looks far away,
/// and the signer, which keeps its own clock, still decides).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
