//! The signer's confinement, proven wall by wall. Each test starts its own process, the
//! `vigil-sandbox-probe` helper, which sanitizes and confines itself with
//! `vigil_signer::sandbox` exactly as the signer does and then tries ONE thing; the test
//! asserts on what it printed and on how it ended (killed by SIGSYS = seccomp).
//!
//! Run as root (as CI does), the probe starts as root and switches to `nobody`, and the
//! ptrace tests use a second process that is also `nobody` with no capabilities. Run as
//! an ordinary user, the root-only checks are skipped with a printed reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use vigil_testkit::host::{is_root, require_root};

const PROBE: &str = env!("CARGO_BIN_EXE_vigil-sandbox-probe");
const SIGSYS: i32 = 31;

/// A temporary state dir: `ro/` (keystore, policy) and `rw/` (ledger, audit).
struct State {
    _dir: tempfile::TempDir,
    ro: PathBuf,
    rw: PathBuf,
    /// `user:group` the probe switches to, when the tests run as root.
    run_as: Option<String>,
}

fn unprivileged_user() -> (String, u32, u32) {
    let user = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody exists");
    let group = ["nogroup", "nobody"]
        .iter()
        .find_map(|g| nix::unistd::Group::from_name(g).ok().flatten())
        .expect("group nogroup or nobody exists");
    (
        format!("nobody:{}", group.name),
        user.uid.as_raw(),
        group.gid.as_raw(),
    )
}

