#include "engine/compare_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace kvs {
namespace {

using json = nlohmann::json;

struct Acc {
  double sum = 0.0;
  int64_t n = 0;
  void add(double x) {
    sum += x;
    ++n;
  }
  json value() const { return n > 0 ? json(sum / static_cast<double>(n)) : json(nullptr); }
};

std::string num(const json& v, const char* f) {
  if (v.is_null()) return "-";
  return fmt::format(fmt::runtime(f), v.get<double>());
}

std::string pct(const json& v) {
  return v.is_null() ? std::string("-") : fmt::format("{:.1f}%", 100.0 * v.get<double>());
}

std::string csv_field(std::string s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string field(const json& o, const char* key) {
  if (!o.contains(key) || o[key].is_null()) return "";
  const json& v = o[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return fmt::format("{:.6g}", v.get<double>());
  return v.dump();
}

}  // namespace

json summarize_compare(const std::vector<json>& rows) {
  std::vector<std::string> order;
  struct S {
    std::string policy;
    double budget = 1.0;
    Acc passkey, niah, ppl, kl, top1, tps, frac, ppl_frac;
    int64_t max_len = -1;
    double kv_at_max = 0.0;
  };
  std::map<std::string, S> by;
  for (const json& r : rows) {
    const std::string label = r.value("plan_label", "?");
    if (!by.count(label)) order.push_back(label);
    S& s = by[label];
    s.policy = r.value("policy", "");
    s.budget = r.value("budget", 1.0);
    const std::string task = r.value("task", "");
    const json& m = r["metrics"];
    if (task == "passkey" || task == "niah") {
      (task == "passkey" ? s.passkey : s.niah).add(m.value("correct", false) ? 1.0 : 0.0);
      s.frac.add(m.value("kv_fraction", 1.0));
      const int64_t len = r["params"].value("length", int64_t{0});
      if (len > s.max_len) {
        s.max_len = len;
        s.kv_at_max = m.value("kv_bytes_in_use", 0.0);
      }
    } else if (task == "perplexity") {
      s.ppl.add(m.value("perplexity", 0.0));
      s.ppl_frac.add(m.value("kv_fraction", 1.0));
    } else if (task == "fidelity") {
      s.kl.add(m.value("mean_kl", 0.0));
      s.top1.add(m.value("top1_agreement", 0.0));
      s.tps.add(m.value("decode_tps", 0.0));
      if (s.frac.n == 0 && s.passkey.n == 0 && s.niah.n == 0)
        s.frac.add(m.value("kv_fraction", 1.0));
    }
  }
  json out = json::array();
  for (const std::string& label : order) {
    S& s = by[label];
    if (s.frac.n == 0) s.frac = s.ppl_frac;  // a perplexity-only run: the cache at its end
    out.push_back(
        {{"plan", label},
         {"policy", s.policy},
         {"budget", s.budget},
         {"passkey_accuracy", s.passkey.value()},
         {"passkey_n", s.passkey.n},
         {"niah_accuracy", s.niah.value()},
         {"niah_n", s.niah.n},
         {"perplexity", s.ppl.value()},
         {"mean_kl", s.kl.value()},
         {"top1_agreement", s.top1.value()},
         {"decode_tps", s.tps.value()},
         {"kv_fraction", s.frac.value()},
         {"max_length", s.max_len},
         {"kv_mib_at_max_length", s.max_len >= 0 ? json(s.kv_at_max / (1 << 20)) : json(nullptr)}});
  }
  return out;
}

std::string compare_table(const json& summary) {
  const std::vector<std::string> head = {"plan", "kv kept", "passkey", "niah",
                                         "ppl",  "KL",      "top-1",   "decode t/s"};
  std::vector<std::vector<std::string>> cells;
  for (const json& s : summary) {
    auto acc = [&](const char* k, const char* n) {
      return s[k].is_null() ? std::string("-")
                            : fmt::format("{:.2f} ({})", s[k].get<double>(), s[n].get<int64_t>());
    };
    cells.push_back({s["plan"].get<std::string>(), pct(s["kv_fraction"]),
                     acc("passkey_accuracy", "passkey_n"), acc("niah_accuracy", "niah_n"),
                     num(s["perplexity"], "{:.3f}"), num(s["mean_kl"], "{:.4f}"),
                     num(s["top1_agreement"], "{:.3f}"), num(s["decode_tps"], "{:.1f}")});
  }
  std::vector<size_t> w(head.size());
  for (size_t c = 0; c < head.size(); ++c) {
    w[c] = head[c].size();
    for (const auto& r : cells) w[c] = std::max(w[c], r[c].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (size_t c = 0; c < r.size(); ++c)
      s += (c == 0 ? fmt::format("{:<{}}", r[c], w[c]) : fmt::format("  {:>{}}", r[c], w[c]));
    return s + "\n";
  };
  std::string out = line(head);
  for (const auto& r : cells) out += line(r);
  return out;
}

std::string compare_csv(const std::vector<json>& rows) {
  static const char* params[] = {"length", "depth", "sample", "seed", "ctx", "tokens"};
  static const char* metrics[] = {
      "correct",    "answer",          "generated",     "perplexity",  "mean_kl",  "top1_agreement",
      "decode_tps", "kv_bytes_in_use", "kv_bytes_full", "kv_fraction", "prefill_s"};
  std::string out = "id,task,plan,policy,budget";
  for (const char* p : params) (out += ',') += p;
  for (const char* m : metrics) (out += ',') += m;
  out += ",seconds\n";
  for (const json& r : rows) {
    // Appended piece by piece: GCC 12 reports a false -Wrestrict on "," + std::string.
    std::vector<std::string> f = {csv_field(field(r, "id")), field(r, "task"),
                                  csv_field(field(r, "plan_label")), field(r, "policy"),
                                  field(r, "budget")};
    for (const char* p : params) f.push_back(csv_field(field(r["params"], p)));
    for (const char* m : metrics) f.push_back(csv_field(field(r["metrics"], m)));
    f.push_back(field(r, "seconds"));
    for (size_t i = 0; i < f.size(); ++i) {
      if (i > 0) out += ',';
      out += f[i];
    }
    out += '\n';
  }
  return out;
}

std::string compare_markdown(const json& results, const std::vector<std::string>& plots) {
  std::string md = fmt::format("# kvsieve compare: {} on {}\n\n", results.value("suite", "?"),
                               results["model"].value("name", "?"));
  md += fmt::format("- model: `{}` (sha256 `{}`)\n", results["model"].value("path", ""),
                    results["model"].value("sha256", ""));
  md +=
      fmt::format("- kvsieve {}, {} threads, seed {}, text `{}`\n", results.value("version", ""),
                  results.value("threads", 0), results.value("seed", 0), results.value("text", ""));
  md += fmt::format("- command: `{}`\n", results.value("command", ""));
  md += fmt::format("- {} cells{}\n\n", results["rows"].size(),
                    results.value("complete", true) ? "" : " (interrupted: incomplete)");
  md +=
      "## Summary\n\n| plan | kv kept | passkey | niah | perplexity | mean KL | top-1 | "
      "decode t/s |\n|---|---|---|---|---|---|---|---|\n";
  for (const json& s : results["summary"]) {
    auto acc = [&](const char* k, const char* n) {
      return s[k].is_null() ? std::string("-")
                            : fmt::format("{:.2f} (n={})", s[k].get<double>(), s[n].get<int64_t>());
    };
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", s["plan"].get<std::string>(),
                      pct(s["kv_fraction"]), acc("passkey_accuracy", "passkey_n"),
                      acc("niah_accuracy", "niah_n"), num(s["perplexity"], "{:.3f}"),
                      num(s["mean_kl"], "{:.4f}"), num(s["top1_agreement"], "{:.3f}"),
                      num(s["decode_tps"], "{:.1f}"));
  }
  // Probe accuracy by context length (all depths and samples pooled).
  std::set<int64_t> lengths;
  std::map<std::string, std::map<int64_t, std::pair<int, int>>> acc;
  std::vector<std::string> order;
  for (const json& r : results["rows"]) {
    const std::string task = r.value("task", "");
    if (task != "passkey" && task != "niah") continue;
    const std::string key = task + " " + r.value("plan_label", "");
    if (!acc.count(key)) order.push_back(key);
    const int64_t len = r["params"].value("length", int64_t{0});
    lengths.insert(len);
    auto& c = acc[key][len];
    c.first += r["metrics"].value("correct", false) ? 1 : 0;
    c.second += 1;
  }
  if (!order.empty()) {
    md += "\n## Probe accuracy by context length\n\n| task plan |";
    for (int64_t l : lengths) md += fmt::format(" {} |", l);
    md += "\n|---|";
    for (size_t i = 0; i < lengths.size(); ++i) md += "---|";
    md += "\n";
    for (const std::string& k : order) {
      md += "| " + k + " |";
      for (int64_t l : lengths) {
        const auto it = acc[k].find(l);
        md += it == acc[k].end() ? std::string(" - |")
                                 : fmt::format(" {}/{} |", it->second.first, it->second.second);
      }
      md += "\n";
    }
  }
  if (!plots.empty()) {
    md += "\n## Plots\n\n";
    for (const std::string& p : plots) md += fmt::format("![{}]({})\n\n", p, p);
  }
  return md;
}

}  // namespace kvs
