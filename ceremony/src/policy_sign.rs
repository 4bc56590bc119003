//! `vigil-ceremony policy sign`: signs a new policy with the policy key kept on a ceremony
//! stick (`--keep-policy-key`), offline. The key is decrypted with the keystore passphrase,
//! must match the stick's signed manifest, and the signed policy is written, atomically, to
//! `<stick>/policy-update/` for the appliance (`docs/key-ceremony.md`, "Changing the policy").

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use vigil_signer::Ed25519Key;
use vigil_signer::import::manifest::{self, MANIFEST_FILE, Manifest, POLICY_KEY_DIR};
use vigil_signer::keystore::{self, Purpose};
use vigil_signer::policy;
use zeroize::Zeroizing;

use crate::error::CeremonyError;
use crate::new::{Operator, summarize_policy};
use crate::output::{Staging, read_bounded};

/// Where the signed policy update is written on the stick.
pub const UPDATE_DIR: &str = "policy-update";

/// The policy signing key kept on the stick at `key_dir` (`--keep-policy-key`), decrypted with
/// the keystore passphrase: for `policy sign`, and for a new ceremony that keeps the policy
/// key the appliance pins (`new --policy-key-from`).
pub fn kept_policy_seed(
    key_dir: &Path,
    passphrase: &SecretString,
) -> Result<Zeroizing<[u8; 32]>, CeremonyError> {
    let key_path = key_dir
        .join(POLICY_KEY_DIR)
        .join(keystore::entry_file_name(&Purpose::PolicyKey));
    if !key_path.exists() {
        return Err(CeremonyError::Other(format!(
            "{} does not exist: this stick has no kept policy key (the ceremony ran without --keep-policy-key), so a policy change needs a new ceremony",
            key_path.display()
        )));
    }
    let entry = keystore::read_entry(&key_path, passphrase)?;
    if entry.purpose != Purpose::PolicyKey {
        return Err(CeremonyError::Other(format!(
            "{} holds {}, not the policy signing key",
            key_path.display(),
            entry.purpose
        )));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    if entry.secret.len() != 32 {
        return Err(CeremonyError::Other(
            "the policy key seed is not 32 bytes".into(),
        ));
    }
    seed.copy_from_slice(&entry.secret);
    Ok(seed)
}

/// Signs `policy_bytes` with the kept key in `key_dir` after the operator approved the
/// summary; returns the directory holding `policy.toml` and `policy.toml.sig`.
pub fn sign(
    key_dir: &Path,
    policy_bytes: &[u8],
    passphrase: &SecretString,
    op: &mut dyn Operator,
) -> Result<PathBuf, CeremonyError> {
    let staging = Staging::new(key_dir, &[UPDATE_DIR])?;
    let seed = kept_policy_seed(key_dir, passphrase)?;
    let key = Ed25519Key::from_seed(&seed);
    drop(seed);

    // The stick's manifest names the key the appliance pins: a mismatch would be refused there.
    let manifest_bytes = read_bounded(&key_dir.join(MANIFEST_FILE), manifest::MAX_MANIFEST_LEN)?;
    let m = Manifest::parse(&manifest_bytes).map_err(CeremonyError::Other)?;
    if m.policy_key.public != hex::encode(key.public_bytes()) {
        return Err(CeremonyError::Other(format!(
            "the kept policy key is not the one in {MANIFEST_FILE} ({}): this key would not be accepted by the appliance",
            m.policy_key.fingerprint
        )));
    }

    let parsed = policy::parse(policy_bytes).map_err(|e| CeremonyError::Policy(e.to_string()))?;
    let summary = format!(
        "{}\nSigned by policy key {}.\n",
        summarize_policy(&parsed),
        manifest::fingerprint(&key.public_bytes())
    );
    if !op.approve_policy(&summary)? {
        return Err(CeremonyError::Aborted(
            "the policy was not approved; nothing was written".into(),
        ));
    }
    let sig = key.sign(&policy::signing_message(policy_bytes));
    staging.dir(UPDATE_DIR)?;
    staging.file(
        &format!("{UPDATE_DIR}/{}", policy::POLICY_FILE),
        policy_bytes,
    )?;
    staging.file(
        &format!("{UPDATE_DIR}/{}", policy::SIGNATURE_FILE),
        policy::signature_file_contents(&sig).as_bytes(),
    )?;
    // The signer's own loader accepts it under the key the appliance pins.
    policy::load_signed(&staging.path().join(UPDATE_DIR), key.public())
        .map_err(|e| CeremonyError::Other(format!("the signed policy does not verify: {e}")))?;
    staging.commit(&[UPDATE_DIR])?;
    Ok(key_dir.join(UPDATE_DIR))
}
