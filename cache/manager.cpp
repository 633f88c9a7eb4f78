#include "cache/manager.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "cache/head_profile.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

using clock_type = std::chrono::steady_clock;

// Budgets of one layer's heads under the plan's allocator (before protection is applied).
// n_cached: the layer's current head length (the pyramid shape depends on it).
std::vector<int64_t> layer_budgets(const CachePlan& plan, const ResolvedPlan& rp, int layer,
                                   int n_layer, int64_t n_seen, int64_t n_cached) {
  std::vector<int64_t> b(rp.n_head_kv);
  for (int h = 0; h < rp.n_head_kv; ++h) b[h] = rp.at(layer, h).budget.tokens(n_seen);
  if (plan.allocator == "pyramid" && n_layer > 1) {
    // PyramidKV as kvpress computes it (KVCache-Factory's formula): for an average budget B
    // and window w, min = B / beta, max = 2B - min, clamped to the cache (max <= n - w, then
    // min = 2B - max); layer l keeps round(max - l (max - min) / (L - 1)), or B when the
    // clamped shape is degenerate. round() is to nearest even, as Python's.
    const double beta = plan.allocator_params.value("beta", 20.0);
    for (int h = 0; h < rp.n_head_kv; ++h) {
      const double w = rp.at(layer, h).recent;
      const double B = static_cast<double>(b[h]);
      const double n = static_cast<double>(n_cached);
      double mn = B / beta, mx = 2.0 * B - mn;
      if (mx >= n - w) {
        mx = n - w;
        mn = 2.0 * B - mx;
      }
      if (!(n >= mx && mx >= mn && mn >= w)) continue;  // keep the uniform budget
      const double step = (mx - mn) / (n_layer - 1);
      b[h] = static_cast<int64_t>(std::nearbyint(mx - layer * step));
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
  KVS_CHECK(static_cast<int>(info.layer_is_swa.size()) == info.n_layer,
            "CacheModelInfo.layer_is_swa size");
  KVS_CHECK(info.n_head_kv > 0 && info.n_head % info.n_head_kv == 0, "CacheModelInfo head counts");
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
    const std::vector<bool> retrieval = retrieval_heads(
        prof, thr, plan_.retrieval_fraction, compressible_heads(info.layer_is_swa, info.n_head_kv));
    for (size_t i = 0; i < retrieval.size(); ++i)
      if (retrieval[i]) {
        resolved_.heads[i].policy = "full";
        resolved_.heads[i].params = nlohmann::json::object();
      }
  }
  if (!plan_.calibration.empty()) {
    // Per-head vectors computed offline (qfilter): the file must match the model exactly.
    const Calibration cal = load_calibration(plan_.calibration);
    if (cal.n_layer != info.n_layer || cal.n_head_kv != info.n_head_kv ||
        cal.head_dim != info.head_dim_k)
      throw Error(plan_.calibration + ": calibration is " + std::to_string(cal.n_layer) +
                  " layers x " + std::to_string(cal.n_head_kv) + " KV heads x " +
                  std::to_string(cal.head_dim) + " dims but the model has " +
                  std::to_string(info.n_layer) + " x " + std::to_string(info.n_head_kv) + " x " +
                  std::to_string(info.head_dim_k) + " (plan key 'calibration' in " + plan_.source +
                  ")");
    calibration_.resize(static_cast<size_t>(info.n_layer) * info.n_head_kv);
    for (int l = 0; l < info.n_layer; ++l)
      for (int h = 0; h < info.n_head_kv; ++h)
        calibration_[static_cast<size_t>(l) * info.n_head_kv + h].assign(
            cal.at(l, h), cal.at(l, h) + cal.head_dim);
  }
  comp_slot_.assign(resolved_.heads.size(), -1);
  comp_weight_.assign(resolved_.heads.size(), 0.0);
  policies_.reserve(resolved_.heads.size());
  window_.assign(info.n_layer, 0);
  queries_.resize(info.n_layer);
  future_.assign(info.n_layer, 0);
  query_stats_.resize(info.n_layer);
  std::vector<int> stats_skip(info.n_layer, 0);  // [n_layer] the largest skip a head asks for
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
      if (n.query_stats) {
        stats_skip[l] = std::max(stats_skip[l], n.query_stats_skip);
        future_[l] = std::max(future_[l], n.query_stats_future);
      }
      if (plan_.cache_positions && (w > 0 || n.query_stats))
        throw Error(plan_.source + ": policy '" + hp.policy +
                    "' scores with query windows, which needs \"positions\": \"original\"");
      if (n.calibration && calibration_.empty())
        throw Error(plan_.source + ": policy '" + hp.policy +
                    "' needs calibration data: set the plan key 'calibration' to a file made by "
                    "kvsieve calibrate-qfilter");
      if (n.head_profile && plan_.head_profile.empty())
        throw Error(plan_.source + ": policy '" + hp.policy +
                    "' scores the non-retrieval heads of a head profile: set the plan key "
                    "'head_profile' to a TSV file");
    }
    queries_[l].q.resize(static_cast<size_t>(window_[l]) * info.n_head * info.head_dim_k);
    queries_[l].pos.resize(window_[l]);
    if (future_[l] > 0) query_stats_[l] = QueryStats(info.n_head, info.head_dim_k, stats_skip[l]);
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
  // A cache compressed every N decode steps grows by a small step between compressions; a
  // geometric overshoot would be re-allocated away at the next one. (Overflow compression
  // keeps heads within budget + margin, so they never grow once full.)
  if (plan_.when == CompressWhen::Decode)
    cache.set_append_growth(std::max<int32_t>({plan_.margin, plan_.every, 1}));
  for (int l = 0; l < info_.n_layer; ++l)
    for (int h = 0; h < info_.n_head_kv; ++h)
      if (policies_[static_cast<size_t>(l) * info_.n_head_kv + h]->needs().attn_accumulated)
        cache.enable_scores(l);
}

