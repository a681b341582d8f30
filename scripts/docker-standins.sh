#!/usr/bin/env bash
# TEST INFRASTRUCTURE, not part of the deployment. The compose files and docker/Dockerfile name upstream images
# (python, node, Weaviate, Redis, nginx, llama.cpp). Where `docker pull` of such a tag fails (no container
# registry is reachable on the CI machines), this builds a local stand-in under the same tag from Debian packages,
# so tests/docker/ can run the real files unchanged. Where the pull works, the real image is used and nothing is
# built. The stand-ins differ from upstream (docker/README.md lists how): Debian's Python 3.11.2 in /usr/bin
# (not 3.11.14 in /usr/local), Node 18 (not 22), Redis 7.0 (not 7.4), nginx 1.22 (no `resolve` in upstream
# blocks: its entrypoint drops that flag from the mounted config), Weaviate from the Go-built binary, llama.cpp's
# server replaced by llama-cpp-python's (the same engine, another HTTP server) behind llama-server's flags.
# Each stand-in is built once; a tag that exists locally is kept (delete it to rebuild).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=switchboard-standin/bookworm:base
WEAVIATE_VERSION=$(sed -n 's/^WEAVIATE_VERSION = "\(.*\)"$/\1/p' core/config.py)
log() { echo "docker-standins: $*" >&2; }
# Images are built with the classic builder: there is no buildx here, and BuildKit would try a registry.
export DOCKER_BUILDKIT=0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The tag each stand-in replaces, read from the files that use it (so a version bump needs no edit here).
image_in() { sed -n "s|^ *image: *\($1\)$|\1|p; s|^FROM \($1\)\( AS .*\)\?$|\1|p" "${@:2}" | head -1; }
PYTHON=$(image_in 'python:[^ ]*' docker/Dockerfile)
NODE=$(image_in 'node:[^ ]*' docker/Dockerfile)
WEAVIATE=$(image_in 'cr.weaviate.io/[^ ]*' docker/compose.yml)
REDIS=$(image_in 'redis:[^ ]*' docker/compose.yml)
NGINX=$(image_in 'nginx:[^ ]*' docker/compose.cluster.yml)
LLAMA=$(image_in 'ghcr.io/ggml-org/llama.cpp:[^ ]*' docker/compose.yml)

# True when TAG needs a stand-in: not here, and not pullable.
missing() {
  docker image inspect "$1" >/dev/null 2>&1 && return 1
  docker pull -q "$1" >/dev/null 2>&1 && { log "$1: pulled the real image"; return 1; }
  return 0
}

# The Debian mirror this machine's apt uses for bookworm (stand-ins install from the same place).
mirror() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null | awk '$2 == "bookworm" {print $1; exit}'
}

