#!/usr/bin/env bash
# Counts what one request costs botilyx-media: user-space instructions (callgrind) and system
# calls (strace -c), per request, for the read scenarios of bench/run.sh. Counts, unlike
# timings, do not change with the machine's load.
#
#   bench/profile.sh [BINARY]     # default: the release build in target/
#
# Needs valgrind, strace and wrk (Debian packages); uses the data folder bench/run.sh made.
# Instructions are counted with glibc's vector copy loops, because valgrind counts every byte
# a `rep movsb` moves as one instruction; the figure with glibc's defaults is printed beside.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${1:-$repo/target/release/botilyx-media}
cache=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/botilyx-media-bench}
data=$cache/data
out=$(mktemp -d /tmp/botilyx-profile.XXXXXX)
port=18391
requests_seconds=5

for tool in valgrind callgrind_control strace wrk; do
    command -v "$tool" >/dev/null || {
        echo "profile: $tool is missing (apt-get install valgrind strace wrk)" >&2
        exit 1
    }
done
[[ -d $data/medications ]] || {
    echo "profile: no data folder at $data; run bench/run.sh --smoke once" >&2
    exit 1
}
[[ -x $bin ]] || {
    echo "profile: no binary at $bin; cargo build --release" >&2
    exit 1
}

small=/medications/astronaut-small.jpg
photo=/medications/phone-photo-gps.jpg
url=http://127.0.0.1:$port

wait_ready() {
    for _ in $(seq 200); do
        curl -fs -o /dev/null "$url/healthz" && return
        sleep 0.1
    done
    echo "profile: the server did not start; see $out/server.log" >&2
    exit 1
}

# wrk on CPU 1 against the server on CPU 0; prints the number of requests it completed.
load() {
    local path=$1 seconds=$2 header=${3:-}
    local args=(-t1 -c64 -d"${seconds}s" --latency)
    [[ -n $header ]] && args+=(-H "$header")
    taskset -c 1 wrk "${args[@]}" "$url$path" | awk '/requests in/ {print $1}'
}

callgrind_per_request() {
    local path=$1 header=${2:-} tunables=$3
    local file=$out/callgrind.out
    rm -f "$file"*
    GLIBC_TUNABLES=$tunables taskset -c 0 valgrind --tool=callgrind \
        --callgrind-out-file="$file" "$bin" --bind 127.0.0.1:$port --workers 1 \
        --data-dir "$data" >"$out/server.log" 2>&1 &
    local pid=$!
    wait_ready
    load "$path" 2 "$header" >/dev/null # caches warm, file cache filled
    callgrind_control -z "$pid" >/dev/null 2>&1
    local done
    done=$(load "$path" "$requests_seconds" "$header")
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local total
    total=$(awk '/^summary:|^totals:/ {print $2; exit}' "$file.1")
    awk -v t="$total" -v n="$done" 'BEGIN {printf "%.1f k", t / n / 1000}'
}

strace_per_request() {
    local path=$1 header=${2:-}
    taskset -c 0 "$bin" --bind 127.0.0.1:$port --workers 1 --data-dir "$data" \
        >"$out/server.log" 2>&1 &
    local pid=$!
    wait_ready
    load "$path" 2 "$header" >/dev/null
    strace -q -c -f -p "$pid" -o "$out/strace.txt" 2>/dev/null &
    local tracer=$!
    sleep 0.5
    local done
    done=$(load "$path" "$requests_seconds" "$header")
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    awk -v n="$done" '
        $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
            calls = $4; name = $NF
            if (calls / n >= 0.05) list = list sprintf("%s %.2f, ", name, calls / n)
            total += calls
        }
        END { sub(/, $/, "", list); printf "%.1f (%s)", total / n, list }' "$out/strace.txt"
}

vector='glibc.cpu.x86_rep_movsb_threshold=2147483647:glibc.cpu.x86_rep_stosb_threshold=2147483647'

echo "commit $(git -C "$repo" rev-parse --short HEAD), binary $bin"
echo "| request | user instructions (glibc default) | system calls per request |"
echo "|---|---:|---|"
profile() {
    local label=$1 path=$2 header=${3:-}
    local vec def sys
    vec=$(callgrind_per_request "$path" "$header" "$vector")
    def=$(callgrind_per_request "$path" "$header" "")
    sys=$(strace_per_request "$path" "$header")
    echo "| $label | $vec ($def) | $sys |"
}
profile "small image 200" "$small"
# The ETag needs a running server: ask one started only for that.
taskset -c 0 "$bin" --bind 127.0.0.1:$port --data-dir "$data" >"$out/server.log" 2>&1 &
pid=$!
wait_ready
etag=$(curl -sI "$url$small" | awk -F': ' 'tolower($1) == "etag" {print $2}' | tr -d '\r')
kill "$pid"
wait "$pid" 2>/dev/null || true
profile "small image 304" "$small" "If-None-Match: $etag"
profile "1 MB photo 200" "$photo"
rm -rf "$out"
