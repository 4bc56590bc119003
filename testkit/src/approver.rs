//! The `vigil-approver` daemon under test: its config written for a test (the emulator's URL,
//! the signer's socket, a state dir under the test's work dir, a fast poll), its token in its
//! own credential, started as a [`Daemon`] (killed, as a crash, when dropped).

use std::path::{Path, PathBuf};

use crate::daemon::{BotToken, Daemon};
use crate::telegram::OPERATOR;

/// The approver's token credential (its default name).
pub const APPROVER_TOKEN_CREDENTIAL: &str = "vigil-approver-bot-token";

/// Where a test's approver keeps its state: `<work>/approver-state`.
pub fn state_dir(work: &Path) -> PathBuf {
    work.join("approver-state")
}

/// Writes `<work>/approver.toml` for the Bot API at `api_url` and the signer at `socket`
/// (operator [`OPERATOR`], polling every 200 ms); its path.
pub fn write_config(work: &Path, api_url: &str, socket: &Path) -> PathBuf {
    let state = state_dir(work);
    std::fs::create_dir_all(&state).expect("the approver's state dir");
    let path = work.join("approver.toml");
    let toml = format!(
        "operators = [{OPERATOR}]\napi_url = {api_url:?}\nsigner_socket = {:?}\nstate_dir = {:?}\n\
         poll_interval_ms = 200\n",
        socket.display().to_string(),
        state.display().to_string()
    );
    std::fs::write(&path, toml).expect("writing the approver's config");
    path
}

/// Starts `vigil-approver` with the config of [`write_config`] and the bot token (if given).
pub fn start(work: &Path, api_url: &str, socket: &Path, token: BotToken) -> Daemon {
    let config = write_config(work, api_url, socket);
    Daemon::spawn(
        "vigil-approver",
        work,
        &config,
        APPROVER_TOKEN_CREDENTIAL,
        token,
    )
}