base() {
  docker image inspect "$BASE" >/dev/null 2>&1 && return
  local root="$work/rootfs" url
  url=$(mirror)
  url=${url:-http://deb.debian.org/debian/}
  debootstrap --variant=minbase bookworm "$root" "$url" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # The host's extra CA certificates (those update-ca-certificates adds): package installs inside the stand-ins
  # (pip, npm during the image build) go through the same TLS-inspecting egress as the host. Stand-ins only.
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
  chroot "$root" sh -c 'apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null \
    && update-ca-certificates >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*'
  tar -C "$root" -c . | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf "$root"
}

# build TAG: a Dockerfile on stdin, FROM the base; build context $work/ctx.
build() {
  local tag=$1 t=$SECONDS
  mkdir -p "$work/ctx"
  # Quiet unless it fails (the classic builder also warns that it is deprecated, on every build).
  docker build -q -t "$tag" -f - "$work/ctx" >/dev/null 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
  docker tag "$tag" "switchboard-standin/${tag//[\/:]/-}" # marks it as a stand-in in `docker images`
  log "$tag: stand-in built in $((SECONDS - t)) s"
}

# apt in a Dockerfile RUN: the lists fetched and dropped in one layer.
APT='apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends'
CLEAN='apt-get clean && rm -rf /var/lib/apt/lists/*'

if missing "$PYTHON"; then
  base
  # As in the official image: `python` and `pip` on PATH, pip allowed to install (no EXTERNALLY-MANAGED).
  build "$PYTHON" <<EOF
FROM $BASE
RUN $APT python3 python3-venv python3-pip python-is-python3 >/dev/null && $CLEAN \
    && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
CMD ["python3"]
EOF
fi

if missing "$NODE"; then
  base
  build "$NODE" <<EOF
FROM $BASE
RUN $APT nodejs npm >/dev/null && $CLEAN
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
EOF
fi

if missing "$REDIS"; then
  base
  build "$REDIS" <<EOF
FROM $BASE
RUN $APT redis-server >/dev/null && $CLEAN
WORKDIR /data
CMD ["redis-server"]
EOF
fi

if missing "$NGINX"; then
  base
  # Debian's nginx 1.22 lacks `resolve` on upstream servers (nginx 1.27.3+): the entrypoint drops the flag from
  # a copy of the mounted config, so `web` is resolved once at start (all replicas are up by then).
  build "$NGINX" <<EOF
FROM $BASE
RUN $APT nginx-light wget >/dev/null && $CLEAN \
    && useradd --system --no-create-home --shell /usr/sbin/nologin nginx \
    && printf '%s\n' '#!/bin/sh' 'set -e' \
      'sed "s/ resolve / /" /etc/nginx/nginx.conf > /tmp/nginx.conf' \
      'exec nginx -c /tmp/nginx.conf -g "daemon off;"' > /usr/local/bin/standin-nginx \
    && chmod 0755 /usr/local/bin/standin-nginx
STOPSIGNAL SIGQUIT
CMD ["standin-nginx"]
EOF
fi

if missing "$WEAVIATE"; then
  base
  # The binary the kit builds from the Go module proxy (scripts/setup.sh: `switchboard weaviate install`).
  binary=$(.venv/bin/python -c "from core.config import Settings; from core.store.local import LocalWeaviate; \
print(LocalWeaviate.from_settings(Settings(_env_file=None)).find_binary() or '')")
  [ -n "$binary" ] || { log "no Weaviate $WEAVIATE_VERSION binary: run scripts/setup.sh first"; exit 1; }
  mkdir -p "$work/ctx" && cp "$binary" "$work/ctx/weaviate"
  build "$WEAVIATE" <<EOF
FROM $BASE
RUN $APT wget >/dev/null && $CLEAN
COPY weaviate /bin/weaviate
EXPOSE 8080 50051
ENTRYPOINT ["/bin/weaviate"]
CMD ["--host", "0.0.0.0", "--port", "8080", "--scheme", "http"]
EOF
  rm -f "$work/ctx/weaviate"
fi

if missing "$LLAMA"; then
  base
  # llama-cpp-python as scripts/setup.sh built it (pip's wheel cache: no compile here), serving the same OpenAI
  # API; a launcher takes llama-server's flags and adds its /health.
  version=$(.venv/bin/python -c "from importlib.metadata import version; print(version('llama-cpp-python'))")
  .venv/bin/python -m pip wheel -q --no-deps -w "$work/ctx" "llama-cpp-python==$version"
  cat >"$work/ctx/llama-server.py" <<'PY'
"""Stand-in for llama.cpp's llama-server (test infrastructure): llama-cpp-python's server, llama-server's flags."""
import argparse

import uvicorn
from llama_cpp.server.app import create_app
from llama_cpp.server.settings import ModelSettings, ServerSettings

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--alias")
parser.add_argument("--ctx-size", type=int, default=4096)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8080)
args = parser.parse_args()
app = create_app(
    server_settings=ServerSettings(host=args.host, port=args.port),
    model_settings=[ModelSettings(model=args.model, model_alias=args.alias, n_ctx=args.ctx_size, verbose=False)],
)
app.add_api_route("/health", lambda: {"status": "ok"})
uvicorn.run(app, host=args.host, port=args.port)
PY
  build "$LLAMA" <<EOF
FROM $BASE
RUN $APT python3 python3-venv libgomp1 curl >/dev/null && $CLEAN
COPY llama_cpp_python-*.whl /tmp/
RUN python3 -m venv /opt/llama && w=\$(ls /tmp/llama_cpp_python-*.whl) \
    && PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/llama/bin/pip install -q --no-cache-dir "\$w[server]" \
    && rm /tmp/*.whl
COPY llama-server.py /app/llama-server.py
ENTRYPOINT ["/opt/llama/bin/python", "/app/llama-server.py"]
EOF
  rm -f "$work/ctx/"*.whl "$work/ctx/llama-server.py"
fi
