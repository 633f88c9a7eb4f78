#!/usr/bin/env python3
"""Generate reference fixtures for kvsieve's block (de)quantizers from gguf-py.

Usage:
    /root/.cache/kvs-refenv/bin/python tools/gen_quant_fixtures.py [OUT_DIR]

OUT_DIR defaults to tests/fixtures/quant next to this script's repository root. Needs numpy
and the PyPI `gguf` package (gguf-py, the reference Python implementation maintained with
llama.cpp); any venv with `pip install numpy gguf` works. The output is deterministic (fixed
seeds), so rerunning it must leave the committed fixtures unchanged.

For every type T of F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K:
    T.bin  raw block bytes: random bytes with valid (finite) fp16/f32 scales, so every bit
           pattern of the quant fields is exercised
    T.f32  gguf-py's dequantization of T.bin (little-endian float32)
For the types kvsieve can quantize (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_K) also:
    T.in   the float32 input: a seeded normal vector plus edge-case blocks (all zero,
           constant, a +x/-x tie for the absolute maximum) and, for F16/BF16, rounding ties,
           subnormals, overflow, infinities and NaN
    T.q    gguf-py's quantization of T.in

gguf-py has no Q8_K (ggml uses it only for activations); its dequantization (d * q) and
its quantization are written here with numpy, transcribing ggml's quantize_row_q8_K_ref
(iscale = -127/max, round half to even, clamp at 127, d = 1/iscale).
"""

import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import quants

QK = 32
QK_K = 256

# type name -> (ggml type, elements per block, bytes per block, offsets of the f16 scales)
TYPES = {
    "F32": (QT.F32, 1, 4, []),
    "F16": (QT.F16, 1, 2, []),
    "BF16": (QT.BF16, 1, 2, []),
    "Q4_0": (QT.Q4_0, QK, 18, [0]),
    "Q4_1": (QT.Q4_1, QK, 20, [0, 2]),
    "Q5_0": (QT.Q5_0, QK, 22, [0]),
    "Q5_1": (QT.Q5_1, QK, 24, [0, 2]),
    "Q8_0": (QT.Q8_0, QK, 34, [0]),
    "Q2_K": (QT.Q2_K, QK_K, 84, [80, 82]),
    "Q3_K": (QT.Q3_K, QK_K, 110, [108]),
    "Q4_K": (QT.Q4_K, QK_K, 144, [0, 2]),
    "Q5_K": (QT.Q5_K, QK_K, 176, [0, 2]),
    "Q6_K": (QT.Q6_K, QK_K, 210, [208]),
    "Q8_K": (QT.Q8_K, QK_K, 292, []),  # f32 scale at 0, handled below
}
QUANTIZABLE = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_K"]


def random_blocks(name: str, rng: np.random.Generator) -> np.ndarray:
    qtype, blck, size, scale_offsets = TYPES[name]
    if name == "F32":
        return rng.standard_normal(64, dtype=np.float32).view(np.uint8)
    if name == "F16":
        h = rng.integers(0, 1 << 16, size=256, dtype=np.uint16)
        h = np.where((h & 0x7C00) == 0x7C00, h & 0x83FF, h)  # no inf/NaN: fold into finite
        h[:4] = [0x0000, 0x8000, 0x0001, 0x03FF]  # zeros and subnormal extremes
        return h.astype("<u2").view(np.uint8)
    if name == "BF16":
        h = rng.integers(0, 1 << 16, size=256, dtype=np.uint16)
        h = np.where((h & 0x7F80) == 0x7F80, h & 0x807F, h)
        h[:3] = [0x0000, 0x8000, 0x0001]
        return h.astype("<u2").view(np.uint8)
    n_blocks = 2 if blck == QK_K else 8
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in scale_offsets:
        # |scale| in [2^-10, 2): finite normal halves of either sign.
        s = (rng.uniform(2.0 ** -10, 2.0, size=n_blocks) * rng.choice([-1.0, 1.0], size=n_blocks))
        raw[:, off:off + 2] = s.astype("<f2").view(np.uint8).reshape(n_blocks, 2)
    if name == "Q8_K":
        d = rng.uniform(1e-4, 1e-2, size=n_blocks).astype("<f4")
        raw[:, 0:4] = d.view(np.uint8).reshape(n_blocks, 4)
    return raw.reshape(-1)


def dequantize(name: str, raw: np.ndarray) -> np.ndarray:
    if name == "BF16":
        return quants.dequantize(raw, QT.BF16).astype(np.float32)
    if name == "Q8_K":
        blocks = raw.reshape(-1, 292)
        d = blocks[:, 0:4].copy().view("<f4")
        q = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
        return (d * q).reshape(-1).astype(np.float32)
    return np.asarray(quants.dequantize(raw, TYPES[name][0]), dtype=np.float32).reshape(-1)


