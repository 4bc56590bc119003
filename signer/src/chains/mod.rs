//! Transaction builders, one module per chain family. Each builds from an intent plus
//! non-value context, renders the summary from what it built, and signs.

pub(crate) mod evm;
// The signing core of the Hyperliquid venue, proven against the official SDK's vectors; the
// engine's Hyperliquid intents and policy (issue 18) are what will call it outside the tests.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod hyperliquid;
pub(crate) mod solana;
