//! The signer's error type: one enum for the crate, each module's failures folded in with
//! their context. Refusals on the socket are not errors of this type: they are protocol
//! responses carrying an `ErrorKind` and a `Rule` (see `engine`).

use std::path::PathBuf;

/// Anything that stops the signer from starting or from completing an operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The keystore could not be read, decrypted or written.
    #[error(transparent)]
    Keystore(#[from] crate::keystore::KeystoreError),
    /// The policy file or its signature is missing, malformed or not signed by the pinned key.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The audit log / ledger could not be opened, verified or appended.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The process could not be confined (seccomp, landlock, privileges, memory locking).
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// A file or directory the signer needs.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// Anything else, with a message that says what to do.
    #[error("{0}")]
    Other(String),
}
