#!/usr/bin/env python3
"""Heatmap of a head profile (DuoAttention-style TSV: rows = layers, columns = KV heads,
values in [0, 1]) with the retrieval heads outlined. `kvsieve profile-heads --plot` runs it
with the heads it chose (--heads); by hand, --fraction or --threshold picks them with the
same rule as cache/head_profile.cpp (the top fraction, ties to the lower layer then head;
or value >= threshold).

  tools/plot_heads.py PROFILE.tsv -o HEADS.png [--heads L:H,...|--fraction F|--threshold T]
"""
import argparse
import math
import sys


def load_profile(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            try:
                row = [float(x) for x in line.split("\t")]
            except ValueError:
                sys.exit(f"plot_heads: {path}: line {n}: not tab-separated numbers")
            if rows and len(row) != len(rows[0]):
                sys.exit(f"plot_heads: {path}: line {n} has {len(row)} values, "
                         f"the first row has {len(rows[0])}")
            rows.append(row)
    if not rows:
        sys.exit(f"plot_heads: {path}: empty head profile")
    return rows


def choose(rows, fraction=None, threshold=None):
    """Set of (layer, head): cache/head_profile.cpp's retrieval_heads()."""
    flat = [(l, h, v) for l, row in enumerate(rows) for h, v in enumerate(row)]
    if threshold is not None:
        return {(l, h) for l, h, v in flat if v >= threshold}
    order = sorted(range(len(flat)), key=lambda i: -flat[i][2])  # stable: ties keep order
    n = int(math.floor(min(max(fraction, 0.0), 1.0) * len(flat) + 0.5))
    return {(flat[i][0], flat[i][1]) for i in order[:n]}


def parse_heads(s, rows):
    out = set()
    for item in filter(None, s.split(",")):
        try:
            l, h = (int(x) for x in item.split(":"))
        except ValueError:
            sys.exit(f"plot_heads: --heads: '{item}' is not LAYER:HEAD")
        if not (0 <= l < len(rows) and 0 <= h < len(rows[0])):
            sys.exit(f"plot_heads: --heads: {item} is outside the {len(rows)} x {len(rows[0])} "
                     "profile")
        out.add((l, h))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("-o", "--output", required=True, help="PNG to write")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--heads", help="retrieval heads to outline: L:H,L:H,...")
    g.add_argument("--fraction", type=float, help="outline this fraction of heads (default 0.25)")
    g.add_argument("--threshold", type=float, help="outline heads with value >= T")
    ap.add_argument("--title", default=None)
    ap.add_argument("--global-layers", default=None,
                    help="L,L,...: label these layers 'L (global)' (models with sliding-window "
                    "layers)")
    a = ap.parse_args()

    rows = load_profile(a.profile)
    if a.heads is not None:
        chosen = parse_heads(a.heads, rows)
    else:
        chosen = choose(rows, 0.25 if a.fraction is None else a.fraction, a.threshold)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n_layer, n_kv = len(rows), len(rows[0])
    # Layers run down the rows as in the TSV; cells stay readable for 1 to 32 KV heads.
    fig_w = min(12.0, 2.6 + 0.55 * n_kv)
    fig_h = min(14.0, 1.4 + 0.28 * n_layer)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=110)
    im = ax.imshow(rows, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto",
                   interpolation="nearest")
    for l, h in sorted(chosen):
        ax.add_patch(Rectangle((h - 0.5, l - 0.5), 1, 1, fill=False, edgecolor="red",
                               linewidth=1.8))
    if n_layer * n_kv <= 160:
        for l in range(n_layer):
            for h in range(n_kv):
                v = rows[l][h]
                ax.text(h, l, f"{v:.2f}", ha="center", va="center", fontsize=6.5,
                        color="black" if v > 0.6 else "white")
    ax.set_xlabel("KV head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(n_kv))
    step = 1 if n_layer <= 32 else max(1, n_layer // 16)
    ticks = list(range(0, n_layer, step))
    ax.set_yticks(ticks)
    if a.global_layers:
        try:
            glob = {int(x) for x in a.global_layers.split(",") if x}
        except ValueError:
            sys.exit(f"plot_heads: --global-layers: '{a.global_layers}' is not L,L,...")
        ax.set_yticklabels([f"{l} (global)" if l in glob else str(l) for l in ticks])
    ax.tick_params(labelsize=7)
    title = a.title or a.profile
    ax.set_title(f"{title}\nred: {len(chosen)} retrieval heads", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.08, pad=0.04, label="profile value")
    fig.tight_layout()
    fig.savefig(a.output)
    print(f"plot_heads: wrote {a.output} ({n_layer} layers x {n_kv} KV heads, "
          f"{len(chosen)} marked)", file=sys.stderr)


if __name__ == "__main__":
    main()
