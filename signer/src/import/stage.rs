//! The staged copy of a ceremony stick: staging it, reading it back, applying it, discarding
//! it.
//!
//! The staged copy lives OUTSIDE the signer's state dir, in the importer's own (production:
//! `/var/lib/vigil-import/staged`, group-readable by the signer's user): the importer runs
//! under its own uid, which is not a socket peer and cannot read the signer's state.
//!
//! - [`stage`] writes the checked bytes into a temp dir beside the staged copy's place, fsyncs
//!   them and renames the directory into place with no replace: a staged copy is never
//!   overwritten (staging the same stick again changes nothing; another one is refused until
//!   the first is confirmed or [`discard`]ed). A stick whose keystore uses development KDF
//!   parameters is refused unless `insecure_allow_dev_kdf` (recorded with the copy).
//! - [`read_staged`] checks a staged copy again, in full, and returns the verified bytes.
//! - [`apply`] installs a CONFIRMED copy into the signer's state dir: it writes the verified
//!   bytes (0600) into new `keystore/` and `policy/` directories, removes the staged copy, and
//!   swaps them in; the previous ones are kept, with the manifest, in
//!   `<state>/imports/<time>-<digest>/`: keys are never deleted by an import. Confirming is
//!   the engine's (`engine/import.rs`): the only place codes are checked.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vigil_protocol::{AgentId, Chain, Network};

use super::manifest::{KEYSTORE_DIR, MANIFEST_FILE, MANIFEST_SIG_FILE, POLICY_DIR};
use super::{ImportError, Verified, verify};
use crate::devinit::layout;
use crate::keystore::{self, KdfParams};

/// The staged copy's default place (`--staging-dir`): the importer's state dir.
pub const DEFAULT_STAGING_DIR: &str = "/var/lib/vigil-import/staged";
/// Records of applied imports (manifest, previous keystore and policy) inside the state dir.
pub const IMPORTS_DIR: &str = "imports";
/// Staging metadata (not part of the stick).
const STAGE_META: &str = "import.json";
/// Mode of a staged directory: the importer's user and group (the signer's user is in the
/// group, and removes the copy once it is applied).
const STAGED_DIR_MODE: u32 = 0o770;
/// Mode of a staged file: the signer's user reads it through the group.
const STAGED_FILE_MODE: u32 = 0o640;

/// What is staged, for the operator to compare with the ceremony's printout (and for the
/// `import_status` op, see `docs/protocol.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportStatus {
    /// Whether an import is staged.
    pub staged: bool,
    /// SHA-256 of the staged manifest (hex): what `confirm` asks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// The staged agent keys.
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
    /// Whether it was staged with `--replace` (meant to replace the appliance's keys).
    pub replace: bool,
    /// Whether its keystore uses development KDF parameters (staged with
    /// `--insecure-allow-dev-kdf`).
    pub insecure_dev_kdf: bool,
}

/// One staged agent key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentStatus {
    /// The agent.
    pub agent: AgentId,
    /// Its chain.
    pub chain: Chain,
    /// The network it serves (absent for a format 1 key: the one its policy names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Its address.
    pub address: String,
    /// Its key fingerprint.
    pub fingerprint: String,
}

/// How to stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageOptions {
    /// The operator means to replace the appliance's keys (`--replace`).
    pub replace: bool,
    /// Accept a keystore encrypted with development KDF parameters
    /// (`--insecure-allow-dev-kdf`: tests and development only).
    pub insecure_allow_dev_kdf: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageMeta {
    replace: bool,
    #[serde(default)]
    insecure_allow_dev_kdf: bool,
}

/// A staged copy, checked again: the verified bytes and how it was staged.
#[derive(Debug)]
pub struct StagedCopy {
    /// Everything the stick checks proved.
    pub verified: Verified,
    /// How it was staged.
    pub options: StageOptions,
}

