//! A proposal bundle: one directory holding exactly a module, its tests, its rationale and,
//! optionally, a configuration, and the bundle's SHA-256 digest.
//!
//! Files, all plain files directly in the directory (no subdirectory, no symlink, nothing
//! else, so the digest covers everything the operator approves):
//! - `<name>.star`: the module (`<name>`: 1-64 of `a-z`, `0-9`, `_`);
//! - `<name>_test.star`: its tests;
//! - `rationale.md`: why, in words;
//! - `config.toml` (optional): the orchestrator config the module would run under, with an
//!   agent whose `strategy_module = "<name>"` (its risk profile is what the replay checks
//!   against).
//!
//! The digest ([`bundle_digest`]) is SHA-256 over a canonical listing: one line per file,
//! sorted by file name bytewise, each line the lower-case hex SHA-256 of the file's bytes,
//! two spaces, the file name, and `\n` — exactly what `sha256sum` prints. So
//! `cd <bundle> && LC_ALL=C sha256sum -- * | sha256sum` gives the same digest without Vigil.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{MAX_SOURCE_BYTES, valid_name};

/// The largest rationale or config file, bytes.
const MAX_TEXT_BYTES: u64 = 64 * 1024;

/// A bundle read from its directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The module's name.
    pub name: String,
    /// `<name>.star`.
    pub source: String,
    /// `<name>_test.star`.
    pub tests: String,
    /// `rationale.md`.
    pub rationale: String,
    /// `config.toml`, when there is one.
    pub config: Option<String>,
    /// Every file, sorted by name, with its bytes (what the digest covers).
    pub files: Vec<(String, Vec<u8>)>,
}

/// Why a directory is not a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The directory or a file could not be read.
    #[error("cannot read {}: {}", .0.display(), .1)]
    Read(PathBuf, std::io::Error),
    /// Something in the directory that a bundle does not hold.
    #[error("{path} is not part of a bundle: {1}", path = .0.display())]
    Unexpected(PathBuf, &'static str),
    /// A required file is missing, or there is more than one module.
    #[error("the bundle in {path} {1}", path = .0.display())]
    Shape(PathBuf, String),
    /// A file too large to be a module, test, rationale or config.
    #[error("{path} is {1} bytes, more than the {2}-byte limit", path = .0.display())]
    TooLarge(PathBuf, u64, u64),
    /// A file that is not UTF-8 text.
    #[error("{} is not UTF-8 text", .0.display())]
    NotText(PathBuf),
}

