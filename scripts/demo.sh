#!/usr/bin/env bash
# Set up (first run only), then explain built-in inputs: the real ImageNet model (EfficientNet-Lite0) on
# built-in photos first, then every small built-in model on its test set (about a minute on 2 CPU cores).
# Usage: bash scripts/demo.sh [OUTDIR] [uxai demo options, e.g. --n 2 or --method saliency]
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
