//! The units in `systemd/` start the binaries of this build, and the daemons talk.
//!
//! Nothing of the units is copied here: `ExecStart=`, `Environment=`, `StateDirectory=`,
//! `LoadCredential*=`, `User=` and the socket's `ListenStream=`/`SocketMode=` are parsed
//! from the files. The test then does what systemd would: it creates the state dirs, puts
//! the named credentials in a `$CREDENTIALS_DIRECTORY`, binds the socket and passes it as fd
//! 3 with `LISTEN_PID`/`LISTEN_FDS`, listens on a `$NOTIFY_SOCKET` for `READY=1`, and runs
//! the command lines. Only two things are rewritten, through the explicit tables
//! [`PATHS`] and [`users`]: absolute paths go into a temp dir, and the units' user names
//! become users that exist here (the signer runs as `nobody` through its own `--run-as`
//! when the test is root, as User= would make it; run by an ordinary user it gets
//! `--insecure-allow-unlocked-memory`, since that user's memory-lock limit is not the unit's
//! `LimitMEMLOCK=`; the approver's user becomes uid 4244, through the approver's own
//! `--run-as`, with the socket's group for the group its unit adds). A path or user the
//! tables do not know fails the test, and so does a flag the binary does not have.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vigil_testkit::config::ConfigBuilder;
use vigil_testkit::host::{binary, is_root};
use vigil_testkit::signer::dev_init_at;
use vigil_testkit::systemd::Unit;
use vigil_testkit::{AgentSpec, Reply, Script};

/// Absolute paths in the units, and where the test puts them (relative to its temp dir).
/// Longest prefix first. Binaries map to this build.
const PATHS: &[(&str, &str)] = &[
    ("/var/lib/vigil-signer", "var/lib/vigil-signer"),
    ("/var/lib/vigil-approver", "var/lib/vigil-approver"),
    ("/var/lib/vigil-import", "var/lib/vigil-import"),
    ("/var/lib/vigil", "var/lib/vigil"),
    ("/etc/vigil", "etc/vigil"),
    ("/run/vigil", "run/vigil"),
];

/// The stand-in uid (and group) of the unit user `vigil-approver`: the signer's
/// `--approver-user`, and the approver's `--run-as` when the test is root.
const APPROVER_UID: u32 = 4244;

