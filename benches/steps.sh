#!/usr/bin/env bash
# Where a fresh sandbox's setup spends its time, step by step. Starts a daemon with
# RUST_LOG=hatchery=debug, spawns /bin/true N times through `hatchery run` (one after
# the other, PAUSE seconds apart), and prints the median and p90 of each step from the
# daemon's log, where every sandbox's init reports how long each step of its setup
# took ("sandbox running; its setup, in µs": src/sandbox/timeline.rs; the steps are
# those of the recipe in src/sandbox/init.rs, named as setup errors name them). From
# the zygote's clone3 to the workload's execve; the exec'd program's own start and run
# come after. As root, after `cargo build --release`:
#
#   benches/steps.sh              300 spawns, each as soon as the last `hatchery run` exits
#   benches/steps.sh 1000 0.02    1000 spawns, 20 ms apart (an idle machine between
#                                 spawns: CPUs asleep, caches cold; every part is slower)
set -euo pipefail
cd "$(dirname "$0")/.."
spawns=${1:-300}
pause=${2:-0}
hatchery=target/release/hatchery
[ -x "$hatchery" ] || { echo "steps.sh: build first: cargo build --release" >&2; exit 1; }
dir=$(mktemp -d)
daemon=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
RUST_LOG=hatchery=debug NO_COLOR=1 "$hatchery" serve --socket "$dir/hatchery.sock" 2>"$dir/log" &
daemon=$!
for _ in $(seq 100); do [ -S "$dir/hatchery.sock" ] && break; sleep 0.05; done
for _ in $(seq "$spawns"); do
    "$hatchery" run --socket "$dir/hatchery.sock" -- /bin/true
    sleep "$pause"
done
python3 - "$dir/log" "$spawns" <<'PY'
import re, statistics, sys
ansi = re.compile(r"\x1b\[[0-9;]*m")
parts, totals = {}, []
for line in open(sys.argv[1], encoding="utf-8"):
    line = ansi.sub("", line)
    if "its setup" not in line:
        continue
    setup = line.rstrip("\n").split("setup=", 1)[1]
    total = 0
    for part in setup.split(", "):
        name, us = part.rsplit(" ", 1)
        parts.setdefault(name, []).append(int(us))
        total += int(us)
    totals.append(total)
if len(totals) != int(sys.argv[2]):
    sys.exit(f"steps.sh: {len(totals)} setups logged for {sys.argv[2]} spawns")
def p90(values):
    return sorted(values)[int(len(values) * 0.9)]
print(f"setup of {len(totals)} fresh sandboxes, µs from the zygote's clone3:")
print("| step | median µs | p90 µs |")
print("|---|---:|---:|")
for name, values in parts.items():
    print(f"| {name} | {statistics.median(values):.0f} | {p90(values):.0f} |")
print(f"| **clone3 to execve** | **{statistics.median(totals):.0f}** | {p90(totals):.0f} |")
PY
