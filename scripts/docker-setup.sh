#!/usr/bin/env bash
# The Docker engine and tools the deployment tests (tests/docker/) run on, for CI machines of this kind (root,
# Debian bookworm, package registries reachable, no container registry). Idempotent; run by `setup.sh --dev`.
# - Debian's docker.io (and debootstrap, for the stand-in images) when the engine is missing;
# - dockerd started when none answers (its log: /var/log/dockerd.log);
# - Docker Compose v2 when `docker compose` is missing or older than 2.24 (bookworm ships only 1.29, which
#   rejects the compose files): built from the Go module proxy once, cached under ~/.cache/switchboard, installed
#   as a CLI plugin;
# - scripts/docker-standins.sh: local images under the upstream tags, only for tags that cannot be pulled.
# Where no engine can run here (not root and no working docker), it says so and leaves the tests to fail loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_VERSION=2.29.7
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/switchboard"
log() { echo "docker-setup: $*" >&2; }
started() { local t=$SECONDS; "$@"; log "$*: $((SECONDS - t)) s"; }

if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo=sudo; else sudo=none; fi

install_engine() {
  if command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1; then return; fi
  [ "$sudo" != none ] || { log "no dockerd and no root to install it: the Docker tests will fail"; exit 0; }
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker.io debootstrap >/dev/null
}

start_engine() {
  if docker info >/dev/null 2>&1; then return; fi
  [ "$sudo" != none ] || { log "dockerd is not running and cannot be started without root"; exit 0; }
  # setsid: the daemon outlives this script (and CI's shell); it runs until the machine stops.
  $sudo setsid sh -c 'exec dockerd >>/var/log/dockerd.log 2>&1' </dev/null &
  for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then return; fi
    sleep 1
  done
  log "dockerd did not answer within 60 s; its log:"; tail -20 /var/log/dockerd.log >&2; exit 1
}

compose_ok() {
  local version
  version=$(docker compose version --short 2>/dev/null) || return 1
  version=${version#v}
  [ "$(printf '%s\n' 2.24.0 "$version" | sort -V | head -1)" = 2.24.0 ]
}

install_compose() {
  if compose_ok; then return; fi
  local bin="$CACHE/docker-compose-v$COMPOSE_VERSION/cmd"
  if [ ! -x "$bin" ]; then
    # 6-7 min cold on 2 cores (modules land in Go's module cache); the version string is compose's own ldflag.
    GOBIN="$(dirname "$bin")" CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod go install -trimpath \
      -ldflags="-s -w -X github.com/docker/compose/v2/internal.Version=v$COMPOSE_VERSION" \
      "github.com/docker/compose/v2/cmd@v$COMPOSE_VERSION"
  fi
  mkdir -p "$HOME/.docker/cli-plugins"
  install -m 0755 "$bin" "$HOME/.docker/cli-plugins/docker-compose"
  compose_ok || { log "docker compose still missing or older than 2.24"; exit 1; }
}

started install_engine
started start_engine
started install_compose
started bash scripts/docker-standins.sh
