//! The cost gate: a daily cap on LLM spend in integer micro-dollars (µUSD).
//!
//! Before every call the orchestrator estimates the worst case of that call — the prompt's
//! tokens over-estimated, plus the full `max_tokens` of completion, at the provider's prices
//! — and makes the call only if what was already spent today plus that worst case still fits
//! under the cap. After the call [`charge`] decides what the call is recorded as: the
//! provider's reported usage when it is plausible for the text that went each way, and the
//! worst case the gate reserved when the provider reported none or less than that text can
//! have used (a provider that omits `usage` must not make the cap a dead letter). Money is
//! never a float here: every figure is a `u64` of µUSD, every division rounds up (the gate
//! errs on the side of spending less), and nothing overflows.

use serde::Deserialize;

use crate::llm::Usage;

/// Tokens per price unit: prices are quoted per million tokens.
const TOKENS_PER_PRICE_UNIT: u128 = 1_000_000;

/// A provider's prices, in µUSD per million tokens (e.g. $0.15 / 1M tokens = 150 000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// µUSD per million prompt (input) tokens.
    pub prompt_micros_per_mtok: u64,
    /// µUSD per million completion (output) tokens.
    pub completion_micros_per_mtok: u64,
}

/// A call the gate refused: what it could cost, what is left, and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct CostRefusal {
    /// The worst-case cost of the refused call, in µUSD.
    pub needed_micros: u64,
    /// What was left of today's cap, in µUSD.
    pub left_micros: u64,
    /// A sentence for the log and the operator.
    pub message: String,
}

/// Over-estimates the token count of `text`: one token per started 3 bytes of UTF-8.
///
/// Tokenizers of current models average about 4 bytes per token for English and fewer
/// for code or other scripts; 3 keeps the estimate on the high side for nearly all text,
/// which is the side the gate must err on. Saturates at `u32::MAX`.
pub(crate) fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(3)).unwrap_or(u32::MAX)
}

/// The most bytes of text one token stands for in an honest usage report. Tokenizers of
/// current models average 3-5 bytes per token; 8 leaves room for text that tokenizes unusually
/// well, so only a report no tokenizer could produce falls below it.
const MAX_BYTES_PER_TOKEN: usize = 8;

/// The fewest tokens honest usage can report for `bytes` bytes of text (see
/// [`MAX_BYTES_PER_TOKEN`]).
fn least_tokens(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(MAX_BYTES_PER_TOKEN)).unwrap_or(u32::MAX)
}

/// What one call went out with and came back with, to judge a usage report by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    /// The prompt's bytes (every message's content).
    pub prompt_bytes: usize,
    /// The gate's over-estimate of the prompt's tokens ([`estimate_tokens`]).
    pub prompt_estimate: u32,
    /// The completion limit the call was made with.
    pub max_tokens: u32,
    /// The reply's bytes.
    pub reply_bytes: usize,
}

impl Call {
    /// What `request` goes out with, before its reply: its prompt's bytes, the gate's
    /// over-estimate of its tokens, its completion limit.
    pub(crate) fn before(request: &crate::llm::ChatRequest) -> Call {
        Call {
            prompt_bytes: request.messages.iter().map(|m| m.content.len()).sum(),
            prompt_estimate: request
                .messages
                .iter()
                .map(|m| estimate_tokens(&m.content))
                .fold(0, u32::saturating_add),
            max_tokens: request.max_tokens,
            reply_bytes: 0,
        }
    }
}

/// The tokens a call is recorded with in the cost ledger, and whether they are the worst case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Charge {
    /// Prompt tokens recorded.
    pub prompt_tokens: u32,
    /// Completion tokens recorded.
    pub completion_tokens: u32,
    /// The provider's report was missing or implausibly low: this is the worst case.
    pub worst_case: bool,
}

impl Charge {
    /// Its cost at `prices`, in µUSD.
    pub(crate) fn micros(&self, prices: &Prices) -> u64 {
        actual_micros(self.prompt_tokens, self.completion_tokens, prices)
    }
}

/// What a call is recorded as: the reported usage if there is one and it is at least what the
/// text sent and received can have used ([`least_tokens`] of each); otherwise the worst case
/// the gate reserved (the prompt's over-estimate and all of `max_tokens`, or more if the
/// reply's own text is longer than that).
pub(crate) fn charge(reported: Option<Usage>, call: &Call) -> Charge {
    let plausible = reported.filter(|u| {
        u.prompt_tokens >= least_tokens(call.prompt_bytes)
            && u.completion_tokens >= least_tokens(call.reply_bytes)
    });
    match plausible {
        Some(u) => Charge {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            worst_case: false,
        },
        None => Charge {
            prompt_tokens: call.prompt_estimate,
            completion_tokens: call
                .max_tokens
                .max(u32::try_from(call.reply_bytes.div_ceil(3)).unwrap_or(u32::MAX)),
            worst_case: true,
        },
    }
}

