//! Section 6 of `vigil demo`: EVM actions on paper, built, decoded and decided by the signer.

use serde_json::Value;
use vigil_protocol::{Client, Op};

use super::{result, section, str_of};

/// Section 6: EVM actions on paper. No EVM chain runs in the demo (anvil comes from npm, which
/// the demo does not need); the signer builds, decodes and decides each one through `dry_run`
/// on the paper network `evm:devnet`, whose genesis pin matches no chain, so nothing is ever
/// broadcast there. `tests/run` executes the same transactions on anvil with a real Aave market.
pub(super) fn evm_on_paper(c: &mut Client) -> anyhow::Result<()> {
    section("6. EVM on paper: built, decoded and decided by the signer (no EVM chain in the demo)");
    let hello = result(c.call(Op::Hello)?)?;
    let evm_address = |agent: &str| -> String {
        hello["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["agent"] == agent)
            .map(|a| str_of(&a["network_addresses"]["evm:devnet"]))
            .unwrap_or_default()
    };
    println!(
        "  trader's evm:devnet key {} (secp256k1, its own key: never the Solana one)",
        evm_address("trader")
    );
    let dry = |intent: Value| -> anyhow::Result<Op> {
        Ok(Op::DryRun(vigil_protocol::DryRunRequest {
            agent: "trader".parse().map_err(anyhow::Error::msg)?,
            intent: serde_json::from_value(intent)?,
            // What the orchestrator reads from the node in live mode: nonce and fees (2 gwei,
            // 150 000 gas per transaction); they count as ETH spend.
            context: serde_json::from_value(serde_json::json!({
                "nonce": 0, "gas_limit": 150_000,
                "max_fee_per_gas": "2000000000", "max_priority_fee_per_gas": "1000000000"
            }))?,
        }))
    };
    let cases = [
        (
            "supply 100 USDC to the Aave Pool",
            serde_json::json!({"kind": "aave_supply", "chain": "evm", "network": "devnet", "asset": "USDC", "amount": "100000000"}),
        ),
        (
            "send 0.01 ETH to sentinel",
            serde_json::json!({"kind": "transfer", "chain": "evm", "network": "devnet", "asset": "ETH", "to": evm_address("sentinel"), "amount": "10000000000000000"}),
        ),
        (
            "supply 5000 USDC (above the 1000 USDC per request)",
            serde_json::json!({"kind": "aave_supply", "chain": "evm", "network": "devnet", "asset": "USDC", "amount": "5000000000"}),
        ),
    ];
    for (what, intent) in cases {
        match c.call(dry(intent)?)?.outcome {
            Ok(v) => {
                let rule = v["rule"]
                    .as_str()
                    .map(|r| format!(" [{r}]"))
                    .unwrap_or_default();
                println!(
                    "  • {what}: {}{rule}",
                    str_of(&v["decision"]).to_uppercase()
                );
                println!("      {}", str_of(&v["summary"]));
            }
            Err(e) => println!("  ✘ {what}: {} — {}", e.kind, e.message),
        }
    }
    println!(
        "  (the approval the supply needs is the signer's own: exactly the amount, to the policy's Pool; an agent cannot ask for one)"
    );
    Ok(())
}
