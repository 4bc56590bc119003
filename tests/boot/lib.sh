# shellcheck shell=bash
# shellcheck disable=SC2154 # run, merged, bindir, repo, passphrase, ENABLE, ... come from tests/boot/run
# Sourced by tests/boot/run: the container's life (boot, commands inside, shutdown) and the
# checks, each failing with what was expected, what was found, and the journal.
# Uses from the caller: $run, $merged, $bindir, $repo, DAEMONS, ENABLE, CONFIRM_USER,
# $passphrase.

machine="vigil-boot-$$"
nspawn_pid=""
ct_pid=""

# The recovery docs/operator-guide.md gives after a unit failed on a missing credential; the
# test runs exactly these words and fails if the guide no longer says them.
recovery_commands() {
    printf '%s\n' "systemctl reset-failed 'vigil-*'" "systemctl start ${ENABLE[*]}"
}

step() { echo "boot test [$((SECONDS - ${started:-0}))s]: $*"; }

die() {
    echo "FAIL: $*" >&2
    if [ -n "$ct_pid" ] && [ -d "/proc/$ct_pid" ]; then
        echo "--- systemctl status inside the container" >&2
        ct systemctl --no-pager status 'vigil-*' >&2 2>&1 || true
        echo "--- journal of the vigil units (last 80 lines)" >&2
        ct journalctl --no-pager -o short-monotonic -n 80 -u 'vigil-*' >&2 2>&1 || true
    elif [ -n "${run:-}" ] && [ -f "$run/console.log" ]; then
        echo "--- container console (last 30 lines)" >&2
        tail -n 30 "$run/console.log" >&2 || true
    fi
    exit 1
}

# A command inside the booted container: all its namespaces, a clean environment; the
# package's binaries on PATH as NixOS's system profile has them.
ct() {
    nsenter --target "$ct_pid" --all -- /usr/bin/env -i \
        PATH=/opt/vigil/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin LANG=C.UTF-8 SYSTEMD_PAGER= "$@"
}

# Boots the overlay as a container: the built binaries bound read-only where the units
# expect them, no network but lo. Waits until systemd says the boot finished.
boot() {
    local b binds=()
    for b in vigil-signer vigil-orchestrator vigil-approver; do
        binds+=("--bind-ro=$bindir/$b:/opt/vigil/bin/$b")
    done
    # nspawn confines the whole container with a seccomp filter of its own; these give back
    # what the PID 1 of a real machine has: mlockall(2) (EPERM without CAP_IPC_LOCK) and
    # landlock's calls (ENOSYS: unknown to nspawn's allowlist), which the signer needs.
    systemd-nspawn --quiet --register=no --keep-unit --private-network --capability=CAP_IPC_LOCK \
        --system-call-filter="landlock_create_ruleset landlock_add_rule landlock_restrict_self" \
        --machine="$machine" --directory="$merged" "${binds[@]}" --boot \
        > "$run/console.log" 2>&1 &
    nspawn_pid=$!
    local deadline=$((SECONDS + 30)) child
    while [ -z "$ct_pid" ]; do
        for child in $(pgrep -P "$nspawn_pid" || true); do
            [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ] && ct_pid="$child"
        done
        [ -d "/proc/$nspawn_pid" ] || die "systemd-nspawn exited before the container's systemd started"
        [ "$SECONDS" -lt "$deadline" ] || die "no systemd in the container after 30 s"
        [ -n "$ct_pid" ] || sleep 0.2
    done
    # systemctl answers once PID 1's private bus exists; --wait then waits for the boot.
    local state=""
    deadline=$((SECONDS + 90))
    while [ -z "$state" ] && [ "$SECONDS" -lt "$deadline" ]; do
        state="$(timeout 90 nsenter --target "$ct_pid" --all -- /usr/bin/systemctl is-system-running --wait 2>/dev/null || true)"
        [ -n "$state" ] || sleep 0.2
    done
    case "$state" in
        running|degraded) ;;
        *) die "the container's boot did not finish in 90 s (is-system-running: '$state')" ;;
    esac
}

