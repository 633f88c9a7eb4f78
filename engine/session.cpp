#include "engine/session.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <numeric>

#include "kernels/core/error.h"

namespace kvs {
namespace {

// A plan the device runner can carry out itself: every head keeps every token (policy `full`,
// no head profile turning heads into anything else, keys stored after RoPE), so all it sets
// is the storage type of each layer's K and V.
bool plan_keeps_everything(const CachePlan& plan, const ResolvedPlan& r) {
  if (!plan.head_profile.empty() || plan.cache_positions) return false;
  for (const HeadPlan& h : r.heads)
    if (!find_policy(h.policy, plan.source).make(h.params, plan.source)->keeps_everything())
      return false;
  return true;
}

struct MemoryLimit {
  size_t bytes = 0;
  std::string source;
};

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", b, units[u]);
  return buf;
}

// A number of bytes from a one-line file such as cgroup v2 memory.max ("max" or absent: 0).
size_t read_limit_file(const char* path) {
  std::FILE* f = std::fopen(path, "r");
  if (f == nullptr) return 0;
  unsigned long long v = 0;
  const bool ok = std::fscanf(f, "%llu", &v) == 1;
  std::fclose(f);
  return ok ? static_cast<size_t>(v) : 0;
}

// The memory a KV cache may take: physical memory, lowered by a container's cgroup limit (a
// cache that fits the host but not the container would be killed, not refused), or by
// KVSIEVE_MEMORY_LIMIT (bytes), which also makes the check testable. 0: unknown.
MemoryLimit memory_limit() {
  MemoryLimit m;
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) {
    m.bytes = static_cast<size_t>(pages) * static_cast<size_t>(page);
    m.source = "this machine's memory";
  }
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    const size_t v = read_limit_file(path);
    if (v > 0 && (m.bytes == 0 || v < m.bytes)) {
      m.bytes = v;
      m.source = std::string("the cgroup memory limit (") + path + ")";
    }
  }
  if (const char* env = std::getenv("KVSIEVE_MEMORY_LIMIT"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(env, &end, 10);
    if (end == env || *end != '\0' || v == 0)
      throw Error(std::string("KVSIEVE_MEMORY_LIMIT: expected a positive number of bytes, got '") +
                  env + "'");
    m.bytes = static_cast<size_t>(v);
    m.source = "KVSIEVE_MEMORY_LIMIT";
  }
  return m;
}

}  // namespace