impl Bundle {
    /// Reads the bundle in `dir` (see the module docs for what it must hold).
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let read_dir = |e| BundleError::Read(dir.to_owned(), e);
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_dir)? {
            let entry = entry.map_err(read_dir)?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| BundleError::Read(path.clone(), e))?;
            if !kind.is_file() {
                return Err(BundleError::Unexpected(
                    path,
                    "a bundle holds only plain files (no directories, links or devices)",
                ));
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(BundleError::Unexpected(path, "its name is not UTF-8"));
            };
            let limit = if name.ends_with(".star") {
                MAX_SOURCE_BYTES as u64
            } else {
                MAX_TEXT_BYTES
            };
            let len = entry
                .metadata()
                .map_err(|e| BundleError::Read(path.clone(), e))?
                .len();
            if len > limit {
                return Err(BundleError::TooLarge(path, len, limit));
            }
            let bytes = std::fs::read(&path).map_err(|e| BundleError::Read(path.clone(), e))?;
            files.push((name, bytes));
        }
        files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let modules: Vec<&str> = files
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| n.ends_with(".star") && !n.ends_with("_test.star"))
            .collect();
        let name = match modules.as_slice() {
            [one] => one.trim_end_matches(".star").to_owned(),
            [] => {
                return Err(BundleError::Shape(
                    dir.to_owned(),
                    "has no module: add <name>.star".into(),
                ));
            }
            more => {
                return Err(BundleError::Shape(
                    dir.to_owned(),
                    format!(
                        "has {} modules ({}): a bundle proposes one",
                        more.len(),
                        more.join(", ")
                    ),
                ));
            }
        };
        if !valid_name(&name) {
            return Err(BundleError::Shape(
                dir.to_owned(),
                format!(
                    "names its module {name:?}: use 1-64 of a-z, 0-9 and _, starting with a letter"
                ),
            ));
        }
        let test_name = format!("{name}_test.star");
        let allowed = [
            format!("{name}.star"),
            test_name.clone(),
            "rationale.md".to_owned(),
            "config.toml".to_owned(),
        ];
        for (file, _) in &files {
            if !allowed.contains(file) {
                return Err(BundleError::Unexpected(
                    dir.join(file),
                    "a bundle holds <name>.star, <name>_test.star, rationale.md and optionally config.toml",
                ));
            }
        }
        let text = |file: &str| -> Result<Option<String>, BundleError> {
            files
                .iter()
                .find(|(n, _)| n == file)
                .map(|(_, bytes)| {
                    String::from_utf8(bytes.clone())
                        .map_err(|_| BundleError::NotText(dir.join(file)))
                })
                .transpose()
        };
        let required = |file: &str, what: &str| -> Result<String, BundleError> {
            text(file)?.ok_or_else(|| {
                BundleError::Shape(dir.to_owned(), format!("has no {file}: add {what}"))
            })
        };
        Ok(Bundle {
            source: required(&format!("{name}.star"), "the module")?,
            tests: required(&test_name, "the module's tests (test_* functions)")?,
            rationale: required("rationale.md", "why the change is proposed, in words")?,
            config: text("config.toml")?,
            name,
            files,
        })
    }

    /// The canonical listing the digest is taken over (module docs).
    pub fn listing(&self) -> String {
        self.files
            .iter()
            .map(|(name, bytes)| format!("{}  {name}\n", hex::encode(Sha256::digest(bytes))))
            .collect()
    }

    /// The bundle's digest, lower-case hex.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.listing().as_bytes()))
    }
}

/// The digest of the bundle in `dir` (see the module docs).
pub fn bundle_digest(dir: &Path) -> Result<String, BundleError> {
    Bundle::load(dir).map(|b| b.digest())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn the_digest_is_sha256sum_of_sha256sum() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("trend.star", "def decide(ctx):\n    return None\n"),
                ("trend_test.star", "def test_x():\n    pass\n"),
                ("rationale.md", "Hold, always.\n"),
            ],
        );
        let bundle = Bundle::load(dir.path()).unwrap();
        assert_eq!(bundle.name, "trend");
        let listing = bundle.listing();
        let names: Vec<&str> = listing.lines().map(|l| &l[66..]).collect();
        assert_eq!(names, ["rationale.md", "trend.star", "trend_test.star"]);
        // The same digest from coreutils, when it is installed.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("LC_ALL=C sha256sum -- * | sha256sum")
            .current_dir(dir.path())
            .output();
        if let Ok(out) = out
            && out.status.success()
        {
            let text = String::from_utf8(out.stdout).unwrap();
            assert_eq!(text.split_whitespace().next().unwrap(), bundle.digest());
        }
        // Any change of any byte changes it.
        let before = bundle.digest();
        write(dir.path(), &[("rationale.md", "Hold, always!\n")]);
        assert_ne!(bundle_digest(dir.path()).unwrap(), before);
    }

    #[test]
    fn a_bundle_holds_exactly_its_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("rationale.md", "x")]);
        let e = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("has no module"), "{e}");
        write(dir.path(), &[("trend.star", "x = 1\n")]);
        let e = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("has no trend_test.star"), "{e}");
        write(dir.path(), &[("trend_test.star", ""), ("notes.txt", "x")]);
        let e = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("notes.txt is not part of a bundle"), "{e}");
        std::fs::remove_file(dir.path().join("notes.txt")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let e = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("only plain files"), "{e}");
        std::fs::remove_dir(dir.path().join("sub")).unwrap();
        write(dir.path(), &[("other.star", "")]);
        let e = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("2 modules"), "{e}");
    }
}
