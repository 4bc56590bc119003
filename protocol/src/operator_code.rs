//! The operator's code: the six digits the authenticator enrolled at the key ceremony shows
//! (RFC 6238 TOTP). It is parsed once, where it enters (a request's `code`, a Telegram
//! message, a command-line flag, the ceremony's prompt), so everything behind that point
//! holds six ASCII digits and nothing else.
//!
//! A code is short-lived and used once, but while it is current it approves something, so
//! it never appears in a `Debug` print (logs, panics, `{:?}` of a request).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How many digits an operator code has (RFC 6238 with 6 digits).
pub const OPERATOR_CODE_DIGITS: usize = 6;

/// Exactly six ASCII digits, as the operator's authenticator shows them. `Debug` prints
/// none of them; [`OperatorCode::expose_digits`] is the one way to read them (to compare
/// them with the expected code, or to send them to the signer).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OperatorCode(String);

impl OperatorCode {
    /// The six digits. Compare them in constant time; never log them.
    pub fn expose_digits(&self) -> &str {
        &self.0
    }
}

impl FromStr for OperatorCode {
    type Err = String;
    /// Accepts exactly six ASCII digits: no spaces, no sign, no other digit scripts. The
    /// error never repeats what was given (it may be a near-miss of a current code).
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.bytes().filter(u8::is_ascii_digit).count();
        if s.len() == OPERATOR_CODE_DIGITS && digits == OPERATOR_CODE_DIGITS {
            return Ok(Self(s.to_owned()));
        }
        let what = if s.is_empty() {
            "it is empty".to_owned()
        } else if digits == s.len() {
            format!("it has {} digits", s.chars().count())
        } else {
            "it has characters other than the digits 0-9".to_owned()
        };
        Err(format!(
            "an operator code is the {OPERATOR_CODE_DIGITS} digits your authenticator shows, \
             and {what}; send the current code, e.g. 123456"
        ))
    }
}

impl TryFrom<String> for OperatorCode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<OperatorCode> for String {
    fn from(code: OperatorCode) -> String {
        code.0
    }
}

impl fmt::Debug for OperatorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OperatorCode(******)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_ascii_digits_parse_and_nothing_else_does() {
        for good in ["123456", "000000", "999999", "081804"] {
            let code: OperatorCode = good.parse().unwrap();
            assert_eq!(code.expose_digits(), good);
        }
        for (bad, why) in [
            ("", "empty"),
            ("12345", "5 digits"),
            ("1234567", "7 digits"),
            ("12a456", "other than the digits"),
            (" 123456", "other than the digits"),
            ("123456 ", "other than the digits"),
            ("123 456", "other than the digits"),
            ("-12345", "other than the digits"),
            ("+12345", "other than the digits"),
            ("１２３４５６", "other than the digits"),
            ("١٢٣٤٥٦", "other than the digits"),
            ("12345\n", "other than the digits"),
        ] {
            let e = bad.parse::<OperatorCode>().unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn errors_and_debug_never_show_the_digits() {
        let e = "987654321".parse::<OperatorCode>().unwrap_err();
        assert!(!e.contains("987654"), "{e}");
        let code: OperatorCode = "271828".parse().unwrap();
        let debug = format!("{code:?}");
        assert!(!debug.contains("271828") && !debug.contains('2'), "{debug}");
    }

    #[test]
    fn the_wire_form_is_the_digits_string() {
        let code: OperatorCode = serde_json::from_str("\"314159\"").unwrap();
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"314159\"");
        for bad in ["\"31415\"", "314159", "null", "\"31415x\""] {
            assert!(serde_json::from_str::<OperatorCode>(bad).is_err(), "{bad}");
        }
    }
}