Session::Session(const Engine& engine, const SessionOptions& opts) : engine_(engine) {
  const ModelConfig& c = engine.config();
  n_ctx_ = opts.n_ctx > 0 ? opts.n_ctx : std::min(c.n_ctx_train, 4096);
  if (opts.n_ctx < 0) throw Error("--ctx-size must be positive, got " + std::to_string(opts.n_ctx));
  if (n_ctx_ > (1 << 24))
    throw Error("--ctx-size " + std::to_string(n_ctx_) + " is too large (at most 16777216)");
  if (n_ctx_ > c.n_ctx_train)
    spdlog::warn("context {} exceeds the model's training context {}", n_ctx_, c.n_ctx_train);
  if (opts.n_batch <= 0)
    throw Error("--batch-size must be positive, got " + std::to_string(opts.n_batch));
  n_batch_ = std::min(opts.n_batch, n_ctx_);
  on_queries_ = opts.on_queries;
  if (opts.device != "auto" && opts.device != "cpu" && opts.device != "cuda")
    throw Error("--device must be cpu, cuda or auto, got '" + opts.device + "'");
  DeviceCacheSpec device_cache;  // the plan's storage types, when the device can carry it out
  bool device_plan = !opts.plan;
  // Only where a device could take it: a CPU session leaves the plan to the cache manager.
  if (opts.plan && engine.device_model() != nullptr && opts.device != "cpu") {
    const ResolvedPlan r =
        resolve_cache_plan(*opts.plan, c.n_layer, c.n_head_kv, c.head_dim_k, c.head_dim_v);
    device_plan = plan_keeps_everything(*opts.plan, r);
    if (device_plan) device_cache = {r.k_dtype, r.v_dtype};
  }
  if (opts.device == "cuda") {
    if (engine.device_model() == nullptr)
      throw Error("--device cuda: the model was not loaded on a CUDA device");
    if (!device_plan)
      throw Error(
          "--device cuda: cache plans that evict tokens run on the CPU in this version (plans "
          "that keep every token, such as full-f16, run on the device; or use --device cpu)");
    if (opts.on_queries) throw Error("--device cuda: query observers need the CPU cache");
  }
  if (engine.device_model() != nullptr && opts.device != "cpu" && device_plan && !opts.on_queries) {
    runner_ = engine.device_model()->make_runner(n_ctx_, n_batch_, device_cache);
    spdlog::debug("session on cuda: {} of KV cache",
                  human_bytes(static_cast<double>(runner_->kv_bytes_allocated())));
  }

  std::vector<int32_t> max_len(c.n_layer);
  for (int il = 0; il < c.n_layer; ++il) {
    // Sliding-window layers keep window-1 old tokens plus one chunk.
    max_len[il] = c.is_swa(il) ? std::min(n_ctx_, c.sliding_window - 1 + n_batch_) : n_ctx_;
  }
  KVCacheShape shape{c.n_layer, c.n_head_kv, c.head_dim_k, c.head_dim_v, {}, {}};
  bool bounded = false;         // compression keeps heads near their budgets while prefilling
  if (opts.plan && !runner_) {  // a runner keeps its own cache; a full plan compresses nothing
    CacheModelInfo info{c.n_layer,  c.n_head,       c.n_head_kv,      c.head_dim_k, c.head_dim_v,
                        c.kq_scale, c.layer_is_swa, c.sliding_window, n_ctx_};
    manager_ = std::make_unique<CacheManager>(*opts.plan, info);
    shape = manager_->cache_shape();
    bounded = opts.plan->when == CompressWhen::Chunk || opts.plan->when == CompressWhen::Overflow;
  }
  cache_ = std::make_unique<KVCache>(shape, max_len);
  if (manager_) manager_->attach(*cache_);
  // The worst case is known before anything is allocated: refuse what cannot fit.
  size_t need = 0;
  for (int il = 0; il < c.n_layer; ++il)
    need += static_cast<size_t>(max_len[il]) * c.n_head_kv * cache_->slot_bytes(il);
  // 80%: the weights, activations and the rest of the process need room too.
  const MemoryLimit mem = memory_limit();
  if (!bounded && mem.bytes > 0 && need > mem.bytes / 10 * 8)
    throw Error("the KV cache for a context of " + std::to_string(n_ctx_) + " tokens needs " +
                human_bytes(static_cast<double>(need)) + ", more than 80% of " + mem.source + " (" +
                human_bytes(static_cast<double>(mem.bytes)) +
                "); use a smaller --ctx-size or a cache plan");
  spdlog::debug("KV cache: {} allocated for {} tokens", human_bytes(static_cast<double>(need)),
                n_ctx_);
  install_tensor_dump();
}

// KVSIEVE_DUMP_TENSORS=DIR appends every CPU forward intermediate to DIR/NAME-LAYER.f32
// (float32 rows, llama.cpp's graph names), for tools/compare_tensors.py against
// tools/dump_llamacpp_tensors.py. A debugging aid: it slows everything down.
void Session::install_tensor_dump() {
  const char* dir = std::getenv("KVSIEVE_DUMP_TENSORS");
  if (dir == nullptr || *dir == '\0') return;
  const std::string base = dir;
  std::error_code ec;
  std::filesystem::create_directories(base, ec);
  if (ec) throw Error(base + ": cannot create the directory for KVSIEVE_DUMP_TENSORS");
  spdlog::warn("KVSIEVE_DUMP_TENSORS: writing intermediates to {}", base);
  scratch_.tap = [base](const char* name, int layer, const float* data, int64_t rows,
                        int64_t cols) {
    const std::string path =
        base + "/" + name + (layer >= 0 ? "-" + std::to_string(layer) : "") + ".f32";
    std::FILE* f = std::fopen(path.c_str(), "ab");
    if (f == nullptr) throw Error(path + ": cannot write");
    const size_t n = static_cast<size_t>(rows * cols);
    const bool ok = std::fwrite(data, sizeof(float), n, f) == n;
    if (std::fclose(f) != 0 || !ok) throw Error(path + ": write failed");
  };
}