/// The whole path: the daemons start from their units, the signer on the socket the
/// .socket unit names, all report READY=1, the orchestrator's first paper decision goes
/// through the signer's dry run, and (as root: a second uid) the approver, confined as its
/// own uid, reads what awaits the operator from the signer as its approver.
#[test]
fn daemons_start_from_their_units_and_talk() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let bins = bin_dir();
    let map = |arg: &str| rewrite(arg, root, &bins);
    let socket_unit = Unit::read("vigil-signer.socket");
    let signer_unit = Unit::read("vigil-signer.service");
    let orch_unit = Unit::read("vigil-orchestrator.service");
    let approver_unit = Unit::read("vigil-approver.service");

    // systemd's notify socket, for the services (Type=notify).
    for unit in [&signer_unit, &orch_unit, &approver_unit] {
        assert_eq!(unit.one("Service", "Type"), "notify", "{}", unit.name);
    }
    let notify_path = root.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    // The signer's state dir (StateDirectory=), made by dev-init, owned by its user.
    let signer_state = state_dir(&signer_unit, root);
    let init = dev_init_at(&signer_state, &["trader"]);
    let passphrase = std::fs::read(signer_state.join("dev/passphrase")).unwrap();
    let signer_creds = credentials(&signer_unit, root, |name| {
        assert_eq!(
            name, "vigil-keystore-passphrase",
            "a credential the test cannot provide"
        );
        passphrase.clone()
    });
    let (signer_user, signer_group) = users(&signer_unit.one("Service", "User"));
    chown(
        &root.join("var/lib/vigil-signer"),
        &signer_user,
        &signer_group,
        Recursive::Yes,
    );

    // The socket, as vigil-signer.socket describes it; the orchestrator's shipped default
    // config must name the same path.
    let listen_unit = socket_unit.one("Socket", "ListenStream");
    let default = vigil_orchestrator::Config::default_config();
    assert_eq!(
        default.signer_socket,
        Path::new(&listen_unit),
        "default config vs socket unit"
    );
    let listen = PathBuf::from(map(&listen_unit));
    std::fs::create_dir_all(listen.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(&listen).unwrap();
    let mode = u32::from_str_radix(&socket_unit.one("Socket", "SocketMode"), 8).unwrap();
    std::fs::set_permissions(&listen, std::fs::Permissions::from_mode(mode)).unwrap();
    let (sock_user, _) = users(&socket_unit.one("Socket", "SocketUser"));
    let (_, sock_group) = users(&socket_unit.one("Socket", "SocketGroup"));
    chown(&listen, &sock_user, &sock_group, Recursive::No);

    // The signer, from its ExecStart and Environment, on fd 3.
    let mut argv = signer_unit.exec_start(&map);
    check_flags(&argv).unwrap();
    if is_root() {
        argv.extend(["--run-as".into(), format!("{signer_user}:{signer_group}")]);
    } else {
        // What LimitMEMLOCK= gives the unit, an ordinary user's limit does not.
        argv.push("--insecure-allow-unlocked-memory".into());
    }
    let mut signer = Daemon::spawn_with_socket(
        "vigil-signer",
        &argv,
        &signer_unit.environment(),
        &signer_creds,
        &notify_path,
        &listener,
    );
    assert_ready(&notify, &mut signer);
    let status = std::fs::read_to_string(format!("/proc/{}/status", signer.child.id())).unwrap();
    assert!(
        status.lines().any(|l| l == "Seccomp:\t2"),
        "signer not under seccomp:\n{status}"
    );
    if is_root() {
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(uid.contains("65534"), "signer kept root: {uid}");
    }

    // The orchestrator: its config at the path its ExecStart names, its state dir.
    let orch_state = state_dir(&orch_unit, root);
    let argv = orch_unit.exec_start(&map);
    check_flags(&argv).unwrap();
    let config = PathBuf::from(flag_value(&argv, "--config").expect("--config in ExecStart"));
    write_config(&config, &listen, &orch_state, &init.dev_peer);
    let orch_creds = credentials(&orch_unit, root, |name| {
        format!("test value of {name}").into()
    });
    let mut orch = Daemon::spawn(
        "vigil-orchestrator",
        &argv,
        &orch_unit.environment(),
        &orch_creds,
        &notify_path,
    );
    assert_ready(&notify, &mut orch);

    // The first decision: the scripted transfer, checked by the signer, filled on paper.
    let db = orch_state.join("orchestrator.sqlite3");
    let deadline = Instant::now() + Duration::from_secs(20);
    let outcome = loop {
        if let Some(found) = first_decision(&db) {
            break found;
        }
        if let Some(status) = orch.child.try_wait().unwrap() {
            panic!("orchestrator exited ({status}): {}", orch.stderr());
        }
        assert!(Instant::now() < deadline, "no decision: {}", orch.stderr());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        outcome,
        ("paper_filled".to_string(), None),
        "orchestrator: {}\nsigner: {}",
        orch.stderr(),
        signer.stderr()
    );
    assert!(
        signer.child.try_wait().unwrap().is_none(),
        "signer died: {}",
        signer.stderr()
    );
    if is_root() {
        approver_from_its_unit(&approver_unit, root, &listen, &notify, &notify_path, &map);
    }
}

