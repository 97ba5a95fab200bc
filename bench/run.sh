#!/usr/bin/env bash
# Side-by-side benchmark of botilyx-media with nginx, Caddy, dufs and
# static-web-server (issue 4). One command; BENCHMARKS.md says what it measures.
#
#   bench/run.sh            full run (~15 min); rewrites the results in BENCHMARKS.md
#   bench/run.sh --smoke    seconds per scenario; checks every server answers
#                           correctly, never a speed; report goes to a temp file
#
# Extra arguments go to bench/bench.py (e.g. --reps 5, --no-pin, --out FILE,
# --servers botilyx-media,nginx).
#
# Environment:
#   BENCH_CACHE       where peers are installed and the server is built
#                     (default ~/.cache/botilyx-media-bench, kept between runs)
#   BENCH_TARGET_DIR  cargo target dir for the release build (default $BENCH_CACHE/target)
#   BENCH_JOBS        cargo -j for builds (default: all cores)
#   BENCH_BIN         an already built botilyx-media to measure (skips the release build)
#
# Needs root (or passwordless apt) on Debian for the missing packages.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/botilyx-media-bench}
target=${BENCH_TARGET_DIR:-$cache/target}
jobs=${BENCH_JOBS:-$(nproc)}

# Versions of the crates.io peers, pinned so runs stay comparable.
DUFS_VERSION=0.47.0
SWS_VERSION=2.44.1

smoke=0
for arg in "$@"; do
    [[ $arg == --smoke ]] && smoke=1
done

say() { printf 'bench: %s\n' "$*" >&2; }

# Debian packages: the load generator, the reference server and Caddy.
install_packages() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
    command -v caddy >/dev/null || missing+=(caddy)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v dd >/dev/null || missing+=(coreutils)
    ((${#missing[@]} == 0)) && return
    say "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Rust peers from crates.io, built once into the cache.
install_peer() {
    local crate=$1 version=$2 bin=$3
    local have=""
    [[ -x $cache/bin/$bin ]] && have=$("$cache/bin/$bin" --version 2>/dev/null || true)
    [[ $have == *"$version"* ]] && return
    say "building $crate $version (once; cached in $cache)"
    cargo install --locked --quiet -j "$jobs" --root "$cache" --version "$version" "$crate"
}

install_packages
export PATH=$PATH:/usr/sbin
mkdir -p "$cache"
install_peer dufs "$DUFS_VERSION" dufs
install_peer static-web-server "$SWS_VERSION" static-web-server

if [[ -n ${BENCH_BIN:-} ]]; then
    server_bin=$BENCH_BIN
else
    say "building botilyx-media (release) in $target"
    (cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release --quiet -j "$jobs")
    server_bin=$target/release/botilyx-media
fi

if ((smoke)); then
    out=$(mktemp --suffix=.md /tmp/botilyx-bench-smoke.XXXXXX)
else
    out=$repo/BENCHMARKS.md
fi

exec python3 "$repo/bench/bench.py" \
    --work "$cache/work" \
    --data "$cache/data" \
    --out "$out" \
    --bin "botilyx-media=$server_bin" \
    --bin "dufs=$cache/bin/dufs" \
    --bin "static-web-server=$cache/bin/static-web-server" \
    "$@"
