//! The proposal sandbox's bubblewrap backend, tried from inside by a probe (bash, with only its
//! builtins: bash and its libraries are all the sandbox binds besides the bundle and the output
//! directory). The signer's socket and a keystore exist outside at real paths, a TCP listener
//! waits on the host's loopback, and a file outside the output directory is writable outside:
//! inside, reading the keystore, seeing the socket, connecting to the listener, writing outside
//! the output directory and writing into the bundle all fail, while reading the bundle and
//! writing the output succeed and the output comes back; a probe that runs past the wall time is
//! killed. Skipped, saying why, only where bwrap cannot create namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vigil_orchestrator::proposal::sandbox::{self, Policy};

/// Whether bwrap can make its namespaces here; the reason when it cannot.
fn bwrap_works() -> Result<(), String> {
    let out = Command::new("bwrap")
        .args(["--unshare-all", "--ro-bind", "/", "/", "true"])
        .output()
        .map_err(|e| format!("bwrap is not installed ({e}); apt-get install bubblewrap"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn bash() -> PathBuf {
    PathBuf::from("/bin/bash").canonicalize().unwrap()
}

#[test]
fn the_probe_reaches_nothing_but_its_bundle_and_output_and_is_killed_at_its_wall_time() {
    if let Err(why) = bwrap_works() {
        println!("SKIPPED: bwrap cannot create namespaces on this machine: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // What must stay out of reach, at real paths that exist outside.
    let run_vigil = root.join("run-vigil");
    std::fs::create_dir(&run_vigil).unwrap();
    let socket = run_vigil.join("signer.sock");
    let _signer = UnixListener::bind(&socket).unwrap();
    let keystore = root.join("keystore");
    std::fs::create_dir(&keystore).unwrap();
    let key_file = keystore.join("agent.key");
    std::fs::write(&key_file, "SECRET KEY\n").unwrap();
    let outside = root.join("outside.txt");
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    // What it is given.
    let bundle = root.join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(bundle.join("module.star"), "def signal(): return 1\n").unwrap();
    let out = root.join("out");
    std::fs::create_dir(&out).unwrap();

    let script = format!(
        r#"
try() {{ if eval "$2" 2>/dev/null; then echo "$1: ALLOWED"; else echo "$1: denied"; fi; }}
try read-keystore 'read -r line < {key}'
try see-signer-socket '[ -e {sock} ]'
try tcp-to-host-loopback 'exec 3<>/dev/tcp/127.0.0.1/{port}'
try write-outside-output 'echo x > {outside}'
try write-into-bundle 'echo x > {bundle}/injected'
try read-bundle 'read -r line < {bundle}/module.star'
try write-output 'echo "check passed" > {out}/report.txt'
try write-scratch 'echo x > $TMPDIR/scratch'
try write-tmp 'echo x > /tmp/x'
echo "env: ${{CREDENTIALS_DIRECTORY:-none}}"
"#,
        key = key_file.display(),
        sock = socket.display(),
        outside = outside.display(),
        bundle = bundle.display(),
        out = out.display(),
    );
    let mut policy = Policy::new(bash(), &out);
    policy.args = vec!["-c".into(), script.into()];
    policy.read_only = vec![bundle.clone()];
    policy.forbidden = vec![run_vigil.clone(), keystore.clone()];
    policy.wall_time = Duration::from_secs(20);
    let bwrap = PathBuf::from("bwrap");
    let outcome = sandbox::run(&policy, &bwrap).unwrap();
    let report = String::from_utf8_lossy(&outcome.stdout).into_owned();
    println!("{report}{}", String::from_utf8_lossy(&outcome.stderr));
    assert!(outcome.status.success(), "{}", outcome.summary());
    assert!(!outcome.timed_out);
    for denied in [
        "read-keystore",
        "see-signer-socket",
        "tcp-to-host-loopback",
        "write-outside-output",
        "write-into-bundle",
        "write-tmp",
    ] {
        assert!(
            report.contains(&format!("{denied}: denied")),
            "{denied}: {report}"
        );
    }
    for allowed in ["read-bundle", "write-output", "write-scratch"] {
        assert!(
            report.contains(&format!("{allowed}: ALLOWED")),
            "{allowed}: {report}"
        );
    }
    assert!(report.contains("env: none"), "{report}");
    // The output comes back; nothing was written outside it or into the bundle.
    assert_eq!(
        std::fs::read_to_string(out.join("report.txt")).unwrap(),
        "check passed\n"
    );
    assert!(!outside.exists());
    assert!(!bundle.join("injected").exists());
    assert!(
        tcp.accept().is_err(),
        "the listener outside got a connection"
    );

    // Binding the keystore is refused before anything runs.
    let mut exposed = policy.clone();
    exposed.read_only.push(key_file.clone());
    let e = sandbox::run(&exposed, &bwrap).unwrap_err().to_string();
    assert!(e.contains("would expose"), "{e}");

    // Past its wall time, the sandbox is killed.
    let mut forever = Policy::new(bash(), &out);
    forever.args = vec!["-c".into(), "while :; do :; done".into()];
    forever.wall_time = Duration::from_secs(1);
    let outcome = sandbox::run(&forever, &bwrap).unwrap();
    println!("{}", outcome.summary());
    assert!(outcome.timed_out);
    assert!(!outcome.status.success());
    assert!(
        outcome.elapsed < Duration::from_secs(10),
        "{:?}",
        outcome.elapsed
    );
    assert!(outcome.summary().contains("wall-time limit"));
}

#[test]
fn the_cpu_limit_stops_a_busy_probe() {
    if let Err(why) = bwrap_works() {
        println!("SKIPPED: bwrap cannot create namespaces on this machine: {why}");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let mut busy = Policy::new(bash(), out.path());
    busy.args = vec!["-c".into(), "while :; do :; done".into()];
    busy.cpu_secs = 1;
    busy.wall_time = Duration::from_secs(30);
    let outcome = sandbox::run(&busy, Path::new("bwrap")).unwrap();
    println!("{}", outcome.summary());
    assert!(
        !outcome.timed_out,
        "the CPU limit, not the wall time, stops it"
    );
    assert!(!outcome.status.success());
    assert!(
        outcome.elapsed < Duration::from_secs(20),
        "{:?}",
        outcome.elapsed
    );
}
