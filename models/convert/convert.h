#pragma once
// GGUF -> HF directory (config.json, generation_config.json, model.safetensors, tokenizer
// files) that transformers can load, and that open_safetensors_model() reads back as the
// same model: the llama Q/K row permutation and gemma3's 1+w norms are undone here and
// redone (or made equivalent) by the reader.
#include <cstddef>
#include <functional>
#include <string>

#include "kernels/core/dtype.h"

namespace kvs {

class WeightSource;

struct ConvertOptions {
  // Overwrite a non-empty output directory that is not a previous conversion.
  bool force = false;
  // Called after each tensor is written: (tensors done, tensors total, GGUF name).
  std::function<void(size_t, size_t, const std::string&)> progress;
};

// out_dtype is F32, F16 or BF16; every tensor is dequantized to F32 and cast to it. Every
// file is written atomically. Throws kvs::Error naming the file (and key/tensor) on bad input
// or an unsupported model, and when out_dir is non-empty and not a previous output unless
// opts.force.
void convert_gguf_to_hf(const std::string& gguf_path, const std::string& out_dir, DType out_dtype,
                        const ConvertOptions& opts = {});

// F32 when every tensor is F32, F16 when all are F16/F32, otherwise BF16 (the usual HF dtype
// for quantized or BF16 sources).
DType default_hf_dtype(const WeightSource& gguf);

// True when `dir` holds a previous convert_gguf_to_hf output (its model.safetensors says so
// in __metadata__), which may be overwritten without --force.
bool is_previous_convert_output(const std::string& dir);

}  // namespace kvs
