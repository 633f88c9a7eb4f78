#pragma once
// CachePlan: a JSON description of how the KV cache is managed (schema and defaults in
// docs/cache-plans.md). The smallest plan is {"policy": "knorm", "budget": 0.5}.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/core/dtype.h"

namespace kvs {

struct Budget {
  bool is_fraction = true;  // fraction of the tokens seen so far, else a token count
  double value = 1.0;
  // Slots for a head that has seen n tokens (at least 1).
  int64_t tokens(int64_t n_seen) const;
};

// Settings of one (layer, KV head) after defaults and overrides.
struct HeadPlan {
  std::string policy = "full";
  nlohmann::json params = nlohmann::json::object();
  Budget budget;
  int32_t sinks = 0;   // the first `sinks` positions are always kept
  int32_t recent = 0;  // the last `recent` positions are always kept
};

enum class CompressWhen {
  Prefill,   // after each multi-token evaluation (the prompt, each chat turn)
  Chunk,     // after every prefill chunk (bounded memory on long prompts)
  Decode,    // after the prompt and then every `every` decode steps
  Overflow,  // whenever a head would grow past its budget plus the margin
};

struct CachePlan {
  std::string source;   // file or "inline", for messages
  nlohmann::json json;  // the plan as given (recorded with results)
  HeadPlan defaults;
  // Overrides, applied in order: layer ranges then single heads.
  struct LayerOverride {
    int first = 0, last = 0;
    nlohmann::json value;  // policy name string or object
    std::string where;
  };
  struct HeadOverride {
    int layer = 0, head = 0;
    nlohmann::json value;
    std::string where;
  };
  std::vector<LayerOverride> layer_overrides;
  std::vector<HeadOverride> head_overrides;
  std::string allocator = "uniform";  // uniform, pyramid, adaptive, profile
  nlohmann::json allocator_params = nlohmann::json::object();
  CompressWhen when = CompressWhen::Prefill;
  int32_t every = 1;             // decode steps between compressions (CompressWhen::Decode)
  int32_t margin = 16;           // free slots kept per head after compaction
  bool cache_positions = false;  // "positions": "cache": keys stored before RoPE
  DType k_dtype = DType::F32;
  DType v_dtype = DType::F32;
  std::string head_profile;           // DuoAttention-style TSV path
  double retrieval_threshold = -1.0;  // profile value above which a head retrieves
  double retrieval_fraction = -1.0;   // or: this fraction of heads with the highest values
  std::string calibration;            // per-(layer, KV head) vectors (qfilter), .json or binary
  uint64_t seed = 0;
};

// Throws kvs::Error naming the source and the key for anything malformed or unknown.
CachePlan parse_cache_plan(const nlohmann::json& j, const std::string& source);
// A path to a JSON file, or a name of a shipped plan in <config dir>/cache/NAME.json.
CachePlan load_cache_plan(const std::string& name_or_path);

// Per-(layer, KV head) vectors computed offline (Q-Filters directions), named by the plan key
// "calibration" and written by `kvsieve calibrate-qfilter`. A path ending in .json holds
// {"n_layer", "n_head_kv", "head_dim", "filters": [layer][head][dim]}; any other path the binary
// form: "KVSCAL01", then n_layer, n_head_kv, head_dim as int32 LE, then the f32 LE values.
struct Calibration {
  int n_layer = 0, n_head_kv = 0, head_dim = 0;
  std::vector<float> data;  // [n_layer][n_head_kv][head_dim]
  const float* at(int layer, int head) const {
    return data.data() + (static_cast<size_t>(layer) * n_head_kv + head) * head_dim;
  }
};
// Throws kvs::Error naming the file for anything malformed.
Calibration load_calibration(const std::string& path);
void save_calibration(const Calibration& c, const std::string& path);  // atomic write

// The plan of every (layer, KV head) of a model; validates indices against the shape.
struct ResolvedPlan {
  int n_layer = 0, n_head_kv = 0;
  std::vector<HeadPlan> heads;          // [n_layer * n_head_kv]
  std::vector<DType> k_dtype, v_dtype;  // [n_layer]
  const HeadPlan& at(int layer, int head) const {
    return heads[static_cast<size_t>(layer) * n_head_kv + head];
  }
};
ResolvedPlan resolve_cache_plan(const CachePlan& plan, int n_layer, int n_head_kv, int head_dim_k,
                                int head_dim_v);

}  // namespace kvs
