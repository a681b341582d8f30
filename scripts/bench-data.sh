#!/usr/bin/env bash
# The third-party retrieval QA sets (bench/qa_sets.py): install the Debian documentation packages they are
# built from, then build them under .switchboard/bench-sets/ (gitignored; the sets are not committed).
# Needs Debian/Ubuntu with apt, as root or with sudo, and the venv from scripts/setup.sh --dev.
#   bash scripts/bench-data.sh && .venv/bin/python -m bench.retrieval
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(debian-faq debian-reference-en developers-reference maint-guide harden-doc
  perl-doc libpod-markdown-perl zsh-doc git-doc sqlite3-doc)
if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
.venv/bin/python -m bench.qa_sets build "$@"
