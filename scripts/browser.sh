#!/usr/bin/env bash
# Install Debian's chromium and chromedriver for the report's browser test when they are missing
# (needs root and apt-get; elsewhere it says what to install and leaves the test to fail with that message).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "installing chromium and chromedriver (Debian packages) for the browser test ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq chromium chromium-driver >/dev/null
else
    echo "note: the browser test needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)" >&2
fi