impl StagedCopy {
    /// What the operator compares.
    pub fn status(&self) -> ImportStatus {
        let m = &self.verified.manifest;
        ImportStatus {
            staged: true,
            manifest_digest: Some(self.verified.manifest_digest.clone()),
            agents: m
                .agents
                .iter()
                .map(|a| AgentStatus {
                    agent: a.agent.clone(),
                    chain: a.chain,
                    network: a.network,
                    address: a.address.clone(),
                    // From the key, not from the manifest's text (`verify` checked they agree).
                    fingerprint: super::bounds::agent_fingerprint(a.chain, &a.address)
                        .unwrap_or_else(|e| format!("unreadable address: {e}")),
                })
                .collect(),
            policy_digest: Some(m.policy_digest.clone()),
            policy_key_fingerprint: Some(
                m.policy_key_bytes()
                    .map(|key| super::manifest::fingerprint(&key))
                    .unwrap_or_else(|e| format!("unreadable policy key: {e}")),
            ),
            created_at: Some(m.created_at),
            online_override: m.online_override,
            replace: self.options.replace,
            insecure_dev_kdf: m.kdf.is_weaker_than_production(),
        }
    }

    /// The staged keystore's files, as (file name, bytes).
    pub fn keystore_files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.verified.files.iter().filter_map(|(rel, bytes)| {
            rel.strip_prefix(&format!("{KEYSTORE_DIR}/"))
                .map(|name| (name, bytes.as_slice()))
        })
    }
}

/// Verifies `stick` and stages it at `staged` (see the module docs). `state`: the signer's
/// state dir, only to refuse early, when it can be read, a stick that would replace keys
/// without `--replace`. Nothing changes when it refuses.
pub fn stage(
    stick: &Path,
    staged: &Path,
    state: &Path,
    options: StageOptions,
) -> Result<ImportStatus, ImportError> {
    refuse_another_staged(stick, staged)?;
    let verified = verify(stick)?;
    check_kdf(&verified, options.insecure_allow_dev_kdf)?;
    refuse_visible_keystore(state, options.replace)?;
    if staged.exists() {
        return match read_staged(staged) {
            Ok(existing)
                if existing.verified.manifest_digest == verified.manifest_digest
                    && existing.options == options =>
            {
                Ok(existing.status())
            }
            Ok(existing) => Err(ImportError::AlreadyStaged {
                staged: staged.to_path_buf(),
                digest: existing.verified.manifest_digest,
            }),
            Err(e) => Err(ImportError::AlreadyStaged {
                staged: staged.to_path_buf(),
                digest: format!("unreadable: {e}"),
            }),
        };
    }
    let parent = parent_of(staged)?;
    if !parent.exists() {
        make_dir(&parent, STAGED_DIR_MODE)?;
    }
    let name = staged
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", random_hex()?));
    let written = write_staging(&tmp, &verified, options).and_then(|()| {
        chown_like(&tmp, &parent)?;
        keystore::rename_no_replace(&tmp, staged).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => ImportError::AlreadyStaged {
                staged: staged.to_path_buf(),
                digest: "staged meanwhile by another import".into(),
            },
            _ => ImportError::Write(staged.to_path_buf(), e),
        })?;
        sync_dir(&parent)
    });
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(StagedCopy { verified, options }.status())
}

/// A copy of another stick is staged already: refused before anything else of the stick is
/// read (comparing the two manifests' digests), so a stick cannot make the importer read its
/// files while another import waits for the operator. The same stick again goes on (and ends
/// in the staged copy's status).
fn refuse_another_staged(stick: &Path, staged: &Path) -> Result<(), ImportError> {
    let staged_manifest = staged.join(MANIFEST_FILE);
    let Ok(existing) = super::read_bounded(&staged_manifest, super::manifest::MAX_MANIFEST_LEN)
    else {
        return Ok(());
    };
    let existing = super::manifest::sha256_hex(&existing);
    match super::read_bounded(
        &stick.join(MANIFEST_FILE),
        super::manifest::MAX_MANIFEST_LEN,
    ) {
        Ok(bytes) if super::manifest::sha256_hex(&bytes) == existing => Ok(()),
        // A stick without a readable manifest is refused by `verify` with its own message.
        Err(_) => Ok(()),
        Ok(_) => Err(ImportError::AlreadyStaged {
            staged: staged.to_path_buf(),
            digest: existing,
        }),
    }
}

