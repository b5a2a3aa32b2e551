#!/usr/bin/env bash
# Install the system packages the test suite can use but does not require.
#
#   chromium (Debian package -> /usr/bin/chromium): headless screenshots of the Gradio Space
#   (tests/test_space_browser.py). Without it that test skips with a clear reason.
#
# Idempotent (does nothing when /usr/bin/chromium exists), quiet, and it never fails the build: when apt-get is
# missing, we are not root, or the install fails (no network, no candidate), it prints why and exits 0.
# Set RESADAPT_SKIP_SYSTEM_DEPS=1 to skip it entirely.
set -u

CHROMIUM=/usr/bin/chromium
log() { echo "install_test_deps: $*"; }

if [ "${RESADAPT_SKIP_SYSTEM_DEPS:-0}" = "1" ]; then
    log "RESADAPT_SKIP_SYSTEM_DEPS=1: skipping system packages"
    exit 0
fi
if [ -x "$CHROMIUM" ]; then
    exit 0  # already installed: nothing to do, say nothing
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not found (not Debian/Ubuntu): chromium not installed; the browser test will skip"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        log "not root and no password-less sudo: chromium not installed; the browser test will skip"
        exit 0
    fi
fi

LOG=$(mktemp -t install_test_deps.XXXXXX)
export DEBIAN_FRONTEND=noninteractive
log "installing chromium with apt-get (headless browser test; log: $LOG) ..."
if ! $SUDO apt-get update -q >"$LOG" 2>&1; then
    log "apt-get update failed (offline?); trying the install from the existing package lists"
fi
if $SUDO apt-get install -y -q --no-install-recommends chromium >>"$LOG" 2>&1 && [ -x "$CHROMIUM" ]; then
    log "chromium installed: $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
    rm -f "$LOG"
else
    log "could not install chromium (last apt-get lines below); the browser test will skip"
    tail -n 5 "$LOG" | sed 's/^/    /'
fi
exit 0
