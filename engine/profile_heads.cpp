#include "engine/profile_heads.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "kernels/core/error.h"

namespace kvs {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Recomputes attention rows for the queries at positions [first, end) of each evaluation:
// the session reports every layer's queries right after attention (rotated as attention saw
// them) and its cache then holds every key they attended to. The probe runs without a cache
// plan, so keys sit at their original positions, already rotated. Sliding-window layers still
// hold a few keys outside the window at that point; the window mask drops them, as attention
// did.
class AttentionTap {
 public:
  // visit(layer, query head, query position, row over positions [0, q_pos]); called from the
  // pool's threads, each query head from one thread only.
  using Visit = std::function<void(int layer, int head, int32_t q_pos, std::span<const float> row)>;

  AttentionTap(const Engine& engine, Visit visit) : engine_(engine), visit_(std::move(visit)) {}

  void install(SessionOptions& so) {
    so.on_queries = [this](int layer, const float* q, const int32_t* pos, int64_t T) {
      observe(layer, q, pos, T);
    };
  }
  void set_session(const Session* s) { session_ = s; }
  void set_queries(int32_t first, int32_t end) {
    first_ = first;
    end_ = end;
  }

 private:
  void observe(int layer, const float* q, const int32_t* pos, int64_t T) {
    KVS_CHECK(session_ != nullptr, "AttentionTap: no session");
    std::vector<int64_t> picked;  // [n picked] indices into the chunk
    for (int64_t t = 0; t < T; ++t)
      if (pos[t] >= first_ && pos[t] < end_) picked.push_back(t);
    if (picked.empty()) return;
    const ModelConfig& c = engine_.config();
    const KVCache& cache = session_->cache();
    const int group = c.n_head / c.n_head_kv;
    const int hd = c.head_dim_k;
    const int window = c.is_swa(layer) ? c.sliding_window : 0;
    keys_.resize(c.n_head_kv);
    std::vector<const float*> k(c.n_head_kv);  // [n_head_kv] -> [len][hd]
    for (int g = 0; g < c.n_head_kv; ++g) {
      k[g] = cache.k_f32(layer, g);
      if (k[g] == nullptr) {
        keys_[g].resize(static_cast<size_t>(cache.len(layer, g)) * hd);
        cache.read_k(layer, g, keys_[g].data());
        k[g] = keys_[g].data();
      }
    }
    engine_.pool().parallel_for(c.n_head, [&](int64_t h0, int64_t h1) {
      std::vector<float> probs, row;  // [len], [q_pos + 1]
      for (int64_t h = h0; h < h1; ++h) {
        const int g = static_cast<int>(h) / group;
        const int32_t len = cache.len(layer, g);
        const int32_t* kpos = cache.positions(layer, g);
        probs.resize(len);
        for (int64_t t : picked) {
          const int32_t qp = pos[t];
          attention_probs(q + (t * c.n_head + h) * hd, k[g], kpos, len, hd, c.kq_scale,
                          c.attn_softcap, window, qp, probs);
          row.assign(static_cast<size_t>(qp) + 1, 0.0f);
          for (int32_t j = 0; j < len; ++j)
            if (kpos[j] >= 0 && kpos[j] <= qp) row[kpos[j]] = probs[j];
          visit_(layer, static_cast<int>(h), qp, row);
        }
      }
    });
  }

  const Engine& engine_;
  Visit visit_;
  const Session* session_ = nullptr;
  int32_t first_ = 0, end_ = 0;
  std::vector<std::vector<float>> keys_;  // [n_head_kv][len][hd] when stored as non-f32
};

bool is_blank(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char ch) { return ch == ' ' || ch == '\t' || ch == '\n'; });
}

void check_no_plan(const SessionOptions& so) {
  if (so.plan) throw UsageError("head probes need every key: give no cache plan (--cache)");
}

}  // namespace

std::vector<int32_t> ordinary_token_ids(const Tokenizer& tok) {
  const SpecialTokens& sp = tok.special();
  std::vector<int32_t> special = {sp.bos, sp.eos, sp.eot, sp.eom, sp.unk, sp.pad};
  special.insert(special.end(), sp.eog.begin(), sp.eog.end());
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    if (tok.is_control(id) || std::find(special.begin(), special.end(), id) != special.end())
      continue;
    const std::string piece = tok.piece(id);
    // Byte-fallback pieces and placeholders ("<0x0A>", "<unused12>", "<mask>") are not text a
    // model reads in ordinary prompts.
    if (piece.size() > 2 && piece.front() == '<' && piece.back() == '>') continue;
    if (tok.token_text(id, false).empty()) continue;
    ids.push_back(id);
  }
  return ids;
}

