//! The backup and its restore drill, with real peers: the confined signer (a few payments
//! signed, so its journal and caps are not empty), a real orchestrator SQLite state (decisions
//! recorded through the store), `vigil-backup` (systemd/bin/vigil-backup, the program the
//! timer runs) driving Debian's `restic` against `rclone serve restic --append-only` on
//! loopback, as an offsite repository the appliance cannot delete from.
//!
//! Shown: no keystore, dev secret or password is in a snapshot (`restic ls`); the appliance's
//! password cannot delete history (`restic forget --prune` fails, the snapshot stays); after
//! the state is wiped and restored, the journal verifies against the recorded head, the signer
//! starts on it with the same 24 h spends, the orchestrator's tables hold the same rows; and a
//! restored journal that does not end at the recorded head is refused by name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vigil_orchestrator::generations::{Files, Generations};
use vigil_orchestrator::{DecisionOutcome, NewDecision, Store};
use vigil_testkit::generations;
use vigil_testkit::host::binary;
use vigil_testkit::requests::{ok, pay};
use vigil_testkit::signer::Signer;

/// `rclone serve restic --append-only` on a free loopback port over a temp dir; killed on drop.
struct AppendOnlyRemote {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl AppendOnlyRemote {
    fn start() -> AppendOnlyRemote {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new("rclone")
            .args(["serve", "restic", "--append-only", "--addr", &addr])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rclone (apt-get install -y rclone)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "rclone did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        AppendOnlyRemote {
            child,
            url: format!("rest:http://{addr}/"),
            _dir: dir,
        }
    }
}

impl Drop for AppendOnlyRemote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The appliance's side: paths, the repository and its password (outside every backed-up path).
struct Job {
    env: Vec<(String, PathBuf)>,
    password: PathBuf,
    repository: String,
}

impl Job {
    fn command(&self, args: &[&str]) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/bin/vigil-backup");
        let mut cmd = Command::new(script);
        cmd.args(args)
            .env("RESTIC_REPOSITORY", &self.repository)
            .env("RESTIC_PASSWORD_FILE", &self.password)
            .env_remove("CREDENTIALS_DIRECTORY");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn restic(&self, args: &[&str]) -> Output {
        Command::new("restic")
            .args(args)
            .env("RESTIC_REPOSITORY", &self.repository)
            .env("RESTIC_PASSWORD_FILE", &self.password)
            .output()
            .expect("restic (apt-get install -y restic)")
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every row of every table, as text, in table and rowid order.
fn dump(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut rows = Vec::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut q = stmt.query([]).unwrap();
        while let Some(r) = q.next().unwrap() {
            let cols: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect();
            rows.push(format!("{t}: {}", cols.join(" | ")));
        }
    }
    rows
}

/// A few decisions of Trader in a real state file.
fn orchestrator_state(db: &Path) {
    let store = Store::open(db).unwrap();
    let agent = store.agent(&"trader".parse().unwrap());
    for i in 0..5u64 {
        agent
            .record_decision(&NewDecision {
                ts: 1_700_000_000 + i,
                prompt_digest: format!("{i:064x}"),
                reply: format!("{{\"action\":\"hold\",\"n\":{i}}}"),
                parsed_json: None,
                outcome: DecisionOutcome::Held,
                layer: None,
                rule: None,
                idempotency_key: None,
            })
            .unwrap();
    }
}

#[test]
fn backup_to_an_append_only_remote_and_the_restore_drill() {
    let remote = AppendOnlyRemote::start();
    // A tiny rotation size: the journal is several segments, and the backup holds them all.
    let mut signer = Signer::with(&["trader"])
        .args(&["--journal-rotate-bytes", "4096"])
        .start();
    let peer = signer.dev_peer();
    for i in 0..12 {
        ok(signer
            .client()
            .call(pay(
                "trader",
                &peer,
                1_000_000 * (i % 3 + 1),
                &format!("drill-{i}"),
            ))
            .unwrap());
    }
    let spent = signer.spent("trader");
    assert_eq!(spent, 24_000_000);
    let ledger = signer.state().join("ledger");
    let segments: Vec<String> = std::fs::read_dir(&ledger)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit.0"))
        .collect();
    assert!(segments.len() >= 2, "{segments:?}");

    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("vigil")).unwrap();
    let db = work.path().join("vigil/state.db");
    orchestrator_state(&db);
    let rows = dump(&db);
    assert!(rows.len() >= 5, "{rows:?}");
    // Two configuration generations beside the state (the second with a module and the
    // snapshot taken before it), as the orchestrator keeps them.
    let gen_settings = generations::settings(work.path().join("vigil/generations"));
    let default_config = include_str!("../../orchestrator/src/default-config.toml");
    let gens = Generations::open(&gen_settings).unwrap();
    let mut files = Files::new();
    files.insert(
        "orchestrator.toml".into(),
        default_config.as_bytes().to_vec(),
    );
    gens.apply(&files, "seeded", &db, 100).unwrap();
    files.insert(
        "modules/trend.star".into(),
        b"def decide(ctx):\n    return None\n".to_vec(),
    );
    gens.apply(&files, "a module", &db, 200).unwrap();
    let generation_files = gens.files(2).unwrap();
    let etc = work.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(etc.join("orchestrator.toml"), "# the config\n").unwrap();
    let password = work.path().join("credstore/vigil-backup-password");
    std::fs::create_dir(password.parent().unwrap()).unwrap();
    std::fs::write(&password, "appliance-repository-password\n").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bin_dir = binary("vigil-signer").parent().unwrap().to_path_buf();
    let job = Job {
        env: vec![
            ("VIGIL_SIGNER_STATE".into(), signer.state()),
            ("VIGIL_ORCHESTRATOR_DB".into(), db.clone()),
            ("VIGIL_CONFIG_DIR".into(), etc.clone()),
            ("VIGIL_BACKUP_STAGING".into(), work.path().join("staged")),
            ("VIGIL_BIN_DIR".into(), bin_dir),
        ],
        password: password.clone(),
        repository: remote.url.clone(),
    };

