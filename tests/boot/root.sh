# shellcheck shell=bash
# Sourced by tests/boot/run: the Debian root file system the boot test boots, made once by
# debootstrap from Debian's packages and cached outside the repository, keyed by everything
# that shapes it (suite, variant, package list, mirror, the pruning below). A key change
# makes a new root and removes the old ones, so one root (about 150 MB) stays on disk.
#
# Measured on the 2-core CI machine kind: about 70 s cold (download and unpack), 0 s warm.

boot_suite=bookworm
# systemd as PID 1, dbus for systemctl/systemd-analyze inside. perl-base (for the socket
# client, tests/boot/signer-request.pl), util-linux (runuser, mount) and coreutils come with
# the minimal base.
boot_packages=systemd,systemd-sysv,dbus
boot_mirror="${VIGIL_BOOT_MIRROR:-http://deb.debian.org/debian}"
# Bump when the pruning or the layout below changes: it is part of the key.
boot_root_format=1

# Prints the cached root's path, making it first if needed.
cached_root() {
    local cache key root tmp started
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/vigil"
    key="$(printf '%s\n' "$boot_suite" minbase "$boot_packages" "$boot_mirror" "$boot_root_format" \
        | sha256sum | cut -c1-16)"
    root="$cache/boot-root-$boot_suite-$key"
    if [ -f "$root/.vigil-boot-root" ]; then
        echo "$root"
        return 0
    fi
    command -v debootstrap >/dev/null \
        || { echo "FAIL: debootstrap missing (apt-get install -y debootstrap)" >&2; return 1; }
    mkdir -p "$cache"
    tmp="$cache/.boot-root-$key.$$"
    rm -rf "$tmp"
    started=$SECONDS
    echo "boot test: making the Debian root once (debootstrap $boot_suite, $boot_packages) in $root" >&2
    if ! debootstrap --variant=minbase --include="$boot_packages" "$boot_suite" "$tmp" "$boot_mirror" \
        > "$tmp.log" 2>&1; then
        tail -n 20 "$tmp.log" >&2
        rm -rf "$tmp"
        echo "FAIL: debootstrap of $boot_suite from $boot_mirror (full log: $tmp.log)" >&2
        return 1
    fi
    rm -f "$tmp.log"
    # What no test reads: downloaded packages, apt's lists, documentation, translations.
    rm -rf "$tmp"/var/cache/apt/* "$tmp"/var/lib/apt/lists/* \
        "$tmp"/usr/share/doc/* "$tmp"/usr/share/man/* "$tmp"/usr/share/locale/* \
        "$tmp"/usr/share/info/*
    # No machine id: systemd makes a fresh one at each boot of the volatile copy.
    : > "$tmp/etc/machine-id"
    date -u +%FT%TZ > "$tmp/.vigil-boot-root"
    # Older roots (another key) go: one root on disk.
    find "$cache" -maxdepth 1 -name 'boot-root-*' ! -name "$(basename "$root")" -exec rm -rf {} +
    rm -rf "$root"
    mv "$tmp" "$root"
    echo "boot test: root made in $((SECONDS - started)) s ($(du -sh "$root" | cut -f1))" >&2
    echo "$root"
}
