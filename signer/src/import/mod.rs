//! Importing a key-ceremony stick on the appliance: `vigil-signer import <stick>`.
//!
//! The stick is checked in full before anything on the appliance changes: the manifest's
//! signature by the policy key it names, every listed file's size and SHA-256, that nothing
//! unlisted sits in `keystore/` or `policy/`, that the keystore holds exactly the manifest's
//! agents (and the approval secret and the pin of that same policy key), and that the policy
//! is signed by that key. Every refusal is its own [`ImportError`] variant with a message
//! that says what to do.
//!
//! A stick that passes is STAGED (by default `/var/lib/vigil-import/staged`, the importer's
//! own dir; written in a temp dir and renamed into place, never over an earlier staged copy),
//! not installed: the import is finished only when the operator confirms the fingerprints with
//! a code from the authenticator enrolled at THIS ceremony, which proves the person confirming
//! holds the new approval secret; replacing keys the appliance already has needs the CURRENT
//! authority too (a code of the current authenticator, or a manifest signed by the pinned
//! policy key), and a first install is confirmed at the appliance's console. The codes are
//! checked in one place, the engine (`engine/import.rs`).
//!
//! - `manifest`: the manifest format (shared with `vigil-ceremony`).
//! - `stage`: staging, reading back, discarding and applying a staged copy.
//! - `live`: the running signer's side (`import_status`, `import_confirm`, applying at start).
//! - `console`: `vigil-signer import-confirm`, the engine run in process with the signer
//!   stopped, recorded in the audit log like the socket's confirmation.

pub mod bounds;
pub mod console;
pub mod live;
pub mod manifest;
pub mod stage;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, VerifyingKey};
use vigil_protocol::{AgentId, Chain, Network};

use crate::keystore::{self, AgentKeyId, KdfParams, KeystoreError, Purpose};
use crate::policy::{self, PolicyError};
use manifest::{
    KEYSTORE_DIR, MANIFEST_FILE, MANIFEST_SIG_FILE, MAX_MANIFEST_LEN, Manifest, POLICY_DIR,
};

pub use stage::{
    DEFAULT_STAGING_DIR, ImportStatus, StageOptions, StagedCopy, discard, read_staged, stage,
    status,
};

