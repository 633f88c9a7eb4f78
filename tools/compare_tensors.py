#!/usr/bin/env python3
"""Compares kvsieve's intermediates (KVSIEVE_DUMP_TENSORS=DIR) with llama.cpp's
(tools/dump_llamacpp_tensors.py) op by op, in graph order, for the first N token rows.

Prints per tensor: the share of bit-identical elements, the largest absolute difference and
the largest difference relative to the tensor's largest magnitude; the first tensor that is
not bit-identical is where the engines part.

Usage: python3 tools/compare_tensors.py KVSIEVE_DIR LLAMACPP_DIR [--tokens N] [--layers L]
         [--skip ROWS]
"""
import argparse
import os

import numpy as np

ORDER = ["attn_norm", "Qcur", "Kcur", "Vcur", "kqv_out", "attn_out", "attn_post_norm",
         "ffn_inp", "ffn_norm", "ffn_gate", "ffn_up", "ffn_act", "ffn_out", "ffn_post_norm",
         "l_out"]
# kvsieve name -> llama.cpp's, where they differ (the gated activation's name varies).
ALIASES = {"ffn_act": ["ffn_swiglu", "ffn_geglu", "ffn_gate_par"], "ffn_inp": ["sa_out"]}


def shapes(llama_dir):
    out = {}
    with open(os.path.join(llama_dir, "shapes.txt")) as f:
        for line in f:
            parts = line.rsplit(" ", 4)
            out[parts[0]] = [int(x) for x in parts[1:]]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kvsieve")
    ap.add_argument("llama")
    ap.add_argument("--tokens", type=int, default=0, help="rows to compare (0: llama.cpp's)")
    ap.add_argument("--layers", type=int, default=1000)
    ap.add_argument("--skip", type=int, default=0,
                    help="kvsieve rows to skip first: its dump appends decode steps to the "
                         "prefill rows, so step k of llama.cpp's --then is --skip PROMPT+k-1")
    args = ap.parse_args()
    sh = shapes(args.llama)
    n_layer = 0
    while os.path.exists(os.path.join(args.kvsieve, f"l_out-{n_layer}.f32")):
        n_layer += 1
    names = [(f"{n}-{il}", n) for il in range(min(n_layer, args.layers)) for n in ORDER]
    names += [("result_norm", "result_norm"), ("result_output", "result_output")]
    print(f"{'tensor':<18} {'identical':>9} {'max |d|':>10} {'max rel':>10}")
    for kname, base in names:
        kpath = os.path.join(args.kvsieve, kname + ".f32")
        if not os.path.exists(kpath):
            continue
        suffix = kname[len(base):]
        cands = [base] + ALIASES.get(base, [])
        lname = next((c + suffix for c in cands if c + suffix in sh), None)
        if lname is None:
            print(f"{kname:<18} (no llama.cpp tensor)")
            continue
        ne = sh[lname]
        cols = ne[0] * (ne[1] if ne[2] > 1 else 1)  # 3-D [hd, heads, T] -> rows of hd*heads
        b = np.fromfile(os.path.join(args.llama, lname + ".f32"), dtype=np.float32)
        rows_l = b.size // cols
        a = np.fromfile(kpath, dtype=np.float32)
        if not base.startswith("result_"):
            a = a[args.skip * cols:]
        if a.size % cols != 0:
            print(f"{kname:<18} (shape mismatch: {a.size} vs rows of {cols})")
            continue
        n = min(rows_l, a.size // cols)
        if args.tokens:
            n = min(n, args.tokens)
        if base.startswith("result_"):
            # kvsieve computes the output rows it needs (the last one for generate) while
            # the dump script asks llama.cpp for all: compare the trailing rows.
            a = a[a.size - n * cols:].reshape(n, cols)
            b = b[b.size - n * cols:].reshape(n, cols)
        else:
            a = a[: n * cols].reshape(n, cols)
            b = b[: n * cols].reshape(n, cols)
        same = np.mean(a.view(np.uint32) == b.view(np.uint32))
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        scale = max(np.abs(b).max(), 1e-30)
        print(f"{kname:<18} {same:>9.4f} {d.max():>10.3g} {d.max() / scale:>10.3g}")


if __name__ == "__main__":
    main()
