#!/usr/bin/env python3
"""Reference fixtures from llama.cpp (PyPI llama-cpp-python) for the model tests.

For each model: llama.cpp's tokenization of a real text (botchan.txt), the top-5 next-token
log-probabilities at every position, and greedy 64-token continuations of three prompts.
The fixtures are small JSON files in tests/fixtures/reference/; the C++ tests compare
kvsieve's logits and continuations against them without needing Python.

Usage (venv with llama-cpp-python and numpy):
  python tools/gen_reference_logits.py [--models-dir .cache/models] [--shared ../shared/data]
"""
import argparse
import hashlib
import json
import os
import sys

import subprocess

import numpy as np
from llama_cpp import Llama
import llama_cpp

from llamacpp_options import disable_repack

PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):"]
TOP = 5

MODELS = [
    # (fixture name, file, directory key, evaluated tokens)
    ("stories260K", "stories260K.gguf", "shared_models", 256),
    ("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "cache", 512),
    # 640 tokens: past gemma3's 512-token sliding window, so local layers really slide.
    ("gemma3", "gemma-3-270m-q4_k_m.gguf", "cache", 640),
    # F32 copies made by `kvsieve quantize --type F32`: llama.cpp then computes in plain f32
    # (no on-the-fly Q8 activations), so the two engines' architectures compare exactly.
    ("smollm2-f32", "derived/SmolLM2-135M-Instruct.F32.gguf", "cache", 512),
    ("gemma3-f32", "derived/gemma-3-270m.F32.gguf", "cache", 640),
    # random-weight architecture fixtures from tools/gen_synthetic_models.py
    ("tiny-qwen2", "tiny-qwen2.gguf", "fixtures", 128),
    ("tiny-qwen3", "tiny-qwen3.gguf", "fixtures", 128),
]

DERIVED = {
    "derived/SmolLM2-135M-Instruct.F32.gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "derived/gemma-3-270m.F32.gguf": "gemma-3-270m-q4_k_m.gguf",
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--models-dir", default=os.path.join(root, ".cache", "models"))
    ap.add_argument("--shared", default=os.path.join(root, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "reference"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kvsieve", default=os.path.join(root, "build", "kvsieve"))
    ap.add_argument("--only", default="", help="comma-separated fixture names to regenerate")
    ap.add_argument("--no-repack", action="store_true",
                    help="keep weights in their GGUF block layout (llama-cli's --no-repack); "
                         "kvsieve replicates llama.cpp's default, which repacks Q4_K")
    args = ap.parse_args()
    if args.no_repack:
        disable_repack()
    os.makedirs(args.out, exist_ok=True)
    text_path = os.path.join(args.shared, "text", "botchan.txt")
    with open(text_path, "rb") as f:
        raw = f.read()
    offset = 20000  # past the Project Gutenberg header, into the story itself
    text = raw[offset:offset + 8000].decode("utf-8", "ignore")

    for name, fname, where, n_eval in MODELS:
        if args.only and name not in args.only.split(","):
            continue
        if where == "shared_models":
            path = os.path.join(args.shared, "models", fname)
        elif where == "fixtures":
            path = os.path.join(root, "tests", "fixtures", "models", fname)
        else:
            path = os.path.join(args.models_dir, fname)
        if fname in DERIVED and not os.path.exists(path):
            src = os.path.join(args.models_dir, DERIVED[fname])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            subprocess.run([args.kvsieve, "quantize", src, path, "--type", "F32"], check=True)
        if not os.path.exists(path):
            print(f"skip {name}: {path} absent", file=sys.stderr)
            continue
        # F32 K/V cache without flash attention: the reference then rounds no more than
        # kvsieve's own f32 cache does, so differences measure the engines, not cache types.
        llm = Llama(model_path=path, n_ctx=n_eval + 128, n_batch=512, n_threads=args.threads,
                    logits_all=True, verbose=False, type_k=0, type_v=0, flash_attn=False)
        toks = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)[:n_eval]
        assert len(toks) == n_eval, (name, len(toks))
        llm.reset()
        llm.eval(toks)
        top_ids, top_lp = [], []
        for i in range(n_eval):
            lp = log_softmax(np.asarray(llm.scores[i]))
            ids = np.argsort(-lp, kind="stable")[:TOP]
            top_ids.append([int(t) for t in ids])
            top_lp.append([round(float(lp[t]), 5) for t in ids])
        greedy = []
        for prompt in PROMPTS:
            ptoks = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
            llm.reset()
            llm.eval(ptoks)
            out = []
            for _ in range(64):
                t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
                if t == llm.token_eos():
                    break
                out.append(t)
                llm.eval([t])
            greedy.append({"prompt": prompt, "prompt_tokens": ptoks, "tokens": out,
                           "text": llm.detokenize(out).decode("utf-8", "replace")})
        fixture = {
            "model": fname,
            "sha256": sha256(path),
            "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, f32 KV cache, "
                         f"no flash attention, {'no repack' if args.no_repack else 'default repack'}",
            "text": "text/botchan.txt",
            "text_offset": offset,
            "text_chars": 8000,
            "tokens": [int(t) for t in toks],
            "top_ids": top_ids,
            "top_logprobs": top_lp,
            "greedy": greedy,
        }
        out_path = os.path.join(args.out, name + ".json")
        with open(out_path + ".tmp", "w") as f:
            json.dump(fixture, f, separators=(",", ":"))
        os.replace(out_path + ".tmp", out_path)
        print(f"{name}: {n_eval} positions, greedy {[len(g['tokens']) for g in greedy]} -> {out_path}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
