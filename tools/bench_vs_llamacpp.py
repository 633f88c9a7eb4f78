#!/usr/bin/env python3
"""kvsieve vs llama.cpp throughput on the same GGUF file and thread count, measured alternately.

Each round runs every test once in kvsieve (`kvsieve bench --json -r 1`, a fresh process) and
once in llama.cpp (PyPI llama-cpp-python, built from source for this CPU), so both engines see
the same machine state; the report gives per-engine medians and the median of the per-round
ratios kvsieve / llama.cpp with its min..max. Tests: ppN (one evaluation of N random tokens,
cache cleared first), tgN (N single-token evaluations) and tgN@dD (after D tokens in the cache).
llama.cpp runs with its library defaults (n_batch 512, no flash attention, f16 KV cache);
its Python wrapper adds ~30 us per token, well under 1% of a tg step here.

Usage (a venv with llama-cpp-python; see docs/benchmarks.md):
  .cache/venv-llamacpp/bin/python tools/bench_vs_llamacpp.py -m .cache/models/X.gguf \
      [-t 2] [--rounds 5] [-p 512] [-n 128] [--depths 0,4096] [--kvsieve build/kvsieve] [--json]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time


def llama_cpp_test(llm, n_vocab, n_prompt, n_gen, depth, rng):
    llm.reset()
    if n_prompt:
        if depth:
            llm.eval([rng.randrange(n_vocab) for _ in range(depth)])
        toks = [rng.randrange(n_vocab) for _ in range(n_prompt)]
        t0 = time.perf_counter()
        llm.eval(toks)
        return n_prompt / (time.perf_counter() - t0)
    if depth:
        llm.eval([rng.randrange(n_vocab) for _ in range(depth)])
    toks = [rng.randrange(n_vocab) for _ in range(n_gen)]
    t0 = time.perf_counter()
    for t in toks:
        llm.eval([t])
    return n_gen / (time.perf_counter() - t0)


def kvsieve_test(binary, model, threads, n_prompt, n_gen, depth, seed, extra):
    cmd = [binary, "bench", "-m", model, "-t", str(threads), "-r", "1", "-s", str(seed),
           "-p", str(n_prompt), "-n", str(n_gen), "-d", str(depth), "--json"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)[0]["tokens_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("--depths", default="0", help="comma-separated depths for the tg test")
    ap.add_argument("--kvsieve", default="build/kvsieve")
    ap.add_argument("--kvsieve-args", default="", help="extra kvsieve bench options, e.g. '--attention flash'")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    from llama_cpp import Llama  # imported late so --help works without it

    depths = [int(x) for x in a.depths.split(",") if x != ""]
    tests = []
    if a.n_prompt:
        tests.append((a.n_prompt, 0, 0))
    if a.n_gen:
        tests += [(0, a.n_gen, d) for d in depths]
    n_ctx = max(d for d in depths + [0]) + max(a.n_prompt, a.n_gen) + 16
    llm = Llama(model_path=a.model, n_ctx=n_ctx, n_threads=a.threads, n_threads_batch=a.threads,
                n_batch=512, verbose=False)
    n_vocab = llm.n_vocab()
    extra = a.kvsieve_args.split() if a.kvsieve_args else []
    rng = random.Random(1)
    llama_cpp_test(llm, n_vocab, 16, 0, 0, rng)  # warm-up: page in the weights

    samples = {t: {"kvsieve": [], "llama.cpp": []} for t in tests}
    for r in range(a.rounds):
        for t in tests:
            ks = kvsieve_test(a.kvsieve, a.model, a.threads, *t, seed=r + 1, extra=extra)
            ls = llama_cpp_test(llm, n_vocab, *t, rng)
            samples[t]["kvsieve"].append(ks)
            samples[t]["llama.cpp"].append(ls)
            print(f"round {r + 1}/{a.rounds} {name(t)}: kvsieve {ks:.1f} t/s, llama.cpp {ls:.1f} t/s",
                  file=sys.stderr, flush=True)

    rows = []
    for t in tests:
        k, l = samples[t]["kvsieve"], samples[t]["llama.cpp"]
        ratios = [x / y for x, y in zip(k, l)]
        rows.append({"test": name(t), "threads": a.threads, "model": os.path.basename(a.model),
                     "kvsieve_tps": statistics.median(k), "llamacpp_tps": statistics.median(l),
                     "ratio": statistics.median(ratios), "ratio_min": min(ratios),
                     "ratio_max": max(ratios), "rounds": a.rounds, "kvsieve_samples": k,
                     "llamacpp_samples": l})
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    print("| model | test | threads | kvsieve t/s | llama.cpp t/s | ratio (min..max) |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['test']} | {r['threads']} | {r['kvsieve_tps']:.1f} | "
              f"{r['llamacpp_tps']:.1f} | {r['ratio']:.2f}x ({r['ratio_min']:.2f}..{r['ratio_max']:.2f}) |")


def name(t):
    n_prompt, n_gen, depth = t
    s = f"pp{n_prompt}" if n_prompt else f"tg{n_gen}"
    return s + (f"@d{depth}" if depth else "")


if __name__ == "__main__":
    main()
