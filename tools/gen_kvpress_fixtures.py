#!/usr/bin/env python3
"""Reference fixtures from NVIDIA kvpress (PyPI `kvpress`) for tests/model/test_kvpress_agreement.

For a real prompt (600 tokens of botchan.txt from byte offset 20000, tokenized by the HF
tokenizer of the model directory) and compression ratio 0.5, each kvpress press compresses the
prefill cache of SmolLM2-135M-Instruct (the HF directory written by `kvsieve convert ... --dtype
f32`, run by transformers on CPU in float32). For every press this writes
tests/fixtures/kvpress/<press>.json with:

- the press and its parameters, the kvpress / transformers / torch versions;
- the token ids;
- per layer and KV head the kept token positions, as a hex bitmask (character j holds positions
  4j..4j+3, bit k of its value = position 4j+k) plus the count;
- the kvsieve cache plan that should keep the same slots ("plan"), optional variants reported
  but not asserted ("variants"), and "known_gap" when kvsieve cannot express the press yet (the
  test then skips instead of failing while agreement is below the threshold).

It also writes logits.json: transformers' top-16 logits at a few positions, so the test checks
that kvsieve runs the same model (max |logit difference|) before comparing presses.

The kept positions come from kvpress's own compress(): the wrapper below records which rows of
the input keys the compressed keys are (the gather copies rows exactly); presses that only mask
(AdaKVPress) expose module.masked_key_indices, whose complement is kept.

Usage (venv with kvpress, e.g. python3 -m venv /root/.cache/kvs-kvpress && pip install kvpress):
  kvsieve convert .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
      .cache/models/derived/smollm2-hf --dtype f32
  /root/.cache/kvs-kvpress/bin/python tools/gen_kvpress_fixtures.py
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

import kvpress
import transformers
from kvpress import (
    AdaKVPress,
    ExpectedAttentionPress,
    KeyDiffPress,
    KnormPress,
    LagKVPress,
    ObservedAttentionPress,
    PyramidKVPress,
    QFilterPress,
    SnapKVPress,
    StreamingLLMPress,
    TOVAPress,
)
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def kvpress_version():
    try:
        from importlib.metadata import version

        return version("kvpress")
    except Exception:  # pragma: no cover
        return getattr(kvpress, "__version__", "unknown")


def encode_mask(kept, n):
    """Sorted positions -> hex bitmask string (character j = positions 4j..4j+3)."""
    bits = np.zeros(((n + 3) // 4) * 4, dtype=np.int64)
    bits[np.asarray(kept, dtype=np.int64)] = 1
    nib = bits.reshape(-1, 4) @ np.array([1, 2, 4, 8])
    return "".join("0123456789abcdef"[v] for v in nib)


def rows_index(src, rows):
    """Index in src [n, d] of each row of rows [m, d] (exact copies)."""
    table = {}
    for i, r in enumerate(src):
        table.setdefault(r.tobytes(), i)
    out = []
    for r in rows:
        j = table.get(r.tobytes())
        if j is None:
            raise RuntimeError("compressed key row is not a row of the input keys")
        out.append(j)
    return out


def run_press(model, ids, press):
    """Runs a prefill with `press`; returns kept positions [layer][kv head] (sorted lists)."""
    kept = {}
    inner = press.compress

    def compress(module, hidden_states, keys, values, attentions, kwargs):
        k2, v2 = inner(module, hidden_states, keys, values, attentions, kwargs)
        layer = module.layer_idx
        n = keys.shape[2]
        per_head = []
        masked = getattr(module, "masked_key_indices", None)
        if masked is not None and k2.shape[2] == n:
            _, heads, seqs = masked
            for h in range(keys.shape[1]):
                drop = set(seqs[heads == h].tolist())
                per_head.append([i for i in range(n) if i not in drop])
            module.masked_key_indices = None
        else:
            for h in range(keys.shape[1]):
                src = keys[0, h].detach().float().numpy()
                out = k2[0, h].detach().float().numpy()
                per_head.append(sorted(rows_index(src, out)))
        kept[layer] = per_head
        return k2, v2

    press.compress = compress
    try:
        with torch.no_grad(), press(model):
            model(ids, past_key_values=DynamicCache(), use_cache=True)
    finally:
        del press.compress
    return [kept[l] for l in sorted(kept)]


def qfilter_directions(model, tok, text_bytes, n_seq=8, seq_len=256):
    """Q-Filters directions as kvsieve's calibrate-qfilter computes them: per query head the top
    right singular vector u of its post-RoPE queries (power iteration on Q^T Q), oriented so
    the mean query has <q, u> > 0, averaged over the GQA group and normalized."""
    cfg = model.config
    L, H, Hkv = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
    d = cfg.hidden_size // H
    g = H // Hkv
    qtq = torch.zeros(L, H, d, d, dtype=torch.float64)
    qsum = torch.zeros(L, H, d, dtype=torch.float64)
    ids_all = tok(text_bytes.decode("utf-8", "ignore"), add_special_tokens=False)["input_ids"]
    hooks = []

    def make_hook(layer):
        def hook(module, args, kwargs):
            hs = kwargs["hidden_states"]
            q = module.q_proj(hs).view(hs.shape[0], hs.shape[1], H, d).transpose(1, 2)
            cos, sin = kwargs["position_embeddings"]
            q = q * cos.unsqueeze(1) + transformers.models.llama.modeling_llama.rotate_half(q) * sin.unsqueeze(1)
            q = q[0].double()  # [H, T, d]
            qtq[layer] += torch.einsum("htc,hte->hce", q, q)
            qsum[layer] += q.sum(1)

        return hook

    for l, layer in enumerate(model.model.layers):
        hooks.append(layer.self_attn.register_forward_pre_hook(make_hook(l), with_kwargs=True))
    try:
        with torch.no_grad():
            for s in range(n_seq):
                chunk = ids_all[s * seq_len:(s + 1) * seq_len]
                if len(chunk) < seq_len:
                    break
                model(torch.tensor([chunk]), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    filters = torch.zeros(L, Hkv, d, dtype=torch.float64)
    for l in range(L):
        for h in range(H):
            evals, evecs = torch.linalg.eigh(qtq[l, h])
            u = evecs[:, -1]
            if float(qsum[l, h] @ u) < 0:
                u = -u
            filters[l, h // g] += u / g
    filters = filters / filters.norm(dim=-1, keepdim=True)
    return filters.float()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=os.path.join(ROOT, ".cache/models/derived/smollm2-hf"))
    ap.add_argument("--shared", default=os.path.join(ROOT, "../shared/data"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/fixtures/kvpress"))
    ap.add_argument("--offset", type=int, default=20000)
    ap.add_argument("--n-tokens", type=int, default=600)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--only", nargs="*", help="press fixture names to regenerate")
    ap.add_argument("--dump-logits", help="write the prompt's full logits here (.npy)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    with open(os.path.join(args.shared, "text", "botchan.txt"), "rb") as f:
        raw = f.read()
    text = raw[args.offset:args.offset + 8000].decode("utf-8", "ignore")
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    ids_list = tok(text, add_special_tokens=False)["input_ids"][: args.n_tokens]
    assert len(ids_list) == args.n_tokens, "text too short for --n-tokens"
    ids = torch.tensor([ids_list])
    n = len(ids_list)

    models = {}

    def model(attn):
        if attn not in models:
            models[attn] = AutoModelForCausalLM.from_pretrained(
                args.model_dir, dtype=torch.float32, attn_implementation=attn).eval()
        return models[attn]

    cfg = model("eager").config
    L, Hkv = cfg.num_hidden_layers, cfg.num_key_value_heads
    versions = {"kvpress": kvpress_version(), "transformers": transformers.__version__,
                "torch": torch.__version__}
    source = {"text": "text/botchan.txt", "byte_offset": args.offset, "bytes": 8000,
              "tokenizer": "HF tokenizer of the model directory, add_special_tokens=False",
              "model": "SmolLM2-135M-Instruct.Q4_1.gguf converted by kvsieve convert --dtype f32",
              "dtype": "float32", "device": "cpu"}

    # Logits of the uncompressed prompt: the model parity check.
    with torch.no_grad():
        logits = model("eager")(ids, use_cache=False).logits[0].float()
    if args.dump_logits:
        np.save(args.dump_logits, logits.numpy())
    positions = sorted(set(list(range(0, n, 50)) + [n - 1]))
    top = []
    for p in positions:
        v, i = logits[p].topk(16)
        top.append({"pos": p, "ids": i.tolist(), "logits": [round(float(x), 5) for x in v]})
    if not args.only or "logits" in args.only:
        with open(os.path.join(args.out, "logits.json"), "w") as f:
            json.dump({"versions": versions, "source": source, "token_ids": ids_list, "top": top}, f)
            f.write("\n")

    n_kept = max(1, int(n * (1 - args.ratio)))  # kvpress compute_n_kept
    r = args.ratio

    # Q-Filters: kvpress downloads published filters from the hub, which is out of reach here;
    # both sides use the same directions computed from other botchan text (bytes 40000-56000).
    filters = None

    def get_filters():
        nonlocal filters
        if filters is None:
            filters = qfilter_directions(model("eager"), tok, raw[40000:56000])
            cal = {"n_layer": L, "n_head_kv": Hkv, "head_dim": filters.shape[-1],
                   "filters": [[[float(f"{x:.7g}") for x in h] for h in layer] for layer in filters.tolist()]}
            with open(os.path.join(args.out, "qfilter_calibration.json"), "w") as f:
                json.dump(cal, f)
                f.write("\n")
        return filters

    def qfilter_press():
        p = QFilterPress(compression_ratio=r)
        p.post_init_from_model = lambda m: None  # no hub: filters set below
        # kvpress scores -<f, k>; kvsieve <k, f> with f oriented along the queries.
        p.q_filters = -get_filters()
        return p

    # Pyramid budgets as kvpress computes them (PyramidKVPress.get_layer_budget).
    def pyramid_budgets(window=64, beta=20):
        mcp = window + n * (1 - r)
        mn = (mcp - window) / beta
        mx = (mcp - window) * 2 - mn
        if mx >= n - window:
            mx = n - window
            mn = (mcp - window) * 2 - mx
        if not (n >= mx >= mn >= window):
            return [max(1, round(n * (1 - r)))] * L
        steps = (mx - mn) / (L - 1)
        return [round(mx - l * steps) for l in range(L)]

    pb = pyramid_budgets()
    pyramid_layers = {str(l): {"budget": b} for l, b in enumerate(pb)}

    specs = [
        # name, press factory, attention, press params, kvsieve plan, variants, known gap
        ("knorm", lambda: KnormPress(compression_ratio=r), "eager", {},
         {"policy": "knorm", "budget": n_kept}, [], None),
        ("streaming", lambda: StreamingLLMPress(compression_ratio=r, n_sink=4), "eager", {"n_sink": 4},
         {"policy": "streaming", "params": {"sinks": 4}, "budget": n_kept}, [], None),
        ("snapkv", lambda: SnapKVPress(compression_ratio=r, window_size=64, kernel_size=5), "eager",
         {"window_size": 64, "kernel_size": 5},
         {"policy": "snapkv", "params": {"window": 64, "kernel": 5}, "budget": n_kept}, [], None),
        ("tova", lambda: TOVAPress(compression_ratio=r), "eager", {},
         # kvpress always keeps the last token (padded with max + 1): "recent": 1.
         {"policy": "tova", "budget": n_kept, "recent": 1}, [], None),
        ("h2o", lambda: ObservedAttentionPress(compression_ratio=r), "eager", {},
         # kvpress scores the mean attention a key received (sum / the n - i queries that see it).
         {"policy": "h2o", "params": {"normalize": "mean"}, "budget": n_kept}, [], None),
        ("keydiff", lambda: KeyDiffPress(compression_ratio=r), "eager", {},
         {"policy": "keydiff", "budget": n_kept}, [], None),
        ("lagkv", lambda: LagKVPress(compression_ratio=r, n_sink=4, lag_size=128), "eager",
         {"n_sink": 4, "lag_size": 128},
         {"policy": "lagkv", "sinks": 4, "params": {"lag_size": 128}, "budget": n_kept}, [], None),
        ("qfilter", qfilter_press, "eager", {"q_filters": "qfilter_calibration.json (negated)"},
         {"policy": "qfilter", "calibration": "qfilter_calibration.json", "budget": n_kept}, [], None),
        ("expected_attention",
         lambda: ExpectedAttentionPress(compression_ratio=r, n_future_positions=512, n_sink=4),
         "eager", {"n_future_positions": 512, "n_sink": 4, "use_covariance": True, "use_vnorm": True,
                   "epsilon": 0.0},
         {"policy": "expected_attention", "params": {"n_future_positions": 512, "sinks": 4},
          "sinks": 4, "budget": n_kept},
         [], None),
        ("pyramid",
         lambda: PyramidKVPress(compression_ratio=r, window_size=64, kernel_size=5, beta=20), "eager",
         {"window_size": 64, "kernel_size": 5, "beta": 20},
         # kvsieve's pyramid allocator with the SnapKV window as its protected window; its
         # per-layer budgets differ slightly from kvpress's (docs/kvpress-parity.md).
         {"policy": "snapkv", "params": {"window": 64, "kernel": 5}, "budget": n_kept,
          "recent": 64, "allocator": {"name": "pyramid", "beta": 20}},
         # kvpress's own per-layer budgets as layer overrides: isolates the scorer.
         [{"name": "kvpress layer budgets",
           "plan": {"policy": "snapkv", "params": {"window": 64, "kernel": 5}, "budget": n_kept,
                    "layers": pyramid_layers}}],
         None),
        ("adakv",
         lambda: AdaKVPress(press=SnapKVPress(compression_ratio=r, window_size=64, kernel_size=5),
                            alpha_safeguard=0.2), "sdpa",
         {"press": "SnapKVPress", "window_size": 64, "kernel_size": 5, "alpha_safeguard": 0.2},
         {"policy": "snapkv", "params": {"window": 64, "kernel": 5}, "budget": n_kept,
          "allocator": {"name": "adaptive", "floor": 0.2}}, [], None),
    ]

    for name, make, attn, params, plan, variants, gap in specs:
        if args.only and name not in args.only:
            continue
        press = make()
        kept = run_press(model(attn), ids, press)
        counts = [[len(h) for h in layer] for layer in kept]
        fixture = {
            "press": type(press).__name__ if name != "adakv" else "AdaKVPress(SnapKVPress)",
            "name": name,
            "compression_ratio": r,
            "params": params,
            "attn_implementation": attn,
            "versions": versions,
            "source": source,
            "n_layer": L,
            "n_head_kv": Hkv,
            "token_ids": ids_list,
            "n_kept": counts,
            "kept": [[encode_mask(h, n) for h in layer] for layer in kept],
            "plan": dict(plan, compress="prefill"),
            "variants": [dict(v, plan=dict(v["plan"], compress="prefill")) for v in variants],
        }
        if gap:
            fixture["known_gap"] = gap
        path = os.path.join(args.out, f"{name}.json")
        with open(path, "w") as f:
            json.dump(fixture, f)
            f.write("\n")
        print(f"{name}: kept per head {min(min(c) for c in counts)}..{max(max(c) for c in counts)}"
              f" -> {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
