#!/usr/bin/env bash
# Sets up the Python zygote benchmark's virtualenv under target/bench (numpy, pandas,
# pyspawner 1.0.0 and this repository's package, its native half in release) and runs
# benches/python_zygote.py with the arguments given. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench/python-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet numpy pandas pyspawner==1.0.0
fi
cargo build --release --quiet --bin hatchery
cargo build --release --quiet --manifest-path python/native/Cargo.toml --target-dir target \
    --bin rust-client-driver
CARGO_TARGET_DIR="$PWD/target" "$venv/bin/pip" install --quiet --disable-pip-version-check ./python
exec "$venv/bin/python" benches/python_zygote.py "$@"
