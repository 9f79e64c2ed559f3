"""Plot benchmarks/results.json: throughput against workers, and the latency distribution.

Runs in the benchmark venv (matplotlib): python benchmarks/plot.py RESULTS_JSON OUT_PNG
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(results: dict, out: Path) -> None:
    local = results["local"]
    workers = [w["workers"] for w in local]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.4]})

    rates = [w["median"]["images_per_s"] for w in local]
    left.plot(workers, rates, "o-", color="tab:blue", label="local stack, end to end")
    left.plot(workers, [rates[0] * w for w in workers], ":", color="tab:blue", alpha=0.6, label="linear from 1 worker")
    engine = results["engine"]["chosen"]["images_per_s"]
    left.axhline(engine, color="tab:green", ls="--", label="engine alone, 1 process")
    fr = results.get("face_recognition")
    if fr:
        left.axhline(fr["face_recognition"]["images_per_s"], color="tab:red", ls="--",
                     label="face_recognition CLI, 1 process (start-up included)")
    for w, r in zip(workers, rates):
        left.annotate(f"{r:.2f}", (w, r), textcoords="offset points", xytext=(6, -12))
    left.set_xticks(workers)
    left.set_xlim(min(workers) - 0.4, max(workers) + 0.4)
    left.set_xlabel("recognize workers")
    left.set_ylabel("images per second")
    left.set_ylim(0, max(rates + [engine, rates[0] * max(workers)]) * 1.45)
    left.set_title(f"Throughput ({results['machine']['cores']} cores)")
    left.legend(fontsize=8, loc="upper left")

    colors = ["tab:blue", "tab:orange", "tab:purple", "tab:brown"]
    for w, color in zip(local, colors):
        latencies = sorted(x for run in w["runs"] for x in run["latencies_s"])
        n = len(latencies)
        right.step(latencies, [(i + 1) / n for i in range(n)], where="post", color=color,
                   label=f"{w['workers']} worker{'s' if w['workers'] > 1 else ''}: "
                         f"p50 {w['median']['latency_p50_s']:.1f} s, p95 {w['median']['latency_p95_s']:.1f} s")
        for q in ("latency_p50_s", "latency_p95_s"):
            right.axvline(w["median"][q], color=color, ls=":", alpha=0.5)
    images, runs = local[0]["runs"][0]["images"], len(local[0]["runs"])
    right.set_xlabel("seconds from upload to result")
    right.set_ylabel("fraction of the queries" + (f" ({runs} bursts pooled)" if runs > 1 else ""))
    right.set_ylim(0, 1.02)
    right.set_xlim(left=0)
    right.set_title(f"Latency in a burst of {images} uploads")
    right.legend(fontsize=8, loc="lower right")
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
