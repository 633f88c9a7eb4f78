#pragma once
// Summaries of compare rows: one line per plan variant (terminal table, report.md) and the
// flat CSV of every row.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kvs {

// One object per plan label, in the order labels first appear in `rows`: accuracy per probe
// task (and n), perplexity, fidelity (mean KL, top-1 agreement, decode tokens/s), the mean
// fraction of the full cache's bytes kept and the KV bytes at the longest probe.
nlohmann::json summarize_compare(const std::vector<nlohmann::json>& rows);
std::string compare_table(const nlohmann::json& summary);  // aligned, for the terminal
std::string compare_csv(const std::vector<nlohmann::json>& rows);
// report.md: how the run was made, the summary table, per-length accuracy and the plots.
std::string compare_markdown(const nlohmann::json& results, const std::vector<std::string>& plots);

}  // namespace kvs
