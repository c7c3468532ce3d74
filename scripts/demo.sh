#!/usr/bin/env bash
# Set up (first run only), then explain built-in inputs: the real ImageNet model (EfficientNet-Lite0) on
# built-in photos first, then every small built-in model on its test set (about a minute on 2 CPU cores).
# Usage: bash scripts/demo.sh [OUTDIR] [uxai demo options, e.g. --n 2 or --method saliency]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
export HF_HUB_OFFLINE=1
cd "$ROOT"
OUT="${1:-uxai-demo}"
shift || true
.venv/bin/uxai demo --out "$OUT" "$@"
