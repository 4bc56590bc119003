//! Test helper for `approver/tests/walls.rs`, not for production: a single-threaded program
//! that confines itself exactly as `vigil-approver` does (`vigil_approver::confine`), then
//! tries ONE thing and prints what happened. The test asserts on its output and on how it
//! died (SIGSYS: killed by seccomp).
//!
//! Usage: `vigil-approver-probe <probe> [ARG] --state DIR --api-port PORT [--run-as UID:GID]`

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::PathBuf;

use vigil_approver::confine::{self, Walls};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            println!("probe-error: {message}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut positional = Vec::new();
    let (mut state, mut api_port, mut run_as) = (None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--state" => state = Some(PathBuf::from(value()?)),
            "--api-port" => api_port = Some(value()?.parse::<u16>().map_err(|e| e.to_string())?),
            "--run-as" => run_as = Some(confine::parse_run_as(&value()?)?),
            _ => positional.push(a),
        }
    }
    let probe = positional.first().ok_or("which probe?")?.clone();
    let arg = positional.get(1).cloned().unwrap_or_default();
    vigil_sandbox::sanitize_process(&[], &[]).map_err(|e| e.to_string())?;
    // Opened before confinement, read after: landlock forbids opening /proc once confined.
    let mut status = std::fs::File::open("/proc/self/status").map_err(|e| e.to_string())?;
    confine::warm_up_resolver("localhost", 443);
    let walls = Walls {
        run_as,
        state_dir: state.ok_or("--state DIR")?,
        api_port: api_port.ok_or("--api-port PORT")?,
    };
    let confined = confine::confine(&walls).map_err(|e| format!("confine: {e}"))?;
    println!("confined: {confined:?}");
    let _ = std::io::stdout().flush();
    let outcome: Result<String, String> = match probe.as_str() {
        "status" => {
            let mut text = String::new();
            status
                .read_to_string(&mut text)
                .map_err(|e| e.to_string())?;
            Ok(text
                .lines()
                .filter(|l| {
                    l.starts_with("Seccomp:")
                        || l.starts_with("NoNewPrivs:")
                        || l.starts_with("CapEff:")
                        || l.starts_with("Uid:")
                })
                .collect::<Vec<_>>()
                .join(" | "))
        }
        "read" => std::fs::read(&arg)
            .map(|b| format!("read {} bytes", b.len()))
            .map_err(|e| e.to_string()),
        "write" => std::fs::write(&arg, b"x")
            .map(|()| "written".into())
            .map_err(|e| e.to_string()),
        "exec" => std::process::Command::new(&arg)
            .status()
            .map(|s| format!("ran: {s}"))
            .map_err(|e| e.to_string()),
        "tcp" => std::net::TcpStream::connect((
            "127.0.0.1",
            arg.parse::<u16>().map_err(|e| e.to_string())?,
        ))
        .map(|_| "connected".into())
        .map_err(|e| e.to_string()),
        "resolve" => std::net::ToSocketAddrs::to_socket_addrs(&(arg.as_str(), 443))
            .map(|a| format!("resolved {} addresses", a.count()))
            .map_err(|e| e.to_string()),
        "unix" => std::os::unix::net::UnixStream::connect(&arg)
            .map(|_| "connected".into())
            .map_err(|e| e.to_string()),
        "bind" => std::net::UdpSocket::bind("127.0.0.1:0")
            .map(|_| "bound".into())
            .map_err(|e| e.to_string()),
        "netlink" => nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Netlink,
            nix::sys::socket::SockType::Raw,
            nix::sys::socket::SockFlag::empty(),
            None,
        )
        .map(|_| "netlink socket".into())
        .map_err(|e| e.to_string()),
        "ptrace" => nix::sys::ptrace::attach(nix::unistd::Pid::from_raw(
            arg.parse::<i32>().map_err(|e| e.to_string())?,
        ))
        .map(|()| "attached".into())
        .map_err(|e| e.to_string()),
        other => return Err(format!("unknown probe {other}")),
    };
    match outcome {
        Ok(t) => println!("ok: {t}"),
        Err(e) => println!("refused: {e}"),
    }
    Ok(())
}
