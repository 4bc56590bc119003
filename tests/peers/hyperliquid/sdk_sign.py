"""Signs one action with the official SDK, for tests of the orchestrator's Hyperliquid client
(what the client posts; the signer's own signatures are checked by verify.py).

stdin: {"key": "0x..", "action": {...}, "nonce": N, "is_mainnet": bool}
stdout: the /exchange payload {"action", "nonce", "signature", "vaultAddress", "expiresAfter"}.
usdSend and withdraw3 are user-signed (hyperliquidChain and signatureChainId set as the SDK
sets them); every other action is an L1 action.
"""

import json
import sys

import eth_account
from hyperliquid.utils.signing import (
    sign_l1_action,
    sign_usd_transfer_action,
    sign_withdraw_from_bridge_action,
)


def main():
    req = json.loads(sys.stdin.read())
    wallet = eth_account.Account.from_key(req["key"])
    action, nonce, mainnet = req["action"], req["nonce"], req["is_mainnet"]
    if action["type"] == "usdSend":
        sig = sign_usd_transfer_action(wallet, action, mainnet)
    elif action["type"] == "withdraw3":
        sig = sign_withdraw_from_bridge_action(wallet, action, mainnet)
    else:
        sig = sign_l1_action(wallet, action, None, nonce, None, mainnet)
    json.dump({"action": action, "nonce": nonce, "signature": sig, "vaultAddress": None,
               "expiresAfter": None}, sys.stdout)


if __name__ == "__main__":
    main()
