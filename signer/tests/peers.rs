//! Who may talk to the signer: the `SO_PEERCRED` uid check against a client running as
//! another user, connection slots per peer (a flood from one uid leaves another uid its
//! slots), and systemd socket activation (`LISTEN_FDS`) with systemd's own
//! `systemd-socket-activate`. The uid tests need root (to run a client as another uid); CI is root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use vigil_protocol::{Client, Op};
use vigil_testkit::Signer;
use vigil_testkit::host::require_root;
use vigil_testkit::reexec::{AsUser, run_test_as};
use vigil_testkit::requests::ok;

/// A uid that is neither the test's nor the signer's.
const OTHER: u32 = 4_242;
const CHILD_ENV: &str = "VIGIL_TEST_PEER_SOCKET";

/// Runs in a child process as uid OTHER: prints whether `hello` was answered.
#[test]
fn peer_child() {
    let Some(socket) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let answered = Client::connect(socket.as_ref(), Duration::from_secs(5))
        .ok()
        .and_then(|mut c| c.call(Op::Hello).ok())
        .is_some_and(|r| r.outcome.is_ok());
    println!("PEER-RESULT answered={answered}");
}

fn hello_as_other(s: &Signer) -> bool {
    let out = run_test_as(
        "peer_child",
        AsUser {
            uid: OTHER,
            gid: OTHER,
        },
        &[(CHILD_ENV, s.socket().as_os_str())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("PEER-RESULT"),
        "child did not run: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.contains("answered=true")
}

fn open_to_all(s: &Signer) {
    // Make the path reachable so that only SO_PEERCRED stands between another uid and the signer.
    std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(s.socket(), std::fs::Permissions::from_mode(0o777)).unwrap();
}

#[test]
fn other_uids_are_refused_unless_allowed() {
    if !require_root(&format!("runs a client as uid {OTHER}")) {
        return;
    }
    let s = Signer::start(&["trader"]);
    open_to_all(&s);
    assert!(!hello_as_other(&s), "a foreign uid was served");
    drop(s);

    let s = Signer::with(&["trader"])
        .args(&["--allow-peer-uid", &OTHER.to_string()])
        .start();
    open_to_all(&s);
    assert!(
        hello_as_other(&s),
        "an allowed uid was refused (the check above proves nothing)"
    );
}

/// More connections than the signer ever served at once (its old global limit was 64).
const FLOOD: usize = 80;

/// One peer (this process, root) opens [`FLOOD`] connections and keeps every one it is served
/// on idle; another allowed peer (uid OTHER) must still get its `hello` answered. Before slots
/// were per peer, the flood held all 64 and the other peer's connection was closed on accept.
#[test]
fn a_flood_of_connections_from_one_peer_does_not_stop_another_peer() {
    if !require_root(&format!("runs a second peer as uid {OTHER}")) {
        return;
    }
    let s = Signer::with(&["trader"])
        .args(&["--allow-peer-uid", &OTHER.to_string()])
        .start();
    open_to_all(&s);
    let mut held = Vec::new();
    for _ in 0..FLOOD {
        let Ok(mut c) = Client::connect(&s.socket(), Duration::from_secs(5)) else {
            continue;
        };
        if c.call(Op::Hello).is_ok_and(|r| r.outcome.is_ok()) {
            held.push(c);
        }
    }
    assert!(
        !held.is_empty() && held.len() < FLOOD,
        "the flooding peer is served up to its own quota, not for every connection: {} of {FLOOD}",
        held.len()
    );
    assert!(
        hello_as_other(&s),
        "{} idle connections of one peer stopped another peer's request",
        held.len()
    );
    // The flood's own connections still work: it only lost the ones above its quota.
    assert!(held[0].call(Op::Hello).unwrap().outcome.is_ok());
}

#[test]
fn serves_a_systemd_activated_socket() {
    let Ok(tool) = which("systemd-socket-activate") else {
        eprintln!("SKIPPED: systemd-socket-activate not installed (tests/run installs systemd)");
        return;
    };
    let mut s = Signer::start(&["trader"]);
    s.kill9();
    let socket = s.dir().join("activated.sock");
    let mut child = Command::new(tool)
        .arg("-l")
        .arg(&socket)
        .args(serve_without_socket(&s))
        .env("VIGIL_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let hello = loop {
        if let Ok(mut c) = Client::connect(&socket, Duration::from_secs(10))
            && let Ok(r) = c.call(Op::Hello)
        {
            break r;
        }
        assert!(Instant::now() < deadline, "activated signer never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ok(hello)["agents"][0]["agent"], "trader");
}

#[test]
fn serve_without_socket_or_activation_says_what_to_do() {
    let mut s = Signer::start(&["trader"]);
    s.kill9();
    let argv = serve_without_socket(&s);
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--socket"));
}

/// The launcher's `serve` command line (program first) without `--socket <path>`.
fn serve_without_socket(s: &Signer) -> Vec<OsString> {
    let serve = s.serve_command();
    let mut argv = vec![serve.get_program().to_owned()];
    let mut args = serve.get_args();
    while let Some(arg) = args.next() {
        if arg == "--socket" {
            args.next();
        } else {
            argv.push(arg.to_owned());
        }
    }
    argv
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
