#include "cache/manager.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cache/head_profile.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

using clock_type = std::chrono::steady_clock;

// Budgets of one layer's heads under the plan's allocator (before protection is applied).
std::vector<int64_t> layer_budgets(const CachePlan& plan, const ResolvedPlan& rp, int layer,
                                   int n_layer, int64_t n_seen) {
  std::vector<int64_t> b(rp.n_head_kv);
  for (int h = 0; h < rp.n_head_kv; ++h) b[h] = rp.at(layer, h).budget.tokens(n_seen);
  if (plan.allocator == "pyramid" && n_layer > 1) {
    // PyramidKV: with average budget B and protected window w, layer l of L gets
    // max - l (max - min) / (L - 1) + w, min = (B - w) / beta, max = 2 (B - w) - min.
    const double beta = plan.allocator_params.value("beta", 20.0);
    for (int h = 0; h < rp.n_head_kv; ++h) {
      const double w = rp.at(layer, h).recent;
      const double avg = std::max(0.0, static_cast<double>(b[h]) - w);
      const double mn = avg / beta, mx = 2.0 * avg - mn;
      b[h] = static_cast<int64_t>(std::llround(mx - layer * (mx - mn) / (n_layer - 1) + w));
    }
  }
  return b;
}

// Causal softmax attention of `queries` against `keys`, averaged over queries and the
// group's query heads: the window statistic (SnapKV) and, with one query, the last row.
void window_attention(const float* q_ring, const int32_t* q_pos, int64_t n_q, int n_head, int group,
                      int g, int hd, float scale, const float* keys, const int32_t* pos,
                      int32_t len, float* out) {
  std::fill(out, out + len, 0.0f);
  std::vector<float> s(len);
  int64_t used = 0;
  for (int64_t i = 0; i < n_q; ++i) {
    for (int j = 0; j < group; ++j) {
      const float* q = q_ring + (i * n_head + g * group + j) * hd;
      float mx = -INFINITY;
      for (int32_t t = 0; t < len; ++t) {
        if (pos[t] > q_pos[i]) {
          s[t] = -INFINITY;
          continue;
        }
        float d = 0.0f;
        for (int c = 0; c < hd; ++c) d += q[c] * keys[static_cast<size_t>(t) * hd + c];
        s[t] = d * scale;
        mx = std::max(mx, s[t]);
      }
      if (mx == -INFINITY) continue;
      double sum = 0.0;
      for (int32_t t = 0; t < len; ++t) sum += s[t] == -INFINITY ? 0.0 : std::exp(s[t] - mx);
      for (int32_t t = 0; t < len; ++t)
        if (s[t] != -INFINITY) out[t] += static_cast<float>(std::exp(s[t] - mx) / sum);
      ++used;
    }
  }
  if (used > 0)
    for (int32_t t = 0; t < len; ++t) out[t] /= static_cast<float>(used);
}

}  // namespace

