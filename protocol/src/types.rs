//! Small checked types of the protocol: identifiers, amounts, and the closed sets of
//! error kinds and policy rules. Each parses from its wire string or says why not.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $ok:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let ok: fn(char) -> bool = $ok;
                if s.is_empty() || s.len() > $max || !s.chars().all(ok) {
                    return Err(format!(
                        concat!($what, " {:?} is invalid: use 1-{} characters of {}"),
                        truncate(&s), $max, stringify!($ok)
                    ));
                }
                Ok(Self(s))
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// A SHA-256 digest on the wire: exactly 64 lowercase hex digits; the error names `$what` and
/// says where the right digest is shown (`$hint`).
macro_rules! hex_digest {
    ($(#[$doc:meta])* $name:ident, $what:literal, $hint:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The digest as hex.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    Ok(Self(s))
                } else {
                    Err(format!(
                        concat!($what, " {:?} is not 64 lowercase hex digits (", $hint, ")"),
                        $crate::types::truncate(&s)
                    ))
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use hex_digest;

fn printable_ascii(c: char) -> bool {
    c == ' ' || c.is_ascii_graphic()
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn agent_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

/// Shortens attacker-supplied text before it is echoed in an error message.
pub fn truncate(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

checked_string!(
    /// A request id: 1-64 characters of `A-Z a-z 0-9 _ -`, echoed in the response.
    RequestId, "request id", 64, |c| id_char(c)
);
checked_string!(
    /// An agent id as named in the policy: 1-32 characters of `a-z 0-9 _ -`.
    AgentId, "agent id", 32, |c| agent_char(c)
);
checked_string!(
    /// An idempotency key: 1-64 characters of `A-Z a-z 0-9 _ -`.
    IdempotencyKey, "idempotency key", 64, |c| id_char(c)
);
checked_string!(
    /// An approval id handed out with `needs_approval`: 1-64 characters of `A-Z a-z 0-9 _ -`.
    ApprovalId, "approval id", 64, |c| id_char(c)
);
checked_string!(
    /// A request the signer created to wait for the operator (`request_confirmation`,
    /// `request_set_cap`): 1-64 characters of `A-Z a-z 0-9 _ -`, chosen by the signer. The
    /// wire calls it `request_id`; it is not the envelope's `id`.
    OperatorRequestId, "request id", 64, |c| id_char(c)
);
checked_string!(
    /// One pause of an agent (`pause_agent`), chosen by the signer: 1-64 characters of
    /// `A-Z a-z 0-9 _ -`. A `request_resume` names the pause it clears, so an old request
    /// never clears a later pause.
    PauseId, "pause id", 64, |c| id_char(c)
);
checked_string!(
    /// What a destructive command acts on (an agent id, or a confirmation number for
    /// `deny`): 1-32 characters of `a-z 0-9 _ -`.
    CommandTarget, "command target", 32, |c| agent_char(c)
);
checked_string!(
    /// What an operator confirms with `confirm` (e.g. `go_live trader SOL`): 1-200 printable
    /// ASCII characters (space to `~`), recorded verbatim in the audit log.
    Purpose, "purpose", 200, |c| printable_ascii(c)
);

/// The longest asset symbol.
pub const MAX_ASSET_SYMBOL_LEN: usize = 10;

/// An asset symbol as the policy names it: 1 to [`MAX_ASSET_SYMBOL_LEN`] characters of
/// `A-Z 0-9` (e.g. `SOL`, `USDC`). Parsed wherever a symbol enters (an intent, a policy file,
/// an LLM reply, an operator command, a stored row), so a symbol in hand is always one of
/// these. `Copy`: the characters are kept inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AssetSymbol {
    // Zero-padded: the derived order is the order of the symbols as strings, since every
    // symbol character sorts after the padding byte.
    bytes: [u8; MAX_ASSET_SYMBOL_LEN],
    len: u8,
}

impl AssetSymbol {
    /// Solana's native asset.
    pub const SOL: AssetSymbol = AssetSymbol {
        bytes: *b"SOL\0\0\0\0\0\0\0",
        len: 3,
    };

    /// The USD stablecoin (Hyperliquid's collateral).
    pub const USDC: AssetSymbol = AssetSymbol {
        bytes: *b"USDC\0\0\0\0\0\0",
        len: 4,
    };

    /// The symbol as a string slice.
    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        // Invariant: parsing admitted only ASCII, so the bytes are always UTF-8.
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

impl std::str::FromStr for AssetSymbol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= MAX_ASSET_SYMBOL_LEN
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !ok {
            return Err(format!(
                "asset symbol {:?} is invalid: use 1-{MAX_ASSET_SYMBOL_LEN} characters of A-Z 0-9, e.g. SOL",
                truncate(s)
            ));
        }
        let mut bytes = [0u8; MAX_ASSET_SYMBOL_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(Self {
            bytes,
            // At most MAX_ASSET_SYMBOL_LEN (10), checked above.
            len: u8::try_from(s.len()).unwrap_or(0),
        })
    }
}

impl TryFrom<String> for AssetSymbol {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<AssetSymbol> for String {
    fn from(v: AssetSymbol) -> String {
        v.as_str().to_owned()
    }
}

impl fmt::Display for AssetSymbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for AssetSymbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssetSymbol({})", self.as_str())
    }
}

/// An amount in base units (lamports, wei): a decimal string on the wire, never a float,
/// never negative, never zero, at most `u128::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Amount(u128);

impl Amount {
    /// Wraps a base-unit count; zero is allowed here (for totals), not on the wire.
    pub const fn from_base_units(v: u128) -> Self {
        Self(v)
    }
    /// The amount in base units.
    pub const fn base_units(self) -> u128 {
        self.0
    }
}

impl TryFrom<String> for Amount {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Amount::parse_wire(&s)
    }
}

impl Amount {
    /// Parses the wire form: 1-39 ASCII digits, no sign, no leading zero, not zero.
    pub fn parse_wire(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err(
                "amount is empty: give a decimal string of base units, e.g. \"250000000\"".into(),
            );
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "amount {:?} is not a decimal string of base units (no sign, no decimal point, no exponent)",
                truncate(s)
            ));
        }
        if s.len() > 1 && s.starts_with('0') {
            return Err(format!("amount {:?} has a leading zero", truncate(s)));
        }
        let v: u128 = s.parse().map_err(|_| {
            format!(
                "amount {:?} is too large (more than 2^128-1 base units)",
                truncate(s)
            )
        })?;
        if v == 0 {
            return Err("amount is zero: a transfer must move at least one base unit".into());
        }
        Ok(Self(v))
    }
}

