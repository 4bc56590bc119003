//! Staging a verified stick and confirming it.
//!
//! `stage` writes the checked bytes into `<state>/.import-staged.tmp-*`, fsyncs them and
//! renames the directory to `<state>/import-staged/` (replacing an earlier, unconfirmed
//! staging). Nothing the running signer reads changes.
//!
//! `confirm` checks the staged copy again, unlocks it with the keystore passphrase (so a
//! stick made with another passphrase is caught before the signer would fail to start),
//! checks the operator's code against the STAGED approval secret, and only then moves
//! `keystore/` and `policy/` into place. The previous ones are kept, with the manifest, in
//! `<state>/imports/<time>-<digest>/`: keys are never deleted by an import.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use vigil_protocol::{AgentId, Chain, OperatorCode};

use super::manifest::{KEYSTORE_DIR, MANIFEST_FILE, MANIFEST_SIG_FILE, POLICY_DIR};
use super::{ImportError, Verified, verify};
use crate::devinit::layout;
use crate::{approval, keystore};

/// The staged import inside the state dir.
pub const STAGED_DIR: &str = "import-staged";
/// Records of applied imports (manifest, previous keystore and policy) inside the state dir.
pub const IMPORTS_DIR: &str = "imports";
/// Staging metadata (not part of the stick): whether `--replace` was given.
const STAGE_META: &str = "import.json";

/// What is staged, for the operator to compare with the ceremony's printout (and for the
/// `import_status` op, see `docs/protocol.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportStatus {
    /// Whether an import is staged.
    pub staged: bool,
    /// SHA-256 of the staged manifest (hex): what `confirm` asks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// The staged agents.
    pub agents: Vec<AgentStatus>,
    /// The staged policy's digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    /// Fingerprint of the policy key that signed the manifest and the policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_key_fingerprint: Option<String>,
    /// When the ceremony ran (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<u64>,
    /// Whether the ceremony ran with a network interface up.
    pub online_override: bool,
    /// Whether confirming replaces an existing keystore.
    pub replace: bool,
}

/// One staged agent key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentStatus {
    /// The agent.
    pub agent: AgentId,
    /// Its chain.
    pub chain: Chain,
    /// Its address.
    pub address: String,
    /// Its key fingerprint.
    pub fingerprint: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageMeta {
    replace: bool,
}

/// Verifies `stick` and stages it in `state` (see the module docs). Refuses, changing
/// nothing, if the stick fails any check or `state` already holds a keystore and `replace`
/// is false.
pub fn stage(stick: &Path, state: &Path, replace: bool) -> Result<ImportStatus, ImportError> {
    let verified = verify(stick)?;
    refuse_existing_keystore(state, replace)?;
    if !state.exists() {
        make_private_dir(state)?;
    }
    let tmp = state.join(format!(".{STAGED_DIR}.tmp-{}", random_hex()?));
    let written = write_staging(&tmp, &verified, replace).and_then(|()| {
        chown_like(&tmp, state)?;
        let staged = state.join(STAGED_DIR);
        if staged.exists() {
            fs::remove_dir_all(&staged).map_err(|e| ImportError::Write(staged.clone(), e))?;
        }
        fs::rename(&tmp, &staged).map_err(|e| ImportError::Write(staged.clone(), e))?;
        sync_dir(state)
    });
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(status_of(&verified, replace))
}

/// What is staged in `state`, checked again (a staged copy that no longer verifies is an error).
pub fn status(state: &Path) -> Result<ImportStatus, ImportError> {
    let staged = state.join(STAGED_DIR);
    if !staged.exists() {
        return Ok(ImportStatus::default());
    }
    let verified = verify(&staged)?;
    Ok(status_of(&verified, read_meta(&staged)?.replace))
}

