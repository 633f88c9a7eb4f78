#include "engine/compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "cache/plan.h"
#include "cache/policy.h"
#include "engine/model_registry.h"
#include "engine/perplexity.h"
#include "engine/probe_eval.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Thrown out of a fidelity reference run that was interrupted.
struct Interrupted {};

[[noreturn]] void fail(const std::string& source, const std::string& key, const std::string& msg) {
  throw Error(source + ": " + key + ": " + msg);
}

void only_keys(const json& j, const std::string& source, const std::string& where,
               std::initializer_list<const char*> known) {
  for (const auto& [k, v] : j.items()) {
    bool ok = false;
    for (const char* n : known) ok = ok || k == n;
    if (!ok) {
      std::string names;
      for (const char* n : known) names += (names.empty() ? "" : ", ") + std::string(n);
      fail(source, where + k, "unknown key (known: " + names + ")");
    }
  }
}

int64_t get_int(const json& j, const std::string& source, const std::string& key, int64_t lo,
                int64_t hi, std::optional<int64_t> def = std::nullopt) {
  if (!j.contains(key)) {
    if (def) return *def;
    fail(source, key, "missing");
  }
  const json& v = j.at(key);
  if (!v.is_number_integer()) fail(source, key, "expected an integer");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) fail(source, key, fmt::format("{} is outside [{}, {}]", x, lo, hi));
  return x;
}

std::string budget_text(double b) {
  return fmt::format("{}", b);
}

std::string safe_id(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_' || c == '@';
    out += ok ? c : '_';
  }
  return out;
}

bool is_policy_name(const std::string& s) {
  for (const PolicyInfo* p : policies())
    if (p->name == s) return true;
  return false;
}

// Every (length, depth, sample) point gets its own key and filler; all plans share it.
uint64_t probe_seed(uint64_t suite_seed, int64_t length, double depth, int sample) {
  return suite_seed * 1000003ull + static_cast<uint64_t>(sample) * 7919ull +
         static_cast<uint64_t>(length) * 31ull + static_cast<uint64_t>(std::llround(depth * 1000));
}

}  // namespace

CompareSuite parse_compare_suite(const json& j, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": a compare suite is a JSON object");
  only_keys(j, source, "", {"name", "description", "text", "seed", "max_answer_tokens", "tasks"});
  CompareSuite s;
  s.source = source;
  s.json = j;
  s.name = j.value("name", fs::path(source).stem().string());
  if (!j.contains("text") || !j["text"].is_string()) fail(source, "text", "missing (a text file)");
  s.text = j["text"].get<std::string>();
  s.seed = static_cast<uint64_t>(get_int(j, source, "seed", 0, int64_t{1} << 40, 0));
  s.max_answer_tokens = static_cast<int>(get_int(j, source, "max_answer_tokens", 1, 256, 12));
  if (!j.contains("tasks") || !j["tasks"].is_array() || j["tasks"].empty())
    fail(source, "tasks", "expected a non-empty array");
  for (size_t i = 0; i < j["tasks"].size(); ++i) {
    const json& t = j["tasks"][i];
    const std::string where = fmt::format("tasks[{}].", i);
    if (!t.is_object() || !t.contains("task") || !t["task"].is_string())
      fail(source, where + "task", "each task is an object with a \"task\" name");
    CompareTask task;
    task.type = t["task"].get<std::string>();
    const std::string src = source + ": " + where.substr(0, where.size() - 1);
    if (task.type == "passkey" || task.type == "niah") {
      only_keys(t, source, where, {"task", "lengths", "depths", "samples"});
      if (!t.contains("lengths") || !t["lengths"].is_array() || t["lengths"].empty())
        fail(source, where + "lengths", "expected a non-empty array of token counts");
      for (const json& v : t["lengths"]) {
        if (!v.is_number_integer() || v.get<int64_t>() < 64 || v.get<int64_t>() > (1 << 20))
          fail(source, where + "lengths", "each length is an integer in [64, 1048576]");
        task.lengths.push_back(v.get<int64_t>());
      }
      if (!t.contains("depths") || !t["depths"].is_array() || t["depths"].empty())
        fail(source, where + "depths", "expected a non-empty array of fractions");
      for (const json& v : t["depths"]) {
        if (!v.is_number() || !(v.get<double>() >= 0.0 && v.get<double>() <= 1.0))
          fail(source, where + "depths", "each depth is a number in [0, 1]");
        task.depths.push_back(v.get<double>());
      }
      task.samples = static_cast<int>(get_int(t, src, "samples", 1, 1000, 1));
    } else if (task.type == "perplexity") {
      only_keys(t, source, where, {"task", "ctx", "tokens", "batch"});
      task.ctx = get_int(t, src, "ctx", 16, 1 << 20);
      task.tokens = get_int(t, src, "tokens", 2, 1 << 24);
      task.batch = static_cast<int>(get_int(t, src, "batch", 0, 1 << 16, 0));
    } else if (task.type == "fidelity") {
      only_keys(t, source, where, {"task", "ctx", "tokens", "samples"});
      task.ctx = get_int(t, src, "ctx", 2, 1 << 20);
      task.tokens = get_int(t, src, "tokens", 2, 1 << 16);
      task.samples = static_cast<int>(get_int(t, src, "samples", 1, 1000, 1));
    } else {
      fail(source, where + "task",
           "unknown task '" + task.type + "' (passkey, niah, perplexity, fidelity)");
    }
    s.tasks.push_back(std::move(task));
  }
  return s;
}

