//! Test helper for `signer/tests/confinement.rs`, not for production: a tiny,
//! single-threaded program (like the signer at start-up) that confines itself with
//! `vigil_signer::sandbox` exactly as the signer does, then tries ONE thing and prints
//! what happened. The test asserts on its output and on how it died (SIGSYS = killed by
//! seccomp). It also plays the attacker and a deliberately dumpable control target for
//! the ptrace tests.
//!
//! Usage:
//!   vigil-sandbox-probe confined <probe> --ro DIR --rw DIR [--run-as USER:GROUP]
//!                       [--simulate-no-landlock] [--insecure-no-landlock] [--victim SOCKET]
//!
//! The datagram probes (`notify`, `sendto-elsewhere`) take systemd's notify socket from
//! `$NOTIFY_SOCKET` and connect to it before confinement, as the signer does.
//!   vigil-sandbox-probe attack <pid> --as USER:GROUP
//!   vigil-sandbox-probe dumpable-target --run-as USER:GROUP

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use vigil_signer::sandbox::{self, SandboxConfig};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(code) => std::process::ExitCode::from(code),
        Err(message) => {
            println!("probe-error: {message}");
            std::process::ExitCode::from(2)
        }
    }
}

#[derive(Default)]
struct Args {
    positional: Vec<String>,
    ro: Vec<PathBuf>,
    rw: Vec<PathBuf>,
    run_as: Option<(String, String)>,
    simulate_no_landlock: bool,
    insecure_no_landlock: bool,
    victim: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--ro" => args.ro.push(value()?.into()),
            "--rw" => args.rw.push(value()?.into()),
            "--run-as" | "--as" => {
                let v = value()?;
                let (u, g) = v.split_once(':').ok_or("--run-as USER:GROUP")?;
                args.run_as = Some((u.to_string(), g.to_string()));
            }
            "--victim" => args.victim = Some(value()?.into()),
            "--simulate-no-landlock" => args.simulate_no_landlock = true,
            "--insecure-no-landlock" => args.insecure_no_landlock = true,
            _ => args.positional.push(a),
        }
    }
    Ok(args)
}

/// Exit code 0: the probe ran; 3: `confine` refused; 2: the probe itself failed.
fn run() -> Result<u8, String> {
    let args = parse_args()?;
    match args.positional.first().map(String::as_str) {
        Some("confined") => confined(&args),
        Some("attack") => attack(&args).map(|()| 0),
        Some("dumpable-target") => dumpable_target(&args).map(|()| 0),
        other => Err(format!("unknown mode {other:?}")),
    }
}

