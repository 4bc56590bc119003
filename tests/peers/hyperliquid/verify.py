"""Vigil's verifying peer for Hyperliquid signatures: the official Python SDK
(hyperliquid-python-sdk, pinned in requirements.txt) recovers who signed each action.

Reads one JSON object per line on stdin, as the exchange receives an action:
  {"kind": "l1", "action": {...}, "nonce": N, "vault": null | "0x..",
   "expires_after": null | N, "is_mainnet": bool, "signature": {"r", "s", "v"}}
  {"kind": "user", "primary_type": "HyperliquidTransaction:UsdSend" | "...:Withdraw",
   "action": {...}, "is_mainnet": bool, "signature": {...}}
and writes one line per input: {"signer": "0x..."} (lowercase) or {"error": "..."}.
The action is re-packed from the parsed JSON, exactly as the exchange does (dict order =
the order of the JSON keys), so a field order or number format that differs from the SDK's
recovers another address.
"""

import json
import sys

from hyperliquid.utils.signing import (
    USD_SEND_SIGN_TYPES,
    WITHDRAW_SIGN_TYPES,
    recover_agent_or_user_from_l1_action,
    recover_user_from_user_signed_action,
)

USER_TYPES = {
    "HyperliquidTransaction:UsdSend": USD_SEND_SIGN_TYPES,
    "HyperliquidTransaction:Withdraw": WITHDRAW_SIGN_TYPES,
}


def recover(req):
    sig = req["signature"]
    if req["kind"] == "l1":
        return recover_agent_or_user_from_l1_action(
            req["action"], sig, req.get("vault"), req["nonce"], req.get("expires_after"), req["is_mainnet"]
        )
    if req["kind"] == "user":
        types = USER_TYPES[req["primary_type"]]
        return recover_user_from_user_signed_action(
            req["action"], sig, types, req["primary_type"], req["is_mainnet"]
        )
    raise ValueError("unknown kind %r" % req["kind"])


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            out = {"signer": recover(json.loads(line)).lower()}
        except Exception as e:  # the peer reports, the test decides
            out = {"error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