/// The most a call can cost: `prompt_tokens` at the prompt price plus all of `max_tokens`
/// at the completion price, rounded up to the next µUSD, saturating at `u64::MAX`.
pub(crate) fn worst_case_micros(prompt_tokens: u32, max_tokens: u32, prices: &Prices) -> u64 {
    cost_micros(prompt_tokens, max_tokens, prices)
}

/// What a call did cost, from the usage the provider reported, rounded up like the worst
/// case so that a call within its estimate never costs more than the gate allowed for.
pub(crate) fn actual_micros(usage_prompt: u32, usage_completion: u32, prices: &Prices) -> u64 {
    cost_micros(usage_prompt, usage_completion, prices)
}

/// Allows a call only if `spent_today_micros + worst_case <= cap_micros`.
///
/// A refusal means the call is not made and the agent holds until the cap resets or the
/// operator raises it.
pub(crate) fn check_budget(
    spent_today_micros: u64,
    cap_micros: u64,
    worst_case: u64,
) -> Result<(), CostRefusal> {
    let left_micros = cap_micros.saturating_sub(spent_today_micros);
    if worst_case <= left_micros {
        return Ok(());
    }
    Err(CostRefusal {
        needed_micros: worst_case,
        left_micros,
        message: format!(
            "LLM call not made: it could cost up to {} but only {} is left of today's cap of {} \
             ({} already spent); the agent holds until the daily cap resets, or the operator \
             raises `daily_llm_usd_cap_micros` or lowers the agent's `max_tokens`",
            format_usd(worst_case),
            format_usd(left_micros),
            format_usd(cap_micros),
            format_usd(spent_today_micros),
        ),
    })
}

