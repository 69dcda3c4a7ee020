#!/usr/bin/env bash
# Installs the peer (pyspawner, into a virtualenv under target/bench) and runs the
# networked spawn benchmark: `cargo bench --bench network`. Run as root (pyspawner and
# hatchery create veths) on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench/pyspawner-venv
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p target/bench
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet pyspawner==1.0.0
fi
HATCHERY_BENCH_PYTHON="$PWD/$venv/bin/python" exec cargo bench --bench network