fn confined(args: &Args) -> Result<u8, String> {
    let probe = args
        .positional
        .get(1)
        .ok_or("confined needs a probe name")?
        .clone();
    sandbox::sanitize_process(&[], &[sandbox::notify::NOTIFY_ENV]).map_err(|e| e.to_string())?;
    // Opened before confinement, read after: /proc content is produced at read time, and
    // landlock (rightly) forbids opening /proc once confined.
    let status = File::open("/proc/self/status").map_err(|e| e.to_string())?;
    let limits = File::open("/proc/self/limits").map_err(|e| e.to_string())?;
    let rw = args.rw.first().ok_or("--rw DIR needed")?.clone();
    let ro = args.ro.first().ok_or("--ro DIR needed")?.clone();
    let listener = if probe == "tokio" {
        let l = std::os::unix::net::UnixListener::bind(rw.join("probe.sock"))
            .map_err(|e| e.to_string())?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        Some(l)
    } else {
        None
    };
    // Connected before confinement, like the signer's notify socket (start-up step 4c).
    let readiness = sandbox::notify::Readiness::connect_from_env()?;
    let datagram = match std::env::var_os(sandbox::notify::NOTIFY_ENV) {
        Some(target) if probe == "sendto-elsewhere" => {
            let sock = std::os::unix::net::UnixDatagram::unbound().map_err(|e| e.to_string())?;
            sock.connect(target).map_err(|e| e.to_string())?;
            Some(sock)
        }
        _ => None,
    };
    if args.simulate_no_landlock {
        simulate_kernel_without_landlock()?;
    }
    let cfg = SandboxConfig {
        read_only: args.ro.clone(),
        read_write: args.rw.clone(),
        run_as: args.run_as.clone(),
        insecure_no_landlock: args.insecure_no_landlock,
        insecure_allow_unlocked_memory: false,
    };
    match sandbox::confine(&cfg) {
        Ok(report) => println!("confined: {report:?}"),
        Err(e) => {
            println!("confine-error: {e}");
            return Ok(3);
        }
    }
    flush();
    match probe.as_str() {
        "status" => {
            print_proc(
                &status,
                &[
                    "Seccomp:",
                    "Seccomp_filters:",
                    "NoNewPrivs:",
                    "VmLck:",
                    "Uid:",
                    "Gid:",
                    "CapEff:",
                    "CapPrm:",
                    "CapBnd:",
                    "Groups:",
                ],
            )?;
            print_proc(&limits, &["Max core file size"])?;
            let dumpable = rustix::process::dumpable_behavior().map_err(|e| e.to_string())?;
            println!(
                "dumpable: {}",
                i32::from(dumpable != rustix::process::DumpableBehavior::NotDumpable)
            );
        }
        "open-outside" => report("open /etc/passwd", File::open("/etc/passwd").map(drop)),
        "read-ro" => report(
            "read ro",
            std::fs::read_to_string(ro.join("keystore.json")).map(|s| println!("content: {s}")),
        ),
        "write-ro" => report("write ro", File::create(ro.join("planted")).map(drop)),
        "write-rw" => report(
            "write rw",
            File::create(rw.join("ledger.log")).and_then(|mut f| {
                f.write_all(b"spend 1\n")?;
                f.sync_data()
            }),
        ),
        "socket-inet" => report_errno(
            "socket(AF_INET)",
            rustix::net::socket(
                rustix::net::AddressFamily::INET,
                rustix::net::SocketType::STREAM,
                None,
            )
            .map(drop),
        ),
        "socket-unix" => report_errno(
            "socket(AF_UNIX)",
            rustix::net::socket(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::STREAM,
                None,
            )
            .map(drop),
        ),
        "execve" => {
            let path = c"/bin/true";
            report_errno(
                "execve",
                nix::unistd::execv(path, &[path])
                    .map(drop)
                    .map_err(|e| rustix::io::Errno::from_raw_os_error(e as i32)),
            );
        }
        "fork" => report(
            "fork",
            std::process::Command::new("/bin/true").status().map(drop),
        ),
        "notify" => report(
            "READY=1",
            readiness.send_ready("probe").map_err(std::io::Error::other),
        ),
        "sendto-elsewhere" => {
            let sock = datagram.ok_or("sendto-elsewhere needs $NOTIFY_SOCKET")?;
            let victim = args.victim.as_ref().ok_or("--victim SOCKET needed")?;
            let to =
                rustix::net::SocketAddrUnix::new(victim.as_path()).map_err(|e| e.to_string())?;
            report_errno(
                "sendto victim",
                rustix::net::sendto(&sock, b"escaped", rustix::net::SendFlags::empty(), &to)
                    .map(drop),
            );
        }
        "socketpair-dgram" => report_errno(
            "socketpair(AF_UNIX, SOCK_DGRAM)",
            rustix::net::socketpair(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::DGRAM,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .map(drop),
        ),
        "socketpair-stream" => report_errno(
            "socketpair(AF_UNIX, SOCK_STREAM)",
            rustix::net::socketpair(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::STREAM,
                rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .map(drop),
        ),
        "hold" => {
            println!("ready {}", std::process::id());
            flush();
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        }
        "tokio" => serve_once(listener.ok_or("no listener")?, &rw)?,
        other => return Err(format!("unknown probe {other}")),
    }
    flush();
    Ok(0)
}

/// Make `landlock_create_ruleset` fail with ENOSYS, exactly as on a kernel built without
/// landlock, so the real start-up code meets a real "fresh machine" answer.
fn simulate_kernel_without_landlock() -> Result<(), String> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let enosys = libc::ENOSYS.unsigned_abs();
    let rules = std::collections::BTreeMap::from([(libc::SYS_landlock_create_ruleset, Vec::new())]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(enosys),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let program = BpfProgram::try_from(filter).map_err(|e| e.to_string())?;
    seccompiler::apply_filter(&program).map_err(|e| e.to_string())
}

/// A multi-threaded tokio runtime started after confinement: accept one client, echo one
/// line, append to a file in the rw dir with fdatasync on the blocking pool, sleep on a
/// timer. Proves the allowlist carries what the daemon uses.
fn serve_once(
    listener: std::os::unix::net::UnixListener,
    rw: &std::path::Path,
) -> Result<(), String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let journal = rw.join("journal");
    rt.block_on(async move {
        let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| e.to_string())?;
        println!("ready");
        flush();
        let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let peer = stream.peer_cred().map_err(|e| e.to_string())?;
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        BufReader::new(read)
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        let appended = tokio::task::spawn_blocking(move || {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(journal)?;
            f.write_all(b"entry\n")?;
            f.sync_data()
        })
        .await
        .map_err(|e| e.to_string())?;
        appended.map_err(|e| e.to_string())?;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        write
            .write_all(format!("echo uid={} {line}", peer.uid()).as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        write.shutdown().await.map_err(|e| e.to_string())?;
        println!("served");
        Ok::<(), String>(())
    })?;
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(())
}

/// Attacker: switch to the given user if any (no capabilities left), then try to ptrace the
/// target and read its memory through /proc.
fn attack(args: &Args) -> Result<(), String> {
    let pid: i32 = args
        .positional
        .get(1)
        .and_then(|p| p.parse().ok())
        .ok_or("attack <pid>")?;
    if let Some((user, group)) = &args.run_as {
        become_user(user, group)?;
    }
    let target = nix::unistd::Pid::from_raw(pid);
    match nix::sys::ptrace::attach(target) {
        Ok(()) => {
            println!("attach: ok");
            let _ = nix::sys::wait::waitpid(target, None);
            let _ = nix::sys::ptrace::detach(target, None);
        }
        Err(e) => println!("attach: err {e}"),
    }
    match nix::sys::ptrace::seize(target, nix::sys::ptrace::Options::empty()) {
        Ok(()) => {
            println!("seize: ok");
            let _ = nix::sys::ptrace::detach(target, None);
        }
        Err(e) => println!("seize: err {e}"),
    }
    let mem = File::open(format!("/proc/{pid}/mem")).and_then(|f| {
        let mut buf = [0_u8; 1];
        // Any mapped address will do to prove reading works; the vDSO page always is.
        f.read_at(&mut buf, 0x1000).map(drop).or_else(|e| {
            if e.raw_os_error() == Some(libc::EIO) {
                Ok(())
            } else {
                Err(e)
            }
        })
    });
    report("mem", mem);
    flush();
    Ok(())
}

/// Control target: same user as the attacker, deliberately dumpable, not confined.
fn dumpable_target(args: &Args) -> Result<(), String> {
    let (user, group) = args.run_as.clone().ok_or("--run-as USER:GROUP")?;
    become_user(&user, &group)?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable)
        .map_err(|e| e.to_string())?;
    println!("ready {}", std::process::id());
    flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}

