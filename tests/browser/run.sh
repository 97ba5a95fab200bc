#!/usr/bin/env bash
# The upload page in a real browser: Debian's Chromium, headless, driven by playwright-core,
# against a real botilyx-media on 127.0.0.1 (a free port, a fresh data folder, a token).
#
#   bash tests/browser/run.sh
#
#   BOTILYX_BIN=path   test this server binary instead of building one (cargo build --release)
#   CHROMIUM=path      the browser (default /usr/bin/chromium)
#   SCREENSHOT_DIR=dir where the screenshots and the server log go (default target/browser)
#
# Ends with the line `N passed, M failed`; exits non-zero when anything failed. Without a
# browser it prints NOT RUN and passes, unless CI is set: then it fails.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
chromium="${CHROMIUM:-/usr/bin/chromium}"

step() { printf '\n== %s\n' "$*"; }
fail() {
  echo "FAIL - $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

# NOTE: npm cannot download a browser here, so the browser is Debian's.
if [ ! -x "$chromium" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  step "installing chromium and chromium-driver (apt)"
  apt-get update -q || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver || true
fi
if [ ! -x "$chromium" ]; then
  if [ -n "${CI:-}" ]; then
    fail "no browser at $chromium, and it could not be installed (apt-get install chromium chromium-driver)"
  fi
  echo "NOT RUN: no browser at $chromium; install it with: apt-get install chromium chromium-driver"
  echo "0 passed, 0 failed"
  exit 0
fi
command -v node >/dev/null && command -v npm >/dev/null || fail "node and npm are needed (Node 20 or newer)"

step "npm ci (tests/browser)"
(cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) || fail "npm ci failed"

if [ -z "${BOTILYX_BIN:-}" ]; then
  step "cargo build --release"
  (cd "$repo" && cargo build --release --locked) || fail "cargo build failed"
  target="${CARGO_TARGET_DIR:-target}"
  case "$target" in /*) ;; *) target="$repo/$target" ;; esac
  BOTILYX_BIN="$target/release/botilyx-media"
fi
[ -x "$BOTILYX_BIN" ] || fail "no server binary at $BOTILYX_BIN"

step "upload page in headless Chromium ($("$chromium" --version 2>/dev/null || echo "$chromium"))"
export BOTILYX_BIN CHROMIUM="$chromium"
exec node "$here/upload-page.test.mjs"
