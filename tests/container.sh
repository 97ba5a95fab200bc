#!/usr/bin/env bash
# Builds the image from the real Dockerfile and proves, with real containers,
# that uploads survive a container being replaced and that the failures this
# project exists for are reported, not hidden:
#   1. kill -9 and a new container on the same volume: every photo reads back
#      byte-identical (user 1001, read-only root filesystem);
#   2. a root-owned 0755 host folder at /data: the server refuses to start with
#      the cause and the fix, and `check` says the same;
#   3. no volume at all: `check` reports EPHEMERAL and fails, start-up warns;
#   4. SIGTERM during a slow upload: the upload completes or is refused
#      cleanly, and the container exits 0 within the grace period;
#   5. the image's HEALTHCHECK reports healthy.
# One PASS/FAIL line per check, then "N passed, M failed"; exit 1 on a failure.
#
# Needs root, and installs what is missing from Debian's packages: docker.io
# (dockerd is started if none runs, logging to target/container-test/, and
# stopped again at the end), debootstrap, curl. No image registry is reachable,
# so debian:bookworm-slim (the FROM of the runtime stages) is made locally with
# debootstrap when absent, and the Rust builder stage, whose rust image cannot
# be pulled, is replaced by the binary built on this (bookworm) host: the
# binary goes into a one-file image passed as BINARY_SOURCE, and the rootfs and
# runtime stages are built unchanged. BuildKit is required, since it builds only
# the stages the target needs.
#
# Usage: tests/container.sh
# Environment:
#   BOTILYX_BIN       host binary (default target/release/botilyx-media, built
#                     with `cargo build --release --locked` when missing)
#   BOTILYX_FIXTURES  folder of photos to upload (default ../shared/fixtures/images)
#   CI                when set, a missing prerequisite fails the run; otherwise
#                     it prints NOT RUN and exits 0
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1

readonly IMAGE=botilyx-media:test
readonly BASE_IMAGE=debian:bookworm-slim
readonly PREBUILT_IMAGE=botilyx-media-prebuilt:test
readonly MAX_IMAGE_BYTES=40000000
readonly RUN_ID="botilyx-ct-$$"
readonly LOG_DIR=target/container-test
BIN=${BOTILYX_BIN:-target/release/botilyx-media}
FIXTURES=${BOTILYX_FIXTURES:-../shared/fixtures/images}

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
note() { echo "container-test: $*"; }
indent() { sed 's/^/    /'; }

# A missing prerequisite is a failure in CI and a clear skip elsewhere.
not_run() {
    if [ -n "${CI:-}" ]; then
        echo "FAIL: prerequisite: $*"
        echo "$passed passed, $((failed + 1)) failed"
        exit 1
    fi
    echo "NOT RUN: tests/container.sh: $*"
    exit 0
}

mkdir -p "$LOG_DIR"
WORK=$(mktemp -d /tmp/botilyx-container-test.XXXXXX)
DOCKERD_PID=