    let init = job.run(&["init"]);
    assert!(init.status.success(), "{}", text(&init));
    // While the signer runs.
    let backup = job.run(&["run"]);
    assert!(backup.status.success(), "{}", text(&backup));
    let head: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("staged/audit-head.json")).unwrap())
            .unwrap();
    let head_seq = head["head_seq"].as_u64().unwrap();
    assert!(head_seq >= 3, "{head}");

    // What is in the snapshot, and what is not.
    let ls = job.restic(&["ls", "latest"]);
    assert!(ls.status.success(), "{}", text(&ls));
    let listing = String::from_utf8_lossy(&ls.stdout).into_owned();
    for want in [
        "orchestrator/state.db",
        "signer/ledger/audit.jsonl",
        "audit-head.json",
        "signer/policy",
        "config/orchestrator.toml",
        "orchestrator/generations/1/files/orchestrator.toml",
        "orchestrator/generations/2/files/modules/trend.star",
        "orchestrator/generations/2/state-before.sqlite3",
        "orchestrator/generations/current",
    ] {
        assert!(listing.contains(want), "{want} missing: {listing}");
    }
    for segment in &segments {
        assert!(
            listing.contains(segment.as_str()),
            "{segment} missing: {listing}"
        );
    }
    for never in [
        "keystore",
        "/dev/",
        "passphrase",
        "vigil-backup-password",
        "credstore",
    ] {
        assert!(
            !listing.contains(never),
            "{never} is in the snapshot: {listing}"
        );
    }

    // The appliance's credentials cannot delete history on the append-only remote.
    let forget = job.restic(&["forget", "--keep-last", "1", "--prune", "latest"]);
    assert!(
        !forget.status.success(),
        "forget --prune succeeded: {}",
        text(&forget)
    );
    let snaps = job.restic(&["snapshots", "--json"]);
    let snaps: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");

    // The drill: the signer stopped, its journal and the orchestrator's state wiped (the
    // keystore comes back from the ceremony stick, here: stays).
    signer.kill9();
    let journal = signer.state().join("ledger/audit.jsonl");
    std::fs::remove_file(&journal).unwrap();
    for segment in &segments {
        std::fs::remove_file(ledger.join(segment)).unwrap();
    }
    std::fs::remove_file(&db).unwrap();
    std::fs::remove_dir_all(&gen_settings.dir).unwrap();
    let _ = std::fs::remove_file(work.path().join("vigil/state.db-wal"));
    let _ = std::fs::remove_file(work.path().join("vigil/state.db-shm"));

    let restored = work.path().join("restored");
    let out = job.run(&["restore", restored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("recorded head (seq {head_seq}")),
        "{}",
        text(&out)
    );
    for name in segments.iter().map(String::as_str).chain(["audit.jsonl"]) {
        let to = ledger.join(name);
        std::fs::copy(restored.join("signer/ledger").join(name), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::copy(restored.join("orchestrator/state.db"), &db).unwrap();
    // The generations, moved back whole: generation 2 current with its files byte for byte.
    let copied = Command::new("cp")
        .arg("-R")
        .arg(restored.join("orchestrator/generations"))
        .arg(&gen_settings.dir)
        .status()
        .unwrap();
    assert!(copied.success());
    let gens = Generations::open(&gen_settings).unwrap();
    assert_eq!(gens.current().unwrap(), Some(2));
    assert_eq!(gens.files(2).unwrap(), generation_files);
    assert_eq!(gens.meta(2).unwrap().parent, Some(1));
    signer.spawn();
    assert_eq!(
        signer.spent("trader"),
        spent,
        "the same 24 h spend after the restore"
    );
    assert_eq!(dump(&db), rows, "the same rows after the restore");
    assert_eq!(Store::open(&db).unwrap().integrity_check().ok(), Some(()));

    // A restored journal that does not end at the recorded head is refused.
    let lines: Vec<String> = std::fs::read_to_string(restored.join("signer/ledger/audit.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let cut = format!("{}\n", lines[..lines.len() - 1].join("\n"));
    std::fs::write(restored.join("signer/ledger/audit.jsonl"), cut).unwrap();
    let refused = job.run(&["check", restored.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains(
            "REFUSED: the restored journal does not verify against the head recorded at backup time"
        ),
        "{}",
        text(&refused)
    );
}
