#!/usr/bin/env python3
"""Plots of a `kvsieve compare` run: python3 tools/plot_compare.py RESULTS.json OUT_DIR

Writes (each only when the run has rows for it):
  accuracy_vs_kv.png     passkey / niah accuracy against the fraction of the cache kept
  perplexity_vs_kv.png   perplexity against the fraction kept
  fidelity_vs_kv.png     mean KL to the full cache and top-1 agreement against the fraction
  niah_heatmaps.png      accuracy per (context length, depth), one panel per plan (also
  passkey_heatmaps.png   for passkey)
  kv_bytes_vs_length.png KV MiB in use after compression against context length
  decode_tps.png         teacher-forced decode tokens/s per plan
Exit status 77 when matplotlib is missing (the test harness reads it as "skipped").
"""
import json
import math
import os
import sys
from collections import defaultdict

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("plot_compare: matplotlib is not installed (apt-get install python3-matplotlib)",
          file=sys.stderr)
    sys.exit(77)


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def plan_order(results):
    labels = [p["label"] for p in results.get("plans", [])]
    for r in results["rows"]:
        if r["plan_label"] not in labels:
            labels.append(r["plan_label"])
    return labels


def by_policy(results, task, metric):
    """policy -> sorted [(kv fraction, mean metric, label)] over that policy's variants."""
    acc = defaultdict(lambda: ([], []))
    policy = {}
    for r in results["rows"]:
        if r["task"] != task or metric not in r["metrics"]:
            continue
        v = r["metrics"][metric]
        if v is None:
            continue
        frac, vals = acc[r["plan_label"]]
        frac.append(r["metrics"].get("kv_fraction", 1.0))
        vals.append(float(v))
        policy[r["plan_label"]] = r["policy"]
    out = defaultdict(list)
    for label, (frac, vals) in acc.items():
        out[policy[label]].append((mean(frac), mean(vals), label))
    for p in out:
        out[p].sort()
    return out


def line_plot(ax, series, ylabel, logy=False):
    for policy, pts in sorted(series.items()):
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        if policy == "full":
            ax.axhline(ys[0], color="black", linestyle="--", linewidth=1, label="full")
            continue
        ax.plot(xs, ys, marker="o", label=policy)
    ax.set_xlabel("fraction of the full cache kept")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)


def title(results):
    name = os.path.basename(str(results["model"].get("name", "?")))
    return "{} - {}".format(name, results.get("suite", "?"))


def save(fig, out_dir, name, written):
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(name)


def plot_accuracy(results, out_dir, written):
    tasks = [t for t in ("passkey", "niah") if any(r["task"] == t for r in results["rows"])]
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        series = by_policy(results, task, "correct")  # booleans average to accuracy
        line_plot(ax, series, task + " accuracy")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(task)
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.suptitle(title(results))
    save(fig, out_dir, "accuracy_vs_kv.png", written)


def plot_metric(results, out_dir, written, task, metric, ylabel, name, logy=False):
    series = by_policy(results, task, metric)
    if not series:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    line_plot(ax, series, ylabel, logy)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title(results))
    save(fig, out_dir, name, written)


def plot_fidelity(results, out_dir, written):
    kl = by_policy(results, "fidelity", "mean_kl")
    if not kl:
        return
    top1 = by_policy(results, "fidelity", "top1_agreement")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    # A log axis cannot show the full cache's 0: only the other plans are drawn there.
    others = {p: v for p, v in kl.items() if p != "full"}
    positive = all(y > 0 for pts in others.values() for _, y, _ in pts)
    line_plot(axes[0], others, "mean KL(full || plan), nats", logy=bool(others) and positive)
    line_plot(axes[1], top1, "top-1 agreement with the full cache")
    axes[1].legend(fontsize=8, loc="best")
    fig.suptitle(title(results))
    save(fig, out_dir, "fidelity_vs_kv.png", written)