cleanup() {
    if [ -n "${DOCKER:-}" ]; then
        local ids
        ids=$($DOCKER ps -aq --filter "label=botilyx.test=$RUN_ID" 2> /dev/null)
        [ -n "$ids" ] && $DOCKER rm -f $ids > /dev/null 2>&1
        ids=$($DOCKER volume ls -q --filter "label=botilyx.test=$RUN_ID" 2> /dev/null)
        [ -n "$ids" ] && $DOCKER volume rm -f $ids > /dev/null 2>&1
        $DOCKER image rm "$PREBUILT_IMAGE" > /dev/null 2>&1
    fi
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2> /dev/null
        timeout 20 tail --pid="$DOCKERD_PID" -f /dev/null 2> /dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- Prerequisites -------------------------------------------------------------

apt_install() {
    [ "$(id -u)" -eq 0 ] && command -v apt-get > /dev/null \
        || not_run "need Debian packages $* and cannot install them (not root, or no apt-get)"
    note "installing $* from Debian's packages"
    { DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; } \
        > "$LOG_DIR/apt.log" 2>&1 || not_run "apt-get install $* failed (see $LOG_DIR/apt.log)"
}

[ "$(id -u)" -eq 0 ] || not_run "must run as root (starts dockerd, makes a root-owned folder)"
missing=()
command -v dockerd > /dev/null || missing+=(docker.io)
command -v debootstrap > /dev/null || missing+=(debootstrap)
command -v curl > /dev/null || missing+=(curl)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# A docker client that builds with BuildKit: buildx, or a client older than
# 23.0 (Debian bookworm's docker.io is 20.10), whose BuildKit is built in.
# NOTE: the legacy builder runs every stage, including the Rust builder that
# cannot run here, so it is not an option.
DOCKER=
BUILD=()
for cli in docker /usr/bin/docker; do
    command -v "$cli" > /dev/null || continue
    if "$cli" buildx version > /dev/null 2>&1; then
        DOCKER=$cli
        BUILD=("$cli" buildx build --load)
        break
    fi
    major=$("$cli" --version 2> /dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')
    if [ -n "$major" ] && [ "$major" -lt 23 ]; then
        DOCKER=$cli
        BUILD=(env DOCKER_BUILDKIT=1 "$cli" build)
        break
    fi
done
[ -n "$DOCKER" ] || not_run "no docker client with BuildKit (docker buildx, or Debian's docker.io client)"

if ! timeout 10 $DOCKER info > /dev/null 2>&1; then
    note "starting dockerd (log: $LOG_DIR/dockerd.log)"
    dockerd > "$LOG_DIR/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do
        timeout 10 $DOCKER info > /dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2> /dev/null || break
        sleep 1
    done
    timeout 10 $DOCKER info > /dev/null 2>&1 \
        || not_run "dockerd did not start: $(tail -3 "$LOG_DIR/dockerd.log" | tr '\n' ' ')"
fi
note "docker: client $($DOCKER --version), build command: ${BUILD[*]}"

if ! $DOCKER image inspect "$BASE_IMAGE" > /dev/null 2>&1; then
    note "making $BASE_IMAGE locally: debootstrap --variant=minbase bookworm, then docker import"
    timeout 900 debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian \
        > "$LOG_DIR/debootstrap.log" 2>&1 \
        || not_run "debootstrap failed (see $LOG_DIR/debootstrap.log)"
    tar -C "$WORK/rootfs" -c . | $DOCKER import - "$BASE_IMAGE" > /dev/null \
        || not_run "docker import of the debootstrap tree failed"
    rm -rf "$WORK/rootfs"
else
    note "$BASE_IMAGE is already present; reusing it"
fi

if [ ! -x "$BIN" ]; then
    command -v cargo > /dev/null || not_run "$BIN is missing and there is no cargo to build it"
    note "building $BIN with cargo build --release --locked"
    cargo build --release --locked > "$LOG_DIR/cargo-build.log" 2>&1 \
        || not_run "cargo build --release --locked failed (see $LOG_DIR/cargo-build.log)"
fi
mapfile -t photos < <(find "$FIXTURES" -maxdepth 1 -type f 2> /dev/null | sort)
[ ${#photos[@]} -gt 0 ] || not_run "no fixture images in $FIXTURES"

# --- Build -------------------------------------------------------------------

mkdir -p "$WORK/prebuilt"
cp "$BIN" "$WORK/prebuilt/botilyx-media"
printf 'FROM scratch\nCOPY botilyx-media /botilyx-media\n' > "$WORK/prebuilt/Dockerfile"
"${BUILD[@]}" -q -t "$PREBUILT_IMAGE" "$WORK/prebuilt" > "$LOG_DIR/build-prebuilt.log" 2>&1 \
    || not_run "could not wrap the host binary in an image (see $LOG_DIR/build-prebuilt.log)"
note "the Dockerfile's builder stage (rust image) cannot run here: no image registry is reachable"
note "its output is replaced by the host binary $BIN via --build-arg BINARY_SOURCE=$PREBUILT_IMAGE;"
note "the rootfs and runtime stages are built unchanged from ./Dockerfile"
if "${BUILD[@]}" --no-cache --progress=plain --build-arg "BINARY_SOURCE=$PREBUILT_IMAGE" --target runtime \
    -t "$IMAGE" . > "$LOG_DIR/build.log" 2>&1; then
    pass "docker build of ./Dockerfile (target runtime) tagged $IMAGE"
else
    fail "docker build of ./Dockerfile failed:"
    tail -20 "$LOG_DIR/build.log" | indent
    echo "$passed passed, $failed failed"
    exit 1
fi

size=$($DOCKER image inspect -f '{{.Size}}' "$IMAGE")
user=$($DOCKER image inspect -f '{{.Config.User}}' "$IMAGE")
owners=$($DOCKER create --label "botilyx.test=$RUN_ID" "$IMAGE" | {
    read -r id
    $DOCKER export "$id" | tar --numeric-owner -tvf - data/ 2> /dev/null \
        | awk '{ print $2 }' | sort -u
})
size_mb=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1000000 }')
if [ "$size" -lt "$MAX_IMAGE_BYTES" ] && [ "$user" = "1001:1001" ] && [ "$owners" = "1001/1001" ]; then
    pass "image: $size_mb MB (docker image inspect .Size; limit 40 MB), user 1001:1001, /data folders owned by 1001:1001"
else
    fail "image: $size_mb MB (limit 40 MB), user '$user' (want 1001:1001), /data owners '$owners' (want 1001/1001)"
fi

# --- Helpers -------------------------------------------------------------------

TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$TOKEN" > "$WORK/upload-token"
chmod 0444 "$WORK/upload-token"

# start NAME [docker run options...] -- [command...]: a detached container on
# loopback only, as 1001 with no capabilities and the token file mounted.
start() {
    local name=$1
    shift
    $DOCKER run -d --name "$RUN_ID-$name" --label "botilyx.test=$RUN_ID" \
        --user 1001:1001 --cap-drop ALL --security-opt no-new-privileges \
        -p 127.0.0.1::8080 \
        -v "$WORK/upload-token:/run/secrets/upload-token:ro" \
        -e MEDIA_UPLOAD_TOKEN_FILE=/run/secrets/upload-token \
        "$@" > /dev/null
}

# address NAME: host:port of the container's 8080 on loopback.
address() { $DOCKER port "$RUN_ID-$1" 8080/tcp 2> /dev/null | grep '^127\.0\.0\.1:' | head -1; }

# ready NAME: waits up to 30 s for /readyz to answer 200.
ready() {
    local addr
    for _ in $(seq 60); do
        [ "$($DOCKER inspect -f '{{.State.Running}}' "$RUN_ID-$1" 2> /dev/null)" = true ] || return 1
        addr=$(address "$1")
        [ -n "$addr" ] && curl -fsS --max-time 2 -o /dev/null "http://$addr/readyz" 2> /dev/null && return 0
        sleep 0.5
    done
    return 1
}

# exited NAME SECONDS: waits for the container to stop; prints its exit code.
exited() { timeout "$2" $DOCKER wait "$RUN_ID-$1" 2> /dev/null; }

logs() { $DOCKER logs "$RUN_ID-$1" 2>&1 | tail -"${2:-15}" | indent; }

# upload NAME COLLECTION FILE OUT [curl options...]: prints the HTTP status;
# the response body is in OUT.
upload() {
    local name=$1 collection=$2 file=$3 out=$4
    shift 4
    curl -sS --max-time 60 -o "$out" -w '%{http_code}' "$@" \
        -H "Authorization: Bearer $TOKEN" \
        -F "file=@$file" "http://$(address "$name")/$collection" 2> "$out.err"
}

json_field() { grep -o "\"$1\":\"[^\"]*\"" "$2" | head -1 | cut -d'"' -f4; }

# read_back NAME URL: sha256 of what the server returns for URL.
read_back() {
    local path=${2#http*://*/}
    path=/${path#/}
    curl -fsS --max-time 30 "http://$(address "$1")$path" | sha256sum | cut -d' ' -f1
}

# --- 1. A replaced container keeps every upload --------------------------------

s1() {
    local what="scenario 1, pod restart: ${#photos[@]} photos uploaded, container killed (SIGKILL), new container on the same volume reads all back byte-identical"
    $DOCKER volume create --label "botilyx.test=$RUN_ID" "$RUN_ID-data" > /dev/null
    start s1-first --read-only -v "$RUN_ID-data:/data" "$IMAGE"
    ready s1-first || { fail "$what: first container never ready"; logs s1-first; return; }

    local i=0 urls=() sums=() photo collection code
    for photo in "${photos[@]}"; do
        collection=medications
        [ $((i % 2)) -eq 1 ] && collection=treatment-images
        code=$(upload s1-first "$collection" "$photo" "$WORK/s1-$i.json")
        if [ "$code" != 201 ]; then
            fail "$what: upload of $(basename "$photo") answered $code: $(cat "$WORK/s1-$i.json" "$WORK/s1-$i.json.err")"
            return
        fi
        urls+=("$(json_field url "$WORK/s1-$i.json")")
        sums+=("$(sha256sum "$photo" | cut -d' ' -f1)")
        if [ "$(json_field sha256 "$WORK/s1-$i.json")" != "${sums[$i]}" ]; then
            fail "$what: the server's sha256 for $(basename "$photo") differs from the file's"
            return
        fi
        i=$((i + 1))
    done

    $DOCKER kill --signal KILL "$RUN_ID-s1-first" > /dev/null
    exited s1-first 20 > /dev/null || { fail "$what: killed container did not stop"; return; }
    start s1-second --read-only -v "$RUN_ID-data:/data" "$IMAGE"
    ready s1-second || { fail "$what: second container never ready"; logs s1-second; return; }

    local same=0 bad=()
    for i in "${!urls[@]}"; do
        if [ "$(read_back s1-second "${urls[$i]}")" = "${sums[$i]}" ]; then
            same=$((same + 1))
        else
            bad+=("${urls[$i]}")
        fi
    done
    if [ "$same" -eq "${#photos[@]}" ]; then
        pass "$what"
    else
        fail "$what: $same of ${#photos[@]} identical; differing: ${bad[*]}"
    fi
}

# --- 2. The original failure: a folder the server cannot write -------------------

s2() {
    local what="scenario 2, root-owned 0755 host folder at /data: server exits non-zero naming path, owner, mode, user and fix; check names cause and fix"
    local dir=$WORK/root-owned
    mkdir -m 0755 "$dir"
    chown 0:0 "$dir"
    start s2-serve --read-only -v "$dir:/data" "$IMAGE"
    local code
    code=$(exited s2-serve 30)
    local log
    log=$($DOCKER logs "$RUN_ID-s2-serve" 2>&1)
    local out
    out=$($DOCKER run --rm --label "botilyx.test=$RUN_ID" --user 1001:1001 --read-only \
        -v "$dir:/data" "$IMAGE" check 2>&1)
    local check_code=$?

    local problems=()
    [ -n "$code" ] && [ "$code" != 0 ] || problems+=("serve exit code '${code:-still running}'")
    for want in /data/medications "0:0" 0755 "1001:1001" "chown -R 1001:1001"; do
        grep -qF -- "$want" <<< "$log" || problems+=("start-up message lacks '$want'")
    done
    [ "$check_code" -ne 0 ] || problems+=("check exited 0")
    grep -qE 'NOT_WRITABLE|MISSING' <<< "$out" || problems+=("check shows no NOT_WRITABLE/MISSING verdict")
    grep -qF "chown -R 1001:1001" <<< "$out" || problems+=("check gives no chown fix")
    if [ ${#problems[@]} -eq 0 ]; then
        pass "$what"
    else
        fail "$what: $(IFS=';'; echo "${problems[*]}")"
        echo "$log" | tail -8 | indent
        echo "$out" | indent
    fi
}

# --- 3. No volume: the container's own file system -----------------------------

s3() {
    local what="scenario 3, no volume: server starts with an EPHEMERAL warning, check reports EPHEMERAL and exits non-zero"
    start s3 "$IMAGE"
    ready s3 || { fail "$what: never ready (EPHEMERAL must only warn)"; logs s3; return; }
    local out
    out=$(timeout 30 $DOCKER exec "$RUN_ID-s3" botilyx-media check 2>&1)
    local check_code=$?
    local log
    log=$($DOCKER logs "$RUN_ID-s3" 2>&1)

    local problems=()
    [ "$check_code" -ne 0 ] || problems+=("check exited 0")
    [ "$(grep -c '^EPHEMERAL' <<< "$out")" -eq 2 ] || problems+=("check does not mark both collections EPHEMERAL")
    grep -qiE 'warn.*(EPHEMERAL|container.s own file system)' <<< "$log" \
        || problems+=("no start-up warning")
    if [ ${#problems[@]} -eq 0 ]; then
        pass "$what"
    else
        fail "$what: $(IFS=';'; echo "${problems[*]}")"
        echo "$log" | tail -5 | indent
        echo "$out" | indent
    fi
}

# --- 4. SIGTERM while an upload is still arriving --------------------------------

s4() {
    local grace=15
    local photo
    photo=$(ls -S "${photos[@]}" | head -1)
    local what
    what="scenario 4, SIGTERM during a slow upload ($(basename "$photo") at 150 KB/s): upload completes or is refused cleanly, exit 0 within the ${grace}s grace"
    $DOCKER volume create --label "botilyx.test=$RUN_ID" "$RUN_ID-slow" > /dev/null
    start s4 --read-only -v "$RUN_ID-slow:/data" -e "MEDIA_SHUTDOWN_GRACE_SECS=$grace" "$IMAGE"
    ready s4 || { fail "$what: never ready"; logs s4; return; }

    upload s4 medications "$photo" "$WORK/s4.json" --limit-rate 150k > "$WORK/s4.code" &
    local client=$!
    sleep 2
    if ! kill -0 "$client" 2> /dev/null; then
        fail "$what: the upload ended before SIGTERM could be sent; slow it down"
        return
    fi
    local start_ns end_ns
    start_ns=$(date +%s%N)
    $DOCKER kill --signal TERM "$RUN_ID-s4" > /dev/null
    local code
    code=$(exited s4 $((grace + 10)))
    end_ns=$(date +%s%N)
    timeout 60 tail --pid="$client" -f /dev/null
    local http
    http=$(cat "$WORK/s4.code")
    local took=$(((end_ns - start_ns) / 1000000))

    local problems=() outcome
    [ "$code" = 0 ] || problems+=("exit code '${code:-still running}'")
    [ "$took" -le $((grace * 1000 + 2000)) ] || problems+=("took ${took} ms to stop")
    case $http in
        201)
            outcome="completed"
            local url
            url=$(json_field url "$WORK/s4.json")
            start s4-after --read-only -v "$RUN_ID-slow:/data" "$IMAGE"
            if ! ready s4-after \
                || [ "$(read_back s4-after "$url")" != "$(sha256sum "$photo" | cut -d' ' -f1)" ]; then
                problems+=("the completed upload does not read back identical after restart")
            fi
            ;;
        503) outcome="refused cleanly (503)" ;;
        *) problems+=("the client got '$http': $(cat "$WORK/s4.json.err" 2> /dev/null)") ;;
    esac
    if [ ${#problems[@]} -eq 0 ]; then
        pass "$what: $outcome, exit 0 after ${took} ms"
    else
        fail "$what: $(IFS=';'; echo "${problems[*]}")"
        logs s4
    fi
}

# --- 5. Docker's HEALTHCHECK --------------------------------------------------

s5() {
    local what
    what="scenario 5, HEALTHCHECK ($($DOCKER image inspect -f '{{join .Config.Healthcheck.Test " "}}' "$IMAGE")) reports healthy"
    # The container restarted in scenario 1 has been running since; the image's
    # own interval (15 s) decides when the first check runs.
    local status
    for _ in $(seq 90); do
        status=$($DOCKER inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$RUN_ID-s1-second" 2> /dev/null)
        [ "$status" = healthy ] || [ "$status" = unhealthy ] && break
        sleep 1
    done
    if [ "$status" = healthy ]; then
        pass "$what"
    else
        fail "$what: status '${status:-none}'"
        $DOCKER inspect -f '{{range .State.Health.Log}}{{.ExitCode}} {{.Output}}{{end}}' "$RUN_ID-s1-second" 2>&1 | indent
    fi
}

s1
s2
s3
s4
s5

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
