#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite on the CPU, offline (chromium for the browser test).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/browser.sh"
export HF_HUB_OFFLINE=1
cd "$ROOT"
.venv/bin/python -m pytest -q "$@"
