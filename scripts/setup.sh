#!/usr/bin/env bash
# Create .venv at the repo root and install unified-xai with the tested pins (idempotent).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
STAMP=.venv/.uxai-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ constraints.txt -nt "$STAMP" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
    # the optional lucent extra, tested in CI: lucent's metadata lists test tools, hence --no-deps
    .venv/bin/python -m pip install -q -c constraints.txt ipython decorator
    .venv/bin/python -m pip install -q -c constraints.txt --no-deps torch-lucent kornia
    touch "$STAMP"
fi
