//! The walls checked on the real, running signer (not a probe): seccomp and no_new_privs are
//! on, no core dump can be produced, and another process of the signer's own user can
//! neither ptrace it nor read its memory through /proc/<pid>/mem.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;

use vigil_testkit::Signer;
use vigil_testkit::host::is_root;
use vigil_testkit::reexec::{AsUser, run_test_as};
use vigil_testkit::signer::{SERVICE_GID, SERVICE_UID};

const CHILD_ENV: &str = "VIGIL_TEST_ATTACK_PID";

/// Runs in a child process with the signer's uid and no capabilities: tries to read the
/// signer's memory and to attach to it, and prints what happened.
#[test]
fn attacker_child() {
    let Some(pid) = std::env::var(CHILD_ENV).ok() else {
        return;
    };
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"));
    println!("MEM-OPEN ok={}", mem.is_ok());
    let pid = nix::unistd::Pid::from_raw(pid.parse().unwrap());
    let attach = nix::sys::ptrace::attach(pid);
    println!("PTRACE ok={} err={:?}", attach.is_ok(), attach.err());
}

fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in status"))
        .to_string()
}

#[test]
fn running_signer_is_confined_and_undumpable() {
    let s = Signer::start(&["trader"]);
    let pid = s.pid();
    assert!(
        status_field(pid, "Seccomp:").ends_with('2'),
        "{}",
        status_field(pid, "Seccomp:")
    );
    assert!(status_field(pid, "NoNewPrivs:").ends_with('1'));
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        &fields[4..6],
        &["0", "0"],
        "RLIMIT_CORE soft and hard must be 0: {core}"
    );
    // Dumpable 0 makes the kernel give /proc/<pid>/ to root, not to the process's user.
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(format!("/proc/{pid}/mem")).unwrap(),
    );
    assert_eq!(
        owner, 0,
        "/proc/<pid>/mem of an undumpable process is owned by root"
    );

    // Another process of the signer's own user.
    let signer_user = if is_root() {
        AsUser {
            uid: SERVICE_UID,
            gid: SERVICE_GID,
        }
    } else {
        AsUser::current()
    };
    let out = run_test_as(
        "attacker_child",
        signer_user,
        &[(CHILD_ENV, OsStr::new(&pid.to_string()))],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("MEM-OPEN ok=false"),
        "memory readable by the same user: {stdout}"
    );
    assert!(
        stdout.contains("PTRACE ok=false"),
        "ptrace by the same user succeeded: {stdout}"
    );
    assert!(stdout.contains("EPERM"), "{stdout}");
    // The signer is still serving after the attempts.
    assert!(
        s.client()
            .call(vigil_protocol::Op::Hello)
            .unwrap()
            .outcome
            .is_ok()
    );
}
