//! Transaction builders, one module per chain family. Each builds from an intent plus
//! non-value context, renders the summary from what it built, and signs.

pub(crate) mod evm;
pub(crate) mod hyperliquid;
pub(crate) mod solana;
