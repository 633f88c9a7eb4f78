#pragma once
// Head probes: the pure scoring behind `kvsieve profile-heads` (docs/head-profiling.md), kept
// free of models so that tests can feed them hand-made attention. A probe turns attention
// rows (one query head's probabilities over key positions) into per-head statistics, reduces
// the query heads of a GQA group to their KV head, and normalizes the result into a
// DuoAttention-style head profile (cache/head_profile.h).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cache/head_profile.h"

namespace kvs {

// Attention probabilities of one query head over one KV head's slots, as the reference
// backend computes them: softmax over the visible slots of softcap(q·k·scale), a slot being
// visible when pos <= q_pos and, with a window, q_pos - pos < window. q: [head_dim],
// k: [n][head_dim], pos: [n], out: [n] (0 for slots the query cannot see).
void attention_probs(const float* q, const float* k, const int32_t* pos, int32_t n, int head_dim,
                     float scale, float softcap, int window, int32_t q_pos, std::span<float> out);

// The mass a query at q_pos puts on copies of its own token (echo) and on the tokens that
// followed earlier copies of it (induction), RazorAttention's two retrieval signals. row:
// [q_pos + 1] attention over positions 0..q_pos; tokens: [> q_pos] the evaluated sequence.
// Only earlier positions count: the query's own slot is neither an earlier copy nor a
// follower.
struct CopyMass {
  double echo = 0.0;
  double induction = 0.0;
};
CopyMass copy_mass(std::span<const float> row, std::span<const int32_t> tokens, int64_t q_pos);

// Attention mass of a row on positions [begin, end) (the needle's value tokens).
double span_mass(std::span<const float> row, int64_t begin, int64_t end);

// Running mean of one statistic per (layer, query head).
class HeadMeans {
 public:
  HeadMeans(int n_layer, int n_head);
  // Safe from several threads as long as each writes different (layer, head) pairs.
  void add(int layer, int head, double value);
  int n_layer() const { return n_layer_; }
  int n_head() const { return n_head_; }
  std::vector<double> means() const;  // [n_layer][n_head], 0 where nothing was added
  int64_t count(int layer, int head) const {
    return count_[static_cast<size_t>(layer) * n_head_ + head];
  }

 private:
  int n_layer_, n_head_;
  std::vector<double> sum_;     // [n_layer][n_head]
  std::vector<int64_t> count_;  // [n_layer][n_head]
};

// GQA: a KV head scores as the best query head of its group (query heads h*g .. h*g+g-1 share
// KV head h, g = n_head / n_head_kv). per_query: [n_layer][n_head]; returns
// [n_layer][n_head_kv].
std::vector<double> max_over_groups(std::span<const double> per_query, int n_layer, int n_head,
                                    int n_head_kv);

// How raw scores become values in [0, 1]: divided by the largest score of the whole model
// (comparable across layers, so a fraction of heads picks the strongest anywhere) or of each
// layer (every layer's best head becomes 1).
enum class Normalize { Model, Layer };
// Throws kvs::Error for anything but "model" or "layer".
Normalize parse_normalize(const std::string& s);
const char* normalize_name(Normalize n);

// values: [n_layer][n_head_kv], non-negative. A layer (or model) whose scores are all 0
// stays 0.
HeadProfile normalized_profile(std::span<const double> values, int n_layer, int n_head_kv,
                               Normalize how);
// RazorAttention's two signals in one value: max(echo, induction), normalized as `how` says.
// Both are fractions of a query's attention mass, so they compare as they are; normalizing
// each by its own maximum first would lift the best of a weak signal (a head that spreads
// attention evenly still echoes a little) to 1. echo, induction: [n_layer][n_head_kv].
HeadProfile razor_profile(std::span<const double> echo, std::span<const double> induction,
                          int n_layer, int n_head_kv, Normalize how);
// Values uniform in [0, 1) from a seed (SplitMix64, the same on every platform): the
// "randomly chosen heads" baseline.
HeadProfile random_profile(int n_layer, int n_head_kv, uint64_t seed);

struct RankedHead {
  int layer = 0;
  int head = 0;
  double value = 0.0;
};
// Every head, highest value first; ties by lower layer, then lower head (the order
// retrieval_heads() selects in).
std::vector<RankedHead> rank_heads(const HeadProfile& p);

// RazorAttention's probe input: `repeats` copies of one segment of `segment` tokens drawn
// uniformly (with replacement) from `vocab`, seeded. Returns [segment * repeats].
std::vector<int32_t> repeated_random_tokens(std::span<const int32_t> vocab, int segment,
                                            int repeats, uint64_t seed);

}  // namespace kvs