size_t Session::full_cache_bytes(int64_t n_tokens) const {
  const ModelConfig& c = engine_.config();
  size_t bytes = 0;
  for (int il = 0; il < c.n_layer; ++il) {
    const int64_t kept = c.is_swa(il) ? std::min<int64_t>(n_tokens, c.sliding_window) : n_tokens;
    bytes += static_cast<size_t>(kept) * c.n_head_kv * cache_->slot_bytes(il);
  }
  return bytes;
}

size_t Session::kv_bytes_in_use() const {
  return runner_ ? runner_->kv_bytes_in_use(n_past_) : cache_->bytes_in_use();
}

size_t Session::kv_bytes_allocated() const {
  return runner_ ? runner_->kv_bytes_allocated() : cache_->bytes_allocated();
}

size_t Session::kv_peak_bytes() const {
  return runner_ ? runner_->kv_bytes_allocated() : cache_->peak_bytes_allocated();
}

int64_t Session::kv_tokens_in_layer(int layer) const {
  return runner_ ? runner_->kv_tokens_in_layer(layer, n_past_) : cache_->tokens_in_layer(layer);
}

bool Session::can_continue() const {
  return (manager_ && manager_->cache_positions()) || n_past_ < n_ctx_;
}

void Session::reset() {
  cache_->clear();
  n_past_ = 0;
  history_.clear();
  swa_dropped_below_ = 0;
  if (manager_) manager_->reset();
}

bool Session::truncate(int64_t n) {
  KVS_CHECK(n >= 0 && n <= n_past_);
  if (n == n_past_) return true;
  if (runner_) {
    // The device cache keeps every position below n in place (sliding-window layers: a
    // ring), so only the count changes; a window that already wrapped past n cannot rewind.
    const ModelConfig& c = engine_.config();
    if (c.sliding_window > 0 && n_past_ > n + n_batch_) return false;
    n_past_ = n;
    history_.resize(static_cast<size_t>(n));
    return true;
  }
  // Evicted tokens cannot be restored: a managed cache only continues, never rewinds.
  if (manager_ && manager_->stats().compressions > 0) return false;
  const ModelConfig& c = engine_.config();
  // A query at position n sees keys down to n + 1 - window.
  if (c.sliding_window > 0 && swa_dropped_below_ > std::max<int64_t>(0, n + 1 - c.sliding_window))
    return false;
  for (int il = 0; il < c.n_layer; ++il) {
    for (int h = 0; h < c.n_head_kv; ++h) {
      std::vector<int32_t> keep;
      const int32_t* pos = cache_->positions(il, h);
      for (int32_t s = 0; s < cache_->len(il, h); ++s)
        if (pos[s] < n) keep.push_back(s);
      cache_->keep_slots(il, h, keep);
    }
  }
  n_past_ = n;
  history_.resize(static_cast<size_t>(n));
  return true;
}

std::vector<float> Session::eval(std::span<const int32_t> tokens, int64_t n_logits,
                                 const ProgressFn& progress, bool compress) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) throw Error("nothing to evaluate: the token list is empty");
  // With "positions": "cache" positions never exceed the cache length, so a bounded cache
  // can stream past the context; the cache itself refuses to outgrow it.
  const bool streams = manager_ && manager_->cache_positions();
  if (!streams && n_past_ + n > n_ctx_)
    throw Error("the prompt needs " + std::to_string(n_past_ + n) +
                " tokens but the context holds " + std::to_string(n_ctx_) +
                " (raise --ctx-size or use a cache plan)");
  KVS_CHECK(n_logits >= 0 && n_logits <= n);
  const int n_vocab = engine_.config().n_vocab;
  for (int32_t id : tokens)
    if (id < 0 || id >= n_vocab)
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
  std::vector<float> logits(static_cast<size_t>(n_logits) * n_vocab);  // [n_logits, n_vocab]
  for (int64_t done = 0; done < n;) {
    const int64_t T = std::min<int64_t>(n_batch_, n - done);
    batch_pos_.resize(T);
    std::iota(batch_pos_.begin(), batch_pos_.end(), static_cast<int32_t>(n_past_));
    // Logits rows of this chunk that fall within the last n_logits tokens.
    const int64_t first_out = n - n_logits;
    const int64_t chunk_out = std::max<int64_t>(0, done + T - std::max(first_out, done));
    float* dst = logits.data() + (done + T - chunk_out - first_out) * n_vocab;
    if (runner_)
      runner_->forward(tokens.subspan(done, T), n_past_, chunk_out, chunk_out > 0 ? dst : nullptr);
    else
      forward(engine_.model(), tokens.subspan(done, T), *this, engine_.pool(), scratch_, chunk_out,
              chunk_out > 0 ? dst : nullptr);
    history_.insert(history_.end(), tokens.begin() + done, tokens.begin() + done + T);
    n_past_ += T;
    done += T;
    if (manager_ && compress) manager_->after_chunk(*cache_, done == n, n, n_past_);
    if (progress) progress(done, n);
  }
  return logits;
}