/// Why a stick was not imported, or a staged import not confirmed. Nothing on the appliance
/// has changed when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// No `manifest.json`: an empty stick, or the wrong directory.
    #[error(
        "{} has no {MANIFEST_FILE}: this is not a Vigil ceremony stick (empty, or the wrong directory); give the directory vigil-ceremony wrote to (the stick's root)", .0.display()
    )]
    NoManifest(PathBuf),
    /// A file could not be read.
    #[error("cannot read {}: {}; check the stick is mounted and readable", .0.display(), .1)]
    Read(PathBuf, std::io::Error),
    /// A file larger than anything a ceremony writes (its limit in bytes).
    #[error("{} is larger than {} bytes: no ceremony file of its kind is this large; the stick is not a ceremony stick or was tampered with", .0.display(), .1)]
    TooLarge(PathBuf, u64),
    /// A fingerprint in the manifest is not the one of the key beside it.
    #[error(
        "the manifest gives {what} the fingerprint {listed}, but the key's own fingerprint is {computed}: the fingerprints on this stick were made up; do not use it, run the ceremony again"
    )]
    FingerprintMismatch {
        /// Which key.
        what: String,
        /// The fingerprint the manifest lists.
        listed: String,
        /// The fingerprint computed from the key.
        computed: String,
    },
    /// The manifest is not valid.
    #[error(
        "{MANIFEST_FILE} is not a valid ceremony manifest: {0}; re-copy the stick from the ceremony machine"
    )]
    BadManifest(String),
    /// No `manifest.json.sig`.
    #[error(
        "{MANIFEST_SIG_FILE} is missing: the manifest must be signed by the ceremony's policy key; copy the whole stick as the ceremony wrote it"
    )]
    NoManifestSignature,
    /// The manifest's signature does not verify under the key it names.
    #[error(
        "the signature in {MANIFEST_SIG_FILE} does not verify over {MANIFEST_FILE} with the policy key it names: the manifest was altered after the ceremony; do not use this stick, run the ceremony again"
    )]
    BadManifestSignature,
    /// A file listed in the manifest is not on the stick.
    #[error(
        "{0} is listed in the manifest but missing from the stick: the copy is incomplete; write the stick again at the ceremony"
    )]
    MissingFile(String),
    /// A listed file is shorter than the manifest says and does not match: a cut-off copy.
    #[error(
        "{path} is truncated: {got} of {expected} bytes (an interrupted copy or a full stick); write the stick again at the ceremony"
    )]
    Truncated {
        /// The file, relative to the stick.
        path: String,
        /// Its length on the stick.
        got: u64,
        /// The length the manifest records.
        expected: u64,
    },
    /// A keystore entry from another ceremony (or another agent) in a listed file's place.
    #[error(
        "{path} was swapped: it holds {found}, but the manifest records {expected}; this stick mixes files of different ceremonies, do not use it"
    )]
    Swapped {
        /// The file, relative to the stick.
        path: String,
        /// What the file holds.
        found: String,
        /// What the manifest records.
        expected: String,
    },
    /// A listed file's SHA-256 does not match.
    #[error(
        "{0} was altered after the ceremony: its SHA-256 is not the one in the signed manifest; do not use this stick"
    )]
    Altered(String),
    /// A file in `keystore/` or `policy/` that the manifest does not list.
    #[error(
        "{0} is on the stick but not in the signed manifest: someone added it after the ceremony; remove it only if you know where it came from, else do not use this stick"
    )]
    Unlisted(String),
    /// The manifest's files do not make a keystore of exactly its agents.
    #[error(
        "the keystore on the stick does not match the manifest's agents: {0}; run the ceremony again"
    )]
    AgentsMismatch(String),
    /// A keystore entry could not be parsed.
    #[error("{0}")]
    Entry(#[from] KeystoreError),
    /// The keystore pins another policy key than the manifest names.
    #[error(
        "keystore/policy.pin pins policy key {found}, but the manifest was signed by {expected}: the keystore belongs to another ceremony; do not use this stick"
    )]
    PinMismatch {
        /// The key in the pin.
        found: String,
        /// The manifest's key.
        expected: String,
    },
    /// The policy is not signed by the manifest's policy key.
    #[error(
        "the policy is not signed by the manifest's policy key ({0}); re-sign it with `vigil-ceremony policy sign` and the ceremony's policy key"
    )]
    PolicyNotSigned(PolicyError),
    /// The policy digest differs from the manifest's.
    #[error(
        "policy/policy.toml has digest {found}, but the manifest records {expected}; write the stick again at the ceremony"
    )]
    PolicyDigest {
        /// The digest of the file.
        found: String,
        /// The manifest's digest.
        expected: String,
    },
    /// The appliance already has a keystore and `--replace` was not given.
    #[error("{} already holds a keystore: importing would replace the agents' keys; if that is what you want, run the import again with --replace (confirming it then also needs a code of the CURRENT authenticator; the old keys are kept under imports/)", .0.display())]
    KeystoreExists(PathBuf),
    /// Another stick is staged already: a staged copy is never overwritten.
    #[error("a key-ceremony import is already staged in {} (manifest digest {digest}): a staged copy is never overwritten; confirm it, or remove it with `vigil-signer import-discard --manifest-digest <its digest>`, then import this stick again", .staged.display())]
    AlreadyStaged {
        /// The staged copy.
        staged: PathBuf,
        /// Its manifest digest (or why it cannot be read).
        digest: String,
    },
    /// The stick's keystore is encrypted with development KDF parameters.
    #[error("the stick's keystore is encrypted with {0}, development parameters weaker than production ({prod}): a stick for money is made without --insecure-test-kdf; for a development appliance only, import it with --insecure-allow-dev-kdf", prod = KdfParams::PRODUCTION)]
    DevKdf(KdfParams),
    /// Writing the staged copy or applying it failed.
    #[error("cannot write {}: {}; nothing was installed, fix the cause and import again", .0.display(), .1)]
    Write(PathBuf, std::io::Error),
    /// Nothing is staged where it was looked for.
    #[error("no import is staged in {}: run `vigil-signer import <stick>` first (and check --staging-dir)", .0.display())]
    NothingStaged(PathBuf),
    /// The operator confirmed another manifest than the staged one.
    #[error(
        "the staged import's manifest digest is {staged}, not {given}: the fingerprints you confirmed are not those of the staged stick; check them again"
    )]
    DigestMismatch {
        /// The staged manifest's digest.
        staged: String,
        /// The digest given.
        given: String,
    },
    /// Anything else, with what to do.
    #[error("{0}")]
    Other(String),
}

