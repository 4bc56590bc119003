//! The report `vigil-signer dev-init` prints on stdout: where the INSECURE development state
//! dir is, each agent's addresses, the dev peer, the approval secret and the policy digest.
//!
//! It is here, beside the wire types, so that the `vigil demo` and the tests read it as a
//! typed value without linking any key code. The signer writes it with `serde_json`; a reader
//! parses it with [`DevInitReport::parse`], which refuses unknown or missing fields.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::intent::{Chain, Network};
use crate::message::AgentInfo;

/// What `dev-init` made. Development only: the secrets named here are in plain files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevInitReport {
    /// The warning printed with it: never put money behind this state dir.
    pub warning: String,
    /// The state dir that was created.
    pub state_dir: PathBuf,
    /// The keystore passphrase file `serve --passphrase-file` takes.
    pub passphrase_file: PathBuf,
    /// Each agent and its addresses (chain name → address), in the order asked for.
    pub agents: Vec<AgentInfo>,
    /// A Solana address every agent may pay under the default dev policy (nobody holds its key).
    pub dev_peer: String,
    /// The operator's TOTP secret, base32 (RFC 6238, SHA-1, 6 digits, 30 s).
    pub totp_secret_base32: InsecureDevSecret,
    /// The same secret as an `otpauth://` URI for an authenticator app.
    pub otpauth_uri: InsecureDevSecret,
    /// SHA-256 of the signed policy, hex (what `hello` reports as `policy_digest`).
    pub policy_digest: String,
}

impl DevInitReport {
    /// Parses the JSON `dev-init` printed; the error says what did not fit.
    pub fn parse(stdout: &[u8]) -> Result<DevInitReport, String> {
        serde_json::from_slice(stdout)
            .map_err(|e| format!("the dev-init report is not what this reader expects: {e}"))
    }

    /// The address of `agent` on `chain`, if dev-init made that agent exactly one key there
    /// (the key of the one network its policy names on that chain).
    pub fn address(&self, agent: &str, chain: Chain) -> Option<&str> {
        self.agents
            .iter()
            .find(|a| a.agent.as_str() == agent)
            .and_then(|a| a.addresses.get(chain.as_str()))
            .map(String::as_str)
    }

    /// The address of `agent`'s key for `chain:network`, if dev-init made one.
    pub fn address_on(&self, agent: &str, chain: Chain, network: Network) -> Option<&str> {
        self.agents
            .iter()
            .find(|a| a.agent.as_str() == agent)
            .and_then(|a| a.address_on(chain, network))
    }
}

/// A development secret printed by dev-init: plain text on purpose, but never in a `Debug`
/// line (it is in the state dir for whoever needs it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InsecureDevSecret(String);

impl InsecureDevSecret {
    /// Wraps the text of a development secret.
    pub fn new(text: String) -> InsecureDevSecret {
        InsecureDevSecret(text)
    }

    /// The secret's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for InsecureDevSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InsecureDevSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINTED: &str = r#"{
      "warning": "DEVELOPMENT ONLY",
      "state_dir": "/tmp/v",
      "passphrase_file": "/tmp/v/dev/passphrase",
      "agents": [{"agent": "trader", "addresses": {"solana": "4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM"}}],
      "dev_peer": "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
      "totp_secret_base32": "JBSWY3DPEHPK3PXP",
      "otpauth_uri": "otpauth://totp/Vigil-dev:operator?secret=JBSWY3DPEHPK3PXP",
      "policy_digest": "00"
    }"#;

    #[test]
    fn reads_what_dev_init_prints_and_finds_addresses() {
        let report = DevInitReport::parse(PRINTED.as_bytes()).unwrap();
        assert_eq!(
            report.address("trader", Chain::Solana),
            Some("4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM")
        );
        assert_eq!(report.address("sentinel", Chain::Solana), None);
        assert_eq!(report.totp_secret_base32.expose(), "JBSWY3DPEHPK3PXP");
        let debug = format!("{report:?}");
        assert!(!debug.contains("JBSWY3DPEHPK3PXP"), "{debug}");
    }

    #[test]
    fn a_report_of_another_shape_is_refused_by_name() {
        let extra = PRINTED.replacen('{', r#"{"surprise": 1,"#, 1);
        let err = DevInitReport::parse(extra.as_bytes()).unwrap_err();
        assert!(err.contains("surprise"), "{err}");
        let missing = PRINTED.replace(r#""dev_peer""#, r#""other_peer""#);
        assert!(DevInitReport::parse(missing.as_bytes()).is_err());
    }
}
