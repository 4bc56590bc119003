#!/usr/bin/env bash
# Checks Vigil's systemd units in systemd/:
# 1. `systemd-analyze security --offline=true` rates each service's exposure at or below
#    its ceiling: the signer 1.0 (no network, nothing but its state dir), the orchestrator
#    2.5 (it needs the network), the approver 1.5 (the Bot API only), the USB import and the health check 1.0, the backup 2.0 (network to its repository only),
#    the proposal sandbox 1.0 (no network, no secrets, no live state: issue 20);
# 2. `systemd-analyze verify` is clean (no output at all) for every unit, the templates
#    checked as the instances vigil-import@sdb1.service and vigil-proposal@p1.service (the
#    proposal template is on the unit path too: vigil-proposal.socket, Accept=yes, needs it).
# Installs nothing (tests/run provides systemd's tools and nix-instantiate, which reads the table).
#
# Usage: tests/check-systemd.sh [bin-dir]
#   bin-dir holds the built vigil-signer, vigil-orchestrator and vigil-approver; default
#   $CARGO_TARGET_DIR (or ./target)/debug. verify needs every ExecStart binary to exist,
#   so it runs on a temp copy of the units installed as the NixOS module installs them
#   (nixos/install-units.sh), the Vigil programs pointing at the build.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
units="$root/systemd"
bindir="${1:-${CARGO_TARGET_DIR:-$root/target}/debug}"

command -v systemd-analyze >/dev/null || { echo "FAIL: systemd-analyze missing (apt-get install -y systemd)"; exit 1; }
for b in vigil-signer vigil-orchestrator vigil-approver; do
    [ -x "$bindir/$b" ] || { echo "FAIL: $bindir/$b is not an executable; build the workspace first or pass the bin dir"; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The units as they would be installed: nixos/install-units.sh with the table of
# nixos/unit-programs.nix, the Vigil binaries from the build and every other program from
# this machine; the template as one instance (analyze needs a concrete unit).
# shellcheck source=tests/lib/units.sh
source "$root/tests/lib/units.sh"
install_units "$tmp/prefix" "$bindir" / >/dev/null
for f in "$tmp"/prefix/lib/systemd/system/*; do
    name="$(basename "$f")"
    [ "$name" = "vigil-import@.service" ] && name="vigil-import@sdb1.service"
    # The proposal template stays too: vigil-proposal.socket (Accept=yes) needs it to verify.
    [ "$name" = "vigil-proposal@.service" ] && { name="vigil-proposal@p1.service"; mkdir -p "$tmp/templates"; cp "$f" "$tmp/templates/"; }
    cp "$f" "$tmp/$name"
done

fail=0
# 1. Exposure ceilings. A unit in systemd/ without a ceiling here is a failure too.
check_exposure() {
    local unit="$1" max="$2" out line exposure
    out="$(cd "$tmp" && systemd-analyze security --offline=true "./$unit" 2>&1)"
    line="$(printf '%s\n' "$out" | grep 'Overall exposure level')" || { printf '%s\n' "$out"; echo "FAIL: $unit: no exposure line"; fail=1; return; }
    exposure="$(printf '%s\n' "$line" | sed -E 's/.*: ([0-9]+\.[0-9]+).*/\1/')"
    echo "$unit exposure: $exposure (max $max)"
    if ! awk -v e="$exposure" -v m="$max" 'BEGIN { exit !(e <= m) }'; then
        printf '%s\n' "$out" | grep '✗' || true
        echo "FAIL: $unit exposure $exposure > $max"
        fail=1
    fi
}
declare -A ceiling=(
    [vigil-signer.service]=1.0
    [vigil-orchestrator.service]=2.5
    [vigil-approver.service]=1.5
    [vigil-import@sdb1.service]=1.0
    [vigil-health.service]=1.0
    [vigil-backup.service]=2.0
    [vigil-proposal@p1.service]=1.0
)
for f in "$tmp"/*.service; do
    unit="$(basename "$f")"
    [ -n "${ceiling[$unit]:-}" ] || { echo "FAIL: $unit has no exposure ceiling in $0"; fail=1; continue; }
    check_exposure "$unit" "${ceiling[$unit]}"
done

# 2. verify, all units together (so Requires=/After= between them resolve).
verify="$(cd "$tmp" && SYSTEMD_UNIT_PATH="$tmp/templates:" systemd-analyze verify --man=no ./*.socket ./*.service ./*.timer 2>&1)" || {
    printf '%s\n' "$verify"; echo "FAIL: systemd-analyze verify"; fail=1; }
# verify exits 0 on warnings (unknown keys, odd user names): any output is a finding.
if [ -n "$verify" ]; then
    printf '%s\n' "$verify"
    echo "FAIL: systemd-analyze verify reported the lines above"
    fail=1
else
    echo "systemd-analyze verify: clean ($(cd "$tmp" && ls ./*.socket ./*.service | xargs -n1 basename | tr '\n' ' '))"
fi

# 3. The udev rule names the template that exists.
grep -q 'SYSTEMD_WANTS}+="vigil-import@%k.service"' "$units/udev/70-vigil-keys.rules" \
    && [ -f "$units/vigil-import@.service" ] \
    || { echo "FAIL: udev rule and vigil-import@.service disagree"; fail=1; }

[ "$fail" -eq 0 ] || exit 1
echo "OK"
