#!/usr/bin/env python3
"""Tiny random-weight qwen2 and qwen3 GGUF models for architecture tests.

No small real Qwen model is available offline, so these check kvsieve's qwen2 (q/k/v
biases, NEOX RoPE) and qwen3 (per-head Q/K RMSNorm, head_dim != n_embd/n_head) graphs
against llama.cpp on identical weights (tools/gen_reference_logits.py then writes their
reference fixtures). The vocabulary is stories260K's 512-token SentencePiece vocab.

Usage: python tools/gen_synthetic_models.py [--shared ../shared/data]
Writes tests/fixtures/models/tiny-qwen2.gguf and tiny-qwen3.gguf (F16 matrices, ~100 KB).
"""
import argparse
import os

import gguf
import numpy as np


def copy_vocab(w, src):
    r = gguf.GGUFReader(src)
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        f = r.fields[key]
        vals = f.contents()
        if key == "tokenizer.ggml.tokens":
            w.add_token_list(vals)
        elif key == "tokenizer.ggml.scores":
            w.add_token_scores(vals)
        else:
            w.add_token_types(vals)
    w.add_tokenizer_model("llama")
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)


def build(arch, path, vocab_src, seed):
    rng = np.random.default_rng(seed)
    n_embd, n_layer, n_head, n_kv, n_ff, n_vocab = 64, 2, 4, 2, 96, 512
    head_dim = 32 if arch == "qwen3" else n_embd // n_head
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny-{arch}")
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(1e-6)
    copy_vocab(w, vocab_src)

    def mat(rows, cols, scale):
        # GGUF shape {cols, rows}: numpy [rows, cols]
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float16)

    def vec(n, mean=1.0, scale=0.1):
        return (mean + rng.standard_normal(n) * scale).astype(np.float32)

    w.add_tensor("token_embd.weight", mat(n_vocab, n_embd, 1.0))
    w.add_tensor("output_norm.weight", vec(n_embd))
    w.add_tensor("output.weight", mat(n_vocab, n_embd, 0.3))
    for il in range(n_layer):
        p = f"blk.{il}."
        w.add_tensor(p + "attn_norm.weight", vec(n_embd))
        w.add_tensor(p + "attn_q.weight", mat(n_head * head_dim, n_embd, 0.25))
        w.add_tensor(p + "attn_k.weight", mat(n_kv * head_dim, n_embd, 0.25))
        w.add_tensor(p + "attn_v.weight", mat(n_kv * head_dim, n_embd, 0.25))
        if arch == "qwen2":
            w.add_tensor(p + "attn_q.bias", vec(n_head * head_dim, 0.0, 0.5))
            w.add_tensor(p + "attn_k.bias", vec(n_kv * head_dim, 0.0, 0.5))
            w.add_tensor(p + "attn_v.bias", vec(n_kv * head_dim, 0.0, 0.5))
        if arch == "qwen3":
            w.add_tensor(p + "attn_q_norm.weight", vec(head_dim))
            w.add_tensor(p + "attn_k_norm.weight", vec(head_dim))
        w.add_tensor(p + "attn_output.weight", mat(n_embd, n_head * head_dim, 0.2))
        w.add_tensor(p + "ffn_norm.weight", vec(n_embd))
        w.add_tensor(p + "ffn_gate.weight", mat(n_ff, n_embd, 0.2))
        w.add_tensor(p + "ffn_up.weight", mat(n_ff, n_embd, 0.2))
        w.add_tensor(p + "ffn_down.weight", mat(n_embd, n_ff, 0.2))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(root, "..", "shared", "data"))
    args = ap.parse_args()
    out = os.path.join(root, "tests", "fixtures", "models")
    os.makedirs(out, exist_ok=True)
    vocab = os.path.join(args.shared, "models", "stories260K.gguf")
    for seed, arch in enumerate(("qwen2", "qwen3")):
        build(arch, os.path.join(out, f"tiny-{arch}.gguf"), vocab, seed + 1)


if __name__ == "__main__":
    main()
