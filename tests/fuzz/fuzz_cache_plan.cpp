// libFuzzer target: cache plan JSON. The input is the plan text. A plan that parses is resolved
// for a small model (4 layers, 2 KV heads of 4 query heads, head_dim 32), turned into a
// CacheManager and driven like Session drives it: a 32-token prompt in chunks of 8, then 4
// decode steps, with the reference attention backend filling the score sinks. File keys
// (head_profile, calibration) are dropped first: they name files, which the plan's own tests
// cover, and a fuzzed path could name a device. kvs::Error and JSON parse errors are the
// expected outcome of bad input; anything else (a crash, a head above its bound) aborts.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "cache/manager.h"
#include "cache/plan.h"
#include "fuzz_util.h"
#include "kernels/attention/backend.h"
#include "kernels/core/error.h"

namespace {

constexpr int kLayers = 4, kKV = 2, kHeads = 4, kDim = 32, kMaxLen = 96;

// Deterministic activations: [T][heads][kDim] rows for a layer and first position.
void fill(std::vector<float>& v, int64_t T, int heads, int layer, int64_t pos0, int salt) {
  v.resize(static_cast<size_t>(T) * heads * kDim);
  std::mt19937 rng(static_cast<uint32_t>(layer * 7919 + pos0 * 31 + salt));
  std::normal_distribution<float> nd;
  for (float& x : v) x = nd(rng);
}

void drive(const kvs::CachePlan& plan) {
  kvs::CacheModelInfo info{
      kLayers, kHeads, kKV, kDim, kDim, 0.17f, std::vector<bool>(kLayers, false), 0, kMaxLen};
  kvs::CacheManager mgr(plan, info);
  kvs::KVCache cache(mgr.cache_shape(), std::vector<int32_t>(kLayers, kMaxLen));
  mgr.attach(cache);
  static kvs::ThreadPool pool(1);
  const kvs::AttentionBackend& att = kvs::find_attention_backend("reference");
  const kvs::AttentionShape shape{kHeads, kKV, kDim, kDim, 0.17f, 0, 0.0f};
  kvs::ops::RopeParams rope;
  rope.n_rot = kDim;
  std::vector<float> q, k, v, out;
  int64_t n_past = 0;
  auto eval = [&](int64_t n, int64_t chunk) {
    for (int64_t done = 0; done < n;) {
      const int64_t T = std::min(chunk, n - done);
      if (!mgr.cache_positions() && n_past + T > kMaxLen) return;
      std::vector<int32_t> pos(T);
      for (int64_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(n_past + t);
      for (int l = 0; l < kLayers; ++l) {
        mgr.before_append(cache, l, T, n_past + T);
        fill(q, T, kHeads, l, n_past, 1);
        fill(k, T, kKV, l, n_past, 2);
        fill(v, T, kKV, l, n_past, 3);
        mgr.before_rope(l, q.data(), pos.data(), T, rope);
        cache.append(l, k.data(), v.data(), pos.data(), T);
        for (int h = 0; h < kKV; ++h)
          if (cache.len(l, h) > kMaxLen) kvs::fuzz::violated("head length", std::to_string(h));
        out.resize(static_cast<size_t>(T) * kHeads * kDim);
        att.attend(shape, q.data(), pos.data(), T, cache.view(l), out.data(), pool);
        mgr.after_attention(l, q.data(), pos.data(), T);
      }
      n_past += T;
      done += T;
      mgr.after_chunk(cache, done == n, n, n_past);
    }
  };
  eval(32, 8);
  for (int i = 0; i < 4; ++i) eval(1, 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 1 << 16) return 0;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(reinterpret_cast<const char*>(data),
                              reinterpret_cast<const char*>(data) + size);
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
  try {
    if (j.is_object()) {
      j.erase("head_profile");
      j.erase("calibration");
    }
    const kvs::CachePlan plan = kvs::parse_cache_plan(j, "fuzz.json");
    (void)kvs::resolve_cache_plan(plan, kLayers, kKV, kDim, kDim);
    drive(plan);
  } catch (const kvs::Error&) {
  }
  return 0;
}
