//! Who the bot obeys, and bounded bookkeeping: how often strangers are logged (a flood of
//! messages from non-operators must not fill the disk), and which alerts were just sent (the
//! same alert every tick must not flood the operator's phone). Pure, clock passed in.

use std::collections::BTreeMap;

use teloxide::types::{Update, UpdateKind};
use vigil_telegram::Origin;

/// Whether the bot obeys `update`: a message by the rule both bots share
/// ([`vigil_telegram::admit`]: an operator's own words in that operator's private chat with the
/// bot, not forwarded, not via an inline bot); a button press by an operator on a message in
/// that operator's private chat. Anything else (an edited message, a channel post, a button on
/// a message in another chat) is a stranger's and goes unanswered: answers go to the chat a
/// message came from, and a group is not the operator's alone.
pub(super) fn obeyed(update: &Update, is_operator: impl Fn(i64) -> bool) -> bool {
    match &update.kind {
        UpdateKind::Message(m) => vigil_telegram::admit(is_operator, &Origin::of(m)).is_ok(),
        UpdateKind::CallbackQuery(q) => {
            let Ok(user) = i64::try_from(q.from.id.0) else {
                return false;
            };
            is_operator(user)
                && q.message.as_ref().is_some_and(|m| {
                    let chat = m.chat();
                    chat.is_private() && chat.id.0 == user
                })
        }
        _ => false,
    }
}

/// Stranger log lines allowed per window.
pub(super) const STRANGER_LINES_PER_WINDOW: u32 = 5;
/// The stranger log window, seconds.
pub(super) const STRANGER_WINDOW_SECS: u64 = 60;
/// The same alert text is sent at most once per this many seconds.
pub(super) const ALERT_REPEAT_SECS: u64 = 600;
/// Most distinct alert texts remembered for de-duplication.
const MAX_REMEMBERED_ALERTS: usize = 256;

/// What to log about a stranger's update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum StrangerLogLine {
    /// Log this update (and, if non-zero, how many were dropped in the previous window).
    Log {
        /// Updates not logged in the window before this one.
        suppressed_before: u64,
    },
    /// Over the limit: count it, log nothing.
    Suppress,
}

/// A fixed-window limiter for stranger log lines: at most
/// [`STRANGER_LINES_PER_WINDOW`] per [`STRANGER_WINDOW_SECS`], whatever the number of
/// strangers or messages; what is dropped is counted and reported once.
#[derive(Debug, Default)]
pub(super) struct StrangerLog {
    window_start: u64,
    logged: u32,
    suppressed: u64,
}

impl StrangerLog {
    /// Decides whether the stranger update seen at `now` is logged.
    pub(super) fn admit(&mut self, now: u64) -> StrangerLogLine {
        if now >= self.window_start.saturating_add(STRANGER_WINDOW_SECS) {
            self.window_start = now;
            self.logged = 0;
        }
        if self.logged < STRANGER_LINES_PER_WINDOW {
            self.logged += 1;
            let suppressed_before = std::mem::take(&mut self.suppressed);
            StrangerLogLine::Log { suppressed_before }
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            StrangerLogLine::Suppress
        }
    }
}

/// Remembers when each alert text was last sent.
#[derive(Debug, Default)]
pub(super) struct AlertDedup {
    last_sent: BTreeMap<String, u64>,
}