void CacheManager::reset() {
  for (auto& r : queries_) r.count = 0;
  for (auto& qs : query_stats_) qs.reset();
  std::fill(comp_slot_.begin(), comp_slot_.end(), -1);
  std::fill(comp_weight_.begin(), comp_weight_.end(), 0.0);
  decode_steps_ = 0;
}

void CacheManager::before_append(KVCache& cache, int layer, int64_t T, int64_t n_seen) {
  const bool overflow_mode =
      plan_.when == CompressWhen::Overflow || (plan_.when == CompressWhen::Chunk && T == 1);
  if (!overflow_mode || info_.layer_is_swa[layer]) return;
  const auto budgets =
      layer_budgets(plan_, resolved_, layer, info_.n_layer, n_seen, cache.len(layer, 0));
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

void CacheManager::before_rope(int layer, const float* q, const int32_t* q_pos, int64_t T,
                               const ops::RopeParams& rope) {
  if (future_[layer] == 0) return;
  const auto t0 = clock_type::now();
  query_stats_[layer].add(q, q_pos, T, rope);
  stats_.seconds += std::chrono::duration<double>(clock_type::now() - t0).count();
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
  std::vector<int64_t> budgets =
      layer_budgets(plan_, resolved_, layer, info_.n_layer, n_seen, cache.len(layer, 0));
  // TOVA scores with the newest query's attention averaged over every query head of the
  // layer: a pre-pass computes each KV head's group mean, then the layer mean by position.
  std::unordered_map<int32_t, std::pair<double, int>> layer_last;
  {
    const QueryRing& r = queries_[layer];
    bool wanted = false;
    for (int h = 0; h < nkv; ++h)
      wanted = wanted || policies_[static_cast<size_t>(layer) * nkv + h]->needs().attn_last_row;
    if (wanted && r.count > 0) {
      const size_t qsz = static_cast<size_t>(info_.n_head) * info_.head_dim_k;
      const size_t slot = static_cast<size_t>((r.count - 1) % window_[layer]);
      std::vector<float> k, row;
      for (int h = 0; h < nkv; ++h) {
        const int32_t len = cache.len(layer, h);
        k.resize(static_cast<size_t>(len) * info_.head_dim_k);
        row.resize(len);
        cache.read_k(layer, h, k.data());
        window_attention(r.q.data() + slot * qsz, &r.pos[slot], 1, info_.n_head, group, h,
                         info_.head_dim_k, info_.kq_scale, k.data(), cache.positions(layer, h), len,
                         row.data());
        for (int32_t i = 0; i < len; ++i) {
          auto& e = layer_last[cache.positions(layer, h)[i]];
          e.first += row[i];
          ++e.second;
        }
      }
    }
  }
  std::vector<std::vector<float>> scores(nkv);
  std::vector<int32_t> n_protected(nkv, 0);
  std::vector<bool> active(nkv, false);
  std::vector<float> keys, values, win;
  // Projected query statistics of the layer, computed at most once per compression:
  // [n_head][head_dim_k] and [n_head][head_dim_k][head_dim_k].
  std::vector<double> stats_mean, stats_cov;
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
    in.sinks = std::min(hp.sinks, len);
    in.kq_scale = info_.kq_scale;
    if (!calibration_.empty())
      in.calibration = calibration_[static_cast<size_t>(layer) * nkv + h].data();
    in.seed =
        plan_.seed * 1000003u + static_cast<uint64_t>(layer) * 1009u + static_cast<uint64_t>(h);
    const bool want_keys = needs.keys || needs.attn_window > 0 || needs.attn_last_row;
    // F32 storage is read in place; other types are dequantized into a copy.
    if (want_keys) {
      in.keys = cache.k_f32(layer, h);
      if (in.keys == nullptr) {
        keys.resize(static_cast<size_t>(len) * info_.head_dim_k);
        cache.read_k(layer, h, keys.data());
        in.keys = keys.data();
      }
    }
    if (needs.values) {
      in.values = cache.v_f32(layer, h);
      if (in.values == nullptr) {
        values.resize(static_cast<size_t>(len) * info_.head_dim_v);
        cache.read_v(layer, h, values.data());
        in.values = values.data();
      }
    }
    if (needs.attn_accumulated) in.attn_acc = cache.scores(layer, h);
    std::vector<float> last, layer_row;
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
                       info_.kq_scale, in.keys, in.pos, len, win.data());
      in.attn_window = win.data();
    }
    if (needs.query_stats && query_stats_[layer].count() > 0) {
      if (stats_mean.empty())
        query_stats_[layer].project(n_seen, future_[layer], stats_mean, stats_cov);
      const size_t first = static_cast<size_t>(h) * group * info_.head_dim_k;
      in.query_mean = stats_mean.data() + first;
      in.query_cov = stats_cov.data() + first * info_.head_dim_k;
      in.n_query_stats = query_stats_[layer].count();
    }
    if (needs.attn_last_row && n_q > 0) {
      const size_t qsz = static_cast<size_t>(info_.n_head) * info_.head_dim_k;
      const size_t slot = static_cast<size_t>((ring.count - 1) % window_[layer]);
      last.resize(len);
      window_attention(ring.q.data() + slot * qsz, &ring.pos[slot], 1, info_.n_head, group, h,
                       info_.head_dim_k, info_.kq_scale, in.keys, in.pos, len, last.data());
      in.attn_last = last.data();
      layer_row.resize(len);
      for (int32_t i = 0; i < len; ++i) {
        const auto it = layer_last.find(in.pos[i]);
        layer_row[i] = it == layer_last.end()
                           ? 0.0f
                           : static_cast<float>(it->second.first / it->second.second);
      }
      in.attn_last_layer = layer_row.data();
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
    // A compensation slot is never a candidate: it is folded into the next one instead.
    const int32_t comp = comp_slot_[static_cast<size_t>(layer) * nkv + h];
    for (int32_t s = sinks; s < recent_from; ++s)
      if (s != comp) order[h].push_back(s);
    const auto& sc = scores[h];
    // Best first, ties to the older slot: a strict total order, so selecting the top k with
    // nth_element keeps exactly the slots a full stable sort would put first. The adaptive
    // allocator walks each head's candidates in order, so it needs the whole sort.
    auto better = [&](int32_t a, int32_t b) { return sc[a] > sc[b] || (sc[a] == sc[b] && a < b); };
    const int64_t k = std::max<int64_t>(0, budgets[h] - n_protected[h]);
    // (A compensating head may give one of its k slots to the compensation token: sort it too.)
    if (plan_.allocator == "adaptive" ||
        policies_[static_cast<size_t>(layer) * nkv + h]->compensates() ||
        k >= static_cast<int64_t>(order[h].size()))
      std::sort(order[h].begin(), order[h].end(), better);
    else
      std::nth_element(order[h].begin(), order[h].begin() + k, order[h].end(), better);
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
    if (policies_[static_cast<size_t>(layer) * nkv + h]->compensates()) {
      // The new compensation slot takes one slot of the budget.
      if (take[h] > 0 && take[h] + n_protected[h] + 1 > budgets[h]) --take[h];
      const int32_t comp = comp_slot_[static_cast<size_t>(layer) * nkv + h];
      const int32_t sinks = std::min(hp.sinks, len);
      const int32_t recent_from = std::max(sinks, len - hp.recent);
      std::vector<int32_t> keep;
      for (int32_t s = 0; s < sinks; ++s)
        if (s != comp) keep.push_back(s);
      keep.insert(keep.end(), order[h].begin(), order[h].begin() + take[h]);
      for (int32_t s = recent_from; s < len; ++s)
        if (s != comp) keep.push_back(s);
      // Nothing but the old compensation slot would go: leave the head as it is.
      if (static_cast<int32_t>(keep.size()) + (comp >= 0 ? 1 : 0) >= len) continue;
      std::sort(keep.begin(), keep.end());
      compact_compensated(cache, layer, h, std::move(keep));
      continue;
    }
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

// RazorAttention's compensation token. Evicted slots of a compensating head are replaced by one
// slot holding the mean of their K and V, each weighted by the tokens it stands for (1 for a
// plain slot, its weight for the previous compensation slot), so repeated evictions keep the
// exact mean of every token ever dropped. Its position is the newest dropped position: that
// keeps the slots in position order (the first slots stay the sinks; the dropped tokens lie
// between the kept ones before and after) and the causal mask lets every later query see it.
// KVCache can only append, so the slots after the insertion point are re-appended behind it
// (with quantized storage they are re-quantized from their dequantized values, which q8_0 and
// q4_0 reproduce up to rounding); their accumulated attention is carried over.
void CacheManager::compact_compensated(KVCache& cache, int layer, int head,
                                       std::vector<int32_t> keep) {
  const size_t idx = static_cast<size_t>(layer) * info_.n_head_kv + head;
  const int dk = info_.head_dim_k, dv = info_.head_dim_v;
  const int32_t len = cache.len(layer, head);
  std::vector<float> k(static_cast<size_t>(len) * dk), v(static_cast<size_t>(len) * dv);
  cache.read_k(layer, head, k.data());
  cache.read_v(layer, head, v.data());
  const std::vector<int32_t> pos(cache.positions(layer, head), cache.positions(layer, head) + len);
  const bool has_scores = cache.has_scores(layer);
  std::vector<float> score;
  if (has_scores) score.assign(cache.scores(layer, head), cache.scores(layer, head) + len);

  std::vector<bool> kept(len, false);
  for (int32_t s : keep) kept[s] = true;
  std::vector<double> mk(dk, 0.0), mv(dv, 0.0);
  double weight = 0.0, mass = 0.0;
  int32_t comp_pos = -1;
  for (int32_t s = 0; s < len; ++s) {
    if (kept[s]) continue;
    const double w = s == comp_slot_[idx] ? comp_weight_[idx] : 1.0;
    for (int d = 0; d < dk; ++d) mk[d] += w * k[static_cast<size_t>(s) * dk + d];
    for (int d = 0; d < dv; ++d) mv[d] += w * v[static_cast<size_t>(s) * dv + d];
    weight += w;
    if (has_scores) mass += score[s];
    comp_pos = std::max(comp_pos, pos[s]);
  }
  KVS_CHECK(weight > 0.0, "compensation without evicted slots");
  std::vector<float> ck(dk), cv(dv);
  for (int d = 0; d < dk; ++d) ck[d] = static_cast<float>(mk[d] / weight);
  for (int d = 0; d < dv; ++d) cv[d] = static_cast<float>(mv[d] / weight);

  // Insert after every kept slot at or before comp_pos.
  const size_t at =
      static_cast<size_t>(std::upper_bound(keep.begin(), keep.end(), comp_pos,
                                           [&](int32_t p, int32_t s) { return p < pos[s]; }) -
                          keep.begin());
  const std::vector<int32_t> front(keep.begin(), keep.begin() + static_cast<std::ptrdiff_t>(at));
  const int32_t tail = static_cast<int32_t>(keep.size() - at);
  cache.keep_slots(layer, head, front, plan_.margin + 1 + tail);  // room for what follows
  cache.append_slot(layer, head, ck.data(), cv.data(), comp_pos);
  for (size_t i = at; i < keep.size(); ++i)
    cache.append_slot(layer, head, k.data() + static_cast<size_t>(keep[i]) * dk,
                      v.data() + static_cast<size_t>(keep[i]) * dv, pos[keep[i]]);
  if (has_scores) {
    float* sc = cache.scores(layer, head);
    sc[at] = static_cast<float>(mass);
    for (size_t i = at; i < keep.size(); ++i) sc[i + 1] = score[keep[i]];
  }
  comp_slot_[idx] = static_cast<int32_t>(at);
  comp_weight_[idx] = weight;
}

}  // namespace kvs