void Session::attend(int layer, const ops::RopeParams& rope, float* q, float* k, const float* v,
                     int64_t T, float* out) {
  const ModelConfig& c = engine_.config();
  if (manager_) manager_->before_append(*cache_, layer, T, n_past_ + T);
  AttentionShape shape{c.n_head,      c.n_head_kv, c.head_dim_k,
                       c.head_dim_v,  c.kq_scale,  c.is_swa(layer) ? c.sliding_window : 0,
                       c.attn_softcap};
  const bool cache_positions = manager_ && manager_->cache_positions();
  if (!cache_positions) {
    if (manager_) manager_->before_rope(layer, q, batch_pos_.data(), T, rope);
    ops::rope(q, T, c.n_head, c.head_dim_k, batch_pos_.data(), rope);
    ops::rope(k, T, c.n_head_kv, c.head_dim_k, batch_pos_.data(), rope);
    cache_->append(layer, k, v, batch_pos_.data(), T);
    const KVView view = cache_->view(layer);
    engine_.attention().attend(shape, q, batch_pos_.data(), T, view, out, engine_.pool());
    if (manager_) manager_->after_attention(layer, q, batch_pos_.data(), T);
    if (on_queries_) on_queries_(layer, q, batch_pos_.data(), T);
  } else {
    // Keys are stored before RoPE and rotated by slot index now, so positions never exceed
    // the cache length (StreamingLLM). Heads hold different numbers of slots: each head's
    // slots are shifted so that its newest slot lines up with the newest query; RoPE only
    // sees differences, which are then slot distances.
    cache_->append(layer, k, v, batch_pos_.data(), T);
    KVView view = cache_->view(layer);
    int32_t longest = 0;
    for (int h = 0; h < c.n_head_kv; ++h) longest = std::max(longest, cache_->len(layer, h));
    size_t total = 0;
    for (int h = 0; h < c.n_head_kv; ++h) total += static_cast<size_t>(cache_->len(layer, h));
    roped_k_.resize(total * c.head_dim_k);
    slot_pos_.resize(total);
    size_t off = 0;
    for (int h = 0; h < c.n_head_kv; ++h) {
      const int32_t len = cache_->len(layer, h);
      float* kh = roped_k_.data() + off * c.head_dim_k;
      int32_t* ph = slot_pos_.data() + off;
      cache_->read_k(layer, h, kh);
      for (int32_t s = 0; s < len; ++s) ph[s] = s + (longest - len);
      ops::rope(kh, len, 1, c.head_dim_k, ph, rope);
      view.heads[h].k = kh;
      view.heads[h].pos = ph;
      off += static_cast<size_t>(len);
    }
    view.k_dtype = DType::F32;
    std::vector<int32_t> qpos(T);
    for (int64_t t = 0; t < T; ++t)
      qpos[t] = longest - static_cast<int32_t>(T) + static_cast<int32_t>(t);
    ops::rope(q, T, c.n_head, c.head_dim_k, qpos.data(), rope);
    engine_.attention().attend(shape, q, qpos.data(), T, view, out, engine_.pool());
    if (manager_) manager_->after_attention(layer, q, qpos.data(), T);
    if (on_queries_) on_queries_(layer, q, qpos.data(), T);
  }
  if (c.is_swa(layer)) {
    // The next query is at last+1 and sees keys with pos > last + 1 - window.
    const int32_t last = batch_pos_.back();
    cache_->drop_before(layer, last + 2 - c.sliding_window, n_batch_);
    swa_dropped_below_ = std::max(swa_dropped_below_, last + 2 - c.sliding_window);
  }
}

}  // namespace kvs
