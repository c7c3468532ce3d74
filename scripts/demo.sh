#!/usr/bin/env bash
# Set up (first run only), then the combined report (where, what scale, which concept) on the real ImageNet
# model (EfficientNet-Lite0) over the built-in photos, then on a planted model; prints the index.html to open.
# Usage: bash scripts/demo.sh [OUTDIR] [uxai demo options, e.g. --limit 2]
# OUTDIR defaults to uxai-demo/ at the repo root; a relative OUTDIR is taken from the current folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/uxai-demo}"
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
shift || true
bash "$ROOT/scripts/setup.sh"
export HF_HUB_OFFLINE=1
cd "$ROOT"
.venv/bin/uxai demo --out "$OUT" "$@"