/// Confirms the staged import (see the module docs) and returns the record directory that
/// holds the manifest and whatever keystore and policy it replaced.
pub fn confirm(
    state: &Path,
    manifest_digest: &str,
    code: &OperatorCode,
    passphrase: &SecretString,
    now: u64,
) -> Result<PathBuf, ImportError> {
    let staged = state.join(STAGED_DIR);
    if !staged.exists() {
        return Err(ImportError::NothingStaged(state.to_path_buf()));
    }
    let verified = verify(&staged)?;
    let given: String = manifest_digest
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if given != verified.manifest_digest {
        return Err(ImportError::DigestMismatch {
            staged: verified.manifest_digest,
            given,
        });
    }
    let meta = read_meta(&staged)?;
    refuse_existing_keystore(state, meta.replace)?;

    // Decrypting everything proves the passphrase the appliance holds opens the new keys.
    let unlocked = keystore::unlock(&staged.join(KEYSTORE_DIR), passphrase)?;
    let key = verified
        .manifest
        .policy_key_bytes()
        .map_err(ImportError::BadManifest)?;
    if unlocked.policy_public_key != key {
        return Err(ImportError::PinMismatch {
            found: hex::encode(unlocked.policy_public_key),
            expected: hex::encode(key),
        });
    }
    if !approval::code_matches(&unlocked.approval_secret, code, now).map_err(ImportError::Other)? {
        return Err(ImportError::WrongCode);
    }
    drop(unlocked);
    apply(state, &staged, &verified)
}

/// Applies the staged import whose confirmation the running signer recorded
/// (`import_confirm`, then a restart: see `import::live`). The staged copy is checked again
/// and must still be `manifest_digest`; the code was checked when it was confirmed.
pub fn apply_confirmed(state: &Path, manifest_digest: &str) -> Result<PathBuf, ImportError> {
    let staged = state.join(STAGED_DIR);
    if !staged.exists() {
        return Err(ImportError::NothingStaged(state.to_path_buf()));
    }
    let verified = verify(&staged)?;
    if verified.manifest_digest != manifest_digest {
        return Err(ImportError::DigestMismatch {
            staged: verified.manifest_digest,
            given: manifest_digest.to_string(),
        });
    }
    refuse_existing_keystore(state, read_meta(&staged)?.replace)?;
    apply(state, &staged, &verified)
}

/// Refuses a staged import that would replace a keystore without `--replace`.
pub fn check_replace(state: &Path, status: &ImportStatus) -> Result<(), ImportError> {
    refuse_existing_keystore(state, status.replace)
}

/// Moves the staged keystore and policy into place, keeping the previous ones.
fn apply(state: &Path, staged: &Path, verified: &Verified) -> Result<PathBuf, ImportError> {
    let imports = state.join(IMPORTS_DIR);
    if !imports.exists() {
        make_private_dir(&imports)?;
        chown_like(&imports, state)?;
    }
    let record = imports.join(format!(
        "{}-{}",
        verified.manifest.created_at,
        &verified.manifest_digest[..16]
    ));
    make_private_dir(&record)?;
    chown_like(&record, state)?;
    let mv = |from: &Path, to: &Path| {
        fs::rename(from, to).map_err(|e| ImportError::Write(to.to_path_buf(), e))
    };
    for sub in [KEYSTORE_DIR, POLICY_DIR] {
        let live = state.join(sub);
        if live.exists() {
            mv(&live, &record.join(format!("previous-{sub}")))?;
        }
        mv(&staged.join(sub), &live)?;
    }
    for name in [MANIFEST_FILE, MANIFEST_SIG_FILE] {
        mv(&staged.join(name), &record.join(name))?;
    }
    // A first import: the signer's ledger dir (audit log) must exist for it to start.
    ensure_ledger_dir(state)?;
    fs::remove_dir_all(staged).map_err(|e| ImportError::Write(staged.to_path_buf(), e))?;
    sync_dir(&record)?;
    sync_dir(state)?;
    Ok(record)
}

/// Creates the signer's ledger dir (audit log) if missing, owned like `state`.
pub fn ensure_ledger_dir(state: &Path) -> Result<(), ImportError> {
    let ledger = layout::ledger(state);
    if !ledger.exists() {
        make_private_dir(&ledger)?;
        chown_like(&ledger, state)?;
    }
    Ok(())
}

