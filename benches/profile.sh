#!/usr/bin/env bash
# System-call profile of hatchery spawns: runs `hatchery serve` under `perf trace -s`,
# makes N spawns of /bin/true through `hatchery run` (20 ms apart), and prints the
# kernel time per spawn of each system call, summed over the daemon, every sandbox init
# and every workload. As root, after `cargo build --release`.
#
#   benches/profile.sh                      20 fresh spawns
#   benches/profile.sh 50 --warm-pool 2     50 spawns with a warm pool (refills included)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-20}
shift || true
hatchery=target/release/hatchery
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
RUST_LOG=error perf trace -s -o "$dir/summary" -- "$hatchery" serve --socket "$dir/s" "$@" &
tracer=$!
for _ in $(seq 100); do [ -S "$dir/s" ] && break; sleep 0.05; done
sleep 0.5
for _ in $(seq "$count"); do
    "$hatchery" run --socket "$dir/s" -- /bin/true
    sleep 0.02
done
sleep 0.5
kill "$(cut -d' ' -f1 "/proc/$tracer/task/$tracer/children")"
wait "$tracer"
python3 - "$dir/summary" "$count" <<'PY'
import collections, re, sys
path, count = sys.argv[1], int(sys.argv[2])
total = collections.defaultdict(lambda: [0, 0.0])
for line in open(path):
    m = re.match(r"\s+(\w+)\s+(\d+)\s+\d+\s+([\d.]+)", line)
    if m:
        total[m.group(1)][0] += int(m.group(2))
        total[m.group(1)][1] += float(m.group(3))
print("%-16s %14s %12s" % ("syscall", "calls/spawn", "ms/spawn"))
for name, (calls, ms) in sorted(total.items(), key=lambda kv: -kv[1][1])[:25]:
    print("%-16s %14.1f %12.3f" % (name, calls / count, ms / count))
PY
