//! Wire types of the key-ceremony import ops, `import_status` and `import_confirm`
//! (`docs/protocol.md`, section "Key-ceremony import").
//!
//! A ceremony stick is staged on the appliance by `vigil-signer import`; the operator then
//! compares the staged manifest's digest and key fingerprints with the ceremony's printout
//! and confirms with a code from the authenticator enrolled at THAT ceremony. These types
//! carry what the operator compares and what they answer.

use serde::{Deserialize, Serialize};

use crate::intent::{Chain, Network};
use crate::operator_code::OperatorCode;
use crate::types::{AgentId, hex_digest};

hex_digest!(
    /// SHA-256 of a ceremony manifest: exactly 64 lowercase hex digits.
    ManifestDigest,
    "manifest digest",
    "the SHA-256 shown by import_status"
);

/// Fields of `import_confirm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportConfirmRequest {
    /// The staged manifest's digest, as the operator compared it (`import_status`).
    pub manifest_digest: ManifestDigest,
    /// A current 6-digit code of the authenticator enrolled at the STAGED ceremony.
    pub code: OperatorCode,
    /// Extension: a current code of the authenticator the appliance runs on NOW. Replacing the
    /// keys of an appliance that has them needs it (`import_status` says
    /// `current_code_required`), unless the staged manifest is signed by the policy key the
    /// appliance pins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_code: Option<OperatorCode>,
}

/// Result of `import_status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportStatusResult {
    /// Whether a stick is staged (`<state>/import-staged/` existed when the signer started).
    pub staged: bool,
    /// SHA-256 of the staged manifest: what `import_confirm` asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<ManifestDigest>,
    /// The staged agent keys, to compare with the ceremony's printout (empty if none staged).
    #[serde(default)]
    pub agents: Vec<ImportAgent>,
    /// SHA-256 of the staged policy (what `hello` reports once the import is applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    /// Fingerprint of the ceremony's policy key, which signed the manifest and the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_key_fingerprint: Option<String>,
    /// When the ceremony ran (unix seconds, the ceremony machine's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<u64>,
    /// True if the ceremony ran with a network interface up (`--i-know-this-is-online`).
    #[serde(default)]
    pub online_override: bool,
    /// True if the staged keystore is encrypted with development KDF parameters, weaker than
    /// production (it was staged with `--insecure-allow-dev-kdf`).
    #[serde(default)]
    pub insecure_dev_kdf: bool,
    /// True if confirming replaces the keystore the signer runs on now.
    #[serde(default)]
    pub replace: bool,
    /// True if `import_confirm` must also carry `current_code` (a code of the authenticator the
    /// appliance runs on now): a replacement not signed by the pinned policy key.
    #[serde(default)]
    pub current_code_required: bool,
    /// Why the staged copy cannot be confirmed (it failed its checks at the signer's start,
    /// or the passphrase does not open it); `import_confirm` is refused while this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when the signer runs without a keystore (first install), waiting for this import:
    /// it signs nothing until the import is confirmed at the appliance's console
    /// (`vigil-signer import-confirm`); `import_confirm` on the socket is refused then.
    #[serde(default)]
    pub awaiting_keys: bool,
}

/// One staged agent key in `import_status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportAgent {
    /// The agent.
    pub agent: AgentId,
    /// Its chain.
    pub chain: Chain,
    /// Extension: the network the key serves (absent for a key of a ceremony made before keys
    /// were per network: it serves the one network its policy names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Its public address on that chain.
    pub address: String,
    /// Its key fingerprint, as the ceremony printed it.
    pub fingerprint: String,
}

/// The `status` of a successful `import_confirm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportConfirmStatus {
    /// The confirmation is durable in the audit log; the signer exits (status 75) and
    /// applies the import when it starts again.
    Confirmed,
}

/// Result of `import_confirm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportConfirmResult {
    /// Always `confirmed`: a refusal is an error response.
    pub status: ImportConfirmStatus,
    /// The confirmed manifest digest.
    pub manifest_digest: ManifestDigest,
    /// Sequence number of the `import_confirmed` audit entry.
    pub ledger_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_digest_is_strict() {
        let good = "ab".repeat(32);
        assert_eq!(
            ManifestDigest::try_from(good.clone()).unwrap().as_str(),
            good
        );
        for bad in [
            String::new(),
            "ab".repeat(31),
            "ab".repeat(33),
            "AB".repeat(32),
            format!("{} ", "ab".repeat(32)),
            "zz".repeat(32),
        ] {
            let e = ManifestDigest::try_from(bad.clone()).unwrap_err();
            assert!(e.contains("64 lowercase hex"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn status_result_round_trips_and_defaults() {
        let full = ImportStatusResult {
            staged: true,
            manifest_digest: Some(ManifestDigest::try_from("0f".repeat(32)).unwrap()),
            agents: vec![ImportAgent {
                agent: AgentId::try_from("trader".to_string()).unwrap(),
                chain: Chain::Solana,
                network: Some(Network::Devnet),
                address: "addr".into(),
                fingerprint: "abcd-ef01".into(),
            }],
            policy_digest: Some("11".repeat(32)),
            policy_key_fingerprint: Some("ffff".into()),
            created_at: Some(1_700_000_000),
            online_override: false,
            insecure_dev_kdf: false,
            replace: true,
            current_code_required: true,
            error: None,
            awaiting_keys: false,
        };
        let json = serde_json::to_value(&full).unwrap();
        assert_eq!(json["agents"][0]["chain"], "solana");
        assert!(json.get("error").is_none());
        let back: ImportStatusResult = serde_json::from_value(json).unwrap();
        assert_eq!(back, full);
        // Nothing staged: only `staged` and `agents: []` (plus the flags) are sent.
        let none: ImportStatusResult =
            serde_json::from_str(r#"{"staged":false,"agents":[]}"#).unwrap();
        assert_eq!(none, ImportStatusResult::default());
        let r = ImportConfirmResult {
            status: ImportConfirmStatus::Confirmed,
            manifest_digest: ManifestDigest::try_from("0f".repeat(32)).unwrap(),
            ledger_seq: 9,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""status":"confirmed""#), "{json}");
        assert_eq!(
            serde_json::from_str::<ImportConfirmResult>(&json).unwrap(),
            r
        );
    }
}
