//! What an operator's message means, as pure functions tested by tables: what a text in an
//! operator's chat asks for ([`judge_text`]), and the texts the bot sends (a request, an
//! event, the signer's answer). Which messages are obeyed at all is
//! `vigil_telegram::admit`, the rule the orchestrator's bot shares.
//!
//! The rules of issue 15: only an operator's private chat is obeyed (a group, a channel, a
//! stranger: dropped without a reply), forwarded messages and messages sent via a bot are
//! dropped, and a code answers exactly the request whose message it replies to: the bot's own
//! message id is looked up in the durable map ([`crate::state`]), never a `#N` parsed from
//! text. A code that replies to anything else, or to nothing, is not sent anywhere. There is
//! no dialogue state to go stale: a reply is taken only while the signer still lists its
//! request and before the request's deadline.

use serde_json::Value;
use vigil_protocol::{
    AwaitingItem, AwaitingKind, ErrorBody, OperatorCode, OperatorEvent, OperatorEventKind,
};

use vigil_telegram::Origin;

use crate::state::{Shown, Store};

/// The facts of a message the rules look at.
#[derive(Clone, Copy, Debug)]
pub struct Incoming<'a> {
    /// Where it came from (what [`vigil_telegram::admit`] judges).
    pub origin: Origin,
    /// Its text (empty if none).
    pub text: &'a str,
    /// The id of the message it replies to, if any.
    pub reply_to: Option<i32>,
}

/// What to do with an admitted text that is not a command.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Answer with this; nothing goes to the signer.
    Say(String),
    /// Send the operator's code(s) for the request `shown` (then delete the code message).
    Answer {
        /// The request the replied-to message shows.
        shown: Shown,
        /// The operator's code.
        code: OperatorCode,
        /// For an import replacing keys: a code of today's authenticator.
        current: Option<OperatorCode>,
    },
}

/// The hint for a message that is neither a command nor a reply to a request.
pub const HINT: &str = "This bot only carries your authenticator codes to the signer. To answer \
a request, reply to its message with your 6-digit code. /awaiting lists what is waiting; \
/help says more.";

/// Interprets an admitted, non-command text in `chat`.
pub fn judge_text(
    store: &Store,
    chat: i64,
    text: &str,
    reply_to: Option<i32>,
    now: u64,
) -> Verdict {
    let looks_like_code = text.bytes().filter(u8::is_ascii_digit).count() >= 6;
    let Some(replied) = reply_to else {
        return Verdict::Say(if looks_like_code {
            "A code answers only the request whose message it replies to: reply to that \
             message (swipe it, or long-press and Reply) with your code. Nothing was sent."
                .into()
        } else {
            HINT.into()
        });
    };
    let Some(shown) = store.lookup(chat, replied) else {
        return Verdict::Say(
            "That message is not a request, so nothing was sent. Reply to a request's own \
             message (/awaiting shows them again)."
                .into(),
        );
    };
    if shown.closed_at.is_some() {
        return Verdict::Say(format!(
            "{} {} is no longer waiting (answered, refused or expired): nothing was sent.",
            label(shown.kind),
            short(&shown.id)
        ));
    }
    if shown.expired(now) {
        return Verdict::Say(format!(
            "{} {} has expired: nothing was sent. Ask again from the orchestrator if it is \
             still wanted.",
            label(shown.kind),
            short(&shown.id)
        ));
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let parsed = match (shown.current_code_required, words.as_slice()) {
        (false, [code]) => code.parse().map(|c| (c, None)),
        (true, [new, current]) => new
            .parse()
            .and_then(|n| current.parse().map(|c| (n, Some(c)))),
        (false, _) => Err("send only the 6 digits your authenticator shows, e.g. 123456".into()),
        (true, _) => Err(
            "this import replaces the keys: send the new authenticator's code, a \
                          space, and a code of the authenticator in use today"
                .into(),
        ),
    };
    match parsed {
        Ok((code, current)) => Verdict::Answer {
            shown: shown.clone(),
            code,
            current,
        },
        Err(e) => Verdict::Say(format!(
            "Not sent: {e}. Reply to the request's message again."
        )),
    }
}

/// What a kind of request is called in messages.
pub const fn label(kind: AwaitingKind) -> &'static str {
    match kind {
        AwaitingKind::Approval => "Approval",
        AwaitingKind::Confirmation => "Confirmation",
        AwaitingKind::SetCap => "Cap change",
        AwaitingKind::Import => "Key import",
        AwaitingKind::Resume => "Resume",
    }
}

