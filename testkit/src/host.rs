//! The machine the tests run on, and what every test shares: `SOL`, the clock, whether this
//! is root (and what a root-only test does when it is not), the repository, the binaries of
//! this build.
//!
//! `tests/run` exports `VIGIL_TESTS_AS_ROOT=1` when it runs as root: a root-only test then
//! fails instead of printing SKIPPED, so that a suite meant to run as root cannot pass by
//! skipping. Run as an ordinary user (without it), such a test says SKIPPED and passes.

use std::path::{Path, PathBuf};
use std::process::Output;

pub use vigil_devnet::{SOL, is_root, unix_now};

/// Set to `1` by `tests/run` when it runs as root.
pub const AS_ROOT_ENV: &str = "VIGIL_TESTS_AS_ROOT";

/// Whether a test that needs root may go on: yes as root. Otherwise it prints
/// `SKIPPED: <why>` and answers no, or, when `VIGIL_TESTS_AS_ROOT=1` says the suite runs as
/// root, panics (a skip there would hide a failure).
pub fn require_root(why: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var(AS_ROOT_ENV).as_deref() != Ok("1"),
        "{AS_ROOT_ENV}=1 says this suite runs as root, but this test process is not root ({why}); \
         run it as root, or unset {AS_ROOT_ENV} to skip what needs root"
    );
    println!("SKIPPED: {why} (needs root)");
    false
}

/// The repository's root: the parent of the package directory cargo (or nextest, also from
/// an archive) names in `CARGO_MANIFEST_DIR`, else of the kit's own.
pub fn repo_root() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    package.parent().map(Path::to_path_buf).unwrap_or(package)
}

/// The binary `name` of this build (`vigil-signer`, `vigil-orchestrator`, ...): the file named
/// by `VIGIL_<NAME>_BIN` (e.g. `VIGIL_SIGNER_BIN`, for a target dir shared between branches),
/// else the one beside this test binary. `tests/run` builds every binary first.
pub fn binary(name: &str) -> PathBuf {
    let var = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return PathBuf::from(path);
    }
    vigil_devnet::sibling_binary(name).unwrap_or_else(|e| panic!("{e} (or set {var})"))
}

/// `out` of a command that must have succeeded (else the test fails with its stderr).
pub fn check(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh temp dir, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir()
        .unwrap_or_else(|e| panic!("cannot make a temp dir (is TMPDIR writable?): {e}"))
}

/// Waits (up to 20 s, checking every 100 ms) until `cond` holds; panics naming `what`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not so after 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_only_test_skips_for_a_user_and_fails_when_the_suite_says_root() {
        if is_root() {
            assert!(require_root("the check itself"));
            return;
        }
        // The variable is only read: tests run in parallel, so none of them may change it.
        if std::env::var(AS_ROOT_ENV).as_deref() == Ok("1") {
            assert!(std::panic::catch_unwind(|| require_root("x")).is_err());
        } else {
            assert!(!require_root("the check itself"));
        }
    }

    #[test]
    fn binaries_are_found_beside_the_test_binary() {
        let signer = binary("vigil-signer");
        assert!(signer.is_file(), "{}", signer.display());
        assert!(repo_root().join("Cargo.toml").is_file());
    }
}