def plot_heatmaps(results, out_dir, written, task):
    cells = defaultdict(lambda: defaultdict(list))  # label -> (length, depth) -> [correct]
    lengths, depths = set(), set()
    for r in results["rows"]:
        if r["task"] != task:
            continue
        L, d = r["params"]["length"], r["params"]["depth"]
        lengths.add(L)
        depths.add(d)
        cells[r["plan_label"]][(L, d)].append(1.0 if r["metrics"]["correct"] else 0.0)
    if not cells:
        return
    labels = [l for l in plan_order(results) if l in cells]
    lengths, depths = sorted(lengths), sorted(depths)
    n = len(labels)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols + 1, 2.9 * rows + 0.6), squeeze=False)
    im = None
    for i, label in enumerate(labels):
        ax = axes[i // cols][i % cols]
        grid = [[mean(cells[label].get((L, d), [])) for L in lengths] for d in depths]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto", origin="upper")
        ax.set_xticks(range(len(lengths)))
        ax.set_xticklabels([str(L) for L in lengths], fontsize=7)
        ax.set_yticks(range(len(depths)))
        ax.set_yticklabels(["{:.0f}%".format(100 * d) for d in depths], fontsize=7)
        ax.set_title(label, fontsize=9)
        if i % cols == 0:
            ax.set_ylabel("needle depth")
        if i // cols == rows - 1:
            ax.set_xlabel("context tokens")
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.colorbar(im, ax=axes, shrink=0.8, label="accuracy")
    fig.suptitle("{} - {}".format(title(results), task))
    path = os.path.join(out_dir, task + "_heatmaps.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(task + "_heatmaps.png")


def plot_kv_bytes(results, out_dir, written):
    per = defaultdict(lambda: defaultdict(list))  # label -> length -> [MiB]
    for r in results["rows"]:
        if r["task"] in ("passkey", "niah"):
            per[r["plan_label"]][r["params"]["length"]].append(
                r["metrics"]["kv_bytes_in_use"] / 2**20)
    if not per:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label in [l for l in plan_order(results) if l in per]:
        xs = sorted(per[label])
        style = dict(color="black", linestyle="--") if label == "full" else {}
        ax.plot(xs, [mean(per[label][x]) for x in xs], marker="o", label=label, **style)
    ax.set_xlabel("context tokens")
    ax.set_ylabel("KV cache in use after compression (MiB)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title(results))
    save(fig, out_dir, "kv_bytes_vs_length.png", written)


def plot_decode(results, out_dir, written):
    tps = defaultdict(list)
    for r in results["rows"]:
        if r["task"] == "fidelity" and r["metrics"].get("decode_tps"):
            tps[r["plan_label"]].append(r["metrics"]["decode_tps"])
    if not tps:
        return
    labels = [l for l in plan_order(results) if l in tps]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(labels) + 2), 4.2))
    ax.bar(range(len(labels)), [mean(tps[l]) for l in labels],
           color=["black" if l == "full" else "tab:blue" for l in labels])
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("decode tokens/s (teacher-forced)")
    ax.set_title(title(results))
    ax.grid(True, axis="y", alpha=0.3)
    save(fig, out_dir, "decode_tps.png", written)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            results = json.load(f)
        rows = results["rows"]
    except (OSError, ValueError, KeyError) as e:
        print("plot_compare: {}: {}".format(argv[1], e), file=sys.stderr)
        return 1
    os.makedirs(argv[2], exist_ok=True)
    written = []
    if rows:
        plot_accuracy(results, argv[2], written)
        plot_metric(results, argv[2], written, "perplexity", "perplexity", "perplexity",
                    "perplexity_vs_kv.png")
        plot_fidelity(results, argv[2], written)
        plot_heatmaps(results, argv[2], written, "niah")
        plot_heatmaps(results, argv[2], written, "passkey")
        plot_kv_bytes(results, argv[2], written)
        plot_decode(results, argv[2], written)
    print("plot_compare: wrote {}".format(", ".join(written) if written else "nothing (no rows)"),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
