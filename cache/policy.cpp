#include "cache/policy.h"

#include <algorithm>

#include "kernels/core/error.h"

namespace kvs {
namespace {

std::vector<PolicyInfo>& registry() {
  static std::vector<PolicyInfo> r;
  return r;
}

}  // namespace

void register_policy(PolicyInfo info) {
  for (const auto& p : registry())
    KVS_CHECK(p.name != info.name, "policy registered twice: " + info.name);
  registry().push_back(std::move(info));
}

const PolicyInfo& find_policy(std::string_view name, const std::string& where) {
  for (const auto& p : registry())
    if (p.name == name) return p;
  std::string names;
  for (const auto* p : policies()) names += (names.empty() ? "" : ", ") + p->name;
  throw Error(where + ": unknown policy '" + std::string(name) + "' (available: " + names + ")");
}

std::vector<const PolicyInfo*> policies() {
  std::vector<const PolicyInfo*> out;
  for (const auto& p : registry()) out.push_back(&p);
  std::sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->name < b->name; });
  return out;
}

void check_params(const nlohmann::json& params, std::initializer_list<std::string_view> known,
                  const std::string& where) {
  if (params.is_null()) return;
  if (!params.is_object()) throw Error(where + ": must be an object");
  for (const auto& [key, value] : params.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string k;
      for (auto n : known) k += (k.empty() ? "" : ", ") + std::string(n);
      throw Error(where + ": unknown key '" + key + "'" +
                  (k.empty() ? " (this policy takes no parameters)" : " (known: " + k + ")"));
    }
  }
}

double param_number(const nlohmann::json& params, std::string_view key, double def, double lo,
                    double hi, const std::string& where) {
  if (params.is_null() || !params.contains(key)) return def;
  const auto& v = params.at(std::string(key));
  if (!v.is_number()) throw Error(where + "." + std::string(key) + ": must be a number");
  const double d = v.get<double>();
  if (!(d >= lo && d <= hi))
    throw Error(where + "." + std::string(key) + ": " + v.dump() + " is outside [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return d;
}

}  // namespace kvs
