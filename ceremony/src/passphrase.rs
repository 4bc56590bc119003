//! The keystore passphrase: entered twice without echo (or, for tests and automation only,
//! read from a private file), and refused with a reason when it is weak: too short, or
//! guessable by zxcvbn's estimate.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;
use zxcvbn::Score;

use crate::error::CeremonyError;

/// Shortest passphrase accepted, in characters.
pub const MIN_CHARS: usize = 12;
/// Lowest zxcvbn score accepted (3: "safely unguessable", guesses >= 10^8).
pub const MIN_SCORE: Score = Score::Three;

/// Why a passphrase is refused, or `None` if it is acceptable. `context` holds words an
/// attacker would try first (agent names, the operator's name).
pub fn weakness(passphrase: &str, context: &[&str]) -> Option<String> {
    let chars = passphrase.chars().count();
    if chars < MIN_CHARS {
        return Some(format!(
            "the passphrase has {chars} characters; use at least {MIN_CHARS} (e.g. five or six random words)"
        ));
    }
    let estimate = zxcvbn::zxcvbn(passphrase, context);
    if estimate.score() < MIN_SCORE {
        let mut reason = format!(
            "the passphrase is too guessable (strength {} of 4, at least {} needed)",
            u8::from(estimate.score()),
            u8::from(MIN_SCORE)
        );
        if let Some(feedback) = estimate.feedback() {
            if let Some(w) = feedback.warning() {
                reason.push_str(&format!(": {w}"));
            }
            for s in feedback.suggestions() {
                reason.push_str(&format!("; {s}"));
            }
        }
        return Some(reason);
    }
    None
}

/// Asks twice on the terminal without echo; refuses a mismatch or a weak passphrase.
pub fn prompt_twice(context: &[&str]) -> Result<SecretString, CeremonyError> {
    let first = Zeroizing::new(rpassword::prompt_password("Keystore passphrase: ").map_err(
        |e| CeremonyError::Passphrase(format!("cannot read the passphrase from the terminal: {e}")),
    )?);
    if let Some(why) = weakness(&first, context) {
        return Err(CeremonyError::Passphrase(format!("{why}; run again")));
    }
    let second = Zeroizing::new(
        rpassword::prompt_password("Again, to check: ").map_err(|e| {
            CeremonyError::Passphrase(format!("cannot read the passphrase from the terminal: {e}"))
        })?,
    );
    if *first != *second {
        return Err(CeremonyError::Passphrase(
            "the two passphrases differ; run again".into(),
        ));
    }
    Ok(SecretString::from(first.to_string()))
}

/// FOR TESTS AND AUTOMATION: reads the passphrase from a private (0600) file with the
/// signer's reader, and applies the same strength rules.
pub fn from_file(path: &Path, context: &[&str]) -> Result<SecretString, CeremonyError> {
    let pass = vigil_signer::keystore::read_passphrase_from(Some(path), None)?;
    if let Some(why) = weakness(pass.expose_secret(), context) {
        return Err(CeremonyError::Passphrase(format!(
            "{}: {why}",
            path.display()
        )));
    }
    Ok(pass)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn strength_table() {
        // (passphrase, refused because of)
        let cases: &[(&str, Option<&str>)] = &[
            ("short", Some("characters")),
            ("Tr0ub4dor&3", Some("characters")),
            ("passwordpassword", Some("guessable")),
            ("123456789012", Some("guessable")),
            ("traderpassword", Some("guessable")),
            ("qwertyuiopasdf", Some("guessable")),
            ("correct horse battery staple", None),
            ("velvet-otter-quarry-lantern-9", None),
        ];
        for (pass, want) in cases {
            match (weakness(pass, &["trader"]), want) {
                (None, None) => {}
                (Some(why), Some(word)) => assert!(why.contains(word), "{pass}: {why}"),
                (got, _) => panic!("{pass}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn file_passphrase_is_checked_too() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "weakweak\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = from_file(&path, &[]).unwrap_err().to_string();
        assert!(err.contains("characters"), "{err}");
        std::fs::write(&path, "velvet-otter-quarry-lantern-9\n").unwrap();
        assert_eq!(
            from_file(&path, &[]).unwrap().expose_secret(),
            "velvet-otter-quarry-lantern-9"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            from_file(&path, &[])
                .unwrap_err()
                .to_string()
                .contains("chmod 600")
        );
    }
}
