#!/usr/bin/env bash
# The supply-chain check of tests/run: every crate in Cargo.lock against the RustSec advisory
# database (vulnerable, unmaintained, unsound, yanked), licences against the allowlist, banned
# crates, and crates.io as the only source, all with cargo-deny and the repository's deny.toml.
# Then it proves the check can fail: a fixture crate holding a known-vulnerable dependency
# (tests/supply-chain/known-vulnerable) must be rejected by each check. Last, it keeps
# docs/supply-chain.md honest about the key-holding daemons' dependency trees.
#
# CI reaches crates.io but no git host, so the advisory database is a snapshot beside the
# repository, never fetched and never copied into it. It is looked up in this order:
#   1. $VIGIL_ADVISORY_DB
#   2. <repo>/../shared/advisory-db
#   3. <origin remote>/../shared/advisory-db, when origin is a local path (fresh clones)
# Details and how to refresh the snapshot: docs/supply-chain.md.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# cargo-deny, pinned. Bumping it: check that DENY_DB_DIR below still matches (see there).
DENY_VERSION=0.20.2
# The daemons that hold keys: their trees are counted and their direct dependencies must be
# justified in docs/supply-chain.md. One that is not in the workspace yet is skipped.
KEY_HOLDERS=(vigil-signer vigil-approver)
DOC=docs/supply-chain.md

fail() {
    echo "check-supply-chain: $*" >&2
    exit 1
}

# 1. The advisory database snapshot.
has_advisories() {
    [ -d "$1/crates" ] && [ -n "$(find "$1/crates" -name 'RUSTSEC-*.md' -print -quit 2>/dev/null)" ]
}
candidates=()
looked=()
if [ -n "${VIGIL_ADVISORY_DB:-}" ]; then
    has_advisories "$VIGIL_ADVISORY_DB" ||
        fail "VIGIL_ADVISORY_DB=$VIGIL_ADVISORY_DB holds no RustSec advisories (expected crates/*/RUSTSEC-*.md); point it at a copy of the RustSec advisory-db repository"
    candidates+=("$VIGIL_ADVISORY_DB")
else
    looked+=("\$VIGIL_ADVISORY_DB: not set")
fi
candidates+=("$repo/../shared/advisory-db")
origin=$(git -C "$repo" remote get-url origin 2>/dev/null || true)
origin_note=""
origin=${origin#file://}
case "$origin" in
    "") origin_note="origin remote: none" ;;
    /*) candidates+=("$origin/../shared/advisory-db") ;;
    *://* | *@*:*) origin_note="origin remote: $origin (not a local path)" ;;
    *) candidates+=("$repo/$origin/../shared/advisory-db") ;;
esac
db=""
for c in "${candidates[@]}"; do
    if has_advisories "$c"; then
        db=$(cd "$c" && pwd)
        break
    fi
    looked+=("$c: no crates/*/RUSTSEC-*.md there")
done
[ -z "$origin_note" ] || looked+=("$origin_note")
if [ -z "$db" ]; then
    {
        echo "check-supply-chain: no RustSec advisory database found. Looked at:"
        printf '  %s\n' "${looked[@]}"
        echo "Set VIGIL_ADVISORY_DB to a copy of the RustSec advisory-db repository (any directory"
        echo "with crates/<name>/RUSTSEC-*.md), e.g. VIGIL_ADVISORY_DB=/path/to/advisory-db tests/run"
    } >&2
    exit 1
fi
snapshot_date=$(grep -oE 'dated [0-9]{4}-[0-9]{2}-[0-9]{2}' "$db/SNAPSHOT.md" 2>/dev/null | head -1 | cut -d' ' -f2 || true)
echo "check-supply-chain: advisory database $db (snapshot ${snapshot_date:-of unknown date})"
if [ -n "$snapshot_date" ]; then
    age_days=$((($(date +%s) - $(date -d "$snapshot_date" +%s)) / 86400))
    if [ "$age_days" -gt 90 ]; then
        echo "check-supply-chain: note: the snapshot is $age_days days old; refresh it (docs/supply-chain.md)"
    fi
fi

# 2. cargo-deny at the pinned version (cargo finds subcommands in $CARGO_HOME/bin).
if [ "$(cargo deny --version 2>/dev/null || true)" != "cargo-deny $DENY_VERSION" ]; then
    echo "check-supply-chain: installing cargo-deny $DENY_VERSION from crates.io"
    start=$(date +%s)
    cargo install --locked "cargo-deny@$DENY_VERSION"
    echo "check-supply-chain: cargo-deny installed in $(($(date +%s) - start)) s"
fi
[ "$(cargo deny --version)" = "cargo-deny $DENY_VERSION" ] ||
    fail "cargo deny --version is not cargo-deny $DENY_VERSION; another cargo-deny comes first on PATH"