HeadProbeResult probe_razor(const Engine& engine, SessionOptions so, const HeadProbeOptions& o,
                            const ProgressFn& progress, const std::function<bool()>& should_stop) {
  check_no_plan(so);
  const double t0 = now_seconds();
  const ModelConfig& c = engine.config();
  const Tokenizer& tok = engine.tokenizer();
  const int samples = o.samples > 0 ? o.samples : 4;
  if (o.repeats < 2)
    throw Error("--repeats must be >= 2 (echo and induction need a copy), got " +
                std::to_string(o.repeats));
  const std::vector<int32_t> vocab = ordinary_token_ids(tok);
  if (vocab.size() < 2) throw Error("the model's vocabulary has no ordinary tokens to draw");
  const int32_t bos = tok.special().add_bos ? tok.special().bos : -1;
  const int prefix = bos >= 0 ? 1 : 0;

  HeadMeans echo(c.n_layer, c.n_head), induction(c.n_layer, c.n_head);
  std::vector<int32_t> seq;  // [prefix + segment * repeats] the sequence being evaluated
  AttentionTap tap(engine, [&](int layer, int head, int32_t q_pos, std::span<const float> row) {
    const CopyMass m = copy_mass(row, seq, q_pos);
    echo.add(layer, head, m.echo);
    induction.add(layer, head, m.induction);
  });
  tap.install(so);
  Session session(engine, so);
  tap.set_session(&session);
  const int fit = (session.n_ctx() - prefix) / o.repeats;
  const int segment = o.segment > 0 ? o.segment : std::min(256, fit);
  if (segment < 4 || segment > fit)
    throw Error("a razor probe of " + std::to_string(o.repeats) + " x " + std::to_string(segment) +
                " tokens does not fit the context of " + std::to_string(session.n_ctx()) +
                " (segments need 4 to " + std::to_string(fit) +
                " tokens: lower --segment or --repeats, or raise --ctx-size)");
  // Only the repeated segments are scored: the first copy has nothing to echo or induce from.
  tap.set_queries(prefix + segment, prefix + segment * o.repeats);
  spdlog::info("razor probe: {} samples of {} x {} random tokens (of {} ordinary ids)", samples,
               o.repeats, segment, vocab.size());
  for (int s = 0; s < samples; ++s) {
    if (should_stop && should_stop()) throw Error("interrupted: no head profile written");
    seq.clear();
    if (bos >= 0) seq.push_back(bos);
    const std::vector<int32_t> body =
        repeated_random_tokens(vocab, segment, o.repeats, o.seed + static_cast<uint64_t>(s));
    seq.insert(seq.end(), body.begin(), body.end());
    session.reset();
    session.eval(seq, 0);
    if (progress) progress(s + 1, samples);
  }

  HeadProbeResult r;
  r.method = "razor";
  r.n_head = c.n_head;
  const std::vector<double> e = echo.means(), ind = induction.means();
  const std::vector<double> e_kv = max_over_groups(e, c.n_layer, c.n_head, c.n_head_kv);
  const std::vector<double> ind_kv = max_over_groups(ind, c.n_layer, c.n_head, c.n_head_kv);
  r.profile = razor_profile(e_kv, ind_kv, c.n_layer, c.n_head_kv, o.normalize);
  r.per_query_head = {{"echo", e}, {"induction", ind}};
  r.per_kv_head = {{"echo", e_kv}, {"induction", ind_kv}};
  r.queries = static_cast<int64_t>(samples) * segment * (o.repeats - 1);
  r.params = {{"samples", samples},
              {"segment", segment},
              {"repeats", o.repeats},
              {"seed", o.seed},
              {"bos", bos >= 0},
              {"tokens_per_sample", static_cast<int64_t>(prefix) + segment * o.repeats},
              {"queries_per_sample", segment * (o.repeats - 1)},
              {"vocab_drawn_from", vocab.size()},
              {"n_ctx", session.n_ctx()},
              {"normalize", normalize_name(o.normalize)},
              {"value", "max(echo, induction) per KV head / max"}};
  r.seconds = now_seconds() - t0;
  return r;
}

