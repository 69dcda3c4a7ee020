#!/usr/bin/env bash
# Installs the peers (bubblewrap; unshare comes with util-linux) and runs the spawn
# benchmark: `cargo bench --bench spawn`. Run as root on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v bwrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap
fi
exec cargo bench --bench spawn