def make_input(name: str, rng: np.random.Generator) -> np.ndarray:
    blck = TYPES[name][1]
    blk = QK_K if blck == QK_K else QK
    n_blocks = 3 if blck == QK_K else 8
    x = (rng.standard_normal(n_blocks * blk) * 0.05).astype(np.float32)
    x[blk:2 * blk] = 0.0                     # all zero: the d == 0 path
    if n_blocks > 3:
        x[2 * blk:3 * blk] = np.float32(0.7)  # constant: max == min
        x[3 * blk + 5] = np.float32(0.25)     # +x/-x tie: the first one wins
        x[3 * blk + 9] = np.float32(-0.25)
    # A block whose scale comes out exactly 1, filled with exact halves: it pins the rounding
    # rule of each quantizer (truncation after +0.5, roundf, round-half-even).
    exact = {"Q4_0": (-8.0, 8), "Q5_0": (-16.0, 16), "Q8_0": (127.0, 16), "Q8_K": (-127.0, 100),
             "Q4_1": (15.0, 0), "Q5_1": (31.0, 0)}
    if name in exact:
        top, span = exact[name]
        b = 4 if blk == QK else 2
        if name in ("Q4_1", "Q5_1"):  # min 0, max top: d = 1
            halves = np.arange(blk, dtype=np.float32) % top + 0.5
            halves[1] = 0.0
        else:  # signed absmax top: d = +-1
            halves = np.arange(blk, dtype=np.float32) % (2 * span) - span + 0.5
        halves[0] = top
        x[b * blk:(b + 1) * blk] = halves
    if name in ("F16", "BF16"):
        ties16 = [1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 2.0 ** -25, 3 * 2.0 ** -25, 2.0 ** -24,
                  65504.0, 65520.0, 70000.0, 1e-9, 6.1e-5]
        ties_bf = [1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 3.0e38, 3.4028235e38, 1e-40]
        specials = ties16 + ties_bf + [-0.0, np.inf, -np.inf, np.nan, -1 - 2.0 ** -11]
        x[:len(specials)] = np.array(specials, dtype=np.float32)
    return x


def quantize(name: str, x: np.ndarray) -> np.ndarray:
    if name == "F32":
        return x.astype("<f4").view(np.uint8)
    if name == "F16":
        return x.astype("<f2").view(np.uint8)
    if name == "Q8_K":
        return quantize_q8_k(x)
    return np.asarray(quants.quantize(x, TYPES[name][0]), dtype=np.uint8).reshape(-1)


def quantize_q8_k(x: np.ndarray) -> np.ndarray:
    out = []
    for b in x.reshape(-1, QK_K):
        amax = np.float32(0)
        mx = np.float32(0)
        for v in b:  # the first value of largest magnitude, as ggml's strict '>' keeps it
            if abs(v) > amax:
                amax, mx = abs(v), v
        qs = np.zeros(QK_K, dtype=np.int8)
        bsums = np.zeros(16, dtype="<i2")
        d = np.float32(0)
        if amax != 0:
            iscale = np.float32(-127.0) / mx
            q = np.rint(iscale * b).astype(np.int32)  # float32 product, half to even
            qs = np.minimum(127, q).astype(np.int8)
            bsums = qs.astype(np.int32).reshape(16, 16).sum(axis=1).astype("<i2")
            d = np.float32(1) / iscale
        out.append(np.concatenate([np.array([d], dtype="<f4").view(np.uint8),
                                   qs.view(np.uint8), bsums.view(np.uint8)]))
    return np.concatenate(out)


def main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "quant")
    os.makedirs(out_dir, exist_ok=True)
    for i, name in enumerate(TYPES):
        rng = np.random.default_rng(1234 + i)
        raw = random_blocks(name, rng)
        ref = dequantize(name, raw)
        assert ref.dtype == np.float32 and ref.size * TYPES[name][2] == raw.size * TYPES[name][1]
        raw.tofile(os.path.join(out_dir, name + ".bin"))
        ref.astype("<f4").tofile(os.path.join(out_dir, name + ".f32"))
        if name in QUANTIZABLE:
            x = make_input(name, rng)
            with np.errstate(over="ignore", invalid="ignore"):
                q = quantize(name, x)
            x.astype("<f4").tofile(os.path.join(out_dir, name + ".in"))
            q.tofile(os.path.join(out_dir, name + ".q"))
    print("wrote fixtures for", ", ".join(TYPES), "to", out_dir)


if __name__ == "__main__":
    main()
