#!/usr/bin/env python3
"""Markdown tables from one or more `kvsieve compare` output directories (or results.json
files), rows pooled by plan label; used for docs/results.md.

  python3 tools/compare_tables.py DIR [DIR ...]            summary per plan
  python3 tools/compare_tables.py --by-length DIR [...]    probe accuracy per context length

Plans that appear in several runs (the full cache in every run) are pooled when their
cells are the same (same cell id); otherwise each run's rows count once.
"""
import json
import os
import sys
from collections import OrderedDict, defaultdict


def load_rows(paths):
    rows, seen, order = [], set(), []
    for p in paths:
        f = os.path.join(p, "results.json") if os.path.isdir(p) else p
        with open(f, encoding="utf-8") as fh:
            res = json.load(fh)
        for r in res["rows"]:
            key = (r["id"], r.get("params", {}).get("compress_question"))
            if key in seen:
                continue
            seen.add(key)
            rows.append(r)
            if r["plan_label"] not in order:
                order.append(r["plan_label"])
    return rows, order


def mean(xs):
    return sum(xs) / len(xs) if xs else None


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def summary(rows, order):
    g = OrderedDict((label, defaultdict(list)) for label in order)
    for r in rows:
        m, t = r["metrics"], r["task"]
        d = g[r["plan_label"]]
        if t in ("passkey", "niah"):
            d[t].append(1.0 if m["correct"] else 0.0)
            d["frac"].append(m["kv_fraction"])
        elif t == "perplexity":
            d["ppl"].append(m["perplexity"])
            d["frac_ppl"].append(m["kv_fraction"])
        elif t == "fidelity":
            d["kl"].append(m["mean_kl"])
            d["top1"].append(m["top1_agreement"])
            if not d["frac"]:
                d["frac_fid"].append(m["kv_fraction"])
    out = ["| plan | KV kept | passkey | niah | perplexity | mean KL | top-1 |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for label, d in g.items():
        frac = mean(d["frac"] or d["frac_fid"] or d["frac_ppl"])
        acc = lambda k: "-" if not d[k] else "{:.2f} ({}/{})".format(
            mean(d[k]), int(sum(d[k])), len(d[k]))
        out.append("| {} | {} | {} | {} | {} | {} | {} |".format(
            label, "-" if frac is None else "{:.1f}%".format(100 * frac), acc("passkey"),
            acc("niah"), fmt(mean(d["ppl"]), ".3f"), fmt(mean(d["kl"]), ".4f"),
            fmt(mean(d["top1"]), ".3f")))
    return "\n".join(out)


def by_length(rows, order):
    acc = defaultdict(lambda: defaultdict(list))
    lengths = set()
    for r in rows:
        if r["task"] not in ("passkey", "niah"):
            continue
        L = r["params"]["length"]
        lengths.add(L)
        acc[(r["task"], r["plan_label"])][L].append(1 if r["metrics"]["correct"] else 0)
    lengths = sorted(lengths)
    out = ["| task | plan | " + " | ".join(str(L) for L in lengths) + " |",
           "|---|---|" + "---:|" * len(lengths)]
    for task in ("passkey", "niah"):
        for label in order:
            if (task, label) not in acc:
                continue
            cells = acc[(task, label)]
            out.append("| {} | {} | ".format(task, label) + " | ".join(
                "{}/{}".format(sum(cells[L]), len(cells[L])) if L in cells else "-"
                for L in lengths) + " |")
    return "\n".join(out)


def main(argv):
    args = argv[1:]
    mode = summary
    if args and args[0] == "--by-length":
        mode = by_length
        args = args[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    rows, order = load_rows(args)
    print(mode(rows, order))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
