#include "engine/head_probe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/core/error.h"
#include "kernels/cpu/ops.h"

namespace kvs {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// [0, 1) with 53 random bits: std::uniform_real_distribution is not specified bit for bit.
double unit_double(uint64_t& state) {
  return static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
}

}  // namespace

void attention_probs(const float* q, const float* k, const int32_t* pos, int32_t n, int head_dim,
                     float scale, float softcap, int window, int32_t q_pos, std::span<float> out) {
  KVS_CHECK(static_cast<int64_t>(out.size()) >= n, "attention_probs: output row too short");
  // Scores in double: the probe sums tiny probabilities, and correctness beats speed here.
  std::vector<double> s(static_cast<size_t>(n));  // [n]
  double mx = -INFINITY;
  for (int32_t j = 0; j < n; ++j) {
    const bool visible = pos[j] <= q_pos && (window <= 0 || q_pos - pos[j] < window);
    if (!visible) {
      s[j] = -INFINITY;
      continue;
    }
    double sc =
        static_cast<double>(ops::dot_f32(q, k + static_cast<size_t>(j) * head_dim, head_dim)) *
        scale;
    if (softcap > 0.0f) sc = softcap * std::tanh(sc / softcap);
    s[j] = sc;
    mx = std::max(mx, sc);
  }
  if (mx == -INFINITY) {
    std::fill(out.begin(), out.begin() + n, 0.0f);
    return;
  }
  double sum = 0.0;
  for (int32_t j = 0; j < n; ++j) {
    s[j] = s[j] == -INFINITY ? 0.0 : std::exp(s[j] - mx);
    sum += s[j];
  }
  for (int32_t j = 0; j < n; ++j) out[j] = static_cast<float>(s[j] / sum);
}

CopyMass copy_mass(std::span<const float> row, std::span<const int32_t> tokens, int64_t q_pos) {
  KVS_CHECK(q_pos >= 0 && static_cast<int64_t>(row.size()) > q_pos &&
                static_cast<int64_t>(tokens.size()) > q_pos,
            "copy_mass: row or tokens shorter than the query position");
  const int32_t x = tokens[q_pos];
  CopyMass m;
  for (int64_t j = 0; j < q_pos; ++j) {
    if (tokens[j] == x) m.echo += row[j];
    // j follows an earlier copy at j - 1; j < q_pos keeps the query's own slot out.
    if (j >= 1 && tokens[j - 1] == x) m.induction += row[j];
  }
  return m;
}

double span_mass(std::span<const float> row, int64_t begin, int64_t end) {
  begin = std::max<int64_t>(begin, 0);
  end = std::min<int64_t>(end, static_cast<int64_t>(row.size()));
  double m = 0.0;
  for (int64_t j = begin; j < end; ++j) m += row[j];
  return m;
}

HeadMeans::HeadMeans(int n_layer, int n_head)
    : n_layer_(n_layer),
      n_head_(n_head),
      sum_(static_cast<size_t>(n_layer) * n_head, 0.0),
      count_(static_cast<size_t>(n_layer) * n_head, 0) {}

void HeadMeans::add(int layer, int head, double value) {
  KVS_CHECK(layer >= 0 && layer < n_layer_ && head >= 0 && head < n_head_, "HeadMeans index");
  const size_t i = static_cast<size_t>(layer) * n_head_ + head;
  sum_[i] += value;
  ++count_[i];
}

std::vector<double> HeadMeans::means() const {
  std::vector<double> m(sum_.size(), 0.0);  // [n_layer][n_head]
  for (size_t i = 0; i < m.size(); ++i)
    if (count_[i] > 0) m[i] = sum_[i] / static_cast<double>(count_[i]);
  return m;
}

std::vector<double> max_over_groups(std::span<const double> per_query, int n_layer, int n_head,
                                    int n_head_kv) {
  KVS_CHECK(n_head_kv > 0 && n_head % n_head_kv == 0, "max_over_groups: head counts");
  KVS_CHECK(per_query.size() == static_cast<size_t>(n_layer) * n_head, "max_over_groups: size");
  const int group = n_head / n_head_kv;
  std::vector<double> out(static_cast<size_t>(n_layer) * n_head_kv, 0.0);  // [n_layer][n_head_kv]
  for (int l = 0; l < n_layer; ++l)
    for (int h = 0; h < n_head_kv; ++h) {
      double m = 0.0;
      for (int g = 0; g < group; ++g)
        m = std::max(m, per_query[static_cast<size_t>(l) * n_head + h * group + g]);
      out[static_cast<size_t>(l) * n_head_kv + h] = m;
    }
  return out;
}

