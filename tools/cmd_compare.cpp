// kvsieve compare: one model under many cache plans on a suite of long-prompt tasks; a
// terminal table on stdout and results.json/csv, report.md and plots in --out DIR. Cells are
// written atomically as they complete, so an interrupted run resumes where it stopped.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/compare.h"
#include "engine/compare_report.h"
#include "engine/model_registry.h"
#include "engine/sha256.h"
#include "kernels/core/error.h"
#include "models/formats/safetensors_writer.h"
#include "tools/command.h"
#include "tools/common.h"

namespace kvs::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct CompareArgs {
  ModelOptions model;
  std::string suite;
  std::vector<std::string> plans;
  std::vector<double> budgets;
  std::string out;
  std::string text;
  bool compress_question = false;
  bool fresh = false;
  bool no_plots = false;
  std::string command_line;
};

// The suite's text: as given (absolute or from the working directory), else next to the
// suite file, else from the source tree (shipped suites name ../shared/data/text/...).
fs::path resolve_text(const CompareSuite& s, const std::string& override_path) {
  if (!override_path.empty()) {
    if (!fs::is_regular_file(override_path))
      throw Error("--text " + override_path + ": no such file");
    return override_path;
  }
  const fs::path t(s.text);
  for (const fs::path& p : {t, fs::path(s.source).parent_path() / t, source_dir() / t})
    if (fs::is_regular_file(p)) return p.lexically_normal();
  throw Error(s.source + ": text: " + s.text +
              " not found (relative to the working directory, the suite or the source tree); "
              "give a text file with --text FILE");
}

// Finds tools/plot_compare.py in the source tree and runs it; returns the PNGs it wrote.
std::vector<std::string> make_plots(const fs::path& dir) {
  const fs::path script = source_dir() / "tools" / "plot_compare.py";
  if (!fs::exists(script)) {
    spdlog::warn("plots skipped: {} not found", script.string());
    return {};
  }
  // The first interpreter that has matplotlib: $KVSIEVE_PYTHON, python3 on PATH, then
  // Debian's (a pyenv or venv python3 on PATH may lack the Debian package).
  std::string python;
  std::vector<std::string> candidates = {"python3", "/usr/bin/python3"};
  if (const char* env = std::getenv("KVSIEVE_PYTHON")) candidates.insert(candidates.begin(), env);
  for (const std::string& c : candidates)
    if (std::system(("'" + c + "' -c 'import matplotlib' >/dev/null 2>&1").c_str()) == 0) {
      python = c;
      break;
    }
  if (python.empty()) {
    spdlog::warn("plots skipped: no python3 with matplotlib (apt-get install python3-matplotlib)");
    return {};
  }
  const std::string cmd = "'" + python + "' '" + script.string() + "' '" +
                          (dir / "results.json").string() + "' '" + dir.string() + "' 1>&2";
  if (std::system(cmd.c_str()) != 0) {
    spdlog::warn("plots: {} failed", script.string());
    return {};
  }
  std::vector<std::string> pngs;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".png") pngs.push_back(e.path().filename().string());
  std::sort(pngs.begin(), pngs.end());
  return pngs;
}

