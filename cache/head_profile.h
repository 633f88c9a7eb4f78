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
// with the highest values (ties broken by lower layer, then lower head).
std::vector<bool> retrieval_heads(const HeadProfile& p, double threshold, double fraction);

}  // namespace kvs
