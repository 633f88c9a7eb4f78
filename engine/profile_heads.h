#pragma once
// Head profiling (`kvsieve profile-heads`, docs/head-profiling.md): runs a model on probe
// inputs, recomputes each head's attention probabilities from the queries a Session reports
// after attention and the keys in its cache, and scores the heads with engine/head_probe.h.
//   razor:     RazorAttention's probe: random tokens repeated; echo and induction scores.
//   retrieval: passkey / needle prompts over real text; attention mass on the needle's
//              value tokens while the question is read and the answer is copied.
//   random:    uniform values from a seed (the "random heads" baseline).
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "cache/head_profile.h"
#include "engine/head_probe.h"
#include "engine/session.h"
#include "engine/tasks.h"

namespace kvs {

struct HeadProbeOptions {
  uint64_t seed = 0;
  int samples = 0;  // sequences (razor) or prompts (retrieval); 0: 4 for razor, 8 for retrieval
  Normalize normalize = Normalize::Model;
  // razor: `repeats` copies of a random segment of `segment` tokens (0: fit the context, at
  // most 256), after BOS when the model adds one.
  int segment = 0;
  int repeats = 4;
  // retrieval: context tokens of each prompt (0: min(1024, context - 128)); prompts alternate
  // passkey and niah, needle depths spread evenly over (0, 1).
  int64_t length = 0;
};

struct HeadProbeResult {
  std::string method;
  HeadProfile profile;  // [n_layer][n_head_kv] in [0, 1]
  int n_head = 0;       // query heads per layer
  // Raw statistics, each a mean over the scored queries: name -> [n_layer][n_head] per query
  // head and name -> [n_layer][n_head_kv] per KV head (max over the GQA group).
  std::vector<std::pair<std::string, std::vector<double>>> per_query_head;
  std::vector<std::pair<std::string, std::vector<double>>> per_kv_head;
  nlohmann::json params = nlohmann::json::object();  // what ran: lengths, samples, seed, ...
  int64_t queries = 0;                               // (query, layer-independent) rows scored
  double seconds = 0.0;
};

// progress(done, total) after each sample; should_stop is polled between samples (a stopped
// probe throws kvs::Error: a partial profile is never returned). `so` must carry no cache
// plan: the probe needs every key.
HeadProbeResult probe_razor(const Engine& engine, SessionOptions so, const HeadProbeOptions& o,
                            const ProgressFn& progress = {},
                            const std::function<bool()>& should_stop = {});
HeadProbeResult probe_retrieval(const Engine& engine, SessionOptions so, const Haystack& hay,
                                const HeadProbeOptions& o, const ProgressFn& progress = {},
                                const std::function<bool()>& should_stop = {});
HeadProbeResult probe_random(const ModelConfig& c, const HeadProbeOptions& o);

// Token ids a random probe may draw: not control tokens, not BOS/EOS/EOG/UNK/PAD, not
// byte-fallback or placeholder pieces like "<0x0A>" or "<unused12>", and with text.
std::vector<int32_t> ordinary_token_ids(const Tokenizer& tok);

}  // namespace kvs
