//! What a release before keys were per network left on disk, to prove today's code still reads
//! it: a dev-init state dir (keystore format 1: scrypt per entry, one key per agent and chain,
//! no network; its default policy names solana:devnet and solana:testnet) and a ceremony stick
//! (manifest agents without a network), both made by that release's own `dev-init` and
//! `vigil-ceremony` and kept under `testkit/fixtures/`. Secrets there are development ones.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use vigil_protocol::DevInitReport;

use crate::operator::Operator;

/// The fixtures' directory in the checkout.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Copies `from` into `to` (created), directories 0700 and files 0600, as the signer wants.
fn copy_private(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a fixture copy");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
    for entry in std::fs::read_dir(from).expect("reading a fixture") {
        let entry = entry.expect("a fixture entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_private(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying a fixture file");
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
                .expect("chmod 600");
        }
    }
}

/// The format 1 dev-init state dir, copied to `state` (with an empty `ledger/`); its dev-init
/// report, with the paths where the copy lies. Agents `trader` and `sentinel`.
pub fn format1_state_dir(state: &Path) -> DevInitReport {
    let from = fixtures().join("state-v1");
    copy_private(&from, state);
    std::fs::remove_file(state.join("dev-init-report.json")).expect("the report is not state");
    std::fs::create_dir_all(state.join("ledger")).expect("the ledger dir");
    std::fs::set_permissions(state.join("ledger"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod 700");
    let text = std::fs::read_to_string(from.join("dev-init-report.json"))
        .expect("the fixture's dev-init report")
        .replace("STATE", &state.to_string_lossy());
    DevInitReport::parse(text.as_bytes()).expect("the fixture's report parses")
}

/// The format 1 ceremony stick (agent `trader`, policy on solana:devnet, test-cost KDF,
/// passphrase [`crate::ceremony::PASSPHRASE`]), copied to `dir`; and the authenticator that
/// ceremony enrolled.
pub fn format1_stick(dir: &Path) -> Operator {
    copy_private(&fixtures().join("stick-v1"), dir);
    let uri = std::fs::read_to_string(fixtures().join("stick-v1.otpauth"))
        .expect("the fixture stick's authenticator");
    Operator::from_uri(uri.trim())
}
