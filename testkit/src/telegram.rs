//! The Telegram side of the bot tests: the Bot API emulator (npm `telegram-test-api`, started
//! by `tests/peers/telegram-emulator.js` on a free loopback port), and users who send messages
//! and press buttons through it: an operator's [`Chat`] reads what the bot answered.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::host::{repo_root, unix_now};

/// The operator's Telegram user id in the tests' configs.
pub const OPERATOR: i64 = 1001;
/// Someone who is not an operator.
pub const STRANGER: i64 = 6666;

/// The bot token the tests use (the emulator accepts any).
pub const TOKEN: &str = "4242:vigil-test-token";

/// The repository's `tests/peers` directory.
fn peers_dir() -> PathBuf {
    repo_root().join("tests/peers")
}

/// A running emulator; killed on drop.
#[derive(Debug)]
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
    /// Its id in the chat.
    pub message_id: i64,
    /// Its text.
    pub text: String,
    /// Its buttons (`inline_keyboard`), if any.
    pub reply_markup: Value,
}

impl BotMessage {
    /// The callback data of its button labelled `label` (panics, naming the buttons, if it
    /// has none such).
    pub fn button(&self, label: &str) -> String {
        self.reply_markup["inline_keyboard"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .find(|b| b["text"] == label)
            .and_then(|b| b["callback_data"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                panic!(
                    "no {label:?} button on {:?}: {}",
                    self.text, self.reply_markup
                )
            })
    }
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
        let send = || {
            self.http
                .post(format!("{}{path}", self.url))
                .json(&body)
                .send()
        };
        // Node closes an idle keep-alive connection after 5 s; a request sent on it just then
        // is reset before the emulator reads it. Once, on a fresh connection, is safe.
        let sent = match send().await {
            Ok(r) => r,
            Err(e) if e.is_request() || e.is_connect() => send().await.unwrap(),
            Err(e) => panic!("{path}: {e}"),
        };
        sent.json().await.unwrap()
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
            "date": unix_now(),
            "text": text,
        });
        if let Some(to) = to {
            message["reply_to_message"] = bot_message_json(user, to);
        }
        self.post("/sendMessage", message).await;
    }

    /// Delivers a user's `message` (a Bot API `Message` object: any chat, forwarded, via a
    /// bot...) to the bot as it is.
    pub async fn send_message_json(&self, mut message: Value) {
        message["botToken"] = json!(TOKEN);
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

    /// Collects what the bot sends to `chat` until each of `needles` was seen, for up to
    /// `secs` seconds; everything seen.
    pub async fn collect_until(&self, chat: i64, needles: &[&str], secs: u64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut seen: Vec<String> = Vec::new();
        loop {
            seen.extend(self.bot_messages(chat).await.into_iter().map(|m| m.text));
            if needles.iter().all(|n| seen.iter().any(|t| t.contains(n))) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "not all of {needles:?} in {secs} s; the bot sent: {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn bot_message_json(chat: i64, m: &BotMessage) -> Value {
    json!({
        "message_id": m.message_id,
        "date": unix_now(),
        "chat": {"id": chat, "type": "private", "first_name": "bot chat"},
        "from": {"id": 666, "is_bot": true, "first_name": "Vigil Test Bot"},
        "text": m.text,
    })
}

/// Reads the bot's messages to one chat, keeping what it has seen. Each expectation takes
/// the earliest matching message not taken before (replies and alerts may interleave).
#[derive(Debug)]
pub struct Chat<'a> {
    /// The emulator it reads through.
    pub emulator: &'a Emulator,
    /// The user (and private chat) id.
    pub user: i64,
    /// Every message the bot sent to this chat so far.
    pub seen: Vec<BotMessage>,
    taken: Vec<bool>,
}

impl<'a> Chat<'a> {
    /// `user`'s chat with the bot.
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