CompareSuite load_compare_suite(const std::string& name_or_path) {
  std::string path = name_or_path;
  if (!fs::exists(path)) {
    const fs::path named = config_dir() / "compare" / (name_or_path + ".json");
    if (name_or_path.find('/') != std::string::npos || !fs::exists(named)) {
      std::string names;
      if (fs::is_directory(config_dir() / "compare"))
        for (const auto& e : fs::directory_iterator(config_dir() / "compare"))
          if (e.path().extension() == ".json")
            names += (names.empty() ? "" : ", ") + e.path().stem().string();
      throw Error("no suite file or shipped suite named '" + name_or_path + "' (shipped: " + names +
                  ")");
    }
    path = named.string();
  }
  std::ifstream f(path);
  if (!f) throw Error(path + ": cannot open the suite");
  std::stringstream ss;
  ss << f.rdbuf();
  const json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) throw Error(path + ": the suite is not valid JSON");
  return parse_compare_suite(j, path);
}

std::vector<PlanVariant> expand_plans(const std::vector<std::string>& plans,
                                      const std::vector<double>& budgets) {
  for (double b : budgets)
    if (!(b > 0.0 && b <= 1.0) && !(b > 1.0 && b == std::floor(b)))
      throw Error("--budgets: " + budget_text(b) +
                  " is neither a fraction in (0, 1] nor a token count");
  std::vector<PlanVariant> out;
  out.push_back({"full", "full", 1.0, json{{"policy", "full"}}});
  std::set<std::string> seen{"full"};
  for (const std::string& entry : plans) {
    if (entry.empty()) throw Error("--plans: empty plan name");
    json base;
    std::string name = entry;
    if (!fs::exists(entry) && is_policy_name(entry) &&
        !fs::exists(config_dir() / "cache" / (entry + ".json"))) {
      base = json{{"policy", entry}};
    } else {
      base = load_cache_plan(entry).json;
      // Files and shipped plans in subdirectories are labelled by their stem.
      if (fs::exists(entry) || entry.find('/') != std::string::npos)
        name = fs::path(entry).stem().string();
    }
    const std::string policy = base.value("policy", "");
    if (policy == "full") continue;
    std::vector<std::pair<std::string, json>> vs;
    if (!budgets.empty()) {
      for (double b : budgets) {
        json j = base;
        j["budget"] = b;
        vs.emplace_back(name + "@" + budget_text(b), j);
      }
    } else {
      if (!base.contains("budget"))
        throw Error("plan '" + entry + "' has no budget: give one with --budgets");
      vs.emplace_back(name, base);
    }
    for (auto& [label, j] : vs) {
      parse_cache_plan(j, label);  // reject a bad plan before any cell runs
      if (!seen.insert(label).second) continue;
      out.push_back({label, policy, j["budget"].get<double>(), j});
    }
  }
  return out;
}