# Where this machine cannot give the signer the locked memory its unit asks for
# (LimitMEMLOCK=): a hard RLIMIT_MEMLOCK below it that nothing here may raise (no
# CAP_SYS_RESOURCE, as in CI's sandbox), the signer's ExecStart gets --insecure-allow-unlocked-memory
# in a drop-in, and the test says so. On an appliance PID 1 raises the limit.
memlock_dropin() {
    local unit="$merged/usr/lib/systemd/system/vigil-signer.service" want_kib have_kib exec
    want_kib="$(sed -n 's/^LimitMEMLOCK=\([0-9]*\)M$/\1/p' "$unit")"
    [ -n "$want_kib" ] || die "vigil-signer.service has no LimitMEMLOCK=<n>M the test understands"
    want_kib=$((want_kib * 1024))
    have_kib="$(ulimit -Hl)"
    if [ "$have_kib" = unlimited ] || [ "$have_kib" -ge "$want_kib" ]; then
        return 0
    fi
    exec="$(sed -n 's/^ExecStart=//p' "$unit")"
    install -d "$merged/etc/systemd/system/vigil-signer.service.d"
    printf '[Service]\nExecStart=\nExecStart=%s --insecure-allow-unlocked-memory\n' "$exec" \
        > "$merged/etc/systemd/system/vigil-signer.service.d/boot-test-memlock.conf"
    echo "boot test: this machine's hard RLIMIT_MEMLOCK is ${have_kib} KiB (the unit asks ${want_kib} KiB) and cannot be raised here: the signer runs with --insecure-allow-unlocked-memory" >&2
}

shutdown_container() {
    [ -n "$nspawn_pid" ] || return 0
    if [ -d "/proc/$nspawn_pid" ]; then
        ct systemctl poweroff >/dev/null 2>&1 || true
        local deadline=$((SECONDS + 30))
        while [ -d "/proc/$nspawn_pid" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        if [ -d "/proc/$nspawn_pid" ]; then
            kill "$nspawn_pid" 2>/dev/null || true
            sleep 1
            kill -KILL "$nspawn_pid" 2>/dev/null || true
        fi
    fi
    wait "$nspawn_pid" 2>/dev/null || true
    nspawn_pid=""
    ct_pid=""
}

cleanup() {
    shutdown_container
    if [ -n "${merged:-}" ] && mountpoint -q "$merged"; then
        umount "$merged" || umount -l "$merged" || true
    fi
    if [ -n "${run:-}" ]; then
        if [ "${VIGIL_BOOT_KEEP:-0}" = 1 ]; then
            echo "boot test: kept $run" >&2
        else
            rm -rf "$run"
        fi
    fi
}

# --- Units, seen from outside through systemctl inside. ------------------------------------
prop() { ct systemctl show -P "$2" "$1"; }
prop_is() { [ "$(prop "$1" "$2")" = "$3" ]; }
expect_prop() {
    local unit="$1" name="$2" want="$3" why="$4" got
    got="$(prop "$unit" "$name")"
    [ "$got" = "$want" ] || die "$unit $name is '$got', expected '$want': $why"
}
unit_failed_with() {
    [ "$(prop "$1" ActiveState)" = failed ] && [ "$(prop "$1" ExecMainStatus)" = "$2" ]
}
signer_restarted() {
    local pid
    pid="$(prop vigil-signer.service MainPID)"
    [ "$pid" != 0 ] && [ "$pid" != "$1" ] && prop_is vigil-signer.service ActiveState active
}
# Waits until no unit of the list has a job queued (a restart pending or running).
settle() {
    local deadline=$((SECONDS + 30)) unit busy
    while :; do
        busy=""
        for unit in "$@"; do
            case "$(prop "$unit" SubState)" in auto-restart|start*|stop*) busy="$unit" ;; esac
        done
        [ -n "$busy" ] || return 0
        [ "$SECONDS" -lt "$deadline" ] || die "$busy is still changing state after 30 s"
        sleep 0.5
    done
}

wait_until() {
    local secs="$1" what="$2" deadline
    shift 2
    deadline=$((SECONDS + secs))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || die "waited $secs s for: $what"
        sleep 0.5
    done
}

