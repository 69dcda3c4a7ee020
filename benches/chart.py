"""Draws the latency distributions of a spawn benchmark run (benches/spawn.rs).

Usage: chart.py RESULTS.json OUT.png. One panel per workload; per system a box of its
spawn-to-exit samples (whiskers at p1 and p99), on a log scale, fastest median on top.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    results_path, out_path = sys.argv[1], sys.argv[2]
    with open(results_path) as f:
        results = json.load(f)
    workloads = []
    for entry in results["latency"]:
        if entry["workload"] not in workloads:
            workloads.append(entry["workload"])
    fig, axes = plt.subplots(
        len(workloads), 1, figsize=(10, 3 + 0.45 * len(results["latency"])), squeeze=False
    )
    for ax, workload in zip(axes[:, 0], workloads):
        entries = [e for e in results["latency"] if e["workload"] == workload]
        entries.sort(key=lambda e: e["median_ms"], reverse=True)
        ax.boxplot(
            [e["samples_ms"] for e in entries],
            orientation="horizontal",
            whis=(1, 99),
            showfliers=False,
            widths=0.6,
        )
        ax.set_yticks(range(1, len(entries) + 1))
        ax.set_yticklabels(
            ["%s  (%.2f ms)" % (e["system"], e["median_ms"]) for e in entries], fontsize=8
        )
        ax.set_xscale("log")
        ax.set_xlabel("spawn → exit, ms (log scale; box p25–p75, whiskers p1–p99)")
        ax.set_title("%s, %d interleaved rounds" % (workload, results["runs"]))
        ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)


if __name__ == "__main__":
    main()
