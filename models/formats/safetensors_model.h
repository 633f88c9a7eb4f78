#pragma once
// An HF model directory (config.json + model.safetensors, or shards listed in
// model.safetensors.index.json) exposed as a WeightSource in GGUF conventions.
//
// Contracts with the rest of kvsieve, so that a model reads identically from GGUF or HF:
// - llama from HF keeps HF's Q/K row order (no permutation) and sets the metadata key
//   `kvsieve.rope_neox = true`: the runtime must then rotate with NEOX (rotate_half) RoPE,
//   which is equivalent to interleaved RoPE on the permuted GGUF rows.
// - gemma3 RMSNorm weights (GGUF names ending in "norm.weight") are exposed as 1+w in F32,
//   as the GGUF converter stores them; their TensorInfo has an empty `file` (owned buffer).
// - Llama-3 "llama3" rope scaling becomes a generated F32 `rope_freqs.weight`, as in GGUF.
// - Tied embeddings: no `output.weight`.
// - Gemma3 sliding-window layout: `gemma3.attention.sliding_window_pattern` is a u32 when
//   the layers follow the periodic pattern (il % p < p-1 is local), else a bool array
//   (true = sliding-window layer), as llama.cpp reads it.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/formats/weight_source.h"

namespace kvs {

// `path` is an HF directory or a .safetensors file inside one (then the directory's
// config.json, and its index when the file is one shard). Throws kvs::Error naming the file
// and the key/tensor on any problem.
std::unique_ptr<WeightSource> open_safetensors_model(const std::string& path);

// The `rope_freqs` divisors ([head_dim/2]) that the GGUF converter generates for HF
// rope_scaling {"rope_type": "llama3", ...}; float32 math like the converter.
std::vector<float> llama3_rope_freqs(double theta, int64_t head_dim, double factor,
                                     double low_freq_factor, double high_freq_factor,
                                     double original_context);

}  // namespace kvs