# --- The journal inside. --------------------------------------------------------------------
ct_now() { ct date '+%Y-%m-%d %H:%M:%S'; }
journal_since() { ct journalctl --no-pager -o cat -u "$1" --since "$2" | grep -qF -- "$3"; }
journal_says() { ct journalctl --no-pager -o cat -u "$1" | grep -qF -- "$2"; }
# journald may index a line a moment after the unit changed state (longer on a busy machine): wait up to 30 s.
expect_journal() { wait_until 30 "the journal of $1 to say '$2'" journal_says "$1" "$2"; }

# --- Credentials, as the units name them. ---------------------------------------------------
# "NAME:PATH" of each LoadCredentialEncrypted= of an installed unit.
unit_credentials() {
    sed -n 's/^LoadCredentialEncrypted=//p' "$merged/usr/lib/systemd/system/$1"
}
# What the operator gives each credential: the ceremony's passphrase, or a bot token.
credential_value() {
    case "$1" in
        vigil-keystore-passphrase) printf '%s' "$passphrase" ;;
        *-bot-token) printf '%s' "123456789:boot-test-token-for-$1" ;;
        *) die "the boot test does not know what to put in credential $1; add it to credential_value" ;;
    esac
}

# The documented recovery, checked against the guide word for word.
recover() {
    local line
    while IFS= read -r line; do
        grep -qF -- "$line" "$repo/docs/operator-guide.md" \
            || die "docs/operator-guide.md does not give the recovery command '$line' the boot test runs"
        ct sh -c "$line" || die "the documented recovery '$line' failed"
    done < <(recovery_commands)
}

# The CLI confirmation of docs/key-ceremony.md, with <digest> and <code> to fill in; the test
# runs these lines and fails if the guide no longer says them.
cli_confirm_commands() {
    printf '%s\n' \
        "systemctl stop ${ENABLE[*]}" \
        "systemd-run --quiet --wait --pipe -p LoadCredentialEncrypted=vigil-keystore-passphrase:/etc/credstore.encrypted/vigil-keystore-passphrase vigil-signer import-confirm --manifest-digest '<digest>' --code <code>" \
        "systemctl start ${ENABLE[*]}"
}
cli_confirm() {
    local digest="$1" code="$2" line flat
    # The guide may wrap a command over lines with a backslash: compare it unwrapped.
    flat="$(sed -e ':a' -e '/\\$/N; s/\\\n *//; ta' "$repo/docs/key-ceremony.md")"
    while IFS= read -r line; do
        grep -qF -- "$line" <<< "$flat" \
            || die "docs/key-ceremony.md does not give the command '$line' the boot test runs"
        line="${line//<digest>/$digest}"
        ct sh -c "${line//<code>/$code}" > "$run/cli-confirm.out" 2>&1 \
            || { cat "$run/cli-confirm.out" >&2; die "the documented CLI confirmation failed at: $line"; }
    done < <(cli_confirm_commands)
}

# --- The signer's socket, as CONFIRM_USER (the approver) or ASK_USER (an asker). -----------
# request OP [JSON FIELDS]: one request as the approver, its answer on stdout.
request() { request_as "$CONFIRM_USER" "$@"; }
# ask OP [JSON FIELDS]: one request as the orchestrator's user.
ask() { request_as "$ASK_USER" "$@"; }
request_as() {
    local user="$1" op="$2" fields="${3:-}" json groups=() g
    json="{\"v\":1,\"id\":\"boot-$op\",\"op\":\"$op\"${fields:+,$fields}}"
    # The approver's user reaches the socket through the group its unit adds
    # (SupplementaryGroups=), as the daemon does; runuser takes them from the unit file.
    if [ "$user" = "$CONFIRM_USER" ]; then
        for g in $(sed -n 's/^SupplementaryGroups=//p' "$merged/usr/lib/systemd/system/vigil-approver.service"); do
            groups+=(-G "$g")
        done
    fi
    ct runuser -u "$user" "${groups[@]}" -- vigil-boot-request /run/vigil/signer.sock "$json" \
        || die "request $op to the signer as $user"
}
expect_json() {
    local json="$1" filter="$2" want="$3" why="$4" got
    got="$(printf '%s' "$json" | jq -c "$filter")" || die "$why: not JSON: $json"
    [ "$got" = "$want" ] || die "$why: $filter is $got, expected $want (answer: $json)"
}

# The number of "Overall exposure level for UNIT: 1.1 OK" lines.
exposure() { sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'; }
