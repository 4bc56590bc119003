//! Why the keystore could not be read, decrypted or written. Every message names the file
//! and says what the operator should do about it.

use std::path::{Path, PathBuf};

use super::KdfParams;

/// A keystore failure, with the file it concerns and the reason.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// A file or directory could not be read.
    #[error("could not read {}: {source}; check that it exists and that the signer's user may read it", .path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("could not write {}: {source}; check that the directory exists, is writable and has free space", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An entry is already there; keys are never overwritten.
    #[error("{} already exists: refusing to overwrite a keystore entry (a lost key cannot be recovered); move it away first if you really mean to replace it", .0.display())]
    EntryExists(PathBuf),
    /// A key or passphrase file others may read or write.
    #[error("{} has mode {mode:04o}, so other users may read or change it: run `chmod 600 {}`", .path.display(), .path.display())]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a regular file (a symlink, directory, FIFO, device).
    #[error("{} is not a regular file: keystore entries and passphrase files must be plain files (no symlinks, FIFOs or directories)", .0.display())]
    NotRegularFile(PathBuf),
    /// A file larger than any keystore entry or passphrase.
    #[error("{} is larger than {limit} bytes, far more than a keystore entry or passphrase: check that the right file was given", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The size limit.
        limit: usize,
    },
    /// Not valid keystore JSON, or a field with a bad value.
    #[error("{} is not a valid Vigil keystore entry: {reason}; restore it from the ceremony backup", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A format version this signer does not read.
    #[error("{} has keystore format version {found}, but this signer reads versions {} and {}: use a matching signer release", .path.display(), super::FORMAT_V1, super::FORMAT_VERSION)]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// A KDF or cipher this signer does not implement.
    #[error("{} uses {what} {name:?}, but this signer only supports {supported:?}: the file was made by another tool or altered", .path.display())]
    UnknownAlgorithm {
        /// The file.
        path: PathBuf,
        /// "kdf" or "cipher".
        what: &'static str,
        /// The name found.
        name: String,
        /// The one name supported.
        supported: &'static str,
    },
    /// scrypt parameters outside the bounds the signer will run.
    #[error("{}{params} is out of bounds ({reason}): refusing to run the KDF; the file is corrupt or was crafted to exhaust memory, restore it from the ceremony backup", at(.path.as_deref()))]
    KdfOutOfBounds {
        /// The file, when the parameters came from one.
        path: Option<PathBuf>,
        /// The parameters.
        params: KdfParams,
        /// The bound broken.
        reason: String,
    },
    /// Refused to make a master key with parameters weaker than production.
    #[error(
        "refusing to encrypt a keystore with {params}, weaker than production ({}): use KdfParams::PRODUCTION (insecure_allow_weak_kdf is for tests and dev-init only)",
        KdfParams::PRODUCTION
    )]
    WeakKdf {
        /// The parameters refused.
        params: KdfParams,
    },
    /// Entries of one keystore that are not under one master key (format 2 entries of
    /// different ceremonies, or format 1 and format 2 entries mixed).
    #[error("{} was not encrypted with the same master key as the other entries of the keystore ({reason}): a keystore is made whole by one ceremony or dev-init; restore the whole keystore from its ceremony stick", .path.display())]
    MixedKeys {
        /// The entry that does not fit.
        path: PathBuf,
        /// How it differs.
        reason: String,
    },
    /// A subkey label outside the allowed alphabet.
    #[error("subkey label {0:?} is not 1-64 characters of a-z 0-9 . - _")]
    BadSubkeyLabel(String),
    /// Wrong passphrase, or authentication of the file failed.
    #[error("could not decrypt {}: wrong passphrase, or the file was altered or belongs to another agent or network", .0.display())]
    Decrypt(PathBuf),
    /// The decrypted secret does not fit its purpose or its public part.
    #[error("{}: {reason}; restore it from the ceremony backup", .path.display())]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },
    /// A secret handed to `write_entry` that does not fit its purpose.
    #[error("cannot write {}: {reason}", .path.display())]
    BadSecret {
        /// The file that would have been written.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A file in the keystore directory that is not an entry.
    #[error("unexpected file {} in the keystore directory: only *.key and *.pin entries belong there; move it elsewhere", .0.display())]
    UnexpectedFile(PathBuf),
    /// An entry under a name that is not its own.
    #[error("{} holds {found}, whose file name is {expected:?}: the file was renamed or copied over another entry; restore it from the ceremony backup", .path.display())]
    WrongFileName {
        /// The file.
        path: PathBuf,
        /// What the entry holds.
        found: String,
        /// The name it should have.
        expected: String,
    },
    /// A required entry is missing from the keystore directory.
    #[error("the keystore in {} has no {missing}: import the complete keystore from the ceremony stick", .dir.display())]
    Incomplete {
        /// The keystore directory.
        dir: PathBuf,
        /// What is missing.
        missing: &'static str,
    },
    /// No passphrase source.
    #[error(
        "no keystore passphrase: give a passphrase file readable only by its owner (chmod 600) with --passphrase-file FILE, \
         or run under systemd with LoadCredential={cred}:<path> (or LoadCredentialEncrypted={cred}:<path>) so that it appears as \
         $CREDENTIALS_DIRECTORY/{cred}",
        cred = super::PASSPHRASE_CREDENTIAL
    )]
    NoPassphrase,
    /// The passphrase file is empty (after one trailing newline).
    #[error("the passphrase in {} is empty: write the keystore passphrase into it", .0.display())]
    EmptyPassphrase(PathBuf),
    /// The passphrase file is not UTF-8.
    #[error("the passphrase in {} is not valid UTF-8: write the passphrase as UTF-8 text", .0.display())]
    PassphraseNotUtf8(PathBuf),
    /// scrypt refused its (already bounds-checked) parameters (not expected to happen).
    #[error("scrypt refused its parameters: {0}")]
    Kdf(String),
    /// The OS random number generator failed.
    #[error("the OS random number generator failed: {0}; the signer cannot make a salt or nonce")]
    Random(getrandom::Error),
}

/// "<path>: " or nothing, to open a message.
fn at(path: Option<&Path>) -> String {
    path.map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}
