// Deploys Aave v3's "Test" market (mintable WETH/USDC/DAI/AAVE/LINK, mock price aggregators,
// a faucet, the Pool and its data provider) onto a fresh anvil on a free loopback port, then
// stops anvil so that it dumps its state:
//
//   node aave/deploy.js OUT_DIR        (from tests/peers)
//
// writes OUT_DIR/state.json (anvil --dump-state; tests start anvil --load-state on it) and
// OUT_DIR/addresses.json (what the tests need: Pool, PoolAddressesProvider, data provider,
// oracle, faucet, and per asset its token, decimals, aToken, variable debt token and mock
// price aggregator). Offline: the package's compiled artifacts and deployment scripts only.
//
// The test kit (testkit/src/anvil.rs) runs this once per package-lock.json and caches the
// result under the target dir. Aave's code is BUSL-1.1: a test fixture, never shipped.
"use strict";

const { spawn } = require("child_process");
const fs = require("fs");
const net = require("net");
const path = require("path");

const PEERS = path.dirname(__dirname);
const ANVIL = path.join(PEERS, "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
const HARDHAT = path.join(PEERS, "node_modules/hardhat/internal/cli/cli.js");

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitForRpc(url, child) {
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`anvil exited with ${child.exitCode} before answering`);
    }
    try {
      const answer = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
      });
      if (answer.ok) return;
    } catch (_) {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`anvil did not answer on ${url} within 20 s`);
}

function run(command, args, options) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "inherit", "inherit"], ...options });
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${path.basename(args[0] || command)} failed (${signal || code})`))
    );
  });
}

async function main() {
  const out = process.argv[2];
  if (!out) throw new Error("usage: node aave/deploy.js OUT_DIR");
  for (const [what, file] of [["anvil", ANVIL], ["hardhat", HARDHAT]]) {
    if (!fs.existsSync(file)) {
      throw new Error(`${what} is not installed (${file} missing): run \`npm ci --ignore-scripts\` in tests/peers`);
    }
  }
  fs.mkdirSync(out, { recursive: true });
  const work = fs.mkdtempSync(path.join(out, "work-"));
  const state = path.join(out, "state.json");
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const started = Date.now();
  const anvil = spawn(
    ANVIL,
    ["--host", "127.0.0.1", "--port", String(port), "--chain-id", "31337", "--silent",
     "--dump-state", state],
    { stdio: ["ignore", "inherit", "inherit"] }
  );
  try {
    await waitForRpc(url, anvil);
    await run(process.execPath, [HARDHAT, "--config", path.join(__dirname, "hardhat.config.js"),
      "vigil-deploy", "--network", "anvil", "--out", path.join(out, "addresses.json")], {
      cwd: PEERS,
      env: {
        ...process.env,
        MARKET_NAME: "Test",
        VIGIL_ANVIL_URL: url,
        VIGIL_AAVE_WORK: work,
        HARDHAT_DISABLE_TELEMETRY_PROMPT: "true",
      },
    });
  } finally {
    // anvil writes --dump-state when it stops
    const exited = new Promise((resolve) => anvil.once("exit", resolve));
    if (anvil.exitCode === null) anvil.kill("SIGINT");
    await exited;
    fs.rmSync(work, { recursive: true, force: true });
  }
  if (!fs.existsSync(state)) throw new Error(`anvil did not dump its state to ${state}`);
  console.log(`deployed the Aave v3 Test market in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((e) => {
  console.error(`aave/deploy.js: ${e.message || e}`);
  process.exit(1);
});
