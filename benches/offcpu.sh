#!/usr/bin/env bash
# Where hatchery's processes wait during spawns: records every context switch while the
# spawn benchmark runs one system (`perf record -e sched:sched_switch -g`), then sums,
# per kernel stack, how long the daemon, the sandbox inits and the workloads slept
# before they ran again. The waits a spawn cannot overlap (an RCU grace period in
# `umount2`, a namespace's teardown at exit) show here, not in a system-call count.
# As root, after `cargo build --release --benches`.
#
#   benches/offcpu.sh                        500 fresh spawns of /bin/true
#   benches/offcpu.sh "no net ns" 1000       1000 fresh spawns without a network namespace
#
# The first argument is a part of the benchmark's system name (HATCHERY_BENCH_ONLY). The
# spawns run back to back, so the warm-pool system is no pool here: it refills only
# when the daemon has been quiet for 3 ms, and spawns of a drained pool take the fresh
# path. Idle waits (the daemon's poll, the helper's and idle sandboxes' receive) show too.
set -euo pipefail
cd "$(dirname "$0")/.."
system=${1:-"fresh)"}
rounds=${2:-500}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
HATCHERY_BENCH_RUNS="$rounds" HATCHERY_BENCH_ONLY="$system" \
    perf record -q -a -g -e sched:sched_switch -o "$dir/perf.data" \
    cargo bench --bench spawn >"$dir/bench.log" 2>&1
grep '^| hatchery' "$dir/bench.log"
perf script -i "$dir/perf.data" -F comm,pid,time,event,trace,ip,sym 2>/dev/null |
    python3 -c '
import collections, re, sys
rounds = int(sys.argv[1])
ours = {"hatchery", "hatchery-pool", "hatchery-netns", "true"}
total, count, asleep = collections.Counter(), collections.Counter(), {}
header, stack = None, []

def switch():
    if header is None:
        return
    comm, when, trace = header
    m = re.search(r"prev_pid=(\d+).*prev_state=(\S+).* next_pid=(\d+)", trace)
    if not m:
        return
    woken = int(m.group(3))
    if woken in asleep:
        since, where = asleep.pop(woken)
        total[where] += when - since
        count[where] += 1
    if m.group(2) != "R" and comm in ours:
        asleep[int(m.group(1))] = (when, (comm, " < ".join(stack[2:6])))

for line in sys.stdin:
    line = line.rstrip()
    m = re.match(r"\s*(\S+)\s+\d+\s+([\d.]+):\s+sched:sched_switch:\s*(.*)", line)
    if m:
        switch()
        header, stack = (m.group(1), float(m.group(2)), m.group(3)), []
    elif line:
        stack.append(line.split()[1].split("+")[0])
switch()
print("%-14s %10s %10s %9s  %s" % ("process", "ms/spawn", "waits/sp.", "us/wait", "kernel stack (innermost first)"))
for (comm, where), seconds in total.most_common(14):
    n = count[(comm, where)]
    print("%-14s %10.3f %10.2f %9.1f  %s" % (comm, seconds * 1e3 / rounds, n / rounds, seconds * 1e6 / n, where))
' "$rounds"