void run_compare(const CompareArgs& a) {
  install_interrupt_handler();
  const CompareSuite suite = load_compare_suite(a.suite);
  const std::vector<PlanVariant> variants = expand_plans(a.plans, a.budgets);
  const fs::path text_path = resolve_text(suite, a.text);
  const std::string text = read_whole_file(text_path.string(), "the text");
  check_model_options(a.model);
  auto engine = load_engine(a.model);
  const ModelConfig& c = engine->config();
  int64_t max_ctx = c.n_ctx_train;
  if (a.model.ctx > 0) max_ctx = std::min<int64_t>(max_ctx, a.model.ctx);

  CompareRunOptions ro;
  ro.n_batch = a.model.batch;
  ro.compress_question = a.compress_question;
  ro.text_path = text_path.string();
  const fs::path model_path = engine->weights().path();
  ro.model = {{"name", a.model.model},
              {"path", model_path.string()},
              {"arch", c.arch},
              {"sha256", fs::is_regular_file(model_path) ? sha256_file_hex(model_path) : ""}};
  CompareRunner runner(*engine, suite, variants, ro, text);
  std::vector<std::string> skipped;
  const std::vector<CompareCell> cells = enumerate_cells(suite, variants, max_ctx, &skipped);
  for (const auto& s : skipped) spdlog::warn("skipped {}", s);
  if (cells.empty()) throw Error(suite.source + ": no task fits the model's context");

  const fs::path dir(a.out);
  create_directories_or_throw(dir / "cells", "--out");
  spdlog::info("compare: {} cells ({} plan variants) into {}", cells.size(), variants.size(),
               dir.string());
  std::vector<json> rows;
  int reused = 0;
  bool complete = true;
  Progress bar("compare");
  for (size_t i = 0; i < cells.size(); ++i) {
    const CompareCell& cell = cells[i];
    const fs::path file = dir / "cells" / (cell.id + ".json");
    if (!a.fresh && fs::exists(file)) {
      const json old = json::parse(read_whole_file(file.string(), "a stored cell"), nullptr, false);
      const json key = runner.cell_key(cell);
      if (!old.is_discarded() && old.is_object() && old.value("task", "") == key["task"] &&
          old["params"] == key["params"] && old["plan"] == key["plan"] &&
          old.value("model_sha256", "") == key["model_sha256"]) {
        rows.push_back(old);
        ++reused;
        bar.update(static_cast<int64_t>(i + 1), static_cast<int64_t>(cells.size()));
        continue;
      }
    }
    if (interrupted()) {
      complete = false;
      break;
    }
    auto row = runner.run(cell, [] { return interrupted(); });
    if (!row) {
      complete = false;
      break;
    }
    write_file_atomic(file.string(), row->dump(1) + "\n");
    rows.push_back(std::move(*row));
    bar.update(static_cast<int64_t>(i + 1), static_cast<int64_t>(cells.size()));
  }
  bar.finish();
  if (reused > 0)
    spdlog::info("reused {} completed cells from {}", reused, (dir / "cells").string());

  json results;
  results["suite"] = suite.name;
  results["suite_json"] = suite.json;
  results["model"] = ro.model;
  results["version"] = KVSIEVE_VERSION;
  results["threads"] = engine->pool().size();
  results["seed"] = suite.seed;
  results["text"] = text_path.filename().string();
  results["compress_question"] = a.compress_question;
  results["command"] = a.command_line;
  results["complete"] = complete;
  results["skipped"] = skipped;
  json plans = json::array();
  for (const auto& v : variants)
    plans.push_back(
        {{"label", v.label}, {"policy", v.policy}, {"budget", v.budget}, {"plan", v.plan}});
  results["plans"] = plans;
  results["rows"] = rows;
  results["summary"] = summarize_compare(rows);
  write_file_atomic((dir / "results.json").string(), results.dump(1) + "\n");
  write_file_atomic((dir / "results.csv").string(), compare_csv(rows));
  const std::vector<std::string> plots = a.no_plots ? std::vector<std::string>{} : make_plots(dir);
  write_file_atomic((dir / "report.md").string(), compare_markdown(results, plots));

  std::fputs(compare_table(results["summary"]).c_str(), stdout);
  std::fflush(stdout);
  spdlog::info("wrote {}/results.json, results.csv, report.md{}", dir.string(),
               plots.empty() ? "" : fmt::format(" and {} plots", plots.size()));
  if (!complete)
    std::fprintf(stderr, "kvsieve: interrupted after %zu of %zu cells; the same command resumes\n",
                 rows.size(), cells.size());
}

void setup_compare(CLI::App& app) {
  static CompareArgs a;
  add_model_options(app, a.model);
  app.add_option("--suite", a.suite, "Suite: a JSON file or a shipped suite name (configs/compare)")
      ->required();
  app.add_option("--plans", a.plans,
                 "Cache plans: shipped plan names, plan files or policy names (full is always "
                 "included)")
      ->delimiter(',')
      ->required();
  app.add_option("--budgets", a.budgets,
                 "Budgets replacing each plan's own: fractions in (0, 1] or token counts")
      ->delimiter(',');
  app.add_option("--out", a.out, "Output directory (cells, results.json/csv, report.md, plots)")
      ->required();
  app.add_option("--text", a.text,
                 "Text for haystacks, perplexity and fidelity (overrides the suite)");
  app.add_flag("--compress-question", a.compress_question,
               "Compress the question with the context (query-aware scoring)");
  app.add_flag("--fresh", a.fresh, "Recompute every cell (default: reuse completed cells)");
  app.add_flag("--no-plots", a.no_plots, "Do not run tools/plot_compare.py");
  app.callback([] {
    // Recorded in results.json so a run can be repeated from its outputs.
    std::string cmd = "kvsieve compare -m " + a.model.model + " --suite " + a.suite + " --plans ";
    for (size_t i = 0; i < a.plans.size(); ++i) cmd += (i ? "," : "") + a.plans[i];
    if (!a.budgets.empty()) {
      cmd += " --budgets ";
      for (size_t i = 0; i < a.budgets.size(); ++i)
        cmd += (i ? "," : "") + fmt::format("{}", a.budgets[i]);
    }
    if (!a.text.empty()) cmd += " --text " + a.text;
    if (a.compress_question) cmd += " --compress-question";
    if (a.model.threads > 0) cmd += " -t " + std::to_string(a.model.threads);
    if (a.model.ctx > 0) cmd += " -c " + std::to_string(a.model.ctx);
    a.command_line = cmd + " --out " + a.out;
    run_compare(a);
  });
}

}  // namespace

KVS_COMMAND(compare, "Compare cache plans on long-prompt tasks (tables, JSON, CSV, plots)",
            setup_compare);

}  // namespace kvs::cli
