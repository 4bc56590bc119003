#!/usr/bin/env bash
# Installs Vigil's systemd files (the units, the udev rule, tmpfiles.d and sysusers.d of
# ../systemd/) under a prefix, with the program paths the units name replaced:
#
#   install-units.sh SYSTEMD_DIR PREFIX [--doc-dir DIR] NAME=PATH...
#
# writes PREFIX/lib/systemd/system/*.{service,socket}, PREFIX/lib/udev/rules.d/,
# PREFIX/lib/tmpfiles.d/ and PREFIX/lib/sysusers.d/. Every `/usr/bin/NAME` followed by a
# blank or the end of the line becomes PATH; `file:///usr/share/doc/vigil/` becomes
# `file://DIR/` with --doc-dir. Any /usr/bin/ path left over is an error that names the
# unit and the line: the caller's table (nixos/unit-programs.nix) lacks that program.
#
# One implementation for every installer: the NixOS module's unit derivation
# (nixos/module.nix), the boot test (tests/boot/run) and tests/check-systemd.sh.
# Needs bash, coreutils, sed and grep only (it runs inside a Nix build).
set -euo pipefail

usage() {
    echo "usage: $0 SYSTEMD_DIR PREFIX [--doc-dir DIR] NAME=PATH..." >&2
    exit 2
}
[ "$#" -ge 2 ] || usage
src="$1"
prefix="$2"
shift 2
[ -d "$src" ] || { echo "install-units.sh: $src is not a directory (want ../systemd)" >&2; exit 2; }

doc=""
marks=()
exprs=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --doc-dir)
            [ "$#" -ge 2 ] || usage
            doc="$2"
            shift 2
            ;;
        *=*)
            name="${1%%=*}"
            path="${1#*=}"
            # Names are plain program names; paths are absolute and free of the sed delimiter.
            [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "install-units.sh: bad program name '$name'" >&2; exit 2; }
            [[ "$path" == /* && "$path" != *'#'* && "$path" != *'\'* ]] \
                || { echo "install-units.sh: $name=$path: the path must be absolute, without '#' or '\\'" >&2; exit 2; }
            name_re="${name//./\\.}"
            # Two steps, so that a PATH that is itself /usr/bin/NAME (a Debian root) is not
            # mistaken for a program nobody gave: /usr/bin/NAME -> a marker -> PATH.
            marks+=(-e "s#/usr/bin/${name_re}([[:space:]]|\$)#@vigil-program:${name}@\\1#g")
            exprs+=(-e "s#@vigil-program:${name_re}@#${path}#g")
            shift
            ;;
        *) usage ;;
    esac
done
if [ -n "$doc" ]; then
    [[ "$doc" == /* && "$doc" != *'#'* ]] || { echo "install-units.sh: --doc-dir must be an absolute path" >&2; exit 2; }
    exprs+=(-e "s#file:///usr/share/doc/vigil/#file://${doc%/}/#g")
fi

units="$prefix/lib/systemd/system"
mkdir -p "$units" "$prefix/lib/udev/rules.d" "$prefix/lib/tmpfiles.d" "$prefix/lib/sysusers.d"
shopt -s nullglob
found=0
marked="$(mktemp -d)"
trap 'rm -rf "$marked"' EXIT
for f in "$src"/*.service "$src"/*.socket "$src"/*.timer "$src"/*.target; do
    if [ "${#marks[@]}" -gt 0 ]; then
        sed -E "${marks[@]}" "$f" > "$marked/$(basename "$f")"
    else
        cp "$f" "$marked/$(basename "$f")"
    fi
    found=$((found + 1))
done
[ "$found" -gt 0 ] || { echo "install-units.sh: no units in $src" >&2; exit 1; }

if left=$(grep -Hn '/usr/bin/' "$marked"/*); then
    printf '%s\n' "${left//$marked\//}" >&2
    echo "install-units.sh: the lines above name a /usr/bin program that was not given as NAME=PATH; add it to nixos/unit-programs.nix" >&2
    exit 1
fi
for f in "$marked"/*; do
    out="$units/$(basename "$f")"
    if [ "${#exprs[@]}" -gt 0 ]; then
        sed -E "${exprs[@]}" "$f" > "$out"
    else
        cp "$f" "$out"
    fi
    chmod 0644 "$out"
done

install -m 0644 "$src"/udev/*.rules "$prefix/lib/udev/rules.d/"
install -m 0644 "$src"/tmpfiles.d/*.conf "$prefix/lib/tmpfiles.d/"
install -m 0644 "$src"/sysusers.d/*.conf "$prefix/lib/sysusers.d/"
