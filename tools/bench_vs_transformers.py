#!/usr/bin/env python3
"""kvsieve on the GPU vs HF transformers (PyTorch) on the same model, measured alternately.

The peer loads the HF directory that `kvsieve convert` wrote from the GGUF file (the same
weights, dequantized), in bfloat16 on cuda:0 with its default attention and a DynamicCache.
Each round runs every test once in kvsieve (`kvsieve bench --device cuda --json -r 1`, a fresh
process) and once in transformers, so both see the same GPU state; the report gives per-engine
medians and the median of the per-round ratios kvsieve / transformers with its min..max.
Tests, as in tools/bench_vs_llamacpp.py: ppN (one forward pass over N random tokens, empty
cache) and tgN (N single-token steps after one token, each step's argmax fed back as in
greedy generation). Timings bracket the work with torch.cuda.synchronize().

Usage (on the GPU machine, see scripts/gpu-check.sh):
  python3 tools/bench_vs_transformers.py --gguf X.gguf --hf-dir X.hf [--rounds 3] \
      [-p 512] [-n 128] [--kvsieve build-gpu/kvsieve] [--json]
"""
import argparse
import json
import random
import statistics
import subprocess
import sys
import time


def transformers_tests(hf_dir, n_prompt, n_gen, rounds, seed):
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.bfloat16).to("cuda:0")
    model.eval()
    vocab = model.config.vocab_size
    rng = random.Random(seed)

    @torch.inference_mode()
    def pp():
        ids = torch.tensor([[rng.randrange(vocab) for _ in range(n_prompt)]], device="cuda:0")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(input_ids=ids, past_key_values=DynamicCache(), use_cache=True)
        torch.cuda.synchronize()
        return n_prompt / (time.perf_counter() - t0)

    @torch.inference_mode()
    def tg():
        cache = DynamicCache()
        ids = torch.tensor([[rng.randrange(vocab)]], device="cuda:0")
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n_gen):
            ids = out.logits[:, -1:].argmax(-1)
            out = model(input_ids=ids, past_key_values=out.past_key_values, use_cache=True)
        torch.cuda.synchronize()
        return n_gen / (time.perf_counter() - t0)

    pp(), tg()  # warm-up: kernels' first launches and the allocator
    return {"pp": pp, "tg": tg}, torch.__version__


def kvsieve_test(binary, model, n_prompt, n_gen, seed, extra):
    cmd = [binary, "bench", "-m", model, "--device", "cuda", "-r", "1", "-s", str(seed),
           "-b", str(max(n_prompt, 1)), "-p", str(n_prompt), "-n", str(n_gen), "--json"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)[0]["tokens_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, help="the model file kvsieve runs")
    ap.add_argument("--hf-dir", required=True, help="its `kvsieve convert` output")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("--kvsieve", default="build-gpu/kvsieve")
    ap.add_argument("--kvsieve-args", default="", help="extra kvsieve bench options")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    peer, torch_version = transformers_tests(a.hf_dir, a.n_prompt, a.n_gen, a.rounds, 1)
    tests = [("pp", f"pp{a.n_prompt}", a.n_prompt, 0), ("tg", f"tg{a.n_gen}", 0, a.n_gen)]
    extra = a.kvsieve_args.split()
    rows = []
    for key, name, n_prompt, n_gen in tests:
        ours, theirs = [], []
        for r in range(a.rounds):
            ours.append(kvsieve_test(a.kvsieve, a.gguf, n_prompt, n_gen, 1 + r, extra))
            theirs.append(peer[key]())
            print(f"{name} round {r + 1}: kvsieve {ours[-1]:.1f} t/s, transformers "
                  f"{theirs[-1]:.1f} t/s", file=sys.stderr)
        ratios = [o / t for o, t in zip(ours, theirs)]
        rows.append({"test": name, "kvsieve_tps": statistics.median(ours),
                     "transformers_tps": statistics.median(theirs),
                     "ratio": statistics.median(ratios), "ratio_min": min(ratios),
                     "ratio_max": max(ratios), "rounds": a.rounds})
    if a.json:
        print(json.dumps({"model": a.gguf, "torch": torch_version, "rows": rows}, indent=1))
        return
    print(f"| test | kvsieve t/s | transformers t/s (torch {torch_version}, bf16) | ratio (min..max) |")
    print("|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['test']} | {r['kvsieve_tps']:.1f} | {r['transformers_tps']:.1f} | "
              f"{r['ratio']:.2f}x ({r['ratio_min']:.2f}..{r['ratio_max']:.2f}) |")


if __name__ == "__main__":
    main()