/// An id as shown: a manifest digest is cut to 16 characters (the message holds it whole).
fn short(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}

/// The message showing an awaiting item: the signer's summary, its id, its deadline, and what
/// to do.
pub fn request_text(item: &AwaitingItem, now: u64) -> String {
    let deadline = if item.expires_at == 0 {
        "No deadline.".to_owned()
    } else {
        format!(
            "Expires at {} UTC (in {}).",
            clock(item.expires_at),
            minutes(item.expires_at.saturating_sub(now))
        )
    };
    let how = if item.current_code_required {
        "Reply to this message with the NEW authenticator's 6-digit code, a space, and a code \
         of the authenticator in use today."
    } else {
        "Reply to this message with your 6-digit code to grant it; ignore it to let it expire."
    };
    format!(
        "{} {}\n\n{}\n\n{deadline}\n{how}\n(The summary is the signer's own.)",
        label(item.kind),
        item.id,
        item.summary
    )
}

/// The announcement of a journal event, or `None` for the kinds shown as requests anyway.
pub fn event_text(e: &OperatorEvent) -> Option<String> {
    let tag = match e.kind {
        OperatorEventKind::ApprovalRequested
        | OperatorEventKind::ConfirmationRequested
        | OperatorEventKind::CapChangeRequested
        | OperatorEventKind::ResumeRequested => return None,
        OperatorEventKind::Lockout | OperatorEventKind::CodeFromWrongPeer => "ALERT",
        OperatorEventKind::AgentPaused => "PAUSED",
        OperatorEventKind::ApprovalRefused | OperatorEventKind::CodeRefused => "Refused",
        _ => "Signer",
    };
    Some(format!(
        "[{tag} #{}, {} UTC] {}",
        e.seq,
        clock(e.ts),
        e.text
    ))
}

/// The answer to the operator after the signer answered the code for `shown`.
pub fn outcome_text(shown: &Shown, outcome: &Result<Value, ErrorBody>) -> String {
    let what = format!("{} {}", label(shown.kind), short(&shown.id));
    match outcome {
        Ok(result) => {
            let summary = result
                .get("summary")
                .and_then(Value::as_str)
                .unwrap_or(shown.summary.as_str());
            let then = match shown.kind {
                AwaitingKind::Approval => {
                    "The orchestrator may now collect the one signature it allows."
                }
                AwaitingKind::Import => "The signer applies the import when it restarts.",
                AwaitingKind::Resume => {
                    "The pause is cleared: the signer signs for this agent within the policy again."
                }
                AwaitingKind::Confirmation | AwaitingKind::SetCap => "",
            };
            format!("Granted by the signer: {what}.\n{summary}\n{then}")
                .trim_end()
                .to_owned()
        }
        Err(e) => format!(
            "Refused by the signer ({}): {what}.\n{}",
            e.kind.as_str(),
            e.message
        ),
    }
}

/// `HH:MM` of a Unix time, UTC.
fn clock(ts: u64) -> String {
    let day = ts % 86_400;
    format!("{:02}:{:02}", day / 3600, (day % 3600) / 60)
}

