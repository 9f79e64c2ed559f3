"""Plot benchmarks/results.json: the engine per stage (dlib beside ONNX Runtime), throughput
against workers, and the latency distribution.

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
    fig, (stages, left, right) = plt.subplots(1, 3, figsize=(16, 4.4), gridspec_kw={"width_ratios": [1.1, 1, 1.4]})
    plot_stages(stages, results)

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


STAGES = ("decode", "detect", "landmarks", "embed")
ENGINE_BARS = (("chosen_dlib", "dlib\nchosen"), ("chosen", "onnx\nchosen"),
               ("full_size_upsample_1_dlib", "dlib\nfull size"), ("full_size_upsample_1", "onnx\nfull size"))


def plot_stages(ax, results: dict) -> None:
    """Stacked ms per image of each stage, dlib's networks beside ONNX Runtime's."""
    engine = results["engine"]
    bars = [(key, label) for key, label in ENGINE_BARS if key in engine]
    colors = {"decode": "tab:gray", "detect": "tab:blue", "landmarks": "tab:olive", "embed": "tab:red"}
    x = range(len(bars))
    bottom = [0.0] * len(bars)
    for stage in STAGES:
        heights = [engine[key]["ms_per_image"][stage] for key, _ in bars]
        ax.bar(x, heights, bottom=bottom, color=colors[stage], label=stage, width=0.6)
        bottom = [b + h for b, h in zip(bottom, heights)]
    for i, (key, _) in enumerate(bars):
        ax.annotate(f"{engine[key]['total_ms_per_image']:.0f} ms\n{engine[key]['images_per_s']:.1f} img/s",
                    (i, bottom[i]), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_xticks(list(x))
    ax.set_xticklabels([label for _, label in bars], fontsize=8)
    ax.set_ylabel("ms per image (one process)")
    ax.set_ylim(0, max(bottom) * 1.25)
    ax.set_title("Engine per stage: dlib vs ONNX Runtime")
    ax.legend(fontsize=8, loc="upper left")


if __name__ == "__main__":
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