/// The approver from its unit: its config where `--config` says, its state dir its own, its
/// token credential; READY=1, confined as its own uid, and the signer answers its `awaiting`
/// (it is the signer's approver). The Bot API is a closed port here: the bot retries.
fn approver_from_its_unit(
    unit: &Unit,
    root: &Path,
    listen: &Path,
    notify: &UnixDatagram,
    notify_path: &Path,
    map: &dyn Fn(&str) -> String,
) {
    let state = state_dir(unit, root);
    let id = APPROVER_UID.to_string();
    chown(&state, &id, &id, Recursive::Yes);
    // Its unit's SupplementaryGroups= opens the socket; here its own group does, and the test
    // dir is traversable as /run is.
    let (sock_user, _) = users("vigil-signer");
    chown(listen, &sock_user, &id, Recursive::No);
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut argv = unit.exec_start(map);
    check_flags(&argv).unwrap();
    let config = PathBuf::from(flag_value(&argv, "--config").expect("--config in ExecStart"));
    std::fs::write(
        &config,
        format!(
            "operators = [1]\napi_url = \"http://127.0.0.1:9\"\nsigner_socket = {:?}\n\
             state_dir = {:?}\npoll_interval_ms = 200\n",
            listen.display().to_string(),
            state.display().to_string()
        ),
    )
    .unwrap();
    let creds = credentials(unit, root, |name| {
        assert_eq!(
            name, "vigil-approver-bot-token",
            "a credential the test cannot provide"
        );
        b"123456789:test-token".to_vec()
    });
    argv.extend(["--run-as".into(), format!("{id}:{id}")]);
    let mut approver = Daemon::spawn(
        "vigil-approver",
        &argv,
        &unit.environment(),
        &creds,
        notify_path,
    );
    assert_ready(notify, &mut approver);
    let status = std::fs::read_to_string(format!("/proc/{}/status", approver.child.id())).unwrap();
    assert!(
        status.lines().any(|l| l == "Seccomp:\t2"),
        "approver not under seccomp:\n{status}"
    );
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.contains(&id), "approver kept root: {uid}");
    // Some poll rounds: the signer serves it `awaiting` and `events` (a refusal is logged).
    std::thread::sleep(Duration::from_secs(2));
    let log = approver.stderr();
    assert!(
        approver.child.try_wait().unwrap().is_none(),
        "approver died: {log}"
    );
    assert!(log.contains("confined"), "{log}");
    assert!(
        !log.contains("signer at"),
        "the signer did not serve the approver: {log}"
    );
}

/// The key-ceremony importer runs under its own user, which is not the signer's, not the
/// socket's user or group, and not a peer the signer admits; it stages where the signer
/// reads, and the signer's state dir is out of its reach.
#[test]
fn the_importer_is_its_own_user_and_no_socket_peer() {
    let import = Unit::read("vigil-import@.service");
    let signer = Unit::read("vigil-signer.service");
    let socket = Unit::read("vigil-signer.socket");
    let user = import.one("Service", "User");
    assert_eq!(user, "vigil-import");
    assert_eq!(import.one("Service", "Group"), "vigil-import");
    for (unit, section, key) in [
        (&signer, "Service", "User"),
        (&signer, "Service", "Group"),
        (&socket, "Socket", "SocketUser"),
        (&socket, "Socket", "SocketGroup"),
    ] {
        assert_ne!(unit.one(section, key), user, "{} {key}", unit.name);
    }
    let serve = vigil_testkit::systemd::split_exec(&signer.one("Service", "ExecStart"));
    let peers: Vec<&String> = serve
        .windows(2)
        .filter(|w| w[0] == "--allow-peer-user" || w[0] == "--allow-peer-uid")
        .map(|w| &w[1])
        .collect();
    assert_eq!(peers, ["vigil"], "only the orchestrator is a peer");
    // Both agree where the stick is staged; the signer reads it through the importer's group.
    let staging = |argv: &[String]| {
        argv.windows(2)
            .find(|w| w[0] == "--staging-dir")
            .map(|w| w[1].clone())
    };
    let import_argv = vigil_testkit::systemd::split_exec(&import.one("Service", "ExecStart"));
    assert_eq!(staging(&import_argv), staging(&serve));
    assert_eq!(
        staging(&serve).as_deref(),
        Some("/var/lib/vigil-import/staged")
    );
    assert_eq!(import.one("Service", "StateDirectory"), "vigil-import");
    assert_eq!(signer.one("Service", "SupplementaryGroups"), "vigil-import");
    assert!(
        import
            .all("Service", "InaccessiblePaths")
            .iter()
            .any(|p| p.trim_start_matches('-') == "/var/lib/vigil-signer"),
        "the importer cannot reach the signer's state"
    );
    let sysusers = std::fs::read_to_string(
        vigil_testkit::host::repo_root().join("systemd/sysusers.d/vigil.conf"),
    )
    .unwrap();
    assert!(
        sysusers
            .lines()
            .any(|l| l.starts_with("u vigil-import -:vigil-import ")),
        "{sysusers}"
    );
}