HeadProbeResult probe_retrieval(const Engine& engine, SessionOptions so, const Haystack& hay,
                                const HeadProbeOptions& o, const ProgressFn& progress,
                                const std::function<bool()>& should_stop) {
  check_no_plan(so);
  const double t0 = now_seconds();
  const ModelConfig& c = engine.config();
  const Tokenizer& tok = engine.tokenizer();
  const int samples = o.samples > 0 ? o.samples : 8;

  HeadMeans value_mass(c.n_layer, c.n_head), needle_mass(c.n_layer, c.n_head);
  Probe probe;
  AttentionTap tap(engine, [&](int layer, int head, int32_t q_pos, std::span<const float> row) {
    value_mass.add(layer, head, span_mass(row, probe.value_begin, probe.value_end));
    needle_mass.add(layer, head, span_mass(row, probe.needle_begin, probe.needle_end));
  });
  tap.install(so);
  Session session(engine, so);
  tap.set_session(&session);
  const int64_t length = o.length > 0 ? o.length : std::min<int64_t>(1024, session.n_ctx() - 128);
  if (length < 64)
    throw Error("the context of " + std::to_string(session.n_ctx()) +
                " tokens is too small for retrieval prompts (raise --ctx-size)");
  spdlog::info("retrieval probe: {} prompts of {} context tokens from {}", samples, length,
               hay.source());
  nlohmann::json prompts = nlohmann::json::array();
  int answered = 0;
  int64_t queries = 0;
  for (int s = 0; s < samples; ++s) {
    if (should_stop && should_stop()) throw Error("interrupted: no head profile written");
    ProbeSpec spec;
    spec.kind = s % 2 == 0 ? "passkey" : "niah";
    spec.length = length;
    spec.depth = (s + 0.5) / samples;
    spec.seed = o.seed + static_cast<uint64_t>(s);
    probe = make_probe(tok, hay, spec);
    // The answer is teacher-forced with the needle's own tokens: the queries that copy it are
    // the ones a retrieval head serves, whether or not greedy decoding would get there. Both
    // tokenizers split " 12345" into " " and digits, so a whitespace token before the digits
    // belongs to the answer too (it is what follows "The pass key is").
    int64_t answer_begin = probe.value_begin;
    while (answer_begin > probe.needle_begin &&
           is_blank(tok.token_text(probe.context[answer_begin - 1], false)))
      --answer_begin;
    const std::vector<int32_t> answer(probe.context.begin() + answer_begin,
                                      probe.context.begin() + probe.value_end);
    std::vector<int32_t> seq = probe.context;
    seq.insert(seq.end(), probe.question.begin(), probe.question.end());
    seq.insert(seq.end(), answer.begin(), answer.end());
    const auto n = static_cast<int64_t>(seq.size());
    if (n > session.n_ctx())
      throw Error("a retrieval prompt needs " + std::to_string(n) +
                  " tokens but the context holds " + std::to_string(session.n_ctx()) +
                  " (lower --length or raise --ctx-size)");
    // Queries: the question and the answer tokens but the last (which predicts past the
    // answer).
    const auto q0 = static_cast<int32_t>(probe.context.size());
    tap.set_queries(q0, static_cast<int32_t>(n - 1));
    queries += n - 1 - q0;
    session.reset();
    const int64_t n_ans = static_cast<int64_t>(answer.size());
    // Logits of the last question token and of each answer token but the last predict the
    // answer: greedy would have produced it when every argmax matches.
    const std::vector<float> logits = session.eval(seq, n_ans + 1);  // [n_ans + 1][n_vocab]
    bool ok = true;
    for (int64_t i = 0; i < n_ans; ++i) {
      const float* lg = logits.data() + i * c.n_vocab;
      ok = ok && std::max_element(lg, lg + c.n_vocab) - lg == answer[i];
    }
    answered += ok ? 1 : 0;
    prompts.push_back({{"kind", spec.kind},
                       {"seed", spec.seed},
                       {"depth", spec.depth},
                       {"tokens", n},
                       {"needle", {probe.needle_begin, probe.needle_end}},
                       {"value", {probe.value_begin, probe.value_end}},
                       {"answer_tokens", {answer_begin, probe.value_end}},
                       {"answer", probe.answer},
                       {"greedy_correct", ok}});
    if (progress) progress(s + 1, samples);
  }
  spdlog::info("retrieval probe: greedy decoding would answer {} of {} prompts", answered, samples);

  HeadProbeResult r;
  r.method = "retrieval";
  r.n_head = c.n_head;
  const std::vector<double> v = value_mass.means(), nd = needle_mass.means();
  const std::vector<double> v_kv = max_over_groups(v, c.n_layer, c.n_head, c.n_head_kv);
  const std::vector<double> nd_kv = max_over_groups(nd, c.n_layer, c.n_head, c.n_head_kv);
  r.profile = normalized_profile(v_kv, c.n_layer, c.n_head_kv, o.normalize);
  r.per_query_head = {{"needle_value_mass", v}, {"needle_span_mass", nd}};
  r.per_kv_head = {{"needle_value_mass", v_kv}, {"needle_span_mass", nd_kv}};
  r.queries = queries;
  r.params = {{"samples", samples},
              {"length", length},
              {"seed", o.seed},
              {"kinds", "passkey (even samples), niah (odd samples)"},
              {"depths", "(s + 0.5) / samples"},
              {"text", hay.source()},
              {"queries", "question tokens + teacher-forced answer tokens but the last"},
              {"greedy_correct", answered},
              {"prompts", prompts},
              {"n_ctx", session.n_ctx()},
              {"normalize", normalize_name(o.normalize)},
              {"value", "needle_value_mass per KV head / max"}};
  r.seconds = now_seconds() - t0;
  return r;
}

HeadProbeResult probe_random(const ModelConfig& c, const HeadProbeOptions& o) {
  HeadProbeResult r;
  r.method = "random";
  r.n_head = c.n_head;
  r.profile = random_profile(c.n_layer, c.n_head_kv, o.seed);
  r.per_kv_head = {{"random", r.profile.values}};
  r.params = {{"seed", o.seed}, {"value", "uniform in [0, 1) (SplitMix64 from the seed)"}};
  return r;
}

}  // namespace kvs