/// A stick that passed every check, with the bytes that were checked (so what is staged is
/// exactly what was verified, even if the stick changes meanwhile).
#[derive(Debug)]
pub struct Verified {
    /// The parsed, signature-checked manifest.
    pub manifest: Manifest,
    /// The manifest's exact bytes.
    pub manifest_bytes: Vec<u8>,
    /// Its signature file's bytes.
    pub signature_bytes: Vec<u8>,
    /// SHA-256 of the manifest bytes, hex: what the operator confirms.
    pub manifest_digest: String,
    /// Every listed file, path relative to the stick → bytes.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Checks a stick (or a staged copy) as described in the module docs; reads nothing outside
/// `manifest.json[.sig]`, `keystore/` and `policy/` (a kept policy key is never read).
pub fn verify(dir: &Path) -> Result<Verified, ImportError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_bytes = match read_bounded(&manifest_path, MAX_MANIFEST_LEN) {
        Err(ImportError::Read(_, e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImportError::NoManifest(dir.to_path_buf()));
        }
        other => other?,
    };
    let manifest = Manifest::parse(&manifest_bytes).map_err(ImportError::BadManifest)?;
    let signature_bytes =
        match read_bounded(&dir.join(MANIFEST_SIG_FILE), bounds::MAX_SIGNATURE_LEN) {
            Err(ImportError::Read(_, e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImportError::NoManifestSignature);
            }
            other => other?,
        };
    let key_bytes = manifest
        .policy_key_bytes()
        .map_err(ImportError::BadManifest)?;
    let policy_key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|_| ImportError::BadManifest("policy_key is not an Ed25519 key".into()))?;
    let sig = parse_signature(&signature_bytes).ok_or(ImportError::BadManifestSignature)?;
    policy_key
        .verify_strict(&manifest::signing_message(&manifest_bytes), &sig)
        .map_err(|_| ImportError::BadManifestSignature)?;

    // From here on the manifest is what the holder of the policy key wrote, which may be
    // anyone: bound what it makes us read before reading it, and check its fingerprints.
    bounds::check_shape(&manifest)?;
    bounds::check_fingerprints(&manifest, &key_bytes)?;
    let files = read_listed_files(dir, &manifest)?;
    check_no_unlisted(dir, &manifest)?;
    check_keystore(&manifest, &files, &key_bytes)?;
    let policy = check_policy(&manifest, &files, &policy_key)?;
    // The signer binds each key to its network at start: refuse now a stick it would refuse.
    let keys: Vec<AgentKeyId> = manifest
        .agents
        .iter()
        .map(|a| AgentKeyId {
            agent: a.agent.clone(),
            chain: a.chain,
            network: a.network,
            role: a.role,
        })
        .collect();
    crate::keyring::bind_networks(&keys, &policy).map_err(ImportError::AgentsMismatch)?;
    Ok(Verified {
        manifest_digest: manifest::sha256_hex(&manifest_bytes),
        manifest,
        manifest_bytes,
        signature_bytes,
        files,
    })
}