impl From<Amount> for String {
    fn from(a: Amount) -> String {
        a.0.to_string()
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `"all"` or an [`Amount`]: what a withdrawal or repayment of a whole position asks for
/// (uint256 max on chain; only where the policy allows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AmountOrAll {
    /// Exactly this many base units.
    Exact(Amount),
    /// The whole position.
    All,
}

impl TryFrom<String> for AmountOrAll {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "all" {
            return Ok(Self::All);
        }
        Amount::parse_wire(&s)
            .map(Self::Exact)
            .map_err(|e| format!("{e}; or \"all\" for the whole position"))
    }
}

impl From<AmountOrAll> for String {
    fn from(a: AmountOrAll) -> String {
        match a {
            AmountOrAll::Exact(a) => a.to_string(),
            AmountOrAll::All => "all".to_owned(),
        }
    }
}

/// A non-negative quantity in base units (wei per gas), zero allowed: a decimal string on the
/// wire, never a float, no sign, no leading zero, at most `u128::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Quantity(u128);

impl Quantity {
    /// Wraps a value.
    pub const fn new(v: u128) -> Self {
        Self(v)
    }
    /// The value.
    pub const fn get(self) -> u128 {
        self.0
    }
}

impl TryFrom<String> for Quantity {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "0" {
            return Ok(Self(0));
        }
        Amount::parse_wire(&s)
            .map(|a| Self(a.base_units()))
            .map_err(|e| e.replace("amount", "quantity"))
    }
}

