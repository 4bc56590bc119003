//! The shared pieces' tests: no printout of a client shows its token, the admission rule as a
//! table, long texts cut or split.

use super::*;

const TOKEN: &str = "123456789:AAH-secret-part-of-the-token_0123456789";
/// What identifies the token in any printout: its secret half.
const SECRET_HALF: &str = "AAH-secret-part-of-the-token_0123456789";

#[test]
fn no_debug_of_the_bot_client_prints_the_token() {
    let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    // The premise: teloxide's own Debug prints the token (if it stops, this still holds).
    #[allow(clippy::disallowed_methods)]
    let raw = format!("{:?}", Bot::new(TOKEN).set_api_url(url.clone()));
    let client = BotClient::new(&SecretString::from(TOKEN), url);
    let shown = [
        format!("{client:?}"),
        format!("{client:#?}"),
        format!("{:?}", SecretString::from(TOKEN)),
    ];
    for text in &shown {
        assert!(!text.contains(SECRET_HALF), "the token is printed: {text}");
    }
    for text in &shown[..2] {
        assert!(
            text.contains("http://127.0.0.1:8081") && text.contains("redacted"),
            "{text}"
        );
    }
    assert!(
        raw.contains(SECRET_HALF),
        "teloxide's Bot no longer prints its token: the wrapper may go ({raw})"
    );
}

const OP: i64 = 1001;

fn from(chat: i64, from: Option<i64>) -> Origin {
    Origin {
        chat,
        private: true,
        from,
        forwarded: false,
        via_bot: false,
    }
}

#[test]
fn only_an_operators_own_private_typed_messages_are_obeyed() {
    let is_op = |id| id == OP;
    let base = from(OP, Some(OP));
    let table = [
        (base, Ok(())),
        (from(OP, None), Err(Dropped::Stranger)),
        (from(66, Some(66)), Err(Dropped::Stranger)),
        (
            Origin {
                private: false,
                chat: -100,
                ..base
            },
            Err(Dropped::NotPrivate),
        ),
        // A group whose id someone made equal to the operator's is still not private.
        (
            Origin {
                private: false,
                ..base
            },
            Err(Dropped::NotPrivate),
        ),
        (Origin { chat: 66, ..base }, Err(Dropped::NotPrivate)),
        (
            Origin {
                forwarded: true,
                ..base
            },
            Err(Dropped::Forwarded),
        ),
        (
            Origin {
                via_bot: true,
                ..base
            },
            Err(Dropped::ViaBot),
        ),
    ];
    for (m, want) in table {
        assert_eq!(admit(is_op, &m), want, "{m:?}");
    }
}

#[test]
fn long_texts_are_cut_to_one_message_or_split_never_cut() {
    let cut = clip(&"x".repeat(10_000));
    assert!(cut.chars().count() < 4096);
    assert!(cut.ends_with("(cut)"));
    assert_eq!(clip("short"), "short");
    // A long summary (an import of 64 keys) is split, never cut: every part fits a message,
    // and together they are the whole text.
    let keys: Vec<String> = (0..64)
        .map(|i| format!("agent{i} solana devnet 7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU (fingerprint 1a2b 3c4d 5e6f 7a8b 9c{i:02})"))
        .collect();
    let long = format!("IMPORT KEYS: {}; reply with your code", keys.join("; "));
    let parts = split(&long);
    assert!(parts.len() > 1);
    assert!(parts.iter().all(|p| p.chars().count() <= MAX_MESSAGE_CHARS));
    let n = parts.len();
    let joined: String = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.strip_prefix(&format!("({}/{n}) ", i + 1))
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(joined, long);
    assert!(
        parts[..n - 1].iter().all(|p| p.ends_with("; ")),
        "{parts:?}"
    );
    assert_eq!(split("short"), vec!["short".to_owned()]);
}
