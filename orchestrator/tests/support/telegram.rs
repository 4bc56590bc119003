//! The Telegram side of the bot tests: the Bot API emulator (npm `telegram-test-api`, started
//! by `tests/peers/telegram-emulator.js` on a free loopback port), a user who sends messages and
//! presses buttons through it, and the `vigil-orchestrator` daemon process under test.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The bot token the tests use (the emulator accepts any).
pub const TOKEN: &str = "4242:vigil-test-token";

/// The repository's `tests/peers` directory.
fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers")
}

/// A running emulator; killed on drop.
pub struct Emulator {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    http: reqwest::Client,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message the bot sent, as the emulator stored it.
#[derive(Clone, Debug)]
pub struct BotMessage {
    pub message_id: i64,
    pub text: String,
    pub reply_markup: Value,
}

impl Emulator {
    /// Starts the emulator. Node or the npm package missing is a failure that says to run
    /// `tests/run` (which installs them), never a silent pass.
    pub fn start() -> Emulator {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Emulator::start_on(port)
    }

    /// Starts the emulator on `port` (e.g. again where a killed one was).
    pub fn start_on(port: u16) -> Emulator {
        let script = peers_dir().join("telegram-emulator.js");
        let package = peers_dir().join("node_modules/telegram-test-api/package.json");
        assert!(
            Command::new("node")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "node is not installed: run tests/run (it installs the test peers), or install nodejs"
        );
        assert!(
            package.is_file(),
            "the Telegram emulator is not installed ({} missing): run tests/run, or `npm ci --ignore-scripts` in tests/peers",
            package.display()
        );
        let mut child = Command::new("node")
            .arg(&script)
            .arg(port.to_string())
            .current_dir(peers_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            format!("listening {port}"),
            "emulator did not start"
        );
        Emulator {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `user` sends `text` in their private chat with the bot.
    pub async fn send(&self, user: i64, text: &str) {
        self.send_reply(user, text, None).await;
    }

    /// `user` sends `text` as a reply to the bot's message `to`.
    pub async fn send_reply(&self, user: i64, text: &str, to: Option<&BotMessage>) {
        let mut message = json!({
            "botToken": TOKEN,
            "from": {"id": user, "is_bot": false, "first_name": format!("user{user}")},
            "chat": {"id": user, "type": "private", "first_name": format!("user{user}")},
            "date": now(),
            "text": text,
        });
        if let Some(to) = to {
            message["reply_to_message"] = bot_message_json(user, to);
        }
        self.post("/sendMessage", message).await;
    }

    /// `user` presses the inline button with callback `data` under the bot's message `on`.
    pub async fn press(&self, user: i64, on: &BotMessage, data: &str) {
        self.post(
            "/sendCallback",
            json!({
                "botToken": TOKEN,
                "from": {"id": user, "is_bot": false, "first_name": format!("user{user}")},
                "message": bot_message_json(user, on),
                "data": data,
            }),
        )
        .await;
    }

    /// What the bot sent to `chat` since the last call.
    pub async fn bot_messages(&self, chat: i64) -> Vec<BotMessage> {
        let v = self
            .post("/getUpdates", json!({"token": TOKEN, "chatId": chat}))
            .await;
        v["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|m| BotMessage {
                message_id: m["messageId"].as_i64().unwrap_or(0),
                text: m["message"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                reply_markup: m["message"]["reply_markup"].clone(),
            })
            .collect()
    }
}

fn bot_message_json(chat: i64, m: &BotMessage) -> Value {
    json!({
        "message_id": m.message_id,
        "date": now(),
        "chat": {"id": chat, "type": "private", "first_name": "bot chat"},
        "from": {"id": 666, "is_bot": true, "first_name": "Vigil Test Bot"},
        "text": m.text,
    })
}

/// Reads the bot's messages to one chat, keeping what it has seen. Each expectation takes
/// the earliest matching message not taken before (replies and alerts may interleave).
pub struct Chat<'a> {
    pub emulator: &'a Emulator,
    pub user: i64,
    pub seen: Vec<BotMessage>,
    taken: Vec<bool>,
}

impl<'a> Chat<'a> {
    pub fn new(emulator: &'a Emulator, user: i64) -> Self {
        Self {
            emulator,
            user,
            seen: Vec::new(),
            taken: Vec::new(),
        }
    }

    /// Waits (up to 20 s) for a bot message containing `needle`; returns it.
    pub async fn expect(&mut self, needle: &str) -> BotMessage {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let fresh = self.emulator.bot_messages(self.user).await;
            self.taken.extend(fresh.iter().map(|_| false));
            self.seen.extend(fresh);
            if let Some(i) =
                (0..self.seen.len()).find(|&i| !self.taken[i] && self.seen[i].text.contains(needle))
            {
                self.taken[i] = true;
                return self.seen[i].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no bot message containing {needle:?}; the bot sent: {:#?}",
                self.seen.iter().map(|m| &m.text).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `text` and waits for the answer containing `needle`.
    pub async fn ask(&mut self, text: &str, needle: &str) -> BotMessage {
        self.emulator.send(self.user, text).await;
        self.expect(needle).await
    }
}

/// The orchestrator daemon under test; killed on drop.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- orchestrator log ---\n{}", self.log_text());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `vigil-orchestrator --config <config>` with the bot token as a systemd
    /// credential in `<work>/creds/bot-token` (written when `with_token`).
    pub fn start(work: &Path, config: &Path, with_token: bool) -> Daemon {
        let creds = work.join("creds");
        std::fs::create_dir_all(&creds).unwrap();
        if with_token {
            std::fs::write(creds.join("bot-token"), format!("{TOKEN}\n")).unwrap();
        }
        let log = work.join(format!("orchestrator-{}.log", now_nanos()));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vigil-orchestrator"))
            .arg("--config")
            .arg(config)
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env("VIGIL_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    /// Stops it (SIGKILL: as a crash would).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running (it did not exit or crash).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The daemon's config: `agents_toml` (one or more `[[agents]]` tables using provider
/// `scripted`), the scripted replies at `<work>/script.toml`, the bot on `emulator`, and
/// `operator` as the only operator.
pub fn write_config(
    work: &Path,
    signer_socket: &Path,
    rpc_url: Option<&str>,
    emulator_url: &str,
    operator: i64,
    agents_toml: &str,
) -> PathBuf {
    let rpc = rpc_url
        .map(|u| format!("solana_rpc_url = \"{u}\"\n"))
        .unwrap_or_default();
    let text = format!(
        r#"signer_socket = "{socket}"
state_db = "{work}/state.sqlite3"
daily_llm_usd_cap_micros = 1000000
{rpc}
[providers.scripted]
kind = "scripted"
script = "{work}/script.toml"
prices = {{ prompt_micros_per_mtok = 0, completion_micros_per_mtok = 0 }}

{agents_toml}

[telegram]
operators = [{operator}]
api_url = "{emulator_url}"
token_credential = "bot-token"
pending_expiry_secs = 600
"#,
        socket = signer_socket.display(),
        work = work.display(),
    );
    let path = work.join("orchestrator.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
