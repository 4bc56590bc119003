//! What one decision came to ([`Outcome`]) and its one-line text (the `Display`, used
//! wherever an outcome is told: the agent's memory, the operator's chat, the demo). How it is
//! recorded is `record`.

use std::fmt;

use serde::Serialize;

/// What one decision came to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The agent holds: by its own choice, or because a gate stopped the call or the reply.
    Held { layer: String, reason: String },
    /// A layer refused the agent's action.
    Refused {
        layer: String,
        rule: String,
        message: String,
    },
    /// Paper mode: the signer would sign; a fill was simulated and recorded.
    PaperFilled { summary: String },
    /// Live mode: the signer would sign this, and it waits for the operator's Yes (a
    /// confirmation was recorded); nothing is signed until then.
    AwaitingConfirmation {
        summary: String,
        confirmation_id: i64,
    },
    /// The signer needs the operator's code (an approval; a confirmation that tracks it was
    /// recorded).
    NeedsApproval {
        approval_id: String,
        summary: String,
        confirmation_id: i64,
    },
    /// Live mode: signed by the signer, then broadcast and confirmed when an RPC is set.
    Signed {
        summary: String,
        signature: String,
        tx: String,
        /// What the chain said: "confirmed", "finalized", "failed: ...", "not broadcast: ...".
        chain: String,
    },
}

/// One line: what happened, which layer or gate decided, and for an item that waits, how the
/// operator answers it.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Held { layer, reason } => write!(f, "held ({layer}): {reason}"),
            Outcome::Refused {
                layer,
                rule,
                message,
            } => write!(f, "refused by layer {layer} [{rule}]: {message}"),
            Outcome::PaperFilled { summary } => {
                write!(f, "paper fill (all three layers allowed): {summary}")
            }
            Outcome::AwaitingConfirmation {
                summary,
                confirmation_id,
            } => write!(
                f,
                "waiting for the operator's yes (#{confirmation_id}): {summary}"
            ),
            Outcome::NeedsApproval {
                summary,
                confirmation_id,
                ..
            } => write!(
                f,
                "needs the operator's approval (layer 3 threshold): #{confirmation_id} waits in the approver's chat — {summary}"
            ),
            Outcome::Signed {
                summary,
                signature,
                chain,
                ..
            } => write!(
                f,
                "signed and sent ({chain}): {summary}, signature {signature}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_one_line_naming_what_decided_and_how_to_answer() {
        let s = |v: &str| v.to_string();
        let cases = [
            (
                Outcome::Held {
                    layer: s("cost"),
                    reason: s("cap reached"),
                },
                "held (cost): cap reached",
            ),
            (
                Outcome::Refused {
                    layer: s("2"),
                    rule: s("PeerNotAllowed"),
                    message: s("not a peer"),
                },
                "refused by layer 2 [PeerNotAllowed]: not a peer",
            ),
            (
                Outcome::PaperFilled {
                    summary: s("transfer 0.2 SOL"),
                },
                "paper fill (all three layers allowed): transfer 0.2 SOL",
            ),
            (
                Outcome::AwaitingConfirmation {
                    summary: s("transfer 0.2 SOL"),
                    confirmation_id: 7,
                },
                "waiting for the operator's yes (#7): transfer 0.2 SOL",
            ),
            (
                Outcome::NeedsApproval {
                    approval_id: s("ap-1"),
                    summary: s("transfer 0.8 SOL"),
                    confirmation_id: 8,
                },
                "needs the operator's approval (layer 3 threshold): #8 waits in the approver's chat — transfer 0.8 SOL",
            ),
            (
                Outcome::Signed {
                    summary: s("transfer 0.2 SOL"),
                    signature: s("5sig"),
                    tx: s("AAAA"),
                    chain: s("confirmed"),
                },
                "signed and sent (confirmed): transfer 0.2 SOL, signature 5sig",
            ),
        ];
        for (outcome, want) in cases {
            assert_eq!(outcome.to_string(), want);
        }
    }
}