/// Reads each listed file and checks its size and digest; a mismatch is classified as
/// truncated, swapped or altered.
fn read_listed_files(
    dir: &Path,
    manifest: &Manifest,
) -> Result<BTreeMap<String, Vec<u8>>, ImportError> {
    let by_file: BTreeMap<String, &manifest::AgentInfo> = manifest
        .agents
        .iter()
        .map(|a| {
            let purpose = Purpose::AgentKey {
                agent: a.agent.clone(),
                chain: a.chain,
                network: a.network,
                role: a.role,
            };
            (manifest::keystore_path(&purpose), a)
        })
        .collect();
    let mut out = BTreeMap::new();
    for (rel, info) in &manifest.files {
        let path = dir.join(rel);
        // At most one byte more than the manifest says: enough to tell a longer file apart.
        let bytes = match read_bounded(&path, info.size.saturating_add(1)) {
            Err(ImportError::Read(_, e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImportError::MissingFile(rel.clone()));
            }
            other => other?,
        };
        if manifest::sha256_hex(&bytes) == info.sha256 && bytes.len() as u64 == info.size {
            out.insert(rel.clone(), bytes);
            continue;
        }
        // Which kind of mismatch: an entry that parses and names another key was swapped in;
        // a short file that does not parse was cut off; anything else was edited.
        if let Some(entry) = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| keystore::inspect_entry(&path, t).ok())
        {
            let expected = by_file
                .get(rel)
                .map(|a| format!("{} key {}", a.agent, a.address))
                .unwrap_or_else(|| "another entry".to_owned());
            let found = match &entry.purpose {
                Purpose::AgentKey { agent, .. } => format!("{agent} key {}", entry.public),
                other => format!("{other} {}", entry.public),
            };
            if found != expected {
                return Err(ImportError::Swapped {
                    path: rel.clone(),
                    found,
                    expected,
                });
            }
        } else if (bytes.len() as u64) < info.size {
            return Err(ImportError::Truncated {
                path: rel.clone(),
                got: bytes.len() as u64,
                expected: info.size,
            });
        }
        return Err(ImportError::Altered(rel.clone()));
    }
    Ok(out)
}

/// Nothing but the listed files in `keystore/` and `policy/` (a stray entry would be loaded
/// by the signer, so it must have been signed for).
fn check_no_unlisted(dir: &Path, manifest: &Manifest) -> Result<(), ImportError> {
    for sub in [KEYSTORE_DIR, POLICY_DIR] {
        let d = dir.join(sub);
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ImportError::Read(d, e)),
        };
        for item in entries {
            let item = item.map_err(|e| ImportError::Read(d.clone(), e))?;
            let rel = format!("{sub}/{}", item.file_name().to_string_lossy());
            if !manifest.files.contains_key(&rel) {
                return Err(ImportError::Unlisted(rel));
            }
        }
    }
    Ok(())
}

