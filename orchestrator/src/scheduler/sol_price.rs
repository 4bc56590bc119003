//! The SOL price source of each Solana network (`sol_price_urls`): an API answering
//! Hyperliquid's `/info {"type":"allMids"}` whose mids list `SOL`. What it gives is the
//! orchestrator's estimate (a Solana transfer's USD figure, a deputy's SOL wallet in its
//! equity), never a reason to act: a source that fails is no estimate, said in a clear line.

use vigil_protocol::Network;

use super::Orchestrator;
use crate::config::AgentConfig;
use crate::firewall::risk_perp::fixed::Fx;

impl Orchestrator {
    /// The SOL price (USD) on `network` from `sol_price_urls` (the `SOL` of its `allMids`);
    /// `None` when no source is configured for it.
    pub(crate) async fn sol_usd(&self, network: Network) -> Result<Option<Fx>, String> {
        let Some(api) = self.sol_prices.get(&network) else {
            return Ok(None);
        };
        let key = format!("sol_price_urls.{network}");
        let mids = api
            .mids()
            .await
            .map_err(|e| format!("the SOL price source {key}: {e}"))?;
        let mid = mids.get("SOL").ok_or_else(|| {
            format!(
                "the SOL price source {key} lists no SOL in its allMids: point {key} at an API \
                 whose allMids prices SOL"
            )
        })?;
        Fx::parse(mid.text())
            .filter(|p| !p.is_zero() && !p.is_negative())
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "the SOL price source {key} gives SOL the price {:?}, which is no price",
                    mid.text()
                )
            })
    }

    /// A deputy's SOL wallet (lamports) and the SOL price, for its equity's Solana part;
    /// `None` when it has no Solana key or its network no price source.
    pub(crate) async fn sol_wallet(
        &self,
        agent: &AgentConfig,
    ) -> Result<Option<(u128, Fx)>, String> {
        // No source at all: nothing to read (not even the wallet).
        if self.sol_prices.is_empty() || !self.has_solana_key(&agent.id).await {
            return Ok(None);
        }
        let (balance, _, network) = self.solana_view(agent).await?;
        Ok(self.sol_usd(network).await?.map(|price| (balance, price)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use wiremock::matchers::{body_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::config::Config;
    use crate::signer_client::SignerClient;
    use crate::store::Store;

    async fn source(answer: serde_json::Value) -> (MockServer, Orchestrator, tempfile::TempDir) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/info"))
            .and(body_json(serde_json::json!({"type": "allMids"})))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer))
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default_config();
        config.providers.clear();
        config.state_db = dir.path().join("state.sqlite");
        config.signer_socket = dir.path().join("no-signer.sock");
        config.sol_price_urls.insert(Network::Devnet, server.uri());
        let store = Store::open(&config.state_db).unwrap();
        let signer = SignerClient::new(&config.signer_socket, Duration::from_secs(1));
        let o = Orchestrator::new(config, store, signer).unwrap();
        (server, o, dir)
    }

    #[tokio::test]
    async fn the_sol_price_is_the_sources_sol_mid_and_a_bad_source_says_why() {
        let (_s, o, _d) = source(serde_json::json!({"SOL": "150.25", "ETH": "2500"})).await;
        assert_eq!(o.sol_usd(Network::Devnet).await, Ok(Fx::parse("150.25")));
        // No source for the network: no price, no error.
        assert_eq!(o.sol_usd(Network::Mainnet).await, Ok(None));

        let (_s, o, _d) = source(serde_json::json!({"ETH": "2500"})).await;
        let e = o.sol_usd(Network::Devnet).await.unwrap_err();
        assert!(e.contains("sol_price_urls.devnet lists no SOL"), "{e}");

        let (_s, o, _d) = source(serde_json::json!({"SOL": "0"})).await;
        let e = o.sol_usd(Network::Devnet).await.unwrap_err();
        assert!(e.contains("which is no price"), "{e}");

        let (_s, o, _d) = source(serde_json::json!(["SOL", 150])).await;
        let e = o.sol_usd(Network::Devnet).await.unwrap_err();
        assert!(
            e.contains("the SOL price source sol_price_urls.devnet"),
            "{e}"
        );
    }
}
