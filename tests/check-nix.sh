#!/usr/bin/env bash
# Checks the Nix files without a Nix store (this CI has none; nothing can be built):
# 1. `nix-instantiate --parse` of every .nix file in the repository;
# 2. `nix-instantiate --eval` of tests/nix/eval-modules.nix: the module files are
#    functions of the right shape, every option has a description, and services.vigil's
#    assertions fire (and only fire) for the configs they are about; with a small stub
#    of nixpkgs' lib (tests/nix/stub.nix), so types themselves are not checked here;
# 3. the option names match docs/deployment.md both ways.
# The VM test (nixos/tests/vm.nix) and the image builds need Nix with nixpkgs and KVM.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nix-instantiate >/dev/null || { echo "FAIL: nix-instantiate missing (apt-get install -y nix-bin)"; exit 1; }
# Debian's nix-bin names a build group that need not exist; nothing is built here.
export NIX_CONFIG="build-users-group ="
export NIX_STATE_DIR="${NIX_STATE_DIR:-$(mktemp -d)}"

fail=0
files=$(find . -name '*.nix' -not -path './target/*' -not -path './.git/*' | sort)
[ -n "$files" ] || { echo "FAIL: no .nix files found"; exit 1; }
for f in $files; do
    if ! out=$(nix-instantiate --parse "$f" 2>&1 >/dev/null); then
        printf '%s\n' "$out"; echo "FAIL: $f does not parse"; fail=1
    fi
done
echo "parsed: $(echo "$files" | wc -l) files"

json=$(nix-instantiate --eval --strict --json tests/nix/eval-modules.nix 2>&1) || {
    printf '%s\n' "$json"; echo "FAIL: tests/nix/eval-modules.nix does not evaluate"; exit 1; }
failures=$(printf '%s' "$json" | sed -E 's/.*"failures":\[([^]]*)\].*/\1/')
checked=$(printf '%s' "$json" | sed -E 's/.*"checked":([0-9]+).*/\1/')
if [ -n "$failures" ]; then
    printf '%s\n' "$failures" | tr ',' '\n' | sed 's/^/FAIL: /'
    fail=1
else
    echo "evaluated: $checked checks hold"
fi

# Option names: each in docs/deployment.md, and each documented one exists.
options=$(printf '%s' "$json" | sed -E 's/.*"options":\[([^]]*)\].*/\1/' | tr -d '"' | tr ',' '\n')
for o in $options; do
    grep -qF "\`$o\`" docs/deployment.md || { echo "FAIL: option $o is not documented in docs/deployment.md"; fail=1; }
done
documented=$(grep -oE '`(services\.vigil|vigil\.appliance)\.[A-Za-z.]+`' docs/deployment.md | tr -d '`' | sort -u)
for o in $documented; do
    printf '%s\n' "$options" | grep -qxF "$o" || { echo "FAIL: docs/deployment.md names $o, which no module defines"; fail=1; }
done
echo "options: $(printf '%s\n' "$options" | wc -l) defined, $(printf '%s\n' "$documented" | wc -l) documented"

[ "$fail" -eq 0 ] || exit 1
echo "OK"