impl From<Quantity> for String {
    fn from(q: Quantity) -> String {
        q.0.to_string()
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The name used on the wire.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// The kind of an error response; tests assert on it.
    ErrorKind {
        /// The frame was too long, not UTF-8, not JSON or not an object; the connection closes.
        BadFrame => "bad_frame",
        /// The envelope or an op's fields were invalid.
        BadRequest => "bad_request",
        /// The agent is not in the keystore or the policy.
        UnknownAgent => "unknown_agent",
        /// The policy refused; `rule` names the rule.
        PolicyDenied => "policy_denied",
        /// An idempotency key was reused with a different intent.
        IdempotencyConflict => "idempotency_conflict",
        /// No pending approval has this id.
        ApprovalUnknown => "approval_unknown",
        /// The approval window has passed.
        ApprovalExpired => "approval_expired",
        /// The approval was already used.
        ApprovalUsed => "approval_used",
        /// The operator code given to `approve` was wrong or already spent.
        ApprovalInvalidCode => "approval_invalid_code",
        /// An operator code not bound to an approval (`confirm`, `set_limit`,
        /// `import_confirm`) was wrong or already spent (extension: `docs/protocol.md`).
        OperatorCodeInvalid => "operator_code_invalid",
        /// Too many requests or approval attempts.
        RateLimited => "rate_limited",
        /// The op is not one this peer's role may send: a code-bearing op (or an approver
        /// read) from a peer that is not the approver, or an asker op from the approver
        /// (extension: `docs/protocol.md`, "Roles").
        ApproverOnly => "approver_only",
        /// The signer could not complete the request (e.g. its ledger could not be written).
        Internal => "internal",
    }
);

wire_enum!(
    /// A policy rule, named by every refusal and by `dry_run`.
    Rule {
        /// The agent may not perform this kind of intent.
        ActionNotAllowed => "action_not_allowed",
        /// The chain/network pair is not in the agent's allowlist.
        NetworkNotAllowed => "network_not_allowed",
        /// The asset is not in the agent's allowlist.
        AssetNotAllowed => "asset_not_allowed",
        /// The recipient is not in the agent's allowlist.
        RecipientNotAllowed => "recipient_not_allowed",
        /// The program is not in the agent's allowlist.
        ProgramNotAllowed => "program_not_allowed",
        /// The amount exceeds the per-transaction cap.
        PerTxCap => "per_tx_cap",
        /// The amount would take the rolling 24 h total over its cap.
        VelocityCap24h => "velocity_cap_24h",
        /// The agent made too many requests in the last minute.
        RateLimit => "rate_limit",
        /// The amount is above the approval threshold: the operator must approve.
        ApprovalThreshold => "approval_threshold",
        /// EVM: the gas limit or the max fee per gas is above the policy's bound for the network.
        FeeBound => "fee_bound",
        /// EVM: a withdrawal or repayment of a whole position (`"all"`, uint256 max) where the
        /// policy's token does not allow it.
        AllNotAllowed => "all_not_allowed",
        /// Hyperliquid: an opening order would take the position's notional (|position +
        /// size| × limit price) above the perpetual's `max_position_notional`.
        PositionNotional => "position_notional",
        /// Hyperliquid: a leverage above the perpetual's `max_leverage` (or below 1).
        MaxLeverage => "max_leverage",
        /// Hyperliquid: an opening order on a perpetual whose leverage this agent never set
        /// through the signer (so the exchange's default leverage would apply).
        LeverageSetFirst => "leverage_set_first",
        /// Hyperliquid: a size with more decimals than the perpetual's `sz_decimals`, or zero.
        SizeOnGrid => "size_on_grid",
        /// Hyperliquid: a price the exchange would round (too many decimals or significant figures).
        PriceOnGrid => "price_on_grid",
        /// Hyperliquid: a dead-man switch outside 5 s ..= 24 h from the signer's clock.
        ScheduleCancelWindow => "schedule_cancel_window",
        /// Hyperliquid: the agent's API wallet was registered already; a key is registered once.
        ApiKeyRegisteredOnce => "api_key_registered_once",
        /// The agent is paused (`pause_agent`): only what cannot add exposure or move funds
        /// out is signed until the operator's code clears the pause.
        AgentPaused => "agent_paused",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_strictly() {
        assert_eq!(
            Amount::parse_wire("250000000").unwrap().base_units(),
            250_000_000
        );
        for bad in [
            "",
            "-1",
            "+1",
            "1.5",
            "1e9",
            "0",
            "007",
            " 1",
            "abc",
            "340282366920938463463374607431768211456",
        ] {
            assert!(
                Amount::parse_wire(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(
            Amount::parse_wire("340282366920938463463374607431768211455")
                .unwrap()
                .base_units(),
            u128::MAX
        );
    }

    #[test]
    fn ids_are_checked() {
        assert!(RequestId::try_from("req-1_A".to_string()).is_ok());
        assert!(RequestId::try_from(String::new()).is_err());
        assert!(RequestId::try_from("x".repeat(65)).is_err());
        assert!(RequestId::try_from("a b".to_string()).is_err());
        assert!(AgentId::try_from("Trader".to_string()).is_err());
        assert!(AgentId::try_from("trader-2".to_string()).is_ok());
    }

    #[test]
    fn asset_symbols_parse_strictly() {
        for good in ["SOL", "USDC", "A", "X1", "ABCDEFGHIJ", "0"] {
            let s: AssetSymbol = good.parse().unwrap();
            assert_eq!((s.as_str(), s.to_string()), (good, good.to_string()));
        }
        for bad in [
            "",
            "sol",
            "Sol",
            "ABCDEFGHIJK",
            "SO L",
            " SOL",
            "SOL\n",
            "US-DC",
            "SÖL",
            "ＳＯＬ",
        ] {
            let e = bad.parse::<AssetSymbol>().unwrap_err();
            assert!(e.contains("A-Z 0-9"), "{bad:?}: {e}");
        }
        assert_eq!("SOL".parse::<AssetSymbol>(), Ok(AssetSymbol::SOL));
        assert_eq!(serde_json::to_string(&AssetSymbol::SOL).unwrap(), "\"SOL\"");
        assert!(serde_json::from_str::<AssetSymbol>("\"sol\"").is_err());
        // Ordered as the strings are, so maps keyed by symbol list them alphabetically.
        let mut symbols: Vec<AssetSymbol> = ["USDC", "SOL", "SOLX", "A", "B2", "B"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        symbols.sort();
        let names: Vec<&str> = symbols.iter().map(AssetSymbol::as_str).collect();
        assert_eq!(names, ["A", "B", "B2", "SOL", "SOLX", "USDC"]);
    }

    #[test]
    fn wire_names_round_trip() {
        for r in Rule::ALL {
            let s = serde_json::to_string(r).unwrap();
            assert_eq!(s, format!("\"{}\"", r.as_str()));
            assert_eq!(serde_json::from_str::<Rule>(&s).unwrap(), *r);
        }
        assert_eq!(ErrorKind::ALL.len(), 13);
    }
}
