#pragma once
// Head profiles (DuoAttention-compatible TSV): one row per layer, one tab-separated value in
// [0, 1] per KV head; high values mark retrieval heads.
#include <string>
#include <vector>

namespace kvs {

struct HeadProfile {
  int n_layer = 0;
  int n_head_kv = 0;
  std::vector<double> values;  // [n_layer * n_head_kv]
  double at(int layer, int head) const {
    return values[static_cast<size_t>(layer) * n_head_kv + head];
  }
};

// Throws kvs::Error naming the file, line and column on malformed input.
HeadProfile load_head_profile(const std::string& path);
void save_head_profile(const HeadProfile& p, const std::string& path);  // atomic write
// Marks retrieval heads: value >= threshold when threshold >= 0, else the `fraction` of heads
// with the highest values (ties broken by lower layer, then lower head). `eligible` (one entry
// per head, empty = all) restricts both rules to the heads a plan can compress: a fraction of
// Gemma 3's heads must not be spent on sliding-window layers, which always keep their window.
std::vector<bool> retrieval_heads(const HeadProfile& p, double threshold, double fraction,
                                  const std::vector<bool>& eligible = {});
// The heads a plan compresses: every head of the layers that are not sliding-window layers.
std::vector<bool> compressible_heads(const std::vector<bool>& layer_is_swa, int n_head_kv);

}  // namespace kvs
