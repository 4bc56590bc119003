# shellcheck shell=bash
# Sourced by tests/check-systemd.sh and tests/boot/run: Vigil's units installed the way the
# NixOS module installs them (nixos/install-units.sh with the table nixos/unit-programs.nix),
# with the Vigil binaries taken from a build and every other program from a Debian root.

# The repository's root.
units_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# "NAME PROVIDER" lines of nixos/unit-programs.nix (needs nix-instantiate: apt-get install nix-bin).
unit_programs() {
    command -v nix-instantiate >/dev/null \
        || { echo "FAIL: nix-instantiate missing (apt-get install -y nix-bin): it reads nixos/unit-programs.nix" >&2; return 1; }
    local state json
    state="$(mktemp -d)"
    json="$(NIX_CONFIG="build-users-group =" NIX_STATE_DIR="$state" nix-instantiate --eval --strict --json -E \
        "with builtins; attrValues (mapAttrs (n: p: n + \" \" + p) (import $units_repo/nixos/unit-programs.nix))")" \
        || { rm -rf "$state"; echo "FAIL: nixos/unit-programs.nix does not evaluate" >&2; return 1; }
    rm -rf "$state"
    printf '%s\n' "$json" | tr -d '[]"' | tr ',' '\n'
}

# install_units PREFIX VIGIL_BIN ROOT: installs the units under PREFIX (lib/systemd/system,
# ...), the programs of package "vigil" as VIGIL_BIN/NAME, every other program as the
# /usr/bin/NAME that must exist in ROOT (a Debian root file system, or / for this machine).
install_units() {
    local prefix="$1" vigil_bin="$2" root="$3" args=() name provider
    while read -r name provider; do
        [ -n "$name" ] || continue
        if [ "$provider" = vigil ] && [ ! -e "$vigil_bin/$name" ] && [ -x "$units_repo/systemd/bin/$name" ]; then
            # A script the package installs from systemd/bin/ (vigil-backup), not built by cargo.
            args+=("$name=$units_repo/systemd/bin/$name")
        elif [ "$provider" = vigil ]; then
            args+=("$name=$vigil_bin/$name")
        elif [ -x "$root/usr/bin/$name" ]; then
            args+=("$name=/usr/bin/$name")
        else
            echo "FAIL: $name (from $provider on NixOS) is not in $root/usr/bin" >&2
            return 1
        fi
    done < <(unit_programs)
    "$units_repo/nixos/install-units.sh" "$units_repo/systemd" "$prefix" "${args[@]}"
}