/// What is staged at `staged`, checked again (a staged copy that no longer verifies is an
/// error); the default status when nothing is.
pub fn status(staged: &Path) -> Result<ImportStatus, ImportError> {
    if !staged.exists() {
        return Ok(ImportStatus::default());
    }
    Ok(read_staged(staged)?.status())
}

/// The staged copy at `staged`, verified in full, with the options it was staged with.
pub fn read_staged(staged: &Path) -> Result<StagedCopy, ImportError> {
    if !staged.exists() {
        return Err(ImportError::NothingStaged(staged.to_path_buf()));
    }
    let verified = verify(staged)?;
    let path = staged.join(STAGE_META);
    let bytes = fs::read(&path).map_err(|e| ImportError::Read(path.clone(), e))?;
    let meta: StageMeta = serde_json::from_slice(&bytes).map_err(|e| {
        ImportError::Other(format!(
            "{} is damaged ({e}): discard the staged copy and import the stick again",
            path.display()
        ))
    })?;
    check_kdf(&verified, meta.insecure_allow_dev_kdf)?;
    Ok(StagedCopy {
        verified,
        options: StageOptions {
            replace: meta.replace,
            insecure_allow_dev_kdf: meta.insecure_allow_dev_kdf,
        },
    })
}

/// Removes the staged copy at `staged` if it is the one whose manifest digest is `digest`.
pub fn discard(staged: &Path, digest: &str) -> Result<(), ImportError> {
    let path = staged.join(MANIFEST_FILE);
    let bytes = fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImportError::NothingStaged(staged.to_path_buf()),
        _ => ImportError::Read(path.clone(), e),
    })?;
    let found = super::manifest::sha256_hex(&bytes);
    let given = normalize_digest(digest);
    if found != given {
        return Err(ImportError::DigestMismatch {
            staged: found,
            given,
        });
    }
    fs::remove_dir_all(staged).map_err(|e| ImportError::Write(staged.to_path_buf(), e))?;
    sync_dir(&parent_of(staged)?)
}

