#!/usr/bin/env bash
# Make Debian's redis-server available to the tests (the query cache's L2), without installing
# it system-wide, and print the command to run.
#
# - `redis-server` on PATH: that one is used (its path is printed).
# - Else Debian's packages are downloaded with `apt-get download` (no root needed) and unpacked
#   with `dpkg -x` into ${QIS_CACHE_DIR:-$HOME/.cache/qis}/redis/root, with the shared libraries
#   the binary lacks on this machine (found with ldd, e.g. liblzf1, libjemalloc2); the printed
#   path is a wrapper, ${QIS_CACHE_DIR:-$HOME/.cache/qis}/redis/redis-server, that runs the
#   unpacked binary with those libraries.
# Idempotent: when the wrapper exists and `--version` works, it only prints the path.
# tests/support/redis.py finds it the same way (QIS_REDIS_SERVER overrides both).
set -euo pipefail

cache_root="${QIS_CACHE_DIR:-$HOME/.cache/qis}"
dest="$cache_root/redis"
wrapper="$dest/redis-server"

log() { printf 'setup_redis: %s\n' "$*" >&2; }
die() { printf 'setup_redis: ERROR: %s\n' "$*" >&2; exit 1; }

if found="$(command -v redis-server)"; then
    log "using $("$found" --version | head -n 1)"
    printf '%s\n' "$found"
    exit 0
fi
if [[ -x "$wrapper" ]] && "$wrapper" --version >/dev/null 2>&1; then
    log "already unpacked: $("$wrapper" --version | head -n 1)"
    printf '%s\n' "$wrapper"
    exit 0
fi

if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    die "redis-server is not on PATH and this is not a Debian-like system: install redis"
fi

# Debian's multiarch library directory name (e.g. x86_64-linux-gnu), from where libc is.
multiarch="$(basename "$(dirname "$(ldd /bin/sh | awk '/libc\.so/ {print $3}')")")"
[[ -n "$multiarch" && "$multiarch" != "." ]] || die "cannot tell the multiarch directory"

work="$(mktemp -d "${TMPDIR:-/tmp}/qis-redis.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp/root"

fetch() { # packages...: download and unpack into the new root
    (cd "$work" && apt-get download "$@" >/dev/null 2>"$work/apt.log") || {
        cat "$work/apt.log" >&2
        die "apt-get download $* failed (run 'apt-get update' once if the lists are empty)"
    }
    for deb in "$work"/*.deb; do
        dpkg -x "$deb" "$dest.tmp/root"
        rm -f "$deb"
    done
    log "unpacked $*"
}

fetch redis-server redis-tools
binary="$dest.tmp/root/usr/bin/redis-server"
[[ -e "$binary" ]] || die "no usr/bin/redis-server in the packages"
libs="$dest.tmp/root/usr/lib/$multiarch"

# The libraries this machine lacks, by Debian's package naming (libfoo.so.1 -> libfoo1, or
# libfoo2.so.1 -> libfoo2-1), with the t64 suffix of the 64-bit time transition when needed.
for _round in 1 2 3; do
    missing="$(LD_LIBRARY_PATH="$libs" ldd "$binary" | awk '/not found/ {print $1}')"
    [[ -z "$missing" ]] && break
    packages=()
    for lib in $missing; do
        name="${lib%%.so.*}"
        version="${lib##*.so.}"
        [[ "$name" =~ [0-9]$ ]] && candidate="$name-$version" || candidate="$name$version"
        for package in "$candidate" "${candidate}t64"; do
            if apt-cache show "$package" >/dev/null 2>&1; then
                packages+=("$package")
                break
            fi
        done
    done
    [[ ${#packages[@]} -gt 0 ]] || die "no package found for: $missing"
    fetch "${packages[@]}"
done
missing="$(LD_LIBRARY_PATH="$libs" ldd "$binary" | awk '/not found/ {print $1}')"
[[ -z "$missing" ]] || die "still missing after unpacking: $missing"

cat >"$dest.tmp/redis-server" <<EOF
#!/bin/sh
# Debian's redis-server unpacked by scripts/setup_redis.sh, with its own libraries.
LD_LIBRARY_PATH="$dest/root/usr/lib/$multiarch\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$dest/root/usr/bin/redis-server" "\$@"
EOF
chmod 0755 "$dest.tmp/redis-server"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
"$wrapper" --version >/dev/null 2>&1 || die "the unpacked redis-server does not run"
log "ready: $("$wrapper" --version | head -n 1)"
printf '%s\n' "$wrapper"
