//! The ceremony's error type: one enum, each variant saying what went wrong and what to do.
//! When one is returned, nothing has been written to the stick.

use std::path::PathBuf;

/// Why the ceremony (or `policy sign`) stopped.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    /// A file could not be read.
    #[error("cannot read {}: {}", .0.display(), .1)]
    Read(PathBuf, std::io::Error),
    /// A file could not be written.
    #[error("cannot write {}: {}; nothing was left half-written, fix the cause and run again", .0.display(), .1)]
    Write(PathBuf, std::io::Error),
    /// The ceremony config is not valid.
    #[error("{}: {}", .0.display(), .1)]
    Config(PathBuf, String),
    /// A network interface is up, or a radio is not blocked.
    #[error(
        "this machine is not air-gapped: {}. The ceremony must run offline: unplug the cable, take the \
         interface down (`ip link set <name> down`), block every radio (`rfkill block all`), or boot the \
         ceremony image, which has no network; then run again. Only if you accept that the keys are born \
         on a networked machine, pass --i-know-this-is-online (recorded in the manifest)",
        .0.join(", ")
    )]
    Online(Vec<String>),
    /// The passphrase is too weak, or the two entries differ.
    #[error("{0}")]
    Passphrase(String),
    /// The policy is not valid, or does not fit the ceremony's agents.
    #[error("the policy cannot be signed: {0}")]
    Policy(String),
    /// The operator declined, or could not type a matching code.
    #[error("{0}")]
    Aborted(String),
    /// The output directory already holds a ceremony.
    #[error("{} already holds {}: refusing to overwrite the output of an earlier ceremony; use an empty stick", .0.display(), .1)]
    OutputNotEmpty(PathBuf, String),
    /// The keystore, policy or manifest code of the signer refused.
    #[error(transparent)]
    Signer(#[from] vigil_signer::Error),
    /// A keystore operation failed.
    #[error(transparent)]
    Keystore(#[from] vigil_signer::keystore::KeystoreError),
    /// Anything else, with what to do.
    #[error("{0}")]
    Other(String),
}
