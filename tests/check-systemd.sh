#!/usr/bin/env bash
# Checks the signer's systemd units: `systemd-analyze security --offline=true` must rate
# the service's exposure at 1.0 or less, and `systemd-analyze verify` must be clean for
# both units. Installs nothing (the CI script provides systemd's tools).
#
# Usage: tests/check-systemd.sh [path/to/vigil-signer]
#   The binary defaults to $CARGO_TARGET_DIR (or ./target)/debug/vigil-signer; verify
#   needs ExecStart to exist, so a temp copy of the units points at it.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
units="$root/systemd"
binary="${1:-${CARGO_TARGET_DIR:-$root/target}/debug/vigil-signer}"
max_exposure="1.0"

command -v systemd-analyze >/dev/null || { echo "FAIL: systemd-analyze missing (apt-get install -y systemd)"; exit 1; }
[ -x "$binary" ] || { echo "FAIL: $binary is not an executable; build vigil-signer first or pass its path"; exit 1; }

# 1. Exposure of the service as written.
out="$(systemd-analyze security --offline=true "$units/vigil-signer.service" 2>&1)"
line="$(printf '%s\n' "$out" | grep 'Overall exposure level')" || { printf '%s\n' "$out"; echo "FAIL: no exposure line"; exit 1; }
exposure="$(printf '%s\n' "$line" | sed -E 's/.*: ([0-9]+\.[0-9]+).*/\1/')"
echo "vigil-signer.service exposure: $exposure (max $max_exposure)"
if ! awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e <= m) }'; then
    printf '%s\n' "$out" | grep '✗' || true
    echo "FAIL: exposure $exposure > $max_exposure"
    exit 1
fi

# 2. verify, on a temp copy whose ExecStart is the built binary.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$units/vigil-signer.socket" "$tmp/"
sed -E "s|^ExecStart=/usr/bin/vigil-signer |ExecStart=$binary |" "$units/vigil-signer.service" > "$tmp/vigil-signer.service"
grep -q "^ExecStart=$binary " "$tmp/vigil-signer.service" || { echo "FAIL: ExecStart not rewritten"; exit 1; }
verify="$(cd "$tmp" && systemd-analyze verify --man=no ./vigil-signer.socket ./vigil-signer.service 2>&1)" || {
    printf '%s\n' "$verify"; echo "FAIL: systemd-analyze verify"; exit 1; }
# verify exits 0 on warnings (unknown keys, odd user names): any output is a finding.
if [ -n "$verify" ]; then
    printf '%s\n' "$verify"
    echo "FAIL: systemd-analyze verify reported the lines above"
    exit 1
fi
echo "systemd-analyze verify: clean"
echo "OK"