# 3. Give cargo-deny the snapshot the way it expects a database: under its db-path, in the
#    directory it derives from the database URL (cargo-deny 0.20: the URL's last segment and
#    an xxhash64 of the URL; for the default RustSec URL, the name below), with the time of the
#    last fetch read from .git/FETCH_HEAD's mtime. Only crates/ is read. The snapshot itself
#    is read-only and stays where it is: this is a symlink in a temporary directory.
DENY_DB_DIR=advisory-db-3157b0e258782691
dbs=$(mktemp -d)
trap 'rm -rf "$dbs"' EXIT
mkdir -p "$dbs/$DENY_DB_DIR/.git"
ln -s "$db/crates" "$dbs/$DENY_DB_DIR/crates"
touch -d "${snapshot_date:-now}" "$dbs/$DENY_DB_DIR/.git/FETCH_HEAD"
export VIGIL_ADVISORY_DBS="$dbs"

# cargo-deny runs offline (it would otherwise fetch the database from its git host): first
# fetch every locked crate, for every platform, from crates.io so cargo metadata works offline.
cargo fetch --locked --quiet
cargo fetch --locked --quiet --manifest-path tests/supply-chain/known-vulnerable/Cargo.toml

deny() {
    cargo deny --offline --locked --color never "$@"
}

# 4. The workspace.
if ! out=$(deny --manifest-path "$repo/Cargo.toml" --config "$repo/deny.toml" \
    check advisories licenses bans sources 2>&1); then
    echo "$out" >&2
    if grep -q "FETCH_HEAD" <<<"$out"; then
        fail "cargo-deny did not find the snapshot under $dbs/$DENY_DB_DIR; after a cargo-deny upgrade, set DENY_DB_DIR in this script to the directory its error names"
    fi
    {
        echo "check-supply-chain: the dependency tree fails the supply-chain check (above)."
        echo "  A vulnerable or unmaintained crate: upgrade or replace it (cargo update -p NAME)."
        echo "  Only if an advisory truly does not apply to how Vigil uses the crate: add it to"
        echo "  deny.toml's ignore list with the reason, and explain it in $DOC."
    } >&2
    exit 1
fi
echo "$out"

# 5. Proof that the check fails: the fixture is refused by each check, for its own reason.
fixture="$repo/tests/supply-chain/known-vulnerable/Cargo.toml"
expect_refusal() {
    local check=$1 kind=$2 what=$3 out
    if out=$(deny --manifest-path "$fixture" --config "$repo/deny.toml" check "$check" 2>&1); then
        echo "$out" >&2
        fail "the $check check PASSED the fixture $fixture; it must refuse it ($what)"
    fi
    if ! grep -q "error\[$kind\]" <<<"$out" || ! grep -q -- "$what" <<<"$out"; then
        echo "$out" >&2
        fail "the $check check refused the fixture, but not with error[$kind] naming $what"
    fi
    echo "check-supply-chain: fixture refused by $check: error[$kind] $what"
}
expect_refusal advisories vulnerability "RUSTSEC-2024-0398"
expect_refusal licenses rejected "BUSL-1.1"
expect_refusal bans banned "sharks"

# 6. docs/supply-chain.md keeps up with deny.toml and with the key-holding daemons' trees.
for id in $(grep -oE 'RUSTSEC-[0-9]{4}-[0-9]{4}' deny.toml | sort -u); do
    grep -q "$id" "$DOC" || fail "deny.toml ignores $id but $DOC does not explain it"
done
metadata=$(cargo metadata --no-deps --format-version 1 --locked --offline)
for daemon in "${KEY_HOLDERS[@]}"; do
    grep -q "\"name\":\"$daemon\"" <<<"$metadata" || continue
    tree=$(cargo tree --locked --offline -p "$daemon" -e normal --prefix none)
    count=$(sort -u <<<"$tree" | wc -l)
    grep -qE "^\| \`$daemon\` \| $count \|" "$DOC" ||
        fail "$daemon's tree is now $count crates (cargo tree -p $daemon -e normal --prefix none | sort -u | wc -l), but $DOC says otherwise: update its count and justify every new crate there"
    direct=$(cargo tree --locked --offline -p "$daemon" -e normal --depth 1 --prefix none |
        tail -n +2 | cut -d' ' -f1 | sort -u)
    for dep in $direct; do
        grep -q "\`$dep\`" "$DOC" ||
            fail "$daemon depends on $dep, which $DOC does not justify; add it to the list of $daemon's dependencies there"
    done
    echo "check-supply-chain: $daemon: $count crates, $(wc -w <<<"$direct") direct dependencies, each justified in $DOC"
done
echo "check-supply-chain: ok"
