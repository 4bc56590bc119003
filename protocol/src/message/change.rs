//! The typed fields of `ConfirmationPurpose::ApplyChange` (`docs/protocol.md`, "Requests
//! awaiting the operator"): a change to what the orchestrator runs — a configuration, a
//! proposal, or a rollback to an earlier generation — bound to the SHA-256 of the
//! generation's files, so the operator's code approves exactly those bytes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::{hex_digest, truncate};

/// What kind of change is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A configuration change (parameters, prompt, risk profile within the ceilings,
    /// schedule).
    Config,
    /// A proposal (a strategy module with its tests), as a diff.
    Proposal,
    /// Back to an earlier generation, its files and the state snapshot before the next.
    Rollback,
}

impl ChangeKind {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Config => "config",
            ChangeKind::Proposal => "proposal",
            ChangeKind::Rollback => "rollback",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

hex_digest!(
    /// SHA-256 of a generation's files (or a proposal's diff): exactly 64 lowercase hex digits.
    ChangeDigest,
    "change digest",
    "the SHA-256 of the generation's files"
);

/// The most characters of a change summary.
pub const MAX_CHANGE_SUMMARY_CHARS: usize = 160;

/// A short description of a change: 1 to [`MAX_CHANGE_SUMMARY_CHARS`] printable characters,
/// no control characters (no line breaks), so it cannot forge lines of the operator's message.
/// The signer shows it quoted, as the asker's words, beside what it checks itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChangeSummary(String);

impl ChangeSummary {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ChangeSummary {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let n = s.chars().count();
        if n == 0 || n > MAX_CHANGE_SUMMARY_CHARS {
            return Err(format!(
                "a change summary is 1 to {MAX_CHANGE_SUMMARY_CHARS} characters, not {n}"
            ));
        }
        if s.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')) {
            return Err(format!(
                "change summary {:?} holds a control or direction character: write one plain line",
                truncate(&s)
            ));
        }
        Ok(Self(s))
    }
}

impl std::str::FromStr for ChangeSummary {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

impl From<ChangeSummary> for String {
    fn from(v: ChangeSummary) -> String {
        v.0
    }
}

impl fmt::Display for ChangeSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_summaries_are_checked_on_the_wire() {
        let hex = "ab".repeat(32);
        let d: ChangeDigest = serde_json::from_value(serde_json::json!(hex)).unwrap();
        assert_eq!(d.as_str(), hex);
        for bad in [
            "AB".repeat(32),
            "ab".repeat(31),
            format!("{}zz", "ab".repeat(31)),
        ] {
            assert!(serde_json::from_value::<ChangeDigest>(serde_json::json!(bad)).is_err());
        }
        assert!("back to generation 3".parse::<ChangeSummary>().is_ok());
        for bad in [
            String::new(),
            "x".repeat(161),
            "two\nlines".into(),
            "rtl\u{202e}".into(),
        ] {
            assert!(bad.parse::<ChangeSummary>().is_err(), "{bad:?}");
        }
        let k: ChangeKind = serde_json::from_value(serde_json::json!("rollback")).unwrap();
        assert_eq!(k, ChangeKind::Rollback);
        assert!(serde_json::from_value::<ChangeKind>(serde_json::json!("other")).is_err());
    }
}
