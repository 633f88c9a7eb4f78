// kvsieve calibrate-qfilter: computes Q-Filters directions (cache/policies/qfilter.h) for a
// model from its post-RoPE queries on real text, for plans with "policy": "qfilter" and
// "calibration": FILE. The text is cut into --samples sequences of --seq-len tokens (the paper
// uses about 20 sequences); each is evaluated from an empty cache.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>

#include "cache/policies/qfilter.h"
#include "kernels/core/error.h"
#include "tools/command.h"
#include "tools/common.h"

namespace kvs::cli {
namespace {

struct CalibrateArgs {
  ModelOptions model;
  std::string file;
  std::string out;
  int samples = 20;
  int seq_len = 512;
};

void run_calibrate(const CalibrateArgs& a) {
  install_interrupt_handler();
  if (!a.model.cache.empty())
    throw UsageError("--cache: calibration needs every query of a full cache, give no plan");
  if (a.samples < 1) throw Error("--samples must be >= 1, got " + std::to_string(a.samples));
  if (a.seq_len < 2) throw Error("--seq-len must be >= 2, got " + std::to_string(a.seq_len));
  check_model_options(a.model);
  const std::string text = read_prompt("", a.file, false, true);
  auto engine = load_engine(a.model);
  const ModelConfig& c = engine->config();
  const Tokenizer& tok = engine->tokenizer();
  const int32_t bos = tok.special().add_bos ? tok.special().bos : -1;
  const std::vector<int32_t> ids = tok.encode(text, false, false);
  const int64_t body = a.seq_len - (bos >= 0 ? 1 : 0);
  if (body < 1)
    throw Error("--seq-len " + std::to_string(a.seq_len) + " leaves no room for text after BOS");
  const int64_t n_seq = std::min<int64_t>(a.samples, static_cast<int64_t>(ids.size()) / body);
  if (n_seq < 1)
    throw Error(a.file + ": " + std::to_string(ids.size()) +
                " tokens, fewer than one sequence of " + std::to_string(body) +
                " (lower --seq-len or give more text)");
  if (n_seq < a.samples)
    spdlog::warn("{}: text holds only {} sequences of {} tokens (asked for {})", a.file, n_seq,
                 a.seq_len, a.samples);

  QFilterCalibrator calib(c.n_layer, c.n_head, c.n_head_kv, c.head_dim_k);
  SessionOptions so = session_options(a.model);
  so.n_ctx = std::max(so.n_ctx, a.seq_len);
  so.on_queries = [&](int layer, const float* q, const int32_t*, int64_t T) {
    calib.add(layer, q, T);
  };
  Session session(*engine, so);
  Progress bar("calibrate");
  for (int64_t s = 0; s < n_seq && !interrupted(); ++s) {
    std::vector<int32_t> seq;
    if (bos >= 0) seq.push_back(bos);
    seq.insert(seq.end(), ids.begin() + s * body, ids.begin() + (s + 1) * body);
    session.reset();
    session.eval(seq, 0);
    bar.update(s + 1, n_seq);
  }
  bar.finish();
  if (interrupted()) throw Error("interrupted: no calibration written");
  const Calibration cal = calib.finish();
  const std::filesystem::path parent = std::filesystem::path(a.out).parent_path();
  if (!parent.empty()) create_directories_or_throw(parent, a.out);
  save_calibration(cal, a.out);
  spdlog::info("wrote {}: {} layers x {} KV heads x {} dims from {} sequences of {} tokens", a.out,
               cal.n_layer, cal.n_head_kv, cal.head_dim, n_seq, a.seq_len);
}

void setup_calibrate(CLI::App& app) {
  static CalibrateArgs a;
  add_model_options(app, a.model);
  app.add_option("-f,--file", a.file, "Text to calibrate on")->required();
  app.add_option("-o,--output", a.out, "Filters file to write (.json, else binary)")->required();
  app.add_option("--samples", a.samples, "Sequences to run")->capture_default_str();
  app.add_option("--seq-len", a.seq_len, "Tokens per sequence")->capture_default_str();
  app.callback([] { run_calibrate(a); });
}

}  // namespace

// KVS_COMMAND names a command after its identifier, which cannot hold the dash.
static CommandRegistrar kvs_command_registrar_calibrate_qfilter(
    "calibrate-qfilter", "Compute Q-Filters directions for the qfilter cache policy",
    setup_calibrate);

}  // namespace kvs::cli
