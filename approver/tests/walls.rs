//! The approver's walls, each tried from inside: `vigil-approver-probe` confines itself as
//! the daemon does (as root it drops to uid 4244, as the signer's dev approver), then tries
//! one thing. Allowed: its state dir, the DNS files, TCP to the Bot API's port, a Unix socket
//! (the signer's), name resolution. Refused (an error) or killed (SIGSYS): every other file,
//! another TCP port, exec, ptrace, a netlink socket, bind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

const PROBE: &str = env!("CARGO_BIN_EXE_vigil-approver-probe");
/// The uid (and gid) the probe drops to when the tests run as root.
const APPROVER_UID: u32 = 4244;

struct Outcome {
    stdout: String,
    signal: Option<i32>,
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A state dir the probe's uid owns, in a dir it may traverse.
fn state_dir() -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let state = work.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("state.json"), b"{}").unwrap();
    if is_root() {
        for p in [&state, &state.join("state.json")] {
            std::os::unix::fs::chown(p, Some(APPROVER_UID), Some(APPROVER_UID)).unwrap();
        }
    }
    work
}

fn probe(work: &Path, api_port: u16, what: &str, arg: &str) -> Outcome {
    let mut cmd = Command::new(PROBE);
    cmd.args([what, arg, "--state"])
        .arg(work.join("state"))
        .args(["--api-port", &api_port.to_string()]);
    if is_root() {
        cmd.args(["--run-as", &format!("{APPROVER_UID}:{APPROVER_UID}")]);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("confined:"),
        "the probe did not confine itself: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Outcome {
        stdout,
        signal: out.status.signal(),
    }
}

fn assert_ok(o: &Outcome, what: &str) {
    assert!(
        o.stdout.contains("ok: "),
        "{what} should be allowed: {}",
        o.stdout
    );
}

fn assert_refused(o: &Outcome, what: &str) {
    assert!(
        o.stdout.contains("refused: "),
        "{what} should be refused: {} (signal {:?})",
        o.stdout,
        o.signal
    );
}

fn assert_killed(o: &Outcome, what: &str) {
    assert_eq!(
        o.signal,
        Some(libc::SIGSYS),
        "{what} should be killed by seccomp: {}",
        o.stdout
    );
}

#[test]
fn the_process_walls_hold() {
    let work = state_dir();
    let o = probe(work.path(), 443, "status", "");
    assert_ok(&o, "status");
    for needle in ["Seccomp:\t2", "NoNewPrivs:\t1", "CapEff:\t0000000000000000"] {
        assert!(o.stdout.contains(needle), "{needle} not in {}", o.stdout);
    }
    if is_root() {
        assert!(
            o.stdout.contains(&format!(
                "Uid:\t{APPROVER_UID}\t{APPROVER_UID}\t{APPROVER_UID}"
            )),
            "{}",
            o.stdout
        );
    }
    assert_killed(&probe(work.path(), 443, "exec", "/bin/true"), "exec");
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    assert_killed(
        &probe(work.path(), 443, "ptrace", &victim.id().to_string()),
        "ptrace",
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
    assert_killed(&probe(work.path(), 443, "netlink", ""), "a netlink socket");
    assert_killed(&probe(work.path(), 443, "bind", ""), "bind");
}

#[test]
fn files_only_in_the_state_dir_and_the_dns_files() {
    let work = state_dir();
    let state = work.path().join("state");
    assert_ok(
        &probe(
            work.path(),
            443,
            "read",
            state.join("state.json").to_str().unwrap(),
        ),
        "its state",
    );
    assert_ok(
        &probe(
            work.path(),
            443,
            "write",
            state.join("new.json").to_str().unwrap(),
        ),
        "a file in its state dir",
    );
    assert_ok(&probe(work.path(), 443, "read", "/etc/hosts"), "/etc/hosts");
    assert_ok(
        &probe(work.path(), 443, "resolve", "localhost"),
        "resolving localhost",
    );
    // Readable by the uid (world-readable), but outside the walls.
    let outside = work.path().join("outside.txt");
    std::fs::write(&outside, b"x").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
    for path in [
        outside.to_str().unwrap(),
        "/etc/passwd",
        "/proc/self/status",
        "/etc/vigil",
    ] {
        assert_refused(&probe(work.path(), 443, "read", path), path);
    }
    let o = probe(
        work.path(),
        443,
        "write",
        work.path().join("dropped").to_str().unwrap(),
    );
    assert_refused(&o, "a file outside the state dir");
    assert!(!work.path().join("dropped").exists());
}

#[test]
fn tcp_only_to_the_bot_api_port_and_unix_to_the_signer() {
    let work = state_dir();
    let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api_port = api.local_addr().unwrap().port();
    let other_port = other.local_addr().unwrap().port();
    assert_ok(
        &probe(work.path(), api_port, "tcp", &api_port.to_string()),
        "the Bot API port",
    );
    let o = probe(work.path(), api_port, "tcp", &other_port.to_string());
    assert_refused(&o, "another TCP port");
    assert!(
        o.stdout.contains("Permission denied"),
        "landlock, not the peer, refused: {}",
        o.stdout
    );
    let sock = work.path().join("signer.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_ok(
        &probe(work.path(), api_port, "unix", sock.to_str().unwrap()),
        "the signer's socket",
    );
}