CacheManager::CacheManager(const CachePlan& plan, const CacheModelInfo& info)
    : plan_(plan),
      info_(info),
      resolved_(resolve_cache_plan(plan, info.n_layer, info.n_head_kv, info.head_dim_k,
                                   info.head_dim_v)) {
  if (!plan_.head_profile.empty()) {
    const HeadProfile prof = load_head_profile(plan_.head_profile);
    if (prof.n_layer != info.n_layer || prof.n_head_kv != info.n_head_kv)
      throw Error(plan_.head_profile + ": head profile is " + std::to_string(prof.n_layer) + " x " +
                  std::to_string(prof.n_head_kv) + " but the model has " +
                  std::to_string(info.n_layer) + " layers x " + std::to_string(info.n_head_kv) +
                  " KV heads");
    const double thr = plan_.retrieval_threshold < 0 && plan_.retrieval_fraction < 0
                           ? 0.5
                           : plan_.retrieval_threshold;
    const std::vector<bool> retrieval = retrieval_heads(prof, thr, plan_.retrieval_fraction);
    for (size_t i = 0; i < retrieval.size(); ++i)
      if (retrieval[i]) {
        resolved_.heads[i].policy = "full";
        resolved_.heads[i].params = nlohmann::json::object();
      }
  }
  policies_.reserve(resolved_.heads.size());
  window_.assign(info.n_layer, 0);
  queries_.resize(info.n_layer);
  for (int l = 0; l < info.n_layer; ++l) {
    for (int h = 0; h < info.n_head_kv; ++h) {
      const HeadPlan& hp = resolved_.at(l, h);
      const std::string where =
          plan_.source + ": layer " + std::to_string(l) + " head " + std::to_string(h) + " params";
      policies_.push_back(find_policy(hp.policy, plan_.source).make(hp.params, where));
      const PolicyNeeds n = policies_.back()->needs();
      int w = n.attn_window;
      if (n.attn_last_row) w = std::max(w, 1);
      window_[l] = std::max(window_[l], w);
      if (plan_.cache_positions && w > 0)
        throw Error(plan_.source + ": policy '" + hp.policy +
                    "' scores with query windows, which needs \"positions\": \"original\"");
      if (n.calibration)
        throw Error(plan_.source + ": policy '" + hp.policy +
                    "' needs calibration data, which this plan does not provide");
    }
    queries_[l].q.resize(static_cast<size_t>(window_[l]) * info.n_head * info.head_dim_k);
    queries_[l].pos.resize(window_[l]);
  }
}

CacheManager::~CacheManager() = default;

KVCacheShape CacheManager::cache_shape() const {
  KVCacheShape s;
  s.n_layer = info_.n_layer;
  s.n_head_kv = info_.n_head_kv;
  s.head_dim_k = info_.head_dim_k;
  s.head_dim_v = info_.head_dim_v;
  s.k_dtype = resolved_.k_dtype;
  s.v_dtype = resolved_.v_dtype;
  return s;
}

void CacheManager::attach(KVCache& cache) {
  for (int l = 0; l < info_.n_layer; ++l)
    for (int h = 0; h < info_.n_head_kv; ++h)
      if (policies_[static_cast<size_t>(l) * info_.n_head_kv + h]->needs().attn_accumulated)
        cache.enable_scores(l);
}

void CacheManager::reset() {
  for (auto& r : queries_) r.count = 0;
  decode_steps_ = 0;
}

void CacheManager::before_append(KVCache& cache, int layer, int64_t T, int64_t n_seen) {
  const bool overflow_mode =
      plan_.when == CompressWhen::Overflow || (plan_.when == CompressWhen::Chunk && T == 1);
  if (!overflow_mode || info_.layer_is_swa[layer]) return;
  const auto budgets = layer_budgets(plan_, resolved_, layer, info_.n_layer, n_seen);
  for (int h = 0; h < info_.n_head_kv; ++h) {
    if (policies_[static_cast<size_t>(layer) * info_.n_head_kv + h]->keeps_everything()) continue;
    if (cache.len(layer, h) + T > budgets[h] + plan_.margin) {
      const auto t0 = clock_type::now();
      compress_layer(cache, layer, n_seen);
      stats_.seconds += std::chrono::duration<double>(clock_type::now() - t0).count();
      ++stats_.compressions;
      return;
    }
  }
}

void CacheManager::after_attention(int layer, const float* q, const int32_t* q_pos, int64_t T) {
  const int w = window_[layer];
  if (w == 0) return;
  QueryRing& r = queries_[layer];
  const size_t qsz = static_cast<size_t>(info_.n_head) * info_.head_dim_k;
  for (int64_t t = std::max<int64_t>(0, T - w); t < T; ++t) {
    const size_t slot = static_cast<size_t>(r.count % w);
    std::copy(q + t * qsz, q + (t + 1) * qsz, r.q.begin() + slot * qsz);
    r.pos[slot] = q_pos[t];
    ++r.count;
  }
}