fn status_of(v: &Verified, replace: bool) -> ImportStatus {
    let m = &v.manifest;
    ImportStatus {
        staged: true,
        manifest_digest: Some(v.manifest_digest.clone()),
        agents: m
            .agents
            .iter()
            .map(|a| AgentStatus {
                agent: a.agent.clone(),
                chain: a.chain,
                address: a.address.clone(),
                fingerprint: a.fingerprint.clone(),
            })
            .collect(),
        policy_digest: Some(m.policy_digest.clone()),
        policy_key_fingerprint: Some(m.policy_key.fingerprint.clone()),
        created_at: Some(m.created_at),
        online_override: m.online_override,
        replace,
    }
}

fn refuse_existing_keystore(state: &Path, replace: bool) -> Result<(), ImportError> {
    let ks = state.join(KEYSTORE_DIR);
    let non_empty = match fs::read_dir(&ks) {
        Ok(mut it) => it.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(ImportError::Read(ks, e)),
    };
    if non_empty && !replace {
        return Err(ImportError::KeystoreExists(ks));
    }
    Ok(())
}

fn write_staging(tmp: &Path, v: &Verified, replace: bool) -> Result<(), ImportError> {
    make_private_dir(tmp)?;
    for sub in [KEYSTORE_DIR, POLICY_DIR] {
        make_private_dir(&tmp.join(sub))?;
    }
    let meta = serde_json::to_vec(&StageMeta { replace })
        .map_err(|e| ImportError::Other(format!("could not write {STAGE_META}: {e}")))?;
    let mut files: Vec<(PathBuf, &[u8])> = v
        .files
        .iter()
        .map(|(rel, bytes)| (tmp.join(rel), bytes.as_slice()))
        .collect();
    files.push((tmp.join(MANIFEST_FILE), &v.manifest_bytes));
    files.push((tmp.join(MANIFEST_SIG_FILE), &v.signature_bytes));
    files.push((tmp.join(STAGE_META), &meta));
    for (path, bytes) in files {
        keystore::write_private_file(&path, bytes).map_err(|e| ImportError::Write(path, e))?;
    }
    for sub in [KEYSTORE_DIR, POLICY_DIR] {
        sync_dir(&tmp.join(sub))?;
    }
    Ok(())
}

fn read_meta(staged: &Path) -> Result<StageMeta, ImportError> {
    let path = staged.join(STAGE_META);
    let bytes = fs::read(&path).map_err(|e| ImportError::Read(path.clone(), e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ImportError::Other(format!(
            "{} is damaged ({e}): import the stick again",
            path.display()
        ))
    })
}

/// Gives `tree` the owner of `like` (the import runs as root; the signer's user owns its
/// state dir and must be able to read what is staged). A no-op when they already match.
fn chown_like(tree: &Path, like: &Path) -> Result<(), ImportError> {
    let meta = fs::metadata(like).map_err(|e| ImportError::Read(like.to_path_buf(), e))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    fn walk(p: &Path, uid: u32, gid: u32) -> Result<(), ImportError> {
        let m = fs::symlink_metadata(p).map_err(|e| ImportError::Read(p.to_path_buf(), e))?;
        if m.uid() != uid || m.gid() != gid {
            std::os::unix::fs::lchown(p, Some(uid), Some(gid))
                .map_err(|e| ImportError::Write(p.to_path_buf(), e))?;
        }
        if m.is_dir() {
            for e in fs::read_dir(p).map_err(|e| ImportError::Read(p.to_path_buf(), e))? {
                let e = e.map_err(|e| ImportError::Read(p.to_path_buf(), e))?;
                walk(&e.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(tree, uid, gid)
}

/// Creates a directory 0700 (and its parents).
pub(super) fn make_private_dir(dir: &Path) -> Result<(), ImportError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ImportError::Write(dir.to_path_buf(), e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| ImportError::Write(dir.to_path_buf(), e))
}

fn sync_dir(dir: &Path) -> Result<(), ImportError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| ImportError::Write(dir.to_path_buf(), e))
}

fn random_hex() -> Result<String, ImportError> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b)
        .map_err(|e| ImportError::Other(format!("the OS random source failed: {e}")))?;
    Ok(hex::encode(b))
}