/// A digest as an operator may type it: spaces dropped, lowercase.
pub fn normalize_digest(digest: &str) -> String {
    digest
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Installs the confirmed `copy` (staged at `staged`) into `state` (see the module docs);
/// returns the record directory that holds the manifest and what it replaced.
pub fn apply(state: &Path, staged: &Path, copy: &StagedCopy) -> Result<PathBuf, ImportError> {
    let v = &copy.verified;
    let imports = state.join(IMPORTS_DIR);
    if !imports.exists() {
        make_dir(&imports, 0o700)?;
        chown_like(&imports, state)?;
    }
    let record = imports.join(format!(
        "{}-{}",
        v.manifest.created_at,
        &v.manifest_digest[..16]
    ));
    make_dir(&record, 0o700)?;
    // The new directories, from the verified bytes, written before anything live moves.
    let mut fresh = Vec::new();
    for sub in [KEYSTORE_DIR, POLICY_DIR] {
        let dir = state.join(format!(".{sub}.new-{}", random_hex()?));
        let written = make_dir(&dir, 0o700).and_then(|()| {
            for (rel, bytes) in &v.files {
                if let Some(name) = rel.strip_prefix(&format!("{sub}/")) {
                    let path = dir.join(name);
                    keystore::write_private_file(&path, bytes)
                        .map_err(|e| ImportError::Write(path, e))?;
                }
            }
            chown_like(&dir, state)
        });
        fresh.push(dir);
        if let Err(e) = written {
            fresh.iter().for_each(|d| drop(fs::remove_dir_all(d)));
            return Err(e);
        }
    }
    for (name, bytes) in [
        (MANIFEST_FILE, &v.manifest_bytes),
        (MANIFEST_SIG_FILE, &v.signature_bytes),
    ] {
        let path = record.join(name);
        keystore::write_private_file(&path, bytes).map_err(|e| ImportError::Write(path, e))?;
    }
    chown_like(&record, state)?;
    // The staged copy goes first: a crash from here on leaves the previous keys in place and
    // nothing staged to apply twice.
    if let Err(e) = fs::remove_dir_all(staged) {
        fresh.iter().for_each(|d| drop(fs::remove_dir_all(d)));
        return Err(ImportError::Write(staged.to_path_buf(), e));
    }
    let mv = |from: &Path, to: &Path| {
        fs::rename(from, to).map_err(|e| ImportError::Write(to.to_path_buf(), e))
    };
    for (sub, new) in [KEYSTORE_DIR, POLICY_DIR].into_iter().zip(&fresh) {
        let live = state.join(sub);
        if live.exists() {
            mv(&live, &record.join(format!("previous-{sub}")))?;
        }
        mv(new, &live)?;
    }
    // A first import: the signer's ledger dir (audit log) must exist for it to start.
    ensure_ledger_dir(state)?;
    sync_dir(&record)?;
    sync_dir(state)?;
    Ok(record)
}

/// Creates the signer's ledger dir (audit log) if missing, owned like `state`.
pub fn ensure_ledger_dir(state: &Path) -> Result<(), ImportError> {
    let ledger = layout::ledger(state);
    if !ledger.exists() {
        make_dir(&ledger, 0o700)?;
        chown_like(&ledger, state)?;
    }
    Ok(())
}

/// Whether the state dir holds a keystore (a non-empty `keystore/`).
pub fn keystore_present(state: &Path) -> bool {
    fs::read_dir(layout::keystore(state)).is_ok_and(|mut it| it.next().is_some())
}

/// A stick encrypted with parameters weaker than production is refused unless allowed; every
/// entry must use the manifest's parameters.
fn check_kdf(v: &Verified, allow_dev: bool) -> Result<(), ImportError> {
    let kdf: KdfParams = v.manifest.kdf;
    if kdf.is_weaker_than_production() && !allow_dev {
        return Err(ImportError::DevKdf(kdf));
    }
    Ok(())
}

/// Refuses to stage over a keystore without `--replace`, when the state dir can be read (the
/// importer's own uid cannot: the confirmation then needs the current authority anyway).
fn refuse_visible_keystore(state: &Path, replace: bool) -> Result<(), ImportError> {
    if keystore_present(state) && !replace {
        return Err(ImportError::KeystoreExists(layout::keystore(state)));
    }
    Ok(())
}

fn write_staging(tmp: &Path, v: &Verified, options: StageOptions) -> Result<(), ImportError> {
    make_dir(tmp, STAGED_DIR_MODE)?;
    for sub in [KEYSTORE_DIR, POLICY_DIR] {
        make_dir(&tmp.join(sub), STAGED_DIR_MODE)?;
    }
    let meta = serde_json::to_vec(&StageMeta {
        replace: options.replace,
        insecure_allow_dev_kdf: options.insecure_allow_dev_kdf,
    })
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
        write_staged_file(&path, bytes).map_err(|e| ImportError::Write(path, e))?;
    }
    for sub in [KEYSTORE_DIR, POLICY_DIR] {
        sync_dir(&tmp.join(sub))?;
    }
    sync_dir(tmp)
}

/// Creates `path` (new) with the staged file mode, writes and fsyncs it.
fn write_staged_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(STAGED_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(STAGED_FILE_MODE))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Gives `tree` the owner and group of `like` (the import may run as root; the importer's
/// or the signer's user must own what it reads). A no-op when they already match.
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

/// Gives everything under the signer's ledger dir the state dir's owner: the console
/// confirmation runs as root and appends to the audit log the signer's user must open.
pub fn chown_ledger_like_state(state: &Path) -> Result<(), ImportError> {
    chown_like(&layout::ledger(state), state)
}

/// Creates a directory with `mode` (and its parents).
pub(super) fn make_dir(dir: &Path, mode: u32) -> Result<(), ImportError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| ImportError::Write(dir.to_path_buf(), e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(|e| ImportError::Write(dir.to_path_buf(), e))
}

fn parent_of(staged: &Path) -> Result<PathBuf, ImportError> {
    match staged.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.to_path_buf()),
        _ => Err(ImportError::Other(format!(
            "{} has no parent directory: give --staging-dir as a path like /var/lib/vigil-import/staged",
            staged.display()
        ))),
    }
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