impl AlertDedup {
    /// Whether `text` should be sent at `now` (and records it if so).
    pub(super) fn should_send(&mut self, text: &str, now: u64) -> bool {
        if let Some(&at) = self.last_sent.get(text)
            && now < at.saturating_add(ALERT_REPEAT_SECS)
        {
            return false;
        }
        self.last_sent
            .retain(|_, at| now < at.saturating_add(ALERT_REPEAT_SECS));
        if self.last_sent.len() >= MAX_REMEMBERED_ALERTS {
            self.last_sent.pop_first();
        }
        self.last_sent.insert(text.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const OPERATOR: i64 = 1001;

    fn message(chat: Value, extra: Value) -> Update {
        let mut m = json!({
            "message_id": 5,
            "date": 1_700_000_000,
            "chat": chat,
            "from": {"id": OPERATOR, "is_bot": false, "first_name": "Op"},
            "text": "/pause trader"
        });
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(extra.clone());
        }
        update(json!({"update_id": 1, "message": m}))
    }

    /// An update as the Bot API sends it (teloxide parses updates from text: an update that
    /// does not parse becomes `UpdateKind::Error`, which is never obeyed).
    fn update(v: Value) -> Update {
        let u: Update = serde_json::from_str(&v.to_string()).unwrap();
        assert!(!matches!(u.kind, UpdateKind::Error(_)), "{v}");
        u
    }

    fn private(id: i64) -> Value {
        json!({"id": id, "type": "private", "first_name": "Op"})
    }

    fn is_op(id: i64) -> bool {
        id == OPERATOR
    }

    #[test]
    fn only_the_operators_own_words_in_their_private_chat_are_obeyed() {
        let u = message(private(OPERATOR), json!({}));
        assert!(obeyed(&u, is_op), "{u:?}");
        // Issue 15, finding 4: a group the operator is in, a supergroup, a stranger's words
        // forwarded by the operator, a message sent via an inline bot.
        let group = json!({"id": -42, "type": "group", "title": "g"});
        let supergroup = json!({"id": -1_000_000_000_042_i64, "type": "supergroup", "title": "sg"});
        assert!(!obeyed(&message(group, json!({})), is_op));
        assert!(!obeyed(&message(supergroup, json!({})), is_op));
        let forwarded = json!({"forward_origin": {
            "type": "user", "date": 1_700_000_000,
            "sender_user": {"id": 6666, "is_bot": false, "first_name": "Stranger"}
        }});
        assert!(!obeyed(&message(private(OPERATOR), forwarded), is_op));
        let via_bot = json!({"via_bot": {"id": 777, "is_bot": true, "first_name": "inline"}});
        assert!(!obeyed(&message(private(OPERATOR), via_bot), is_op));
        // Another user's private chat (as if relayed) and a stranger.
        assert!(!obeyed(&message(private(2002), json!({})), is_op));
        let stranger = update(json!({"update_id": 2, "message": {
            "message_id": 6, "date": 1_700_000_000, "chat": private(6666),
            "from": {"id": 6666, "is_bot": false, "first_name": "S"}, "text": "/status"
        }}));
        assert!(!obeyed(&stranger, is_op));
    }

    #[test]
    fn a_button_is_obeyed_only_on_a_message_in_the_operators_private_chat() {
        let press = |chat: Value| -> Update {
            update(json!({"update_id": 3, "callback_query": {
                "id": "q1",
                "from": {"id": OPERATOR, "is_bot": false, "first_name": "Op"},
                "chat_instance": "ci",
                "data": "yes:1:00",
                "message": {"message_id": 9, "date": 1_700_000_000, "chat": chat, "text": "#1"}
            }}))
        };
        assert!(obeyed(&press(private(OPERATOR)), is_op));
        assert!(!obeyed(
            &press(json!({"id": -42, "type": "group", "title": "g"})),
            is_op
        ));
    }

    #[test]
    fn a_flood_is_logged_a_bounded_number_of_times() {
        let mut log = StrangerLog::default();
        let logged = (0..10_000)
            .filter(|_| matches!(log.admit(1_000), StrangerLogLine::Log { .. }))
            .count();
        assert_eq!(logged, STRANGER_LINES_PER_WINDOW as usize);
        // The next window logs again and reports what was dropped.
        assert_eq!(
            log.admit(1_000 + STRANGER_WINDOW_SECS),
            StrangerLogLine::Log {
                suppressed_before: 10_000 - u64::from(STRANGER_LINES_PER_WINDOW)
            }
        );
        assert_eq!(
            log.admit(1_000 + STRANGER_WINDOW_SECS),
            StrangerLogLine::Log {
                suppressed_before: 0
            }
        );
    }

    #[test]
    fn the_same_alert_is_sent_once_per_period() {
        let mut d = AlertDedup::default();
        assert!(d.should_send("cap", 100));
        assert!(!d.should_send("cap", 101));
        assert!(d.should_send("other", 101));
        assert!(!d.should_send("cap", 100 + ALERT_REPEAT_SECS - 1));
        assert!(d.should_send("cap", 100 + ALERT_REPEAT_SECS));
        for i in 0..1_000 {
            d.should_send(&format!("a{i}"), 5_000);
        }
        assert!(d.last_sent.len() <= MAX_REMEMBERED_ALERTS);
    }
}