fn minutes(secs: u64) -> String {
    if secs < 60 {
        format!("{secs} s")
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::ErrorKind;

    const OP: i64 = 1001;

    fn store_with(items: &[(i32, AwaitingItem)]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        for (mid, item) in items {
            s.record(Shown::new(OP, *mid, item, 100)).unwrap();
        }
        (dir, s)
    }

    fn item(id: &str, kind: AwaitingKind, expires_at: u64, current: bool) -> AwaitingItem {
        AwaitingItem {
            id: id.into(),
            kind,
            summary: format!("summary of {id}"),
            expires_at,
            created_seq: 1,
            current_code_required: current,
        }
    }

    #[test]
    fn a_code_answers_exactly_the_request_it_replies_to() {
        let (_d, mut s) = store_with(&[
            (10, item("a1", AwaitingKind::Approval, 500, false)),
            (11, item("r2", AwaitingKind::SetCap, 500, false)),
            (12, item(&"d".repeat(64), AwaitingKind::Import, 0, true)),
            (13, item("gone", AwaitingKind::Approval, 500, false)),
        ]);
        s.close("gone", 150).unwrap();
        let answer =
            |text: &str, reply: Option<i32>, now: u64| judge_text(&s, OP, text, reply, now);
        match answer(" 123456 ", Some(11), 200) {
            Verdict::Answer {
                shown,
                code,
                current,
            } => {
                assert_eq!((shown.id.as_str(), code.expose_digits()), ("r2", "123456"));
                assert!(current.is_none());
            }
            v => panic!("{v:?}"),
        }
        match answer("111111 222222", Some(12), 200) {
            Verdict::Answer {
                shown,
                code,
                current,
            } => {
                assert_eq!(shown.kind, AwaitingKind::Import);
                assert_eq!(code.expose_digits(), "111111");
                assert_eq!(current.unwrap().expose_digits(), "222222");
            }
            v => panic!("{v:?}"),
        }
        // Everything else is said, never sent.
        let said = [
            ("123456", None, 200, "replies to"),
            ("hello", None, 200, "/awaiting"),
            ("123456", Some(99), 200, "not a request"),
            ("123456", Some(13), 200, "no longer waiting"),
            ("123456", Some(10), 500, "expired"),
            ("12345", Some(10), 200, "Not sent"),
            ("123456 654321", Some(10), 200, "only the 6 digits"),
            ("123456", Some(12), 200, "a space"),
            ("approve #2 123456", Some(10), 200, "Not sent"),
        ];
        for (text, reply, now, needle) in said {
            match answer(text, reply, now) {
                Verdict::Say(t) => assert!(t.contains(needle), "{text:?}: {t}"),
                v => panic!("{text:?} was sent: {v:?}"),
            }
        }
        // A reply in another chat to the same message id is not that request.
        assert!(matches!(
            judge_text(&s, 66, "123456", Some(10), 200),
            Verdict::Say(_)
        ));
    }

    #[test]
    fn texts_carry_the_signers_summary_and_never_hide_a_refusal() {
        let it = item("a1", AwaitingKind::Approval, 3_600 + 300, false);
        let t = request_text(&it, 3_600);
        assert!(
            t.contains("Approval a1") && t.contains("summary of a1"),
            "{t}"
        );
        assert!(
            t.contains("01:05 UTC (in 5 min)") && t.contains("Reply to this message"),
            "{t}"
        );
        let shown = Shown::new(OP, 1, &it, 0);
        let ok = outcome_text(&shown, &Ok(serde_json::json!({"summary": "send 2 SOL"})));
        assert!(
            ok.starts_with("Granted") && ok.contains("send 2 SOL"),
            "{ok}"
        );
        let body = ErrorBody {
            kind: ErrorKind::ApprovalInvalidCode,
            rule: None,
            message: "wrong code".into(),
        };
        let no = outcome_text(&shown, &Err(body));
        assert!(
            no.starts_with("Refused") && no.contains("wrong code"),
            "{no}"
        );
        let ev = |kind| OperatorEvent {
            seq: 9,
            ts: 60,
            kind,
            text: "x".into(),
        };
        assert!(event_text(&ev(OperatorEventKind::ApprovalRequested)).is_none());
        assert!(
            event_text(&ev(OperatorEventKind::Lockout))
                .unwrap()
                .contains("ALERT #9")
        );
        assert!(
            event_text(&ev(OperatorEventKind::CapSet))
                .unwrap()
                .contains("00:01 UTC] x")
        );
    }
}
