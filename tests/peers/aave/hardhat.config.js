// Hardhat configuration that deploys Aave v3's "Test" market onto a local anvil, from the
// compiled artifacts and the official deployment scripts of the npm package @aave/deploy-v3
// (nothing is compiled here). Used only by deploy.js; a test fixture, never shipped: Aave's
// code is BUSL-1.1.
//
// Known snags of @aave/deploy-v3 1.56.2 offline, handled here:
// - hardhat-deploy must find the package's artifacts and deploy scripts (`external`), and
//   hardhat's own artifacts path must point into the package too (the scripts read
//   libraries and ABIs through it);
// - the scripts call the package's tasks (review-*, setup-*, print-deployments), which its own
//   hardhat config loads: loaded here from dist/tasks/{misc,market-registry};
// - the post-deploy hook calls a task the package does not ship
//   (disable-faucet-native-testnets): defined as a no-op, otherwise the hook fails before it
//   unpauses the pool.
"use strict";

const fs = require("fs");
const path = require("path");

require("@nomiclabs/hardhat-ethers");
require("hardhat-deploy");
const { task } = require("hardhat/config");

const PACKAGE = path.dirname(require.resolve("@aave/deploy-v3/package.json"));
const RPC_URL = process.env.VIGIL_ANVIL_URL || "http://127.0.0.1:8545";
const WORK = process.env.VIGIL_AAVE_WORK || path.join(__dirname, ".work");

for (const folder of ["misc", "market-registry"]) {
  const dir = path.join(PACKAGE, "dist", "tasks", folder);
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".js"))) {
    require(path.join(dir, file));
  }
}

// Missing from @aave/deploy-v3 1.56.2 but called by its post-deploy hook on test markets.
// Wrapped native minting stays enabled on this local market, which the tests do not rely on.
task("disable-faucet-native-testnets", "no-op (missing from @aave/deploy-v3 1.56.2)").setAction(
  async () => {}
);

module.exports = {
  defaultNetwork: "anvil",
  networks: {
    anvil: {
      url: RPC_URL,
      chainId: 31337,
      // anvil's unlocked dev accounts sign; none of their keys is in this file
      accounts: "remote",
      gasPrice: "auto",
      timeout: 120000,
      saveDeployments: true,
      tags: ["local"],
    },
  },
  // the package's own roles: the deployer (anvil's first dev account) holds them all but the
  // proxy admins (the second)
  namedAccounts: require(path.join(PACKAGE, "dist", "helpers", "constants")).DEFAULT_NAMED_ACCOUNTS,
  paths: {
    root: __dirname,
    sources: path.join(WORK, "sources"),
    cache: path.join(WORK, "cache"),
    deployments: path.join(WORK, "deployments"),
    artifacts: path.join(PACKAGE, "artifacts"),
  },
  external: {
    contracts: [
      {
        artifacts: path.join(PACKAGE, "artifacts"),
        deploy: path.join(PACKAGE, "dist", "deploy"),
      },
    ],
  },
  mocha: { timeout: 0 },
};

// `hardhat vigil-deploy --out FILE`: the package's deployment, then the addresses the tests
// need, read back from the chain (decimals, aTokens and debt tokens from the data provider).
task("vigil-deploy", "deploy the Test market and write its addresses")
  .addParam("out", "where to write the addresses JSON")
  .setAction(async ({ out }, hre) => {
    await hre.run("deploy", { noCompile: true });
    const { deployments, ethers } = hre;
    const at = async (id) => (await deployments.get(id)).address;
    const market = "Test";
    const dataProvider = await ethers.getContractAt(
      "AaveProtocolDataProvider",
      await at(`PoolDataProvider-${market}`)
    );
    const pool = await ethers.getContractAt("Pool", await at(`Pool-Proxy-${market}`));
    const paused = await Promise.all(
      (await pool.getReservesList()).map((a) => dataProvider.getPaused(a))
    );
    if (paused.some((p) => p)) {
      throw new Error("the deployed pool is paused: the post-deploy hook did not finish");
    }
    const assets = {};
    for (const { symbol, tokenAddress } of await dataProvider.getAllReservesTokens()) {
      const token = await ethers.getContractAt(
        "@aave/core-v3/contracts/dependencies/openzeppelin/contracts/IERC20Detailed.sol:IERC20Detailed",
        tokenAddress
      );
      const tokens = await dataProvider.getReserveTokensAddresses(tokenAddress);
      assets[symbol] = {
        token: tokenAddress,
        decimals: await token.decimals(),
        a_token: tokens.aTokenAddress,
        variable_debt_token: tokens.variableDebtTokenAddress,
        price_aggregator: await at(`${symbol}-TestnetPriceAggregator-${market}`),
      };
    }
    const { deployer } = await hre.getNamedAccounts();
    const addresses = {
      chain_id: (await ethers.provider.getNetwork()).chainId,
      deployer,
      pool: pool.address,
      pool_addresses_provider: await at(`PoolAddressesProvider-${market}`),
      pool_data_provider: dataProvider.address,
      oracle: await at(`AaveOracle-${market}`),
      faucet: await at(`Faucet-${market}`),
      assets,
    };
    fs.writeFileSync(out, JSON.stringify(addresses, null, 2) + "\n");
  });