Normalize parse_normalize(const std::string& s) {
  if (s == "model") return Normalize::Model;
  if (s == "layer") return Normalize::Layer;
  throw Error("normalization '" + s + "' is not one of model, layer");
}

const char* normalize_name(Normalize n) {
  return n == Normalize::Model ? "model" : "layer";
}

namespace {

// [n_layer][n_head_kv] scaled into [0, 1] by the model's or each layer's maximum.
std::vector<double> normalized(std::span<const double> v, int n_layer, int n_head_kv,
                               Normalize how) {
  KVS_CHECK(v.size() == static_cast<size_t>(n_layer) * n_head_kv, "profile values size");
  std::vector<double> out(v.begin(), v.end());  // [n_layer][n_head_kv]
  auto scale = [&](size_t begin, size_t end) {
    double mx = 0.0;
    for (size_t i = begin; i < end; ++i) mx = std::max(mx, out[i]);
    for (size_t i = begin; i < end; ++i)
      out[i] = mx > 0.0 ? std::clamp(out[i] / mx, 0.0, 1.0) : 0.0;
  };
  if (how == Normalize::Model) {
    scale(0, out.size());
  } else {
    for (int l = 0; l < n_layer; ++l)
      scale(static_cast<size_t>(l) * n_head_kv, static_cast<size_t>(l + 1) * n_head_kv);
  }
  return out;
}

}  // namespace

HeadProfile normalized_profile(std::span<const double> values, int n_layer, int n_head_kv,
                               Normalize how) {
  HeadProfile p;
  p.n_layer = n_layer;
  p.n_head_kv = n_head_kv;
  p.values = normalized(values, n_layer, n_head_kv, how);
  return p;
}

HeadProfile razor_profile(std::span<const double> echo, std::span<const double> induction,
                          int n_layer, int n_head_kv, Normalize how) {
  KVS_CHECK(echo.size() == induction.size(), "razor_profile: sizes");
  std::vector<double> v(echo.size());  // [n_layer][n_head_kv]
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::max(echo[i], induction[i]);
  return normalized_profile(v, n_layer, n_head_kv, how);
}

HeadProfile random_profile(int n_layer, int n_head_kv, uint64_t seed) {
  HeadProfile p;
  p.n_layer = n_layer;
  p.n_head_kv = n_head_kv;
  p.values.resize(static_cast<size_t>(n_layer) * n_head_kv);
  uint64_t state = seed;
  for (double& v : p.values) v = unit_double(state);
  return p;
}

std::vector<RankedHead> rank_heads(const HeadProfile& p) {
  std::vector<size_t> idx(p.values.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](size_t a, size_t b) { return p.values[a] > p.values[b]; });
  std::vector<RankedHead> out;
  out.reserve(idx.size());
  for (size_t i : idx)
    out.push_back(
        {static_cast<int>(i / p.n_head_kv), static_cast<int>(i % p.n_head_kv), p.values[i]});
  return out;
}

std::vector<int32_t> repeated_random_tokens(std::span<const int32_t> vocab, int segment,
                                            int repeats, uint64_t seed) {
  KVS_CHECK(!vocab.empty() && segment > 0 && repeats > 0, "repeated_random_tokens arguments");
  uint64_t state = seed;
  std::vector<int32_t> seg(static_cast<size_t>(segment));  // [segment]
  for (int32_t& t : seg) {
    // The product can round up to size() itself for sizes that are not powers of two.
    const auto i = static_cast<size_t>(unit_double(state) * static_cast<double>(vocab.size()));
    t = vocab[std::min(i, vocab.size() - 1)];
  }
  std::vector<int32_t> out;  // [segment * repeats]
  out.reserve(seg.size() * repeats);
  for (int r = 0; r < repeats; ++r) out.insert(out.end(), seg.begin(), seg.end());
  return out;
}

}  // namespace kvs
