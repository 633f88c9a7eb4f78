#pragma once
// kvsieve compare: one model under many cache plans on the same long-prompt tasks. A suite
// (configs/compare/NAME.json, schema in docs/compare.md) lists tasks; each (task instance,
// plan variant) is a cell whose result row is self-describing (model, plan JSON, budget,
// seed, task parameters, version), so a figure can be reproduced from the rows alone.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/fidelity.h"
#include "engine/tasks.h"

namespace kvs {

struct CompareTask {
  std::string type;              // passkey, niah, perplexity, fidelity
  std::vector<int64_t> lengths;  // passkey/niah: context tokens
  std::vector<double> depths;    // passkey/niah: needle depths in [0, 1]
  int samples = 1;               // passkey/niah/fidelity: seeds (or text offsets) per point
  int64_t ctx = 0;               // perplexity: context; fidelity: tokens of context
  int64_t tokens = 0;            // perplexity: tokens of text; fidelity: continuation
  int batch = 0;                 // perplexity: evaluation chunk (0: the run's batch size);
                                 // prefill-mode plans compress after every chunk
};

struct CompareSuite {
  std::string name;
  std::string source;  // file the suite came from
  std::string text;    // filler / evaluation text (path as given in the suite)
  uint64_t seed = 0;
  int max_answer_tokens = 12;
  std::vector<CompareTask> tasks;
  nlohmann::json json;  // the suite as given
};

// Throws kvs::Error naming the file and key. A name without '/' or ".json" is looked up in
// <config dir>/compare/NAME.json.
CompareSuite parse_compare_suite(const nlohmann::json& j, const std::string& source);
CompareSuite load_compare_suite(const std::string& name_or_path);

// One plan at one budget: "knorm@0.25" is {"policy": "knorm", "budget": 0.25}.
struct PlanVariant {
  std::string label;
  std::string policy;
  double budget = 1.0;  // the plan's budget value (fraction or token count)
  nlohmann::json plan;  // complete plan JSON
};

// Each entry is a shipped plan name, a plan file or a bare policy name; budgets (when given)
// replace every non-full plan's budget. "full" is always included, first.
std::vector<PlanVariant> expand_plans(const std::vector<std::string>& plans,
                                      const std::vector<double>& budgets);

struct CompareCell {
  std::string id;  // file-name-safe, unique in a run
  size_t task = 0;
  size_t variant = 0;
  nlohmann::json params;  // task parameters of this cell (length, depth, sample, seed, ...)
};

// Cells in run order: task by task, point by point, variant by variant. Points that need
// more context than max_ctx are skipped (their lengths are listed in `skipped`).
std::vector<CompareCell> enumerate_cells(const CompareSuite& suite,
                                         const std::vector<PlanVariant>& variants, int64_t max_ctx,
                                         std::vector<std::string>* skipped);

struct CompareRunOptions {
  int n_batch = 256;
  bool compress_question = false;
  std::string text_path;  // resolved path of the suite's text
  nlohmann::json model;   // {"path", "name", "sha256", "arch"} recorded in every row
};

// Holds what cells of one run share: the haystack, the text's tokens, fidelity references.
class CompareRunner {
 public:
  CompareRunner(const Engine& engine, const CompareSuite& suite, std::vector<PlanVariant> variants,
                CompareRunOptions opts, const std::string& text);
  const std::vector<PlanVariant>& variants() const { return variants_; }
  // The identity of a cell (compared on resume: a stored row is reused only if equal).
  nlohmann::json cell_key(const CompareCell& cell) const;
  // Runs a cell and returns its row; std::nullopt when interrupted.
  std::optional<nlohmann::json> run(const CompareCell& cell,
                                    const std::function<bool()>& should_stop = {});

 private:
  const FidelityReference& reference(size_t task, int sample,
                                     const std::function<bool()>& should_stop);
  std::vector<int32_t> text_slice(int64_t offset, int64_t n) const;

  const Engine& engine_;
  const CompareSuite& suite_;
  std::vector<PlanVariant> variants_;
  CompareRunOptions opts_;
  std::unique_ptr<Haystack> hay_;
  std::map<std::pair<size_t, int>, FidelityReference> refs_;  // (task, sample) -> reference
};

}  // namespace kvs