void CacheManager::after_chunk(KVCache& cache, bool last_chunk, int64_t n_tokens, int64_t n_seen) {
  bool now = false;
  switch (plan_.when) {
    case CompressWhen::Prefill:
      now = last_chunk && n_tokens > 1;
      break;
    case CompressWhen::Chunk:
      now = n_tokens > 1;
      break;
    case CompressWhen::Decode:
      if (n_tokens > 1) {
        now = last_chunk;
      } else {
        now = ++decode_steps_ % plan_.every == 0;
      }
      break;
    case CompressWhen::Overflow:
      break;
  }
  if (now) compress(cache, n_seen);
}

void CacheManager::compress(KVCache& cache, int64_t n_seen) {
  const auto t0 = clock_type::now();
  for (int l = 0; l < info_.n_layer; ++l)
    if (!info_.layer_is_swa[l]) compress_layer(cache, l, n_seen);
  stats_.seconds += std::chrono::duration<double>(clock_type::now() - t0).count();
  ++stats_.compressions;
}

void CacheManager::compress_layer(KVCache& cache, int layer, int64_t n_seen) {
  const int nkv = info_.n_head_kv;
  const int group = info_.n_head / nkv;
  std::vector<int64_t> budgets = layer_budgets(plan_, resolved_, layer, info_.n_layer, n_seen);
  std::vector<std::vector<float>> scores(nkv);
  std::vector<int32_t> n_protected(nkv, 0);
  std::vector<bool> active(nkv, false);
  std::vector<float> keys, values, win;
  const QueryRing& ring = queries_[layer];
  const int64_t n_q = std::min<int64_t>(ring.count, window_[layer]);
  for (int h = 0; h < nkv; ++h) {
    const CachePolicy& pol = *policies_[static_cast<size_t>(layer) * nkv + h];
    const HeadPlan& hp = resolved_.at(layer, h);
    const int32_t len = cache.len(layer, h);
    n_protected[h] = std::min<int32_t>(len, hp.sinks + hp.recent);
    budgets[h] = std::max<int64_t>(budgets[h], n_protected[h]);
    if (pol.keeps_everything() || (len <= budgets[h] && plan_.allocator != "adaptive")) continue;
    active[h] = true;
    const PolicyNeeds needs = pol.needs();
    HeadScoreInput in;
    in.layer = layer;
    in.head = h;
    in.n_layer = info_.n_layer;
    in.n_head_kv = nkv;
    in.group = group;
    in.head_dim_k = info_.head_dim_k;
    in.head_dim_v = info_.head_dim_v;
    in.len = len;
    in.pos = cache.positions(layer, h);
    in.n_seen = n_seen;
    in.seed =
        plan_.seed * 1000003u + static_cast<uint64_t>(layer) * 1009u + static_cast<uint64_t>(h);
    const bool want_keys = needs.keys || needs.attn_window > 0 || needs.attn_last_row;
    if (want_keys) {
      keys.resize(static_cast<size_t>(len) * info_.head_dim_k);
      cache.read_k(layer, h, keys.data());
      in.keys = keys.data();
    }
    if (needs.values) {
      values.resize(static_cast<size_t>(len) * info_.head_dim_v);
      cache.read_v(layer, h, values.data());
      in.values = values.data();
    }
    if (needs.attn_accumulated) in.attn_acc = cache.scores(layer, h);
    std::vector<float> last;
    if (needs.attn_window > 0 && n_q > 0) {
      // The ring holds the last n_q queries; use the newest min(w, n_q) of them.
      const int64_t use = std::min<int64_t>(needs.attn_window, n_q);
      std::vector<float> qbuf;
      std::vector<int32_t> pbuf;
      const size_t qsz = static_cast<size_t>(info_.n_head) * info_.head_dim_k;
      for (int64_t i = ring.count - use; i < ring.count; ++i) {
        const size_t slot = static_cast<size_t>(i % window_[layer]);
        qbuf.insert(qbuf.end(), ring.q.begin() + slot * qsz, ring.q.begin() + (slot + 1) * qsz);
        pbuf.push_back(ring.pos[slot]);
      }
      win.resize(len);
      window_attention(qbuf.data(), pbuf.data(), use, info_.n_head, group, h, info_.head_dim_k,
                       info_.kq_scale, keys.data(), in.pos, len, win.data());
      in.attn_window = win.data();
    }
    if (needs.attn_last_row && n_q > 0) {
      const size_t qsz = static_cast<size_t>(info_.n_head) * info_.head_dim_k;
      const size_t slot = static_cast<size_t>((ring.count - 1) % window_[layer]);
      last.resize(len);
      window_attention(ring.q.data() + slot * qsz, &ring.pos[slot], 1, info_.n_head, group, h,
                       info_.head_dim_k, info_.kq_scale, keys.data(), in.pos, len, last.data());
      in.attn_last = last.data();
    }
    scores[h].resize(len);
    pol.score(in, scores[h]);
  }

  // Candidates of each head: its unprotected slots, best score first (ties: older first).
  std::vector<std::vector<int32_t>> order(nkv);
  for (int h = 0; h < nkv; ++h) {
    if (!active[h]) continue;
    const HeadPlan& hp = resolved_.at(layer, h);
    const int32_t len = cache.len(layer, h);
    const int32_t sinks = std::min(hp.sinks, len);
    const int32_t recent_from = std::max(sinks, len - hp.recent);
    for (int32_t s = sinks; s < recent_from; ++s) order[h].push_back(s);
    const auto& sc = scores[h];
    std::stable_sort(order[h].begin(), order[h].end(),
                     [&](int32_t a, int32_t b) { return sc[a] > sc[b]; });
  }
  std::vector<int64_t> take(nkv, 0);  // unprotected slots each head keeps
  if (plan_.allocator == "adaptive") {
    // AdaKV: pool the layer's candidates, give each head a floor of its fair share and
    // fill the rest of the layer's total budget with the globally best scores.
    const double floor_frac = plan_.allocator_params.value("floor", 0.2);
    int64_t total = 0;
    std::vector<size_t> next(nkv, 0);
    for (int h = 0; h < nkv; ++h) {
      if (!active[h]) continue;
      const int64_t share = std::max<int64_t>(0, budgets[h] - n_protected[h]);
      total += share;
      take[h] = std::min<int64_t>(static_cast<int64_t>(order[h].size()),
                                  static_cast<int64_t>(std::floor(floor_frac * share)));
      total -= take[h];
      next[h] = static_cast<size_t>(take[h]);
    }
    while (total > 0) {
      int best = -1;
      for (int h = 0; h < nkv; ++h) {
        if (!active[h] || next[h] >= order[h].size()) continue;
        if (best < 0 || scores[h][order[h][next[h]]] > scores[best][order[best][next[best]]])
          best = h;
      }
      if (best < 0) break;
      ++next[best];
      ++take[best];
      --total;
    }
  } else {
    for (int h = 0; h < nkv; ++h)
      if (active[h])
        take[h] =
            std::min<int64_t>(static_cast<int64_t>(order[h].size()), budgets[h] - n_protected[h]);
  }

  for (int h = 0; h < nkv; ++h) {
    if (!active[h]) continue;
    const HeadPlan& hp = resolved_.at(layer, h);
    const int32_t len = cache.len(layer, h);
    if (take[h] + n_protected[h] >= len) continue;
    const int32_t sinks = std::min(hp.sinks, len);
    const int32_t recent_from = std::max(sinks, len - hp.recent);
    std::vector<int32_t> keep;
    keep.reserve(static_cast<size_t>(take[h] + n_protected[h]));
    for (int32_t s = 0; s < sinks; ++s) keep.push_back(s);
    keep.insert(keep.end(), order[h].begin(), order[h].begin() + take[h]);
    for (int32_t s = recent_from; s < len; ++s) keep.push_back(s);
    std::sort(keep.begin(), keep.end());
    cache.keep_slots(layer, h, keep, plan_.margin);
  }
}

}  // namespace kvs
