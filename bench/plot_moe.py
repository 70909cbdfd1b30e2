"""The MoE layer benchmark as a figure: time and speedup against T, one
line per library, one column per model, from the CSV `samoyeds run-moe
--csv` writes (every library of a row measured in the same run).

  python3 bench/plot_moe.py moe.csv --out docs/figures/NAME.png --title "H100, 3044189, 2026-12-07"

Also prints the table as Markdown, for docs/perf-log.md.
"""
import argparse
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LINES = [("samoyeds_ms", "samoyeds (1:2 x 2:4)"), ("grouped_ms", "cuBLAS grouped GEMM"),
         ("loop_ms", "cuBLAS per-expert loop")]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("csv")
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="")
    a = p.parse_args()
    rows = defaultdict(list)
    for r in csv.DictReader(open(a.csv)):
        rows[r["model"]].append(r)
    models = list(rows)
    fig, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 6.4), squeeze=False)
    for col, model in enumerate(models):
        rs = sorted(rows[model], key=lambda r: int(r["tokens"]))
        t = [int(r["tokens"]) for r in rs]
        top, bottom = axes[0][col], axes[1][col]
        for key, label in LINES:
            top.plot(t, [float(r[key]) for r in rs], marker="o", label=label)
        top.set_xscale("log")
        top.set_yscale("log")
        top.set_title(model)
        top.set_ylabel("layer time, ms")
        bottom.plot(t, [float(r["speedup"]) for r in rs], marker="o", color="C0")
        bottom.axhline(1.0, color="grey", lw=0.8)
        bottom.set_xscale("log")
        bottom.set_ylim(bottom=0)
        bottom.set_xlabel("tokens T")
        bottom.set_ylabel("x the faster cuBLAS")
        for x, r in zip(t, rs):
            bottom.annotate(f"{float(r['speedup']):.2f}x", (x, float(r["speedup"])), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=8)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(a.title + " (same-run medians; dense peers on the same routing)", fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print("| model | T | samoyeds ms | cuBLAS grouped ms | cuBLAS loop ms | x faster cuBLAS |")
    print("|---|---|---|---|---|---|")
    for model in models:
        for r in sorted(rows[model], key=lambda r: int(r["tokens"])):
            print(f"| {model} | {r['tokens']} | {float(r['samoyeds_ms']):.4f} | {float(r['grouped_ms']):.4f} | "
                  f"{float(r['loop_ms']):.4f} | {float(r['speedup']):.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