fn become_user(user: &str, group: &str) -> Result<(), String> {
    let (uid, gid) = sandbox::process::resolve_user(user, group).map_err(|e| e.to_string())?;
    nix::unistd::setgroups(&[]).map_err(|e| e.to_string())?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| e.to_string())?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| e.to_string())
}

fn print_proc(mut file: &File, keys: &[&str]) -> Result<(), String> {
    use std::io::{Seek, SeekFrom};
    // lseek + read: the allowlist has no pread64.
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| e.to_string())?;
    for line in text.lines() {
        if keys.iter().any(|k| line.starts_with(k)) {
            println!("{line}");
        }
    }
    Ok(())
}

fn report(what: &str, result: std::io::Result<()>) {
    match result {
        Ok(()) => println!("{what}: ok"),
        Err(e) => println!(
            "{what}: err {}",
            e.raw_os_error().map_or_else(|| e.to_string(), errno_name)
        ),
    }
}

fn report_errno(what: &str, result: Result<(), rustix::io::Errno>) {
    match result {
        Ok(()) => println!("{what}: ok"),
        Err(e) => println!("{what}: err {}", errno_name(e.raw_os_error())),
    }
}

fn errno_name(code: i32) -> String {
    match code {
        libc::EACCES => "EACCES".into(),
        libc::EPERM => "EPERM".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EAFNOSUPPORT => "EAFNOSUPPORT".into(),
        other => format!("errno {other}"),
    }
}

fn flush() {
    let _ = std::io::stdout().flush();
}