/// The keystore files are exactly: one agent key per manifest agent (with its address), the
/// approval secret, and the pin of the manifest's policy key. All encrypted with the
/// manifest's KDF parameters (which are within the signer's bounds).
fn check_keystore(
    manifest: &Manifest,
    files: &BTreeMap<String, Vec<u8>>,
    policy_key: &[u8; 32],
) -> Result<(), ImportError> {
    type KeyRow = (
        AgentId,
        Chain,
        Option<Network>,
        Option<crate::keystore::KeyRole>,
        String,
    );
    let mut agents: BTreeSet<KeyRow> = BTreeSet::new();
    let (mut approval, mut pin) = (false, None);
    for (rel, bytes) in files {
        let Some(name) = rel.strip_prefix("keystore/") else {
            continue;
        };
        let path = PathBuf::from(rel);
        let text = std::str::from_utf8(bytes).map_err(|_| KeystoreError::Malformed {
            path: path.clone(),
            reason: "it is not UTF-8 text".into(),
        })?;
        let info = keystore::inspect_entry(&path, text)?;
        if info.params != manifest.kdf {
            return Err(ImportError::AgentsMismatch(format!(
                "{rel} is encrypted with {}, the manifest records {}",
                info.params, manifest.kdf
            )));
        }
        if keystore::entry_file_name(&info.purpose) != name {
            return Err(ImportError::AgentsMismatch(format!(
                "{rel} holds {}, which belongs under another name",
                info.purpose
            )));
        }
        match info.purpose {
            Purpose::AgentKey {
                agent,
                chain,
                network,
                role,
            } => {
                agents.insert((agent, chain, network, role, info.public));
            }
            Purpose::ApprovalSecret => approval = true,
            Purpose::PolicyPin => pin = Some(info.public),
            Purpose::PolicyKey => {
                return Err(ImportError::AgentsMismatch(format!(
                    "{rel} is the policy SIGNING key, which must never be on the appliance"
                )));
            }
        }
    }
    let wanted: BTreeSet<KeyRow> = manifest
        .agents
        .iter()
        .map(|a| {
            (
                a.agent.clone(),
                a.chain,
                a.network,
                a.role,
                a.address.clone(),
            )
        })
        .collect();
    if agents != wanted {
        let show = |s: &BTreeSet<KeyRow>| {
            s.iter()
                .map(|(a, c, n, _, addr)| match n {
                    Some(n) => format!("{a} ({c}:{n} {addr})"),
                    None => format!("{a} ({c} {addr})"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(ImportError::AgentsMismatch(format!(
            "it holds [{}], the manifest names [{}]",
            show(&agents),
            show(&wanted)
        )));
    }
    if wanted.is_empty() {
        return Err(ImportError::AgentsMismatch(
            "the manifest names no agent".into(),
        ));
    }
    if !approval {
        return Err(ImportError::AgentsMismatch(
            "there is no approval secret (keystore/approval.key)".into(),
        ));
    }
    let expected = hex::encode(policy_key);
    match pin {
        None => Err(ImportError::AgentsMismatch(
            "there is no policy key pin (keystore/policy.pin)".into(),
        )),
        Some(found) if found != expected => Err(ImportError::PinMismatch { found, expected }),
        Some(_) => Ok(()),
    }
}

/// The policy's signature verifies under the manifest's key, and its digest is the
/// manifest's `policy_digest`. Uses the signer's own loader, so what passes here loads there.
fn check_policy(
    manifest: &Manifest,
    files: &BTreeMap<String, Vec<u8>>,
    key: &VerifyingKey,
) -> Result<policy::Policy, ImportError> {
    let policy_rel = format!("{POLICY_DIR}/{}", policy::POLICY_FILE);
    let sig_rel = format!("{POLICY_DIR}/{}", policy::SIGNATURE_FILE);
    for rel in [&policy_rel, &sig_rel] {
        if !files.contains_key(rel) {
            return Err(ImportError::BadManifest(format!("it does not list {rel}")));
        }
    }
    let policy_bytes = files
        .get(&policy_rel)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let sig_bytes = files.get(&sig_rel).map(Vec::as_slice).unwrap_or_default();
    // The same checks, in the same order, as the signer's `policy::load_signed` at start.
    let sig = parse_signature(sig_bytes).ok_or_else(|| {
        ImportError::PolicyNotSigned(PolicyError::SignatureNotHex(
            PathBuf::from(&sig_rel),
            "not 128 hex digits".into(),
        ))
    })?;
    key.verify_strict(&policy::signing_message(policy_bytes), &sig)
        .map_err(|_| {
            ImportError::PolicyNotSigned(PolicyError::BadSignature(PathBuf::from(&sig_rel)))
        })?;
    let loaded = policy::parse(policy_bytes)
        .map_err(|e| ImportError::Other(format!("the policy on the stick is not valid: {e}")))?;
    if loaded.digest_hex() != manifest.policy_digest {
        return Err(ImportError::PolicyDigest {
            found: loaded.digest_hex(),
            expected: manifest.policy_digest.clone(),
        });
    }
    Ok(loaded)
}

/// Hex of 64 bytes with an optional trailing newline.
fn parse_signature(bytes: &[u8]) -> Option<Signature> {
    let text = std::str::from_utf8(bytes).ok()?;
    let raw = hex::decode(text.trim_end_matches(['\n', '\r'])).ok()?;
    let arr: [u8; 64] = raw.as_slice().try_into().ok()?;
    Some(Signature::from_bytes(&arr))
}

/// Reads a regular file (no symlink, no FIFO) of at most `limit` bytes.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ImportError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| ImportError::Read(path.to_path_buf(), e))?;
    let meta = file
        .metadata()
        .map_err(|e| ImportError::Read(path.to_path_buf(), e))?;
    if !meta.is_file() {
        return Err(ImportError::Read(
            path.to_path_buf(),
            std::io::Error::other("not a regular file"),
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ImportError::Read(path.to_path_buf(), e))?;
    if bytes.len() as u64 > limit {
        return Err(ImportError::TooLarge(path.to_path_buf(), limit));
    }
    Ok(bytes)
}
