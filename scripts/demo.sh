#!/usr/bin/env bash
# Set up (first run only) and explain built-in inputs with the default method.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
export HF_HUB_OFFLINE=1
cd "$ROOT"
.venv/bin/uxai demo --out "${1:-uxai-demo}"
