// The second, independent verifier of Hyperliquid signatures: the npm package
// `@nktkas/hyperliquid` (pinned in tests/peers/package.json), which shares no code with the
// official Python SDK nor with the signer.
//
//     node nktkas_check.mjs          (long-running: one JSON request per stdin line)
//
// Request: {"network": "mainnet" | "testnet", "action": {...}, "nonce": N,
//           "signature": {"r", "s", "v"}, "vaultAddress": null | "0x..", "expiresAfter": null | N}
// Answer (one line each, in order): {"signer": "0x..", "canonical": true | false | null}
//                                or {"error": "<what was wrong>"}.
//
// What is the package's own code and what is not:
// - L1 actions (order, cancel, scheduleCancel, updateLeverage): the action hash
//   (`createL1ActionHash`: its own MessagePack encoder and keccak) and the EIP-712
//   `Agent(string source, bytes32 connectionId)` typed data in the `Exchange` domain, exactly as
//   its `signL1Action` builds them;
// - user-signed actions (usdSend, withdraw3, approveAgent): the `HyperliquidSignTransaction`
//   domain and the package's own `UsdSendTypes` / `Withdraw3Types` / `ApproveAgentTypes`, as its
//   `signUserSignedAction` builds them.
// The package has no signature recovery of its own (it hands typed data to a wallet: viem or
// ethers), so the typed data it builds is captured by a recording wallet and the signer is
// recovered by ethers 5 (`verifyTypedData`; also pinned in package.json, its own keccak and
// secp256k1).
//
// The action is hashed as received (key order = the JSON's), as the Python SDK peer does, so
// the two verifiers judge the same bytes. `canonical` says whether the package's schema order
// (`canonicalize`, the order Hyperliquid's own structs serialise in) gives the same bytes:
// null for user-signed actions, where key order does not matter.

import readline from "node:readline";

import { ethers } from "ethers";
import {
  ApproveAgentTypes,
  CancelRequest,
  OrderRequest,
  ScheduleCancelRequest,
  UpdateLeverageRequest,
  UsdSendTypes,
  Withdraw3Types,
} from "@nktkas/hyperliquid/api/exchange";
import {
  canonicalize,
  createL1ActionHash,
  signL1Action,
  signUserSignedAction,
} from "@nktkas/hyperliquid/signing";

const L1_SCHEMAS = {
  order: OrderRequest,
  cancel: CancelRequest,
  scheduleCancel: ScheduleCancelRequest,
  updateLeverage: UpdateLeverageRequest,
};
const USER_TYPES = { usdSend: UsdSendTypes, withdraw3: Withdraw3Types, approveAgent: ApproveAgentTypes };
// A well-formed signature for the recording wallet to hand back; never checked by anything.
const PLACEHOLDER_SIG = "0x" + "11".repeat(64) + "1b";

class Refused extends Error {
  name = "Refused";
}

// A wallet in the shape the package adapts as ethers 5 (`_signTypedData` with three
// parameters): it records the typed data the package asks it to sign.
function recordingWallet() {
  const wallet = {
    captured: null,
    // The package tells wallet kinds apart by the arity of this function: keep three.
    async _signTypedData(domain, types, message) {
      wallet.captured = { domain, types, message };
      return PLACEHOLDER_SIG;
    },
    async getAddress() {
      return "0x0000000000000000000000000000000000000000";
    },
  };
  return wallet;
}

function network(req) {
  if (req.network === "mainnet") return { isTestnet: false, chain: "Mainnet" };
  if (req.network === "testnet") return { isTestnet: true, chain: "Testnet" };
  throw new Refused(`network must be "mainnet" or "testnet", not ${JSON.stringify(req.network)}`);
}

function optional(value) {
  return value === null || value === undefined ? undefined : value;
}

function signatureOf(req) {
  const sig = req.signature;
  if (typeof sig !== "object" || sig === null || typeof sig.r !== "string" || typeof sig.s !== "string") {
    throw new Refused("signature must be an object {r, s, v} with hex r and s");
  }
  if (sig.v !== 27 && sig.v !== 28) {
    throw new Refused(`signature v must be 27 or 28, not ${JSON.stringify(sig.v)}`);
  }
  return { r: sig.r, s: sig.s, v: sig.v };
}

async function checkL1(req, net, sig) {
  const action = req.action;
  if (!Number.isSafeInteger(req.nonce) || req.nonce < 0) {
    throw new Refused(`nonce must be a non-negative integer below 2^53, not ${JSON.stringify(req.nonce)}`);
  }
  const args = {
    action,
    nonce: req.nonce,
    vaultAddress: optional(req.vaultAddress),
    expiresAfter: optional(req.expiresAfter),
  };
  const wallet = recordingWallet();
  await signL1Action({ wallet, isTestnet: net.isTestnet, ...args });
  const { domain, types, message } = wallet.captured;
  const signer = ethers.utils.verifyTypedData(domain, types, message, sig).toLowerCase();
  let canonical = false;
  try {
    const ordered = canonicalize(L1_SCHEMAS[action.type].entries.action, action);
    canonical = createL1ActionHash({ ...args, action: ordered }) === message.connectionId;
  } catch (e) {
    // A key the package's schema does not know: not in the exchange's shape.
    canonical = false;
  }
  return { signer, canonical };
}

async function checkUserSigned(req, net, sig) {
  const action = req.action;
  if (action.hyperliquidChain !== net.chain) {
    throw new Refused(`hyperliquidChain is ${JSON.stringify(action.hyperliquidChain)}, the network is ${net.chain}`);
  }
  if (typeof action.signatureChainId !== "string" || !/^0x[0-9a-fA-F]+$/.test(action.signatureChainId)) {
    throw new Refused("signatureChainId must be a hex string such as \"0x66eee\"");
  }
  const wallet = recordingWallet();
  await signUserSignedAction({ wallet, action, types: USER_TYPES[action.type] });
  const { domain, types, message } = wallet.captured;
  const signer = ethers.utils.verifyTypedData(domain, types, message, sig).toLowerCase();
  return { signer, canonical: null };
}

async function check(req) {
  if (typeof req !== "object" || req === null) throw new Refused("a request must be a JSON object");
  const net = network(req);
  const sig = signatureOf(req);
  const action = req.action;
  if (typeof action !== "object" || action === null) throw new Refused("action must be a JSON object");
  if (action.type in L1_SCHEMAS) return checkL1(req, net, sig);
  if (action.type in USER_TYPES) return checkUserSigned(req, net, sig);
  throw new Refused(
    `action type ${JSON.stringify(action.type)} is not one this checker knows ` +
      `(order, cancel, scheduleCancel, updateLeverage, usdSend, withdraw3, approveAgent)`,
  );
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let out;
  try {
    out = await check(JSON.parse(line));
  } catch (e) {
    // The checker reports, the caller decides; a bad line never ends the process.
    out = { error: `${e.name}: ${e.message}${e.cause ? ` (${e.cause.message})` : ""}` };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