std::vector<CompareCell> enumerate_cells(const CompareSuite& suite,
                                         const std::vector<PlanVariant>& variants, int64_t max_ctx,
                                         std::vector<std::string>* skipped) {
  std::vector<CompareCell> cells;
  auto skip = [&](const std::string& what) {
    if (skipped) skipped->push_back(what);
  };
  for (size_t ti = 0; ti < suite.tasks.size(); ++ti) {
    const CompareTask& t = suite.tasks[ti];
    auto add = [&](const std::string& point, json params) {
      for (size_t vi = 0; vi < variants.size(); ++vi)
        cells.push_back(
            {safe_id(fmt::format("t{}_{}_{}__{}", ti, t.type, point, variants[vi].label)), ti, vi,
             params});
    };
    if (t.type == "passkey" || t.type == "niah") {
      for (int64_t len : t.lengths) {
        if (len + 128 + suite.max_answer_tokens > max_ctx) {
          skip(fmt::format("{} length {} (the model's context is {})", t.type, len, max_ctx));
          continue;
        }
        for (double d : t.depths)
          for (int s = 0; s < t.samples; ++s)
            add(fmt::format("L{}_d{:.3f}_s{}", len, d, s),
                json{{"length", len},
                     {"depth", d},
                     {"sample", s},
                     {"seed", probe_seed(suite.seed, len, d, s)}});
      }
    } else if (t.type == "perplexity") {
      if (t.ctx > max_ctx) {
        skip(fmt::format("perplexity ctx {} (the model's context is {})", t.ctx, max_ctx));
        continue;
      }
      json params{{"ctx", t.ctx}, {"tokens", t.tokens}};
      if (t.batch > 0) params["batch"] = t.batch;
      add(fmt::format("c{}_n{}", t.ctx, t.tokens), params);
    } else if (t.type == "fidelity") {
      if (t.ctx + t.tokens > max_ctx) {
        skip(fmt::format("fidelity ctx {} + {} (the model's context is {})", t.ctx, t.tokens,
                         max_ctx));
        continue;
      }
      for (int s = 0; s < t.samples; ++s)
        add(fmt::format("c{}_n{}_s{}", t.ctx, t.tokens, s),
            json{{"ctx", t.ctx}, {"tokens", t.tokens}, {"sample", s}});
    }
  }
  return cells;
}

CompareRunner::CompareRunner(const Engine& engine, const CompareSuite& suite,
                             std::vector<PlanVariant> variants, CompareRunOptions opts,
                             const std::string& text)
    : engine_(engine), suite_(suite), variants_(std::move(variants)), opts_(std::move(opts)) {
  hay_ = std::make_unique<Haystack>(engine.tokenizer(), text, opts_.text_path);
}

json CompareRunner::cell_key(const CompareCell& cell) const {
  const CompareTask& t = suite_.tasks[cell.task];
  json params = cell.params;
  params["text"] = fs::path(opts_.text_path).filename().string();
  if (t.type == "passkey" || t.type == "niah") {
    params["compress_question"] = opts_.compress_question;
    params["max_answer_tokens"] = suite_.max_answer_tokens;
  }
  return json{{"task", t.type},
              {"params", params},
              {"plan", variants_[cell.variant].plan},
              {"model_sha256", opts_.model.value("sha256", "")}};
}

std::vector<int32_t> CompareRunner::text_slice(int64_t offset, int64_t n) const {
  const auto& ht = hay_->tokens();
  const int64_t hn = static_cast<int64_t>(ht.size());
  std::vector<int32_t> out(static_cast<size_t>(n));  // [n]
  for (int64_t i = 0; i < n; ++i) out[i] = ht[(offset + i) % hn];
  return out;
}

const FidelityReference& CompareRunner::reference(size_t task, int sample,
                                                  const std::function<bool()>& should_stop) {
  const auto key = std::make_pair(task, sample);
  auto it = refs_.find(key);
  if (it != refs_.end()) return it->second;
  const CompareTask& t = suite_.tasks[task];
  std::vector<int32_t> ctx = engine_.tokenizer().encode("", true, false);
  const int64_t off = static_cast<int64_t>(sample) * (t.ctx + t.tokens);
  const auto body = text_slice(off, t.ctx - static_cast<int64_t>(ctx.size()));
  ctx.insert(ctx.end(), body.begin(), body.end());
  const auto cont = text_slice(off + static_cast<int64_t>(body.size()), t.tokens);
  SessionOptions so;
  so.n_batch = opts_.n_batch;
  so.n_ctx = static_cast<int>(t.ctx + t.tokens + 8);
  so.device = "cpu";  // the plans run on the CPU: the reference must share their arithmetic
  FidelityReference ref;
  const FidelityResult r = teacher_forced(engine_, so, ctx, cont, nullptr, &ref, should_stop);
  if (r.steps < ref.steps) throw Interrupted();
  return refs_.emplace(key, std::move(ref)).first->second;
}

