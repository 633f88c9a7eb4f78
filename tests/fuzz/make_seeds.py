#!/usr/bin/env python3
"""Writes the small committed seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/).
Deterministic; rerun after changing it: python3 tests/fuzz/make_seeds.py"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")

# ---- GGUF ---------------------------------------------------------------------------
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gval(t, v):
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gval(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def gguf(kvs, tensors, align=32):
    """kvs: [(key, type, value)], tensors: [(name, ggml_type, ne, bytes)]"""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        head += gstr(k) + struct.pack("<I", t) + gval(t, v)
    off = 0
    infos, data = b"", b""
    for name, gt, ne, raw in tensors:
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", gt, off)
        pad = (-len(raw)) % align
        data += raw + b"\0" * pad
        off += len(raw) + pad
    body = head + infos
    body += b"\0" * ((-len(body)) % align)
    return body + data


def f32s(n, scale=0.01):
    return b"".join(struct.pack("<f", ((i * 7) % 13 - 6) * scale) for i in range(n))


SPM_TOKENS = ["<unk>", "<s>", "</s>", "<0x0A>", "<0x20>", "\u2581", "\u2581a", "\u2581the", "a", "b",
              "c", "e", "h", "l", "o", "t", "\u2581h", "he", "ll", "llo", "<|im_start|>"]
SPM_TYPES = [2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3]


def spm_vocab_kvs():
    return [
        ("tokenizer.ggml.model", STR, "llama"),
        ("tokenizer.ggml.tokens", ARR, (STR, SPM_TOKENS)),
        ("tokenizer.ggml.scores", ARR, (F32, [-float(i) for i in range(len(SPM_TOKENS))])),
        ("tokenizer.ggml.token_type", ARR, (I32, SPM_TYPES)),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.unknown_token_id", U32, 0),
        ("tokenizer.ggml.add_bos_token", BOOL, True),
    ]


BPE_TOKENS = ["h", "e", "l", "o", "\u0120", "w", "r", "d", "he", "ll", "llo", "\u0120w", "hello",
              "<|endoftext|>"]
BPE_MERGES = ["h e", "l l", "ll o", "\u0120 w", "he llo"]


def bpe_vocab_kvs(pre="gpt-2"):
    return [
        ("tokenizer.ggml.model", STR, "gpt2"),
        ("tokenizer.ggml.pre", STR, pre),
        ("tokenizer.ggml.tokens", ARR, (STR, BPE_TOKENS)),
        ("tokenizer.ggml.token_type", ARR, (I32, [1] * (len(BPE_TOKENS) - 1) + [3])),
        ("tokenizer.ggml.merges", ARR, (STR, BPE_MERGES)),
        ("tokenizer.ggml.bos_token_id", U32, 13),
        ("tokenizer.ggml.eos_token_id", U32, 13),
    ]


def llama_model(arch="llama", vocab=None):
    n_embd, n_ff, n_head, n_kv, n_vocab = 4, 8, 2, 1, len(SPM_TOKENS)
    kvs = [("general.architecture", STR, arch), ("general.name", STR, "seed"),
           (f"{arch}.context_length", U32, 64), (f"{arch}.embedding_length", U32, n_embd),
           (f"{arch}.block_count", U32, 1), (f"{arch}.feed_forward_length", U32, n_ff),
           (f"{arch}.attention.head_count", U32, n_head),
           (f"{arch}.attention.head_count_kv", U32, n_kv),
           (f"{arch}.attention.layer_norm_rms_epsilon", F32, 1e-5),
           (f"{arch}.rope.freq_base", F32, 10000.0)]
    kvs += vocab if vocab is not None else spm_vocab_kvs()
    hd = n_embd // n_head
    t = [("token_embd.weight", 0, [n_embd, n_vocab], f32s(n_embd * n_vocab)),
         ("output_norm.weight", 0, [n_embd], f32s(n_embd)),
         ("blk.0.attn_norm.weight", 0, [n_embd], f32s(n_embd)),
         ("blk.0.attn_q.weight", 0, [n_embd, n_embd], f32s(n_embd * n_embd)),
         ("blk.0.attn_k.weight", 0, [n_embd, n_kv * hd], f32s(n_embd * n_kv * hd)),
         ("blk.0.attn_v.weight", 0, [n_embd, n_kv * hd], f32s(n_embd * n_kv * hd)),
         ("blk.0.attn_output.weight", 0, [n_embd, n_embd], f32s(n_embd * n_embd)),
         ("blk.0.ffn_norm.weight", 0, [n_embd], f32s(n_embd)),
         ("blk.0.ffn_gate.weight", 0, [n_embd, n_ff], f32s(n_embd * n_ff)),
         ("blk.0.ffn_up.weight", 0, [n_embd, n_ff], f32s(n_embd * n_ff)),
         ("blk.0.ffn_down.weight", 0, [n_ff, n_embd], f32s(n_embd * n_ff))]
    return gguf(kvs, t)


def all_types_gguf():
    kvs = [("general.architecture", STR, "llama"), ("u8", U8, 7), ("i8", I8, -7), ("u16", U16, 700),
           ("i16", I16, -700), ("u32", U32, 70000), ("i32", I32, -70000), ("f32", F32, 1.5),
           ("bool", BOOL, True), ("str", STR, "s\u00e9"), ("u64", U64, 1 << 40), ("i64", I64, -(1 << 40)),
           ("f64", F64, 2.25), ("arr.i32", ARR, (I32, [1, 2, 3])), ("arr.str", ARR, (STR, ["a", "bc"])),
           ("arr.arr", ARR, (ARR, [(U8, [1, 2])])), ("general.alignment", U32, 64)]
    q8 = struct.pack("<e", 0.5) + bytes(range(32))  # one Q8_0 block
    t = [("a.weight", 0, [4, 2], f32s(8)), ("b.weight", 8, [32], q8), ("c.weight", 1, [2], b"\0\x3c\0\x3c")]
    return gguf(kvs, t, align=64)


# ---- safetensors -----------------------------------------------------------------------
def safetensors(tensors, meta=None):
    """tensors: [(name, dtype, shape, raw)]"""
    header, off, data = {}, 0, b""
    if meta:
        header["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def hf_llama(model_type="llama", extra=None, qk_norm=False, tied=True):
    H, F, NH, NKV, V = 4, 8, 2, 1, 8
    hd = H // NH
    cfg = {"architectures": ["LlamaForCausalLM" if model_type == "llama" else
                             {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                              "gemma3_text": "Gemma3ForCausalLM"}[model_type]],
           "model_type": model_type, "hidden_size": H, "intermediate_size": F,
           "num_attention_heads": NH, "num_key_value_heads": NKV, "num_hidden_layers": 1,
           "vocab_size": V, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "max_position_embeddings": 64, "tie_word_embeddings": tied, "head_dim": hd}
    cfg.update(extra or {})
    p = "model.layers.0."
    t = [("model.embed_tokens.weight", "F32", [V, H], f32s(V * H)),
         ("model.norm.weight", "F32", [H], f32s(H)),
         (p + "input_layernorm.weight", "F32", [H], f32s(H)),
         (p + "post_attention_layernorm.weight", "BF16", [H], b"\x80\x3f" * H),
         (p + "self_attn.q_proj.weight", "F16", [NH * hd, H], b"\0\x3c" * (H * H)),
         (p + "self_attn.k_proj.weight", "F32", [NKV * hd, H], f32s(H * NKV * hd)),
         (p + "self_attn.v_proj.weight", "F32", [NKV * hd, H], f32s(H * NKV * hd)),
         (p + "self_attn.o_proj.weight", "F32", [H, NH * hd], f32s(H * H)),
         (p + "mlp.gate_proj.weight", "F32", [F, H], f32s(F * H)),
         (p + "mlp.up_proj.weight", "F32", [F, H], f32s(F * H)),
         (p + "mlp.down_proj.weight", "F32", [H, F], f32s(F * H))]
    if qk_norm:
        t += [(p + "self_attn.q_norm.weight", "F32", [hd], f32s(hd)),
              (p + "self_attn.k_norm.weight", "F32", [hd], f32s(hd))]
    if model_type == "qwen2":
        t += [(p + "self_attn.q_proj.bias", "F32", [NH * hd], f32s(NH * hd)),
              (p + "self_attn.k_proj.bias", "F32", [NKV * hd], f32s(NKV * hd)),
              (p + "self_attn.v_proj.bias", "F32", [NKV * hd], f32s(NKV * hd))]
    if model_type == "gemma3_text":
        t += [(p + "pre_feedforward_layernorm.weight", "F32", [H], f32s(H)),
              (p + "post_feedforward_layernorm.weight", "F32", [H], f32s(H))]
    c = json.dumps(cfg, separators=(",", ":")).encode()
    return struct.pack("<I", len(c)) + c + safetensors(t, {"format": "pt"})


# ---- tokenizer.json --------------------------------------------------------------------
def tokenizer_json(pre_split=True, post=True):
    vocab = {t: i for i, t in enumerate(BPE_TOKENS[:-1])}
    pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    if pre_split:
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+|\\s+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    j = {"version": "1.0", "truncation": None, "padding": None,
         "added_tokens": [{"id": 13, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                           "rstrip": False, "normalized": False, "special": True}],
         "normalizer": None, "pre_tokenizer": pre,
         "post_processor": ({"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}}],
                             "pair": [], "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [13], "tokens": ["<|endoftext|>"]}}}
                            if post else {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}),
         "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
         "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                   "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                   "ignore_merges": False, "vocab": vocab, "merges": BPE_MERGES[:3] + [["he", "llo"]]}}
    return json.dumps(j, ensure_ascii=False).encode()


def tokenizer_config():
    c = {"bos_token": "<|endoftext|>", "eos_token": {"content": "<|endoftext|>", "special": True},
         "add_bos_token": False, "clean_up_tokenization_spaces": True,
         "added_tokens_decoder": {"13": {"content": "<|endoftext|>", "special": True, "lstrip": False,
                                         "rstrip": False}},
         "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}
    return json.dumps(c).encode()


def lp(a, b):
    return struct.pack("<I", len(a)) + a + b


# ---- SentencePiece tokenizer.model (protobuf) -------------------------------------------
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wt, payload):
    key = varint((num << 3) | wt)
    if wt == 0:
        return key + varint(payload)
    if wt == 5:
        return key + struct.pack("<f", payload)
    return key + varint(len(payload)) + payload


def sp_model():
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    pieces += [(p, -float(i), 1) for i, p in enumerate(["\u2581", "\u2581a", "a", "b", "h", "e", "l", "o", "\u2581h", "he", "ll"])]
    m = b""
    for p, s, t in pieces:
        m += field(1, 2, field(1, 2, p.encode()) + field(2, 5, s) + field(3, 0, t))
    trainer = field(3, 0, 2) + field(4, 0, len(pieces)) + field(35, 0, 1)
    m += field(2, 2, trainer)
    norm = field(1, 2, b"identity") + field(3, 0, 1) + field(4, 0, 0) + field(5, 0, 1)
    m += field(3, 2, norm)
    return m


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    write("fuzz_gguf", "all_types.gguf", all_types_gguf())
    write("fuzz_gguf", "llama_spm.gguf", llama_model())
    write("fuzz_gguf", "qwen2_bpe.gguf", llama_model("qwen2", bpe_vocab_kvs("qwen2")))
    write("fuzz_gguf", "empty_v3.gguf", gguf([], []))

    write("fuzz_safetensors", "qwen2", hf_llama("qwen2", tied=False))
    write("fuzz_safetensors", "gemma3", hf_llama("gemma3_text", {"sliding_window": 4, "sliding_window_pattern": 2,
                                                                 "query_pre_attn_scalar": 4}, qk_norm=True))
    write("fuzz_safetensors", "llama3_rope", hf_llama("llama", {"rope_scaling": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32}}))

    write("fuzz_tokenizer_json", "bpe_split", lp(tokenizer_config(), tokenizer_json()))
    write("fuzz_tokenizer_json", "bpe_bytelevel", lp(b"{}", tokenizer_json(pre_split=False, post=False)))
    write("fuzz_tokenizer_json", "no_config", struct.pack("<I", 0xFFFFFFFF) + tokenizer_json())

    write("fuzz_spm_vocab", "sp_model", b"\x01" + sp_model() + b"\xff\x00 hello a\xc3\xa9 <s>")
    write("fuzz_spm_vocab", "gguf_a", b"\x00" + bytes(range(256)) + b"hello world")
    write("fuzz_spm_vocab", "gguf_b", b"\x00" + b"\xff" * 64 + "\u2581he llo".encode() * 8 + bytes(range(64)))
    write("fuzz_spm_vocab", "gguf_c", b"\x00" + b"\x01\x80" * 40 + b"ab ab cd\n")

    texts = [b"Hello world! It's 2024.", "caf\u00e9 \u4f60\u597d \U0001F600 \u2581x".encode(),
             b"<|im_start|>user\nhi<|im_end|>\n<s> </s>", b"  multiple   spaces\t\ttabs\n\n",
             b"bad \xff\xfe utf8 \xc3", b"\xe2\x82"]
    for i, t in enumerate(texts):
        write("fuzz_tokenize", f"text{i}", bytes([(i * 9) & 0x3F]) + t)
    write("fuzz_tokenize", "ids", bytes([0x40 | 0x20]) + bytes(range(0, 200, 3)))

    # Cache plans: the shipped ones (configs/cache/*.json) plus plans that reach every part of
    # the schema (overrides, allocators, storage types, compression times, positions).
    cfg = os.path.join(HERE, "..", "..", "configs", "cache")
    for f in sorted(os.listdir(cfg)):
        if f.endswith(".json"):
            with open(os.path.join(cfg, f), "rb") as fh:
                write("fuzz_cache_plan", "shipped_" + f[:-5], fh.read())
    plans = {
        "minimal": {"policy": "knorm", "budget": 0.5},
        "overrides": {"policy": "snapkv", "params": {"window": 8, "kernel": 3}, "budget": 24,
                      "sinks": 2, "recent": 4, "layers": {"0-1": "full", "3": {"policy": "h2o"}},
                      "heads": {"2:1": "knorm"}, "compress": "chunk"},
        "pyramid": {"policy": "snapkv", "budget": 0.4, "allocator": "pyramid",
                    "allocator_params": {"beta": 10}, "recent": 8},
        "adaptive_q8": {"policy": "tova", "budget": 20, "allocator": "adaptive",
                        "allocator_params": {"floor": 0.3}, "storage": "q8",
                        "compress": {"when": "decode", "every": 3}},
        "streaming_cache_q4": {"policy": "streaming", "budget": 32, "positions": "cache",
                               "compress": "overflow", "storage": "q4", "margin": 4},
        "lagkv_f16": {"policy": "lagkv", "params": {"lag_size": 8}, "budget": 0.3, "sinks": 4,
                      "storage": {"k": "f16", "v": "bf16"}},
        "expected_attention": {"policy": "expected_attention", "params": {"n_future_positions": 64},
                               "budget": 16, "sinks": 4},
        "mixed": {"policy": "random", "seed": 7, "budget": 0.25,
                  "layers": {"1-2": {"policy": "caote", "params": {"base": "window", "window": 8}}},
                  "heads": {"0:0": {"policy": "vatp"}, "3:1": "keydiff"}},
    }
    for name, plan in plans.items():
        write("fuzz_cache_plan", name, json.dumps(plan).encode())


if __name__ == "__main__":
    main()
