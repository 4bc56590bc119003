//! The appliance's proposal sandbox, reached over a socket: `vigil-proposal.socket`
//! (`Accept=yes`, group `vigil`, mode 0660) starts one `vigil-proposal@.service` per
//! connection, a dynamic user with no network, no secrets and no live state, whose standard
//! input and output are the connection.
//!
//! The orchestrator ([`submit`]) sends one [`Request`]: the bundle's files and the recorded
//! window, as JSON, then closes its side for writing; the instance ([`serve`], `vigil-orchestrator
//! proposal serve`) reads it (at most [`MAX_REQUEST_BYTES`]), writes the files into its private
//! `/tmp`, runs the proposal check there and answers with the check's report as JSON (or
//! `{"error": "..."}`), then exits. The sandbox therefore sees this one proposal and nothing
//! else: no shared directory, no other proposal, no path of the orchestrator's. Starting it
//! needs nothing but the right to connect (no polkit rule, no D-Bus): the same file-permission
//! boundary as the signer's socket. `MaxConnections=` bounds how many run at once, the unit's
//! `RuntimeMaxSec=` how long one runs; a killed check closes the connection without a report,
//! and [`submit`] says so.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The socket `vigil-proposal.socket` listens on.
pub const SOCKET: &str = "/run/vigil-proposal.sock";
/// The largest request (bundle and window), bytes.
pub const MAX_REQUEST_BYTES: usize = 32 << 20;
/// The largest report, bytes.
pub const MAX_REPORT_BYTES: usize = 4 << 20;
/// The most files a bundle may send.
const MAX_FILES: usize = 8;
/// How long [`submit`] waits for a report: the sandbox's wall time (the unit's
/// `RuntimeMaxSec=` ends a check) and a little more for the instance's start and report.
pub const TIMEOUT: Duration = Duration::from_secs(super::sandbox::WALL_TIME.as_secs() + 30);
/// The request format's version.
const VERSION: u32 = 1;

/// What the orchestrator sends: the bundle's files (name → text) and the recorded window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Always 1.
    pub version: u32,
    /// The bundle's files: plain names, UTF-8 text (`modules/bundle.rs` checks the rest).
    pub bundle: BTreeMap<String, String>,
    /// The recording file's text (`modules/replay.rs` format).
    pub recording: String,
}

impl Request {
    /// The request for the bundle directory `bundle` and the recording file `recording`.
    pub fn from_files(bundle: &Path, recording: &Path) -> Result<Request, String> {
        let fail = |p: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(bundle).map_err(|e| fail(bundle, &e))? {
            let entry = entry.map_err(|e| fail(bundle, &e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            check_name(&name)?;
            if !entry.file_type().map_err(|e| fail(&path, &e))?.is_file() {
                return Err(format!(
                    "{}: a bundle holds only plain files",
                    path.display()
                ));
            }
            let text = std::fs::read_to_string(&path).map_err(|e| fail(&path, &e))?;
            files.insert(name, text);
        }
        if files.len() > MAX_FILES {
            return Err(format!(
                "{}: {} files, more than a bundle's {MAX_FILES}",
                bundle.display(),
                files.len()
            ));
        }
        let recording = std::fs::read_to_string(recording).map_err(|e| fail(recording, &e))?;
        Ok(Request {
            version: VERSION,
            bundle: files,
            recording,
        })
    }

    /// Writes the request's files under `dir` (which must not exist yet): `dir/bundle/<name>`
    /// and `dir/recording.json`; the bundle directory and the recording file.
    pub fn unpack(&self, dir: &Path) -> Result<(PathBuf, PathBuf), String> {
        if self.version != VERSION {
            return Err(format!(
                "request version {} is not {VERSION}: the orchestrator and the sandbox's binary differ; rebuild or switch both",
                self.version
            ));
        }
        if self.bundle.len() > MAX_FILES {
            return Err(format!(
                "the bundle has {} files, more than {MAX_FILES}",
                self.bundle.len()
            ));
        }
        let fail = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&bundle).map_err(|e| fail(&bundle, e))?;
        for (name, text) in &self.bundle {
            check_name(name)?;
            let path = bundle.join(name);
            std::fs::write(&path, text).map_err(|e| fail(&path, e))?;
        }
        let recording = dir.join("recording.json");
        std::fs::write(&recording, &self.recording).map_err(|e| fail(&recording, e))?;
        Ok((bundle, recording))
    }
}

/// A bundle file's name: 1-80 of `a-z A-Z 0-9 _ . -`, not starting with `.`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 80
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bundle file name {:?} is not 1-80 of a-z, A-Z, 0-9, _, . and - (not starting with .)",
            vigil_protocol::truncate(name)
        ))
    }
}