std::optional<json> CompareRunner::run(const CompareCell& cell,
                                       const std::function<bool()>& should_stop) {
  const auto t0 = std::chrono::steady_clock::now();
  const CompareTask& t = suite_.tasks[cell.task];
  const PlanVariant& v = variants_[cell.variant];
  SessionOptions so;
  so.n_batch = opts_.n_batch;
  // Every cell on the CPU, the full cache too: plans run there, and a comparison must not
  // mix devices' rounding into the policies' differences.
  so.device = "cpu";
  if (v.policy != "full")
    so.plan = std::make_shared<const CachePlan>(parse_cache_plan(v.plan, v.label));
  json metrics;
  try {
    if (t.type == "passkey" || t.type == "niah") {
      ProbeSpec spec;
      spec.kind = t.type;
      spec.length = cell.params["length"].get<int64_t>();
      spec.depth = cell.params["depth"].get<double>();
      spec.seed = cell.params["seed"].get<uint64_t>();
      const Probe p = make_probe(engine_.tokenizer(), *hay_, spec);
      so.n_ctx =
          static_cast<int>(p.context.size() + p.question.size()) + suite_.max_answer_tokens + 8;
      const ProbeOutcome o = answer_probe(engine_, so, p, opts_.compress_question,
                                          suite_.max_answer_tokens, should_stop);
      if (o.interrupted) return std::nullopt;
      metrics = json{{"correct", o.correct},
                     {"answer", p.answer},
                     {"generated", o.generated},
                     {"needle_begin", p.needle_begin},
                     {"needle_end", p.needle_end},
                     {"prefill_s", o.prefill_seconds},
                     {"decode_s", o.decode_seconds},
                     {"manager_s", o.manager_seconds},
                     {"compressions", o.compressions},
                     {"kv_bytes_in_use", o.kv_bytes_in_use},
                     {"kv_bytes_full", o.kv_bytes_full}};
    } else if (t.type == "perplexity") {
      std::vector<int32_t> toks = engine_.tokenizer().encode("", true, false);
      const auto body = text_slice(0, t.tokens - static_cast<int64_t>(toks.size()));
      toks.insert(toks.end(), body.begin(), body.end());
      so.n_ctx = static_cast<int>(t.ctx);
      if (t.batch > 0) so.n_batch = t.batch;
      const PerplexityResult r = perplexity(engine_, so, toks, {}, should_stop);
      if (should_stop && should_stop()) return std::nullopt;
      metrics = json{{"perplexity", r.perplexity},       {"mean_nll", r.mean_nll},
                     {"n_scored", r.n_scored},           {"n_chunks", r.n_chunks},
                     {"streamed", r.streamed},           {"eval_s", r.seconds},
                     {"kv_peak_bytes", r.kv_peak_bytes}, {"kv_bytes_in_use", r.kv_bytes_in_use},
                     {"kv_bytes_full", r.kv_bytes_full}};
    } else {  // fidelity
      const int sample = cell.params["sample"].get<int>();
      const FidelityReference& ref = reference(cell.task, sample, should_stop);
      std::vector<int32_t> ctx = engine_.tokenizer().encode("", true, false);
      const int64_t off = static_cast<int64_t>(sample) * (t.ctx + t.tokens);
      const auto body = text_slice(off, t.ctx - static_cast<int64_t>(ctx.size()));
      ctx.insert(ctx.end(), body.begin(), body.end());
      const auto cont = text_slice(off + static_cast<int64_t>(body.size()), t.tokens);
      so.n_ctx = static_cast<int>(t.ctx + t.tokens + 8);
      const FidelityResult r = teacher_forced(engine_, so, ctx, cont, &ref, nullptr, should_stop);
      if (r.steps < ref.steps) return std::nullopt;
      metrics = json{{"mean_kl", r.mean_kl},
                     {"max_kl", r.max_kl},
                     {"top1_agreement", r.top1_agreement},
                     {"steps", r.steps},
                     {"decode_s", r.decode_seconds},
                     {"decode_tps", r.decode_tps()},
                     {"kv_bytes_end", r.kv_bytes_in_use},
                     {"kv_bytes_full_end", r.kv_bytes_full},
                     {"kv_bytes_in_use", r.kv_bytes_context},
                     {"kv_bytes_full", r.kv_bytes_full_context}};
    }
  } catch (const Interrupted&) {
    return std::nullopt;
  }
  const double full = metrics.value("kv_bytes_full", 0.0);
  metrics["kv_fraction"] = full > 0 ? metrics.value("kv_bytes_in_use", 0.0) / full : 1.0;
  json row = cell_key(cell);
  row["id"] = cell.id;
  row["plan_label"] = v.label;
  row["policy"] = v.policy;
  row["budget"] = v.budget;
  row["seed"] = suite_.seed;
  row["suite"] = suite_.name;
  row["model"] = opts_.model;
  row["version"] = KVSIEVE_VERSION;
  row["threads"] = engine_.pool().size();
  row["metrics"] = metrics;
  row["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return row;
}

}  // namespace kvs