fn state() -> State {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    let rw = dir.path().join("rw");
    std::fs::create_dir(&ro).unwrap();
    std::fs::create_dir(&rw).unwrap();
    std::fs::write(ro.join("keystore.json"), "{\"sealed\":true}").unwrap();
    let run_as = if is_root() {
        // nobody must be able to reach both dirs and write rw, as the signer's user would.
        for p in [dir.path(), ro.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(
            ro.join("keystore.json"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let (run_as, uid, gid) = unprivileged_user();
        std::os::unix::fs::chown(&rw, Some(uid), Some(gid)).unwrap();
        Some(run_as)
    } else {
        None
    };
    State {
        _dir: dir,
        ro,
        rw,
        run_as,
    }
}

fn confined_cmd(s: &State, probe: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(PROBE);
    cmd.arg("confined")
        .arg(probe)
        .arg("--ro")
        .arg(&s.ro)
        .arg("--rw")
        .arg(&s.rw);
    if let Some(run_as) = &s.run_as {
        cmd.arg("--run-as").arg(run_as);
    }
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(s: &State, probe: &str, extra: &[&str]) -> (Output, String) {
    let out = confined_cmd(s, probe, extra).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

/// Runs a probe that must confine itself successfully and exit 0; returns its output.
fn run_ok(s: &State, probe: &str) -> String {
    let (out, text) = run(s, probe, &[]);
    assert!(
        out.status.success(),
        "probe {probe} failed: {:?}\nstdout: {text}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("confined: ConfinementReport"),
        "not confined: {text}"
    );
    text
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[test]
fn proc_status_shows_seccomp_no_new_privs_not_dumpable_no_core() {
    let s = state();
    let text = run_ok(&s, "status");
    assert_eq!(field(&text, "Seccomp:"), "2", "seccomp filter mode");
    let filters: u32 = field(&text, "Seccomp_filters:").parse().unwrap();
    assert!(filters >= 1, "Seccomp_filters: {filters}");
    assert_eq!(field(&text, "NoNewPrivs:"), "1");
    assert_eq!(field(&text, "dumpable:"), "0", "PR_GET_DUMPABLE");
    let core: Vec<&str> = field(&text, "Max core file size")
        .split_whitespace()
        .collect();
    assert_eq!(&core[..2], ["0", "0"], "RLIMIT_CORE soft and hard");
    assert_eq!(field(&text, "CapEff:"), "0000000000000000");
    assert_eq!(field(&text, "CapPrm:"), "0000000000000000");
    let locked_kib: u64 = field(&text, "VmLck:")
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    assert!(locked_kib > 0, "no memory locked: {text}");
    if require_root("the uid, gid and bounding-set checks: the probe switches user") {
        let (_, uid, gid) = unprivileged_user();
        assert_eq!(
            field(&text, "Uid:"),
            format!("{uid}\t{uid}\t{uid}\t{uid}"),
            "all uids switched"
        );
        assert_eq!(
            field(&text, "Gid:"),
            format!("{gid}\t{gid}\t{gid}\t{gid}"),
            "all gids switched"
        );
        assert_eq!(field(&text, "Groups:"), "", "no supplementary groups");
        assert_eq!(
            field(&text, "CapBnd:"),
            "0000000000000000",
            "bounding set emptied"
        );
        assert!(
            text.contains(&format!("dropped_to: Some(({uid}, {gid}))")),
            "{text}"
        );
    }
}

/// Runs `probe` confined (it must succeed) and checks that it printed `said`.
fn probe_says(s: &State, probe: &str, said: &str) {
    let text = run_ok(s, probe);
    assert!(text.contains(said), "{probe}: no {said:?} in {text}");
}

#[test]
fn opening_a_file_outside_the_state_dirs_fails() {
    probe_says(&state(), "open-outside", "open /etc/passwd: err EACCES");
}

#[test]
fn keystore_dir_is_readable_but_not_writable() {
    let s = state();
    probe_says(&s, "read-ro", "content: {\"sealed\":true}");
    probe_says(&s, "write-ro", "write ro: err EACCES");
    assert!(
        !s.ro.join("planted").exists(),
        "a file was planted in the keystore dir"
    );
}

#[test]
fn ledger_dir_is_writable() {
    let s = state();
    probe_says(&s, "write-rw", "write rw: ok");
    assert_eq!(
        std::fs::read_to_string(s.rw.join("ledger.log")).unwrap(),
        "spend 1\n"
    );
}

#[test]
fn new_sockets_exec_and_fork_are_killed() {
    let s = state();
    for probe in ["socket-inet", "socket-unix", "execve", "fork"] {
        let (out, text) = run(&s, probe, &[]);
        assert!(
            text.contains("confined: ConfinementReport"),
            "{probe}: not confined: {text}"
        );
        assert_eq!(
            out.status.signal(),
            Some(SIGSYS),
            "{probe} must be killed by seccomp: {:?} {text}",
            out.status
        );
        assert!(!text.contains(": ok"), "{probe} succeeded: {text}");
    }
}

/// A datagram socket bound in a temp dir outside the state dirs, reachable by anyone (as
/// `/run/systemd/journal/socket` or `/dev/log` are): landlock does not cover sending to a
/// pathname socket, so only seccomp stands between a compromised signer and it.
struct Listening {
    _dir: tempfile::TempDir,
    path: PathBuf,
    socket: UnixDatagram,
}

fn listening(name: &str) -> Listening {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join(name);
    let socket = UnixDatagram::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    socket.set_nonblocking(true).unwrap();
    Listening {
        _dir: dir,
        path,
        socket,
    }
}

impl Listening {
    /// The datagram waiting on the socket, if any.
    fn received(&self) -> Option<String> {
        let mut buf = [0u8; 256];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// `sendto` is allowed only without a destination: the notify socket connected before
/// confinement still carries READY=1 (through the signer's own `Readiness`), but the same
/// connected socket cannot be pointed at any other local socket.
#[test]
fn datagrams_reach_only_the_socket_connected_before_confinement() {
    let s = state();
    let notify = listening("notify");
    let victim = listening("victim");

    let mut ready = confined_cmd(&s, "notify", &[]);
    let out = ready.env("NOTIFY_SOCKET", &notify.path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?} {text}", out.status);
    assert!(text.contains("READY=1: ok"), "{text}");
    assert_eq!(
        notify.received().as_deref(),
        Some("READY=1\nSTATUS=probe\n"),
        "systemd's notify socket got READY=1"
    );

    let victim_path = victim.path.to_str().unwrap();
    let mut escape = confined_cmd(&s, "sendto-elsewhere", &["--victim", victim_path]);
    let out = escape.env("NOTIFY_SOCKET", &notify.path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("confined: ConfinementReport"), "{text}");
    assert_eq!(
        out.status.signal(),
        Some(SIGSYS),
        "sendto with a destination must be killed by seccomp: {:?} {text}",
        out.status
    );
    assert_eq!(
        victim.received(),
        None,
        "a datagram escaped to {victim_path}"
    );
}

/// `socketpair` only in the one shape tokio's signal driver makes (AF_UNIX stream,
/// nonblocking, close-on-exec): a datagram pair would be a fresh socket to `sendto` with.
#[test]
fn socketpair_is_allowed_only_as_tokio_makes_it() {
    let s = state();
    probe_says(
        &s,
        "socketpair-stream",
        "socketpair(AF_UNIX, SOCK_STREAM): ok",
    );
    let (out, text) = run(&s, "socketpair-dgram", &[]);
    assert!(text.contains("confined: ConfinementReport"), "{text}");
    assert_eq!(
        out.status.signal(),
        Some(SIGSYS),
        "a datagram socketpair must be killed by seccomp: {:?} {text}",
        out.status
    );
}

#[test]
fn multi_threaded_tokio_serves_after_confinement() {
    let s = state();
    let mut child = confined_cmd(&s, "tokio", &[]).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_for_line(&mut lines, "ready", &mut child);
    let mut conn = std::os::unix::net::UnixStream::connect(s.rw.join("probe.sock")).unwrap();
    conn.write_all(b"hello\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    let uid = rustix::process::getuid().as_raw();
    assert_eq!(
        reply,
        format!("echo uid={uid} hello\n"),
        "echo over the inherited listener, with SO_PEERCRED"
    );
    wait_for_line(&mut lines, "served", &mut child);
    let status = child.wait().unwrap();
    assert!(status.success(), "tokio probe ended with {status:?}");
    assert_eq!(
        std::fs::read_to_string(s.rw.join("journal")).unwrap(),
        "entry\n",
        "fdatasync'd append"
    );
}

#[test]
fn a_kernel_without_landlock_is_refused_with_its_requirement() {
    let s = state();
    let (out, text) = run(&s, "status", &["--simulate-no-landlock"]);
    assert_eq!(out.status.code(), Some(3), "must refuse to start: {text}");
    for needle in [
        "landlock is not supported",
        "ENOSYS",
        "Linux >= 6.2",
        "CONFIG_SECURITY_LANDLOCK=y",
        "lsm=",
        "--insecure-no-landlock",
    ] {
        assert!(text.contains(needle), "message lacks {needle:?}: {text}");
    }
}

#[test]
fn insecure_no_landlock_goes_on_without_the_file_wall_and_says_so() {
    let s = state();
    let (out, text) = run(
        &s,
        "open-outside",
        &["--simulate-no-landlock", "--insecure-no-landlock"],
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("DISABLED by --insecure-no-landlock"),
        "{text}"
    );
    assert!(
        text.contains("open /etc/passwd: ok"),
        "without landlock the wall is really gone: {text}"
    );
    let (out, _) = run(
        &s,
        "socket-inet",
        &["--simulate-no-landlock", "--insecure-no-landlock"],
    );
    assert_eq!(out.status.signal(), Some(SIGSYS), "seccomp still holds");
}

#[test]
fn root_without_run_as_is_refused() {
    if !require_root("a root-started probe without --run-as") {
        return;
    }
    let s = State {
        run_as: None,
        ..state()
    };
    let (out, text) = run(&s, "status", &[]);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("started as root without a user to run as"),
        "{text}"
    );
}

#[test]
fn same_user_cannot_ptrace_or_read_memory_of_the_signer() {
    let s = state();
    let attacker_as: Vec<String> = s
        .run_as
        .iter()
        .flat_map(|r| ["--as".to_string(), r.clone()])
        .collect();
    if s.run_as.is_none() {
        println!("not root: attacker and signer both run as the current user (no switch needed)");
    }

    let (mut target, pid) = hold(confined_cmd(&s, "hold", &[]));
    let text = attack(pid, &attacker_as);
    assert!(
        text.contains("attach: err EPERM"),
        "PTRACE_ATTACH must fail: {text}"
    );
    assert!(
        text.contains("seize: err EPERM"),
        "PTRACE_SEIZE must fail: {text}"
    );
    assert!(
        text.contains("mem: err EACCES"),
        "/proc/<pid>/mem must not open: {text}"
    );
    drop(target.stdin.take());
    assert!(target.wait().unwrap().success());

    // Control: the same attacker against a dumpable process of the same user succeeds, so
    // the failures above come from the signer's walls, not from the attacker's setup.
    if yama_restricts_ptrace() {
        println!("control skipped: Yama ptrace_scope > 0 blocks even dumpable targets");
        return;
    }
    if !require_root("the control attack: dumpable-target switches user") {
        return;
    }
    let run_as = s.run_as.as_ref().expect("as root the probe switches user");
    let mut control = Command::new(PROBE);
    control
        .arg("dumpable-target")
        .arg("--run-as")
        .arg(run_as)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let (mut control, pid) = hold(control);
    let text = attack(pid, &attacker_as);
    assert!(
        text.contains("attach: ok") && text.contains("mem: ok"),
        "control attack failed: {text}"
    );
    drop(control.stdin.take());
    let _ = control.wait();
}

/// The attack probe (as `attacker_as`) against `pid`: what it printed.
fn attack(pid: u32, attacker_as: &[String]) -> String {
    let out = Command::new(PROBE)
        .arg("attack")
        .arg(pid.to_string())
        .args(attacker_as)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Start a probe that prints `ready <pid>` and waits for stdin to close.
fn hold(mut cmd: Command) -> (Child, u32) {
    let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = wait_for_line(&mut lines, "ready", &mut child);
    let pid = line.trim_start_matches("ready").trim().parse().unwrap();
    (child, pid)
}

fn wait_for_line(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    prefix: &str,
    child: &mut Child,
) -> String {
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with(prefix) {
            return line;
        }
        assert!(
            !line.starts_with("confine-error") && !line.starts_with("probe-error"),
            "{line}"
        );
    }
    panic!("probe ended before {prefix:?}: {:?}", child.wait());
}

fn yama_restricts_ptrace() -> bool {
    std::fs::read_to_string(Path::new("/proc/sys/kernel/yama/ptrace_scope"))
        .is_ok_and(|v| v.trim() != "0")
}
