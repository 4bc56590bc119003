//! What layer 2 reads of an Aave v3 market besides the account data: a reserve's aToken and
//! variable-debt token, its liquidation threshold and LTV, and its current supply and variable
//! borrow rates (`Pool.getReserveData`; the paper Aave book accrues at them), and an asset's
//! price in the market's base currency (the Pool's addresses provider names the price oracle;
//! `getAssetPrice`). Every answer is checked for its ABI length; addresses must be non-zero.

use alloy_primitives::{Address, U256};
use alloy_sol_types::{SolCall, sol};

use super::{EvmRpc, word};
use crate::chains::jsonrpc::{RpcError, malformed};

sol! {
    interface IAavePool {
        function ADDRESSES_PROVIDER() external view returns (address);
    }
    interface IAddressesProvider {
        function getPriceOracle() external view returns (address);
    }
    interface IAaveOracle {
        function getAssetPrice(address asset) external view returns (uint256);
    }
    interface IReserveData {
        function getReserveData(address asset) external view returns (uint256);
    }
}

/// The words of `ReserveData` (Aave v3.0 to v3.2) read here: the configuration bitmap (word
/// 0), the current liquidity rate (word 2), the current variable borrow rate (word 4), the
/// aToken (word 8) and the variable-debt token (word 10). Later words differ by version and
/// are not read.
const RESERVE_MIN_WORDS: usize = 11;
const LIQUIDITY_RATE_WORD: usize = 2;
const VARIABLE_BORROW_RATE_WORD: usize = 4;
const A_TOKEN_WORD: usize = 8;
const VARIABLE_DEBT_WORD: usize = 10;

/// One reserve of the Pool, as layer 2 needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    /// The interest-bearing token a supply mints (its balance is the supplied amount).
    pub a_token: Address,
    /// The token that counts the variable-rate debt.
    pub variable_debt_token: Address,
    /// The reserve's liquidation threshold, basis points (bits 16-31 of its configuration).
    pub liquidation_threshold_bps: u16,
    /// The reserve's loan-to-value, basis points (bits 0-15 of its configuration).
    pub ltv_bps: u16,
    /// `currentLiquidityRate`: what a supply earns, APR in ray (10^27 = 100 %).
    pub liquidity_rate: U256,
    /// `currentVariableBorrowRate`: what a variable-rate debt pays, APR in ray.
    pub variable_borrow_rate: U256,
}

impl EvmRpc {
    /// `pool.getReserveData(asset)`: its aToken, variable-debt token and liquidation threshold.
    /// An asset the Pool does not list answers zero addresses, refused here.
    pub async fn aave_reserve(&self, pool: Address, asset: Address) -> Result<Reserve, RpcError> {
        let out = self
            .eth_call(
                pool,
                &IReserveData::getReserveDataCall { asset }.abi_encode(),
            )
            .await?;
        if out.len() < RESERVE_MIN_WORDS * 32 || out.len() % 32 != 0 {
            return Err(malformed(
                "eth_call",
                format!(
                    "getReserveData returned {} bytes, not at least {RESERVE_MIN_WORDS} words",
                    out.len()
                ),
            ));
        }
        let w = |i: usize| U256::from_be_slice(&out[32 * i..32 * (i + 1)]);
        let address_at = |i: usize| -> Result<Address, RpcError> {
            let value = w(i);
            if value > U256::from_be_slice(&[0xff; 20]) || value.is_zero() {
                return Err(malformed(
                    "eth_call",
                    format!(
                        "getReserveData of {asset}: word {i} is {value:#x}, not a contract address \
                         (is {asset} a reserve of the Pool {pool}?)"
                    ),
                ));
            }
            Ok(Address::from_word(value.into()))
        };
        // The rates are `uint128` in the Pool's storage: a larger word is not a rate.
        let rate_at = |i: usize, name: &str| -> Result<U256, RpcError> {
            let value = w(i);
            if value > U256::from(u128::MAX) {
                return Err(malformed(
                    "eth_call",
                    format!(
                        "getReserveData of {asset}: {name} (word {i}) is {value:#x}, not a uint128"
                    ),
                ));
            }
            Ok(value)
        };
        let configuration = w(0);
        let threshold = (configuration >> 16) & U256::from(0xffff_u32);
        let ltv = configuration & U256::from(0xffff_u32);
        Ok(Reserve {
            a_token: address_at(A_TOKEN_WORD)?,
            variable_debt_token: address_at(VARIABLE_DEBT_WORD)?,
            // Masked to 16 bits above: the conversions cannot fail.
            liquidation_threshold_bps: u16::try_from(threshold).unwrap_or(u16::MAX),
            ltv_bps: u16::try_from(ltv).unwrap_or(u16::MAX),
            liquidity_rate: rate_at(LIQUIDITY_RATE_WORD, "currentLiquidityRate")?,
            variable_borrow_rate: rate_at(VARIABLE_BORROW_RATE_WORD, "currentVariableBorrowRate")?,
        })
    }

    /// The price of `asset` in the market's base currency (USD with 8 decimals on Aave v3),
    /// from the price oracle the Pool's addresses provider names. A zero price is refused.
    pub async fn aave_price(&self, pool: Address, asset: Address) -> Result<U256, RpcError> {
        let provider = self
            .address_call(pool, &IAavePool::ADDRESSES_PROVIDERCall {}.abi_encode())
            .await?;
        let oracle = self
            .address_call(
                provider,
                &IAddressesProvider::getPriceOracleCall {}.abi_encode(),
            )
            .await?;
        let out = self
            .eth_call(
                oracle,
                &IAaveOracle::getAssetPriceCall { asset }.abi_encode(),
            )
            .await?;
        let price = word("getAssetPrice", &out)?;
        if price.is_zero() {
            return Err(malformed(
                "eth_call",
                format!("the Aave oracle {oracle} prices {asset} at 0: no source for it"),
            ));
        }
        Ok(price)
    }

    /// A getter that returns one non-zero address.
    async fn address_call(&self, to: Address, data: &[u8]) -> Result<Address, RpcError> {
        let value = word("address getter", &self.eth_call(to, data).await?)?;
        if value > U256::from_be_slice(&[0xff; 20]) || value.is_zero() {
            return Err(malformed(
                "eth_call",
                format!("{to} answered {value:#x}, not a contract address"),
            ));
        }
        Ok(Address::from_word(value.into()))
    }
}