/// Sends `request` to the sandbox at `socket` and waits (at most `timeout`) for its report.
pub fn submit(socket: &Path, request: &Request, timeout: Duration) -> Result<Value, String> {
    let body = serde_json::to_vec(request).map_err(|e| format!("the request: {e}"))?;
    if body.len() > MAX_REQUEST_BYTES {
        return Err(format!(
            "the bundle and the recorded window are {} bytes, more than the sandbox's {MAX_REQUEST_BYTES}",
            body.len()
        ));
    }
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach the proposal sandbox at {}: {e}; is vigil-proposal.socket running \
             (systemctl status vigil-proposal.socket) and is this user in group vigil?",
            socket.display()
        )
    })?;
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|()| stream.set_read_timeout(Some(timeout)))
        .map_err(|e| format!("the sandbox's connection: {e}"))?;
    // The instance gone before it answered (killed, or refused at MaxConnections=): the
    // connection is closed under the writer or the reader.
    const NO_REPORT: &str = "the sandbox closed the connection without a report: the check \
        was killed (its wall-time, CPU or memory limit), could not start, or two checks were \
        running already (try again when they end); `journalctl -u 'vigil-proposal@*'` says which";
    let closed = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        )
    };
    stream
        .write_all(&body)
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .map_err(|e| {
            if closed(&e) {
                NO_REPORT.to_string()
            } else {
                format!("sending the proposal to the sandbox: {e}")
            }
        })?;
    let mut answer = Vec::new();
    stream
        .take(MAX_REPORT_BYTES as u64 + 1)
        .read_to_end(&mut answer)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                "the sandbox gave no report within {}s: the check is taking longer than its limit",
                timeout.as_secs()
            ),
            _ if closed(&e) => NO_REPORT.to_string(),
            _ => format!("reading the sandbox's report: {e}"),
        })?;
    if answer.is_empty() {
        return Err(NO_REPORT.into());
    }
    if answer.len() > MAX_REPORT_BYTES {
        return Err(format!(
            "the sandbox's report is larger than {MAX_REPORT_BYTES} bytes"
        ));
    }
    let report: Value = serde_json::from_slice(&answer)
        .map_err(|e| format!("the sandbox's report is not JSON: {e}"))?;
    if let Some(error) = report.get("error").and_then(Value::as_str) {
        return Err(format!("the sandbox refused the request: {error}"));
    }
    Ok(report)
}

/// The instance's side: reads one request from `input`, checks the proposal in a fresh
/// directory under `scratch`, writes the report (or `{"error": ...}`) to `output`. True when a
/// report was written (passed or refused), false on a bad request.
pub fn serve(input: impl Read, mut output: impl Write, scratch: &Path) -> std::io::Result<bool> {
    let (answer, ok) = match handle(input, scratch) {
        Ok(report) => (report, true),
        Err(error) => (serde_json::json!({ "error": error }), false),
    };
    let bytes = serde_json::to_vec(&answer).map_err(std::io::Error::other)?;
    output.write_all(&bytes)?;
    output.flush()?;
    Ok(ok)
}

fn handle(input: impl Read, scratch: &Path) -> Result<Value, String> {
    let mut body = Vec::new();
    input
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("reading the request: {e}"))?;
    if body.len() > MAX_REQUEST_BYTES {
        return Err(format!(
            "the request is larger than {MAX_REQUEST_BYTES} bytes"
        ));
    }
    let request: Request = serde_json::from_slice(&body)
        .map_err(|e| format!("the request is not a proposal request: {e}"))?;
    let dir = scratch.join(format!("vigil-proposal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (bundle, recording) = request.unpack(&dir)?;
    let report = crate::modules::check_bundle(&bundle, &recording);
    let _ = std::fs::remove_dir_all(&dir);
    serde_json::to_value(&report).map_err(|e| format!("the report: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_bundle_are_refused() {
        for bad in ["", "../x.star", "a/b", ".hidden", "x\0y", &"a".repeat(81)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in [
            "trend.star",
            "trend_test.star",
            "rationale.md",
            "config.toml",
        ] {
            check_name(good).unwrap();
        }
    }

    #[test]
    fn a_bad_request_gets_an_error_not_a_check() {
        let scratch = tempfile::tempdir().unwrap();
        for (input, says) in [
            (&b"not json"[..], "not a proposal request"),
            (br#"{"version":2,"bundle":{},"recording":""}"#, "version 2"),
            (
                br#"{"version":1,"bundle":{"../escape":"x"},"recording":""}"#,
                "is not 1-80",
            ),
            (
                br#"{"version":1,"bundle":{},"recording":"","extra":1}"#,
                "unknown field",
            ),
        ] {
            let mut out = Vec::new();
            assert!(!serve(input, &mut out, scratch.path()).unwrap());
            let v: Value = serde_json::from_slice(&out).unwrap();
            let e = v["error"].as_str().unwrap();
            assert!(e.contains(says), "{e}");
        }
        assert!(!scratch.path().join("escape").exists());
    }

    #[test]
    fn a_request_is_unpacked_into_exactly_its_files() {
        let src = tempfile::tempdir().unwrap();
        let bundle = src.path().join("b");
        std::fs::create_dir(&bundle).unwrap();
        std::fs::write(bundle.join("m.star"), "def decide(ctx):\n    return None\n").unwrap();
        std::fs::write(bundle.join("rationale.md"), "why").unwrap();
        let rec = src.path().join("rec.json");
        std::fs::write(&rec, "{}").unwrap();
        let request = Request::from_files(&bundle, &rec).unwrap();
        assert_eq!(request.bundle.len(), 2);
        let out = tempfile::tempdir().unwrap();
        let (b, r) = request.unpack(&out.path().join("p")).unwrap();
        assert_eq!(std::fs::read_to_string(r).unwrap(), "{}");
        assert_eq!(
            std::fs::read_to_string(b.join("rationale.md")).unwrap(),
            "why"
        );
        assert_eq!(std::fs::read_dir(b).unwrap().count(), 2);
    }
}