/// Renders µUSD as dollars with six decimals, e.g. `$0.001250`, without floats.
pub(crate) fn format_usd(micros: u64) -> String {
    format!("${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// `ceil((prompt * prompt_price + completion * completion_price) / 1e6)`, saturating.
///
/// Each product is below 2^96 and their sum below 2^97, so the u128 arithmetic is exact.
fn cost_micros(prompt: u32, completion: u32, prices: &Prices) -> u64 {
    let prompt_part = u128::from(prompt) * u128::from(prices.prompt_micros_per_mtok);
    let completion_part = u128::from(completion) * u128::from(prices.completion_micros_per_mtok);
    let total = (prompt_part + completion_part).div_ceil(TOKENS_PER_PRICE_UNIT);
    u64::try_from(total).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: Prices = Prices {
        prompt_micros_per_mtok: 150_000,
        completion_micros_per_mtok: 600_000,
    };

    #[test]
    fn token_estimate_rounds_up_and_saturates_never() {
        for (text, tokens) in [
            ("", 0),
            ("a", 1),
            ("abc", 1),
            ("abcd", 2),
            ("abcdef", 2),
            ("é", 1),      // two bytes
            ("日本語", 3), // nine bytes
        ] {
            assert_eq!(estimate_tokens(text), tokens, "{text:?}");
        }
        let long = "x".repeat(3_000_001);
        assert_eq!(estimate_tokens(&long), 1_000_001);
    }

    #[test]
    fn worst_case_rounds_up_to_the_next_micro() {
        let cases: &[(u32, u32, Prices, u64)] = &[
            (0, 0, MINI, 0),
            // 1 prompt token at 0.15 µUSD rounds up to 1 µUSD.
            (1, 0, MINI, 1),
            // 1000 prompt tokens = 150 µUSD exactly; 1000 completion = 600 µUSD exactly.
            (1000, 1000, MINI, 750),
            // 1001 prompt tokens = 150.15 µUSD, plus 600 → 750.15 → 751.
            (1001, 1000, MINI, 751),
            // One million of each is exactly the list prices.
            (1_000_000, 1_000_000, MINI, 750_000),
            // Free provider.
            (
                u32::MAX,
                u32::MAX,
                Prices {
                    prompt_micros_per_mtok: 0,
                    completion_micros_per_mtok: 0,
                },
                0,
            ),
        ];
        for &(p, c, prices, want) in cases {
            assert_eq!(worst_case_micros(p, c, &prices), want, "{p} + {c}");
            assert_eq!(actual_micros(p, c, &prices), want, "{p} + {c}");
        }
    }

    #[test]
    fn worst_case_saturates_instead_of_overflowing() {
        let absurd = Prices {
            prompt_micros_per_mtok: u64::MAX,
            completion_micros_per_mtok: u64::MAX,
        };
        assert_eq!(worst_case_micros(u32::MAX, u32::MAX, &absurd), u64::MAX);
        // Large but representable: (2^32-1) * (2^64-1) / 1e6 still exceeds u64, saturates.
        assert_eq!(worst_case_micros(u32::MAX, 0, &absurd), u64::MAX);
        // One token at the maximum price fits exactly after rounding up.
        assert_eq!(
            worst_case_micros(1, 0, &absurd),
            u64::MAX.div_ceil(1_000_000)
        );
    }

    #[test]
    fn actual_usage_below_the_estimate_costs_no_more() {
        let worst = worst_case_micros(estimate_tokens(&"y".repeat(4000)), 512, &MINI);
        let actual = actual_micros(1000, 200, &MINI);
        assert!(actual <= worst, "{actual} > {worst}");
    }

    #[test]
    fn a_missing_or_implausible_usage_is_charged_the_worst_case() {
        // 800 bytes of prompt (estimate 267 tokens, at least 100), a 512-token limit, an
        // 80-byte reply (at least 10 tokens).
        let call = Call {
            prompt_bytes: 800,
            prompt_estimate: 267,
            max_tokens: 512,
            reply_bytes: 80,
        };
        let usage = |p, c| {
            Some(Usage {
                prompt_tokens: p,
                completion_tokens: c,
            })
        };
        // (reported, recorded as (prompt, completion, worst case))
        type Case = (Option<Usage>, (u32, u32, bool));
        let worst = (267, 512, true);
        let cases: &[Case] = &[
            (None, worst),
            (usage(0, 0), worst),
            (usage(99, 20), worst), // fewer prompt tokens than 800 bytes can be
            (usage(200, 9), worst), // fewer completion tokens than 80 bytes can be
            (usage(100, 10), (100, 10, false)), // the least plausible report is believed
            (usage(190, 22), (190, 22, false)), // an honest report
            (usage(5000, 9000), (5000, 9000, false)), // more than reserved: recorded as is
        ];
        for &(reported, (p, c, w)) in cases {
            let got = charge(reported, &call);
            assert_eq!(
                (got.prompt_tokens, got.completion_tokens, got.worst_case),
                (p, c, w),
                "{reported:?}"
            );
        }
        // A reply longer than max_tokens allows (a provider ignoring it) is charged its length.
        let long = Call {
            reply_bytes: 3000,
            ..call
        };
        assert_eq!(charge(None, &long).completion_tokens, 1000);
        assert_eq!(
            charge(None, &call).micros(&MINI),
            worst_case_micros(267, 512, &MINI)
        );
    }

    #[test]
    fn budget_allows_reaching_the_cap_exactly_and_refuses_one_more() {
        let cases: &[(u64, u64, u64, Option<u64>)] = &[
            // spent, cap, worst case, Some(left) if refused
            (0, 1000, 1000, None),
            (0, 1000, 1001, Some(1000)),
            (400, 1000, 600, None),
            (400, 1000, 601, Some(600)),
            (0, 0, 0, None),
            (0, 0, 1, Some(0)),
            // Already over the cap (e.g. a call used more than estimated): nothing is left.
            (1500, 1000, 1, Some(0)),
            (1500, 1000, 0, None),
            // Saturating: no overflow at the extremes.
            (u64::MAX, u64::MAX, 0, None),
            (u64::MAX, u64::MAX, 1, Some(0)),
            (1, u64::MAX, u64::MAX, Some(u64::MAX - 1)),
            (0, u64::MAX, u64::MAX, None),
        ];
        for &(spent, cap, worst, refused_left) in cases {
            let got = check_budget(spent, cap, worst);
            match refused_left {
                None => assert_eq!(got, Ok(()), "spent {spent} cap {cap} worst {worst}"),
                Some(left) => {
                    let refusal = got.expect_err("should be refused");
                    assert_eq!(refusal.left_micros, left);
                    assert_eq!(refusal.needed_micros, worst);
                    assert!(refusal.message.contains("not made"), "{}", refusal.message);
                }
            }
        }
    }

    #[test]
    fn refusal_message_names_the_figures_in_dollars() {
        let refusal = check_budget(1_999_000, 2_000_000, 1_250).expect_err("over the cap");
        assert!(refusal.message.contains("$0.001250"), "{}", refusal.message);
        assert!(refusal.message.contains("$0.001000"), "{}", refusal.message);
        assert!(refusal.message.contains("$2.000000"), "{}", refusal.message);
        assert_eq!(format_usd(0), "$0.000000");
        assert_eq!(format_usd(12_345_678), "$12.345678");
    }
}