/// The flag check would catch a unit that names a flag the binary lacks.
#[test]
fn a_flag_the_binary_lacks_is_caught() {
    let bins = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let unit = Unit::read("vigil-signer.service");
    let mut argv = unit.exec_start(&|a| rewrite(a, tmp.path(), &bins));
    assert!(
        check_flags(&argv).is_ok(),
        "control: the unit as written passes"
    );
    argv.push("--state-directory-typo".into());
    let err = check_flags(&argv).unwrap_err();
    assert!(err.contains("--state-directory-typo"), "{err}");
}

/// A unit's path, rewritten: binaries to this build, [`PATHS`] into `root`, user names
/// through [`users`]. An absolute path nobody mapped is a failure.
fn rewrite(arg: &str, root: &Path, bins: &Path) -> String {
    if let Some(bin) = arg.strip_prefix("/usr/bin/") {
        return bins.join(bin).display().to_string();
    }
    for (from, to) in PATHS {
        if arg == *from {
            return root.join(to).display().to_string();
        }
        if let Some(rest) = arg.strip_prefix(&format!("{from}/")) {
            return root.join(to).join(rest).display().to_string();
        }
    }
    assert!(
        !arg.starts_with('/'),
        "unit path {arg} is not in PATHS: map it"
    );
    match arg {
        "vigil" | "vigil-signer" => users(arg).0,
        "vigil-approver" => APPROVER_UID.to_string(),
        _ => arg.to_string(),
    }
}

/// The units' users → (user, group) that exist here: the signer's user becomes nobody;
/// the orchestrator's user (the socket's group) becomes whoever runs the test.
fn users(unit_user: &str) -> (String, String) {
    match unit_user {
        "vigil-signer" if is_root() => ("nobody".into(), "nogroup".into()),
        "vigil-signer" | "vigil" => {
            let name = |flag| {
                let out = Command::new("id").arg(flag).output().unwrap();
                String::from_utf8(out.stdout).unwrap().trim().to_string()
            };
            (name("-un"), name("-gn"))
        }
        other => panic!("unit user {other} has no stand-in in the test"),
    }
}

/// Every `--flag` of `argv` must be in `binary [subcommand] --help`.
fn check_flags(argv: &[String]) -> Result<(), String> {
    let sub: Vec<&String> = argv[1..]
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .collect();
    let out = Command::new(&argv[0])
        .args(&sub)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&String> = argv
        .iter()
        .filter(|a| a.starts_with("--"))
        .filter(|flag| {
            let name = flag.split('=').next().unwrap_or(flag);
            !help
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
                .any(|w| w == name)
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("{} {:?} has no flag {missing:?}", argv[0], sub))
    }
}

fn flag_value(argv: &[String], flag: &str) -> Option<String> {
    argv.iter()
        .position(|a| a == flag)
        .and_then(|i| argv.get(i + 1))
        .cloned()
}

