#!/usr/bin/env python3
"""Dumps llama.cpp's intermediate tensors for one batch of tokens (ggml's cb_eval hook).

For finding where kvsieve and llama.cpp part: run the same token ids through both, with
KVSIEVE_DUMP_TENSORS=DIR for kvsieve (see docs/correctness.md) and this script for
llama.cpp, then tools/compare_tensors.py DIR_KVSIEVE DIR_LLAMACPP.

Every graph node with a name (e.g. "attn_norm-0", "Qcur-0", "ffn_out-3", "result_output")
is written as NAME[.N].f32 (row-major [tokens, ne0], float32); a name seen more than once
(llama.cpp names the matmul, reshape and RoPE outputs of Qcur alike) gets .1, .2, ... in
graph order. Only F32 tensors are kept.

Usage (the llama-cpp-python venv): python tools/dump_llamacpp_tensors.py MODEL.gguf OUT_DIR
  --ids 1,2,3 [--threads 2]
"""
import argparse
import ctypes
import os

import numpy as np
import llama_cpp

from llamacpp_options import disable_repack


class GgmlTensor(ctypes.Structure):
    # struct ggml_tensor (ggml.h): stable since 2024; GGML_MAX_DIMS 4, GGML_MAX_OP_PARAMS 64,
    # GGML_MAX_SRC 10, GGML_MAX_NAME 64.
    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * 10),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


# The callback type llama-cpp-python declares for llama_context_params.cb_eval.
CB = dict(llama_cpp.llama_context_params._fields_)["cb_eval"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--ids", required=True, help="comma-separated token ids (BOS included)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--then", default="",
                    help="comma-separated ids decoded one at a time after the batch; step k's "
                         "tensors go to OUT/step<k>")
    ap.add_argument("--no-repack", action="store_true",
                    help="keep weights in their GGUF block layout (llama-cli's --no-repack); "
                         "kvsieve replicates llama.cpp's default, which repacks Q4_K")
    args = ap.parse_args()
    if args.no_repack:
        disable_repack()
    ids = [int(x) for x in args.ids.split(",")]
    os.makedirs(args.out, exist_ok=True)
    seen = {}
    state = {"dir": args.out}

    def on_tensor(ptr, ask, _user):
        t = GgmlTensor.from_address(ptr if isinstance(ptr, int) else ctypes.cast(ptr, ctypes.c_void_p).value)
        if ask:
            return True  # every node's data
        name = t.name.decode(errors="replace")
        if t.type != 0 or not name or t.data is None:  # 0: GGML_TYPE_F32
            return True
        ne = list(t.ne)
        nb = list(t.nb)
        n = ne[0] * ne[1] * ne[2] * ne[3]
        span = sum((ne[i] - 1) * nb[i] for i in range(4)) + 4
        raw = (ctypes.c_char * span).from_address(t.data)
        arr = np.lib.stride_tricks.as_strided(
            np.frombuffer(raw, dtype=np.float32),
            shape=(ne[3], ne[2], ne[1], ne[0]),
            strides=(nb[3], nb[2], nb[1], nb[0]),
        )
        # [ne3, ne2, ne1, ne0] -> rows of ne0 * ne1 ... as kvsieve lays out [T, heads, dim]:
        # for 3-D per-head tensors (ne0 = head dim, ne1 = heads, ne2 = tokens) that is the
        # same row-major order.
        flat = np.ascontiguousarray(arr).reshape(-1)
        assert flat.size == n
        k = seen.get(name, 0)
        seen[name] = k + 1
        fname = name if k == 0 else f"{name}.{k}"
        flat.astype(np.float32).tofile(os.path.join(state["dir"], fname + ".f32"))
        with open(os.path.join(state["dir"], "shapes.txt"), "a") as f:
            f.write(f"{fname} {ne[0]} {ne[1]} {ne[2]} {ne[3]}\n")
        return True

    cb = CB(on_tensor)
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=max(64, len(ids) + 16),
                          n_batch=512, n_threads=args.threads, logits_all=True, verbose=False,
                          type_k=0, type_v=0, flash_attn=False)
    # cb_eval lives in the context params; Llama() has built the context, so make a second
    # one with the hook on the same model.
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = max(64, len(ids) + 16)
    cp.n_batch = 512
    cp.n_ubatch = 512
    cp.n_threads = args.threads
    cp.n_threads_batch = args.threads
    cp.type_k = 0
    cp.type_v = 0
    cp.flash_attn_type = 0  # disabled
    cp.cb_eval = cb
    cp.cb_eval_user_data = None
    ctx = llama_cpp.llama_init_from_model(llm.model, cp)
    batch = llama_cpp.llama_batch_init(len(ids), 0, 1)
    batch.n_tokens = len(ids)
    for i, tok in enumerate(ids):
        batch.token[i] = tok
        batch.pos[i] = i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = True
    rc = llama_cpp.llama_decode(ctx, batch)
    if rc != 0:
        raise SystemExit(f"llama_decode failed: {rc}")
    then = [int(x) for x in args.then.split(",") if x]
    for k, tok in enumerate(then, 1):
        state["dir"] = os.path.join(args.out, f"step{k}")
        os.makedirs(state["dir"], exist_ok=True)
        seen.clear()
        batch.n_tokens = 1
        batch.token[0] = tok
        batch.pos[0] = len(ids) + k - 1
        batch.n_seq_id[0] = 1
        batch.seq_id[0][0] = 0
        batch.logits[0] = True
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed on a decode step")
    print(f"wrote {sum(seen.values())} tensors to {args.out}")


if __name__ == "__main__":
    main()
