#include "cache/head_profile.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "kernels/core/error.h"

namespace kvs {

HeadProfile load_head_profile(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error(path + ": cannot open head profile");
  HeadProfile p;
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::vector<double> row;
    std::stringstream ss(line);
    std::string cell;
    int col = 0;
    while (std::getline(ss, cell, '\t')) {
      ++col;
      char* end = nullptr;
      const double v = std::strtod(cell.c_str(), &end);
      if (cell.empty() || end == cell.c_str() || *end != '\0' || !std::isfinite(v) || v < 0.0 ||
          v > 1.0)
        throw Error(path + ": line " + std::to_string(lineno) + ", column " + std::to_string(col) +
                    ": expected a number in [0, 1], got '" + cell + "'");
      row.push_back(v);
    }
    if (p.n_layer == 0) p.n_head_kv = static_cast<int>(row.size());
    if (static_cast<int>(row.size()) != p.n_head_kv)
      throw Error(path + ": line " + std::to_string(lineno) + " has " + std::to_string(row.size()) +
                  " values, the first row has " + std::to_string(p.n_head_kv));
    p.values.insert(p.values.end(), row.begin(), row.end());
    ++p.n_layer;
    if (p.n_layer > 4096) throw Error(path + ": too many rows for a head profile");
  }
  if (p.n_layer == 0) throw Error(path + ": empty head profile");
  return p;
}

void save_head_profile(const HeadProfile& p, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) throw Error(path + ": cannot write head profile");
    for (int l = 0; l < p.n_layer; ++l) {
      for (int h = 0; h < p.n_head_kv; ++h) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.6g", p.at(l, h));
        f << (h ? "\t" : "") << buf;
      }
      f << "\n";
    }
    if (!f) throw Error(path + ": write failed");
  }
  std::filesystem::rename(tmp, path);
}

std::vector<bool> retrieval_heads(const HeadProfile& p, double threshold, double fraction,
                                  const std::vector<bool>& eligible) {
  KVS_CHECK(eligible.empty() || eligible.size() == p.values.size(),
            "retrieval_heads eligible size");
  const auto ok = [&](size_t i) { return eligible.empty() || eligible[i]; };
  std::vector<bool> out(p.values.size(), false);
  if (threshold >= 0.0) {
    for (size_t i = 0; i < p.values.size(); ++i) out[i] = ok(i) && p.values[i] >= threshold;
    return out;
  }
  std::vector<size_t> idx;
  for (size_t i = 0; i < p.values.size(); ++i)
    if (ok(i)) idx.push_back(i);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](size_t a, size_t b) { return p.values[a] > p.values[b]; });
  const size_t n = static_cast<size_t>(
      std::llround(std::clamp(fraction, 0.0, 1.0) * static_cast<double>(idx.size())));
  for (size_t i = 0; i < n; ++i) out[idx[i]] = true;
  return out;
}

std::vector<bool> compressible_heads(const std::vector<bool>& layer_is_swa, int n_head_kv) {
  std::vector<bool> out;
  out.reserve(layer_is_swa.size() * static_cast<size_t>(n_head_kv));
  for (const bool swa : layer_is_swa) out.insert(out.end(), static_cast<size_t>(n_head_kv), !swa);
  return out;
}

}  // namespace kvs