/// StateDirectory=NAME → `<root>/var/lib/NAME`, created 0700 as systemd does.
fn state_dir(unit: &Unit, root: &Path) -> PathBuf {
    let name = unit.one("Service", "StateDirectory");
    let dir = PathBuf::from(rewrite(&format!("/var/lib/{name}"), root, Path::new("/")));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A `$CREDENTIALS_DIRECTORY` holding every credential the unit loads.
fn credentials(unit: &Unit, root: &Path, value: impl Fn(&str) -> Vec<u8>) -> PathBuf {
    let dir = root.join("credentials").join(&unit.name);
    std::fs::create_dir_all(&dir).unwrap();
    for name in unit.credentials() {
        let path = dir.join(&name);
        std::fs::write(&path, value(&name)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    dir
}

/// One paper agent whose scripted model pays the dev peer 0.1 SOL (below the dev policy's
/// approval threshold), so its first decision needs the signer's dry run.
fn write_config(config: &Path, socket: &Path, state: &Path, dev_peer: &str) {
    let dir = config.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let script = dir.join("scripted-replies.toml");
    Script::new()
        .agent(
            "trader",
            [Reply::transfer("dev-peer", 100_000_000)
                .reasoning("Pay the dev peer the small agreed fee for this round.")],
        )
        .write(&script);
    ConfigBuilder::new(socket, &state.join("orchestrator.sqlite3"))
        .scripted(&script)
        .agent(
            AgentSpec::new("trader")
                .fraction_bps(1000)
                .peer("dev-peer", dev_peer),
        )
        .write(config);
}

/// The outcome and refusal rule of the first recorded decision, once there is one.
fn first_decision(db: &Path) -> Option<(String, Option<String>)> {
    if !db.exists() {
        return None;
    }
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row(
        "SELECT outcome, rule FROM decisions ORDER BY id LIMIT 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .ok()
}

/// A daemon the test started; killed on drop.
struct Daemon {
    name: &'static str,
    child: Child,
    stderr_path: PathBuf,
}

impl Daemon {
    fn command(
        argv: &[String],
        env: &[(String, String)],
        creds: &Path,
        notify: &Path,
        stderr_path: &Path,
    ) -> Command {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("CREDENTIALS_DIRECTORY", creds)
            .env("NOTIFY_SOCKET", notify)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr_path).unwrap());
        cmd
    }

    fn spawn(
        name: &'static str,
        argv: &[String],
        env: &[(String, String)],
        creds: &Path,
        notify: &Path,
    ) -> Daemon {
        let stderr_path = notify.with_file_name(format!("{name}.stderr"));
        let child = Daemon::command(argv, env, creds, notify, &stderr_path)
            .spawn()
            .unwrap();
        Daemon {
            name,
            child,
            stderr_path,
        }
    }

    /// As systemd starts a socket-activated service: the socket as fd 3, `LISTEN_FDS=1`,
    /// `LISTEN_PID` the service's own pid. A shell moves the fd to 3 and sets LISTEN_PID
    /// to its pid, then execs the daemon (same pid).
    fn spawn_with_socket(
        name: &'static str,
        argv: &[String],
        env: &[(String, String)],
        creds: &Path,
        notify: &Path,
        listener: &UnixListener,
    ) -> Daemon {
        let stderr_path = notify.with_file_name(format!("{name}.stderr"));
        let fd = listener.as_fd();
        // Inheritable only for this spawn; the orchestrator must not get it.
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).unwrap();
        let mut shell = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            "exec 3<&\"$VIGIL_TEST_FD\"; LISTEN_PID=$$ LISTEN_FDS=1 \
             LISTEN_FDNAMES=vigil-signer.socket exec \"$@\""
                .into(),
            "sh".into(),
        ];
        shell.extend(argv.iter().cloned());
        let mut cmd = Daemon::command(&shell, env, creds, notify, &stderr_path);
        cmd.env(
            "VIGIL_TEST_FD",
            std::os::fd::AsRawFd::as_raw_fd(&fd).to_string(),
        );
        let child = cmd.spawn().unwrap();
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC).unwrap();
        Daemon {
            name,
            child,
            stderr_path,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next datagram on the notify socket must be READY=1, while `daemon` still runs.
fn assert_ready(notify: &UnixDatagram, daemon: &mut Daemon) {
    let mut buf = [0u8; 512];
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("{}: no READY=1 ({e}): {}", daemon.name, daemon.stderr()));
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(
        msg.lines().any(|l| l == "READY=1"),
        "{}: {msg}",
        daemon.name
    );
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "{} exited after READY=1: {}",
        daemon.name,
        daemon.stderr()
    );
}

/// Whether [`chown`] descends into a directory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recursive {
    Yes,
    No,
}

/// As root, gives `path` to `user:group` (as systemd gives a unit's dirs and socket to its
/// users); as an ordinary user everything is already the user's own.
fn chown(path: &Path, user: &str, group: &str, recursive: Recursive) {
    if !is_root() {
        return;
    }
    let mut cmd = Command::new("chown");
    if recursive == Recursive::Yes {
        cmd.arg("-R");
    }
    let ok = cmd
        .arg(format!("{user}:{group}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The directory holding this build's binaries (the orchestrator's, and the signer's
/// beside it: `tests/run` builds the workspace first).
fn bin_dir() -> PathBuf {
    let dir = binary("vigil-orchestrator").parent().unwrap().to_path_buf();
    assert!(
        dir.join("vigil-signer").is_file(),
        "{}/vigil-signer missing: build the workspace first (tests/run does)",
        dir.display()
    );
    dir
}
