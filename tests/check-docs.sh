#!/usr/bin/env bash
# Keeps the docs' "proven by" tables honest: every test a doc names must exist.
# A table whose last column is headed "proven by" (or "test", "tests") maps a promise to the
# tests that prove it; in that column, every backticked snake_case word with at least two
# underscores (the shape of this repository's test names) -- alone, as the last part of a
# path (`policy::tests::name`, `signer/tests/protocol.rs::name`), or inside a `{a, b}`
# group -- must be defined as a function (or a row of a test-table macro) somewhere in the
# workspace's Rust files. Also: no file in README.md or docs/ may
# point into a `shared/` folder that users of the repository do not have.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
defined=$(grep -rhoE '\bfn [a-z0-9_]+' --include='*.rs' --exclude-dir=target --exclude-dir=node_modules . \
    | sed 's/^fn //' | sort -u)
# Macro-generated test tables (`name: Row {..} => ..;` inside decide_test! and friends).
table_tests=$(grep -rhoE '^\s+[a-z0-9_]+: (Row|row)\b' --include='*.rs' --exclude-dir=target . \
    | sed -E 's/^\s+([a-z0-9_]+):.*/\1/' | sort -u)
known=$(printf '%s\n%s\n' "$defined" "$table_tests" | sort -u)

checked=0
for doc in README.md docs/*.md; do
    # The last cell of each row of a "proven by" table, its backticked spans, their names.
    names=$(awk -F'|' '
        /^\|/ { last = $(NF-1) }
        /^\|/ && !in_table { in_table = 1; proof = (last ~ /[Pp]roven by|^ *[Tt]ests? *$/); next }
        !/^\|/ { in_table = 0; next }
        in_table && proof && last !~ /^[ -]*$/ { print last }
    ' "$doc" | grep -oE '`[^`]+`' | tr -d '`' \
        | grep -oE '(::|\{|, |^)[a-z][a-z0-9]*(_[a-z0-9]+){2,}' \
        | sed -E 's/^(::|\{|, )//' | sort -u || true)
    for n in $names; do
        checked=$((checked + 1))
        if ! grep -qx "$n" <<<"$known"; then
            echo "check-docs: $doc names \`$n\`, but no function or test of that name exists"
            fail=1
        fi
    done
done
if grep -nE '(\.\./)?shared/(BUILD-NOTES|PROTOCOL|DESIGN|STYLE)' README.md docs/*.md; then
    echo "check-docs: README.md or docs/ point into shared/, which users of the repository do not have"
    fail=1
fi
echo "check-docs: $checked test and function names in README.md and docs/ checked"
exit $fail
