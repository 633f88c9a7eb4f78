#include "cache/plan.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cache/kv_cache.h"
#include "cache/policy.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& source, const std::string& key, const std::string& what) {
  throw Error(source + ": cache plan key '" + key + "' " + what);
}

Budget parse_budget(const json& v, const std::string& source, const std::string& key) {
  if (!v.is_number()) fail(source, key, "must be a number (a fraction in (0, 1] or a token count)");
  Budget b;
  if (!std::isfinite(v.get<double>()) || v.get<double>() > static_cast<double>(1 << 24))
    fail(source, key,
         "is too large: " + v.dump() + " (at most " + std::to_string(1 << 24) + " tokens)");
  if (v.is_number_integer() ||
      (v.get<double>() > 1.0 && std::floor(v.get<double>()) == v.get<double>())) {
    const int64_t n = v.get<int64_t>();
    if (n <= 0) fail(source, key, "must be positive, got " + v.dump());
    if (n > (1 << 24)) fail(source, key, "is too large: " + v.dump());
    b.is_fraction = n == 1 && v.is_number_float();  // 1.0 means "everything"
    b.value = static_cast<double>(n);
    return b;
  }
  const double f = v.get<double>();
  if (!(f > 0.0 && f <= 1.0))
    fail(source, key, "must be a fraction in (0, 1] or a positive token count, got " + v.dump());
  b.is_fraction = true;
  b.value = f;
  return b;
}

int32_t parse_count(const json& v, const std::string& source, const std::string& key) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (1 << 24))
    fail(source, key, "must be a non-negative integer, got " + v.dump());
  return static_cast<int32_t>(v.get<int64_t>());
}

DType parse_storage(const json& v, const std::string& source, const std::string& key) {
  if (!v.is_string()) fail(source, key, "must be a string (f32, f16, bf16, q8, q4)");
  const std::string s = v.get<std::string>();
  if (s == "f32") return DType::F32;
  if (s == "f16") return DType::F16;
  if (s == "bf16") return DType::BF16;
  if (s == "q8") return DType::Q8_0;
  if (s == "q4") return DType::Q4_0;
  fail(source, key, "= '" + s + "' is not a storage type (f32, f16, bf16, q8, q4)");
}

// Applies a policy name or an object {policy, params, budget, sinks, recent} onto hp.
void apply_head_fields(HeadPlan& hp, const json& v, const std::string& source,
                       const std::string& where, bool allow_storage) {
  if (v.is_string()) {
    hp.policy = v.get<std::string>();
    hp.params = json::object();
    find_policy(hp.policy, source + ": " + where);
    return;
  }
  if (!v.is_object()) fail(source, where, "must be a policy name or an object");
  for (const auto& [k, val] : v.items()) {
    const std::string key = where.empty() ? k : where + "." + k;
    if (k == "policy") {
      if (!val.is_string()) fail(source, key, "must be a string");
      hp.policy = val.get<std::string>();
      find_policy(hp.policy, source + ": " + key);
      if (!v.contains("params")) hp.params = json::object();
    } else if (k == "params") {
      if (!val.is_object()) fail(source, key, "must be an object");
      hp.params = val;
    } else if (k == "budget") {
      hp.budget = parse_budget(val, source, key);
    } else if (k == "sinks") {
      hp.sinks = parse_count(val, source, key);
    } else if (k == "recent") {
      hp.recent = parse_count(val, source, key);
    } else if (allow_storage && k == "storage") {
      // handled by the caller
    } else {
      fail(source, key,
           "is not a known key (policy, params, budget, sinks, recent" +
               std::string(allow_storage ? ", storage" : "") + ")");
    }
  }
}

void check_protected(const HeadPlan& hp, const std::string& source, const std::string& where) {
  if (!hp.budget.is_fraction && hp.sinks + hp.recent > hp.budget.value)
    fail(source, where.empty() ? "sinks" : where + ".sinks",
         "+ recent (" + std::to_string(hp.sinks + hp.recent) + ") exceeds the budget (" +
             std::to_string(static_cast<int64_t>(hp.budget.value)) + " tokens)");
}

std::pair<int, int> parse_range(const std::string& s, const std::string& source,
                                const std::string& key) {
  try {
    size_t used = 0;
    const auto dash = s.find('-');
    if (dash == std::string::npos) {
      const int v = std::stoi(s, &used);
      if (used != s.size()) throw std::invalid_argument(s);
      return {v, v};
    }
    const int a = std::stoi(s.substr(0, dash), &used);
    if (used != dash) throw std::invalid_argument(s);
    const std::string rest = s.substr(dash + 1);
    const int b = std::stoi(rest, &used);
    if (used != rest.size()) throw std::invalid_argument(s);
    return {a, b};
  } catch (const std::exception&) {
    fail(source, key, "is not a layer index or range like \"0-3\"");
  }
}

}  // namespace

int64_t Budget::tokens(int64_t n_seen) const {
  if (!is_fraction) return static_cast<int64_t>(value);
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(value * static_cast<double>(n_seen))));
}

CachePlan parse_cache_plan(const json& j, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": a cache plan must be a JSON object");
  CachePlan p;
  p.source = source;
  p.json = j;
  if (!j.contains("policy")) throw Error(source + ": cache plan key 'policy' missing");
  for (const auto& [k, v] : j.items()) {
    if (k == "policy" || k == "params" || k == "budget" || k == "sinks" || k == "recent") continue;
    if (k == "layers") {
      if (!v.is_object()) fail(source, k, "must be an object like {\"0-1\": \"full\"}");
      for (const auto& [range, val] : v.items()) {
        const auto [a, b] = parse_range(range, source, "layers." + range);
        if (a < 0 || b < a) fail(source, "layers." + range, "is not a valid layer range");
        p.layer_overrides.push_back({a, b, val, "layers." + range});
      }
    } else if (k == "heads") {
      if (!v.is_object()) fail(source, k, "must be an object like {\"5:2\": \"full\"}");
      for (const auto& [lh, val] : v.items()) {
        const auto colon = lh.find(':');
        if (colon == std::string::npos) fail(source, "heads." + lh, "must be \"layer:head\"");
        const auto [l, l2] = parse_range(lh.substr(0, colon), source, "heads." + lh);
        const auto [h, h2] = parse_range(lh.substr(colon + 1), source, "heads." + lh);
        if (l != l2 || h != h2 || l < 0 || h < 0)
          fail(source, "heads." + lh, "must be \"layer:head\"");
        p.head_overrides.push_back({l, h, val, "heads." + lh});
      }
    } else if (k == "allocator") {
      if (v.is_string()) {
        p.allocator = v.get<std::string>();
      } else if (v.is_object() && v.contains("name") && v["name"].is_string()) {
        p.allocator = v["name"].get<std::string>();
        p.allocator_params = v;
        p.allocator_params.erase("name");
      } else {
        fail(source, k, "must be a name or {\"name\": ..., parameters}");
      }
      if (p.allocator != "uniform" && p.allocator != "pyramid" && p.allocator != "adaptive" &&
          p.allocator != "profile")
        fail(source, k,
             "= '" + p.allocator + "' is not an allocator (uniform, pyramid, adaptive, profile)");
      for (const auto& [ak, av] : p.allocator_params.items()) {
        const std::string key = "allocator." + ak;
        if (p.allocator == "pyramid" && ak == "beta") {
          if (!av.is_number() || av.get<double>() < 1.0) fail(source, key, "must be a number >= 1");
        } else if (p.allocator == "adaptive" && ak == "floor") {
          if (!av.is_number() || av.get<double>() < 0.0 || av.get<double>() > 1.0)
            fail(source, key, "must be a number in [0, 1]");
        } else {
          fail(source, key,
               "is not a parameter of the " + p.allocator + " allocator" +
                   (p.allocator == "pyramid"    ? " (beta)"
                    : p.allocator == "adaptive" ? " (floor)"
                                                : ""));
        }
      }
    } else if (k == "compress") {
      const json& w = v.is_object() ? v.value("when", json()) : v;
      if (!w.is_string())
        fail(
            source, k,
            "must be \"prefill\", \"chunk\", \"overflow\" or {\"when\": \"decode\", \"every\": N}");
      const std::string s = w.get<std::string>();
      if (s == "prefill")
        p.when = CompressWhen::Prefill;
      else if (s == "chunk")
        p.when = CompressWhen::Chunk;
      else if (s == "overflow")
        p.when = CompressWhen::Overflow;
      else if (s == "decode")
        p.when = CompressWhen::Decode;
      else
        fail(source, k, "= '" + s + "' is not one of prefill, chunk, decode, overflow");
      if (v.is_object()) {
        for (const auto& [ck, cv] : v.items()) {
          if (ck == "when") continue;
          if (ck == "every") {
            p.every = parse_count(cv, source, "compress.every");
            if (p.every < 1) fail(source, "compress.every", "must be >= 1");
          } else {
            fail(source, "compress." + ck, "is not a known key (when, every)");
          }
        }
      }
    } else if (k == "margin") {
      p.margin = parse_count(v, source, k);
    } else if (k == "positions") {
      if (v == "original")
        p.cache_positions = false;
      else if (v == "cache")
        p.cache_positions = true;
      else
        fail(source, k, "must be \"original\" or \"cache\"");
    } else if (k == "storage") {
      if (v.is_string()) {
        p.k_dtype = p.v_dtype = parse_storage(v, source, k);
      } else if (v.is_object()) {
        for (const auto& [sk, sv] : v.items()) {
          if (sk == "k")
            p.k_dtype = parse_storage(sv, source, "storage.k");
          else if (sk == "v")
            p.v_dtype = parse_storage(sv, source, "storage.v");
          else
            fail(source, "storage." + sk, "is not a known key (k, v)");
        }
      } else {
        fail(source, k, "must be a type name or {\"k\": ..., \"v\": ...}");
      }
    } else if (k == "head_profile") {
      if (!v.is_string()) fail(source, k, "must be a path to a TSV file");
      p.head_profile = v.get<std::string>();
    } else if (k == "calibration") {
      if (!v.is_string() || v.get<std::string>().empty())
        fail(source, k, "must be a path to a calibration file (.json or binary)");
      p.calibration = v.get<std::string>();
    } else if (k == "retrieval") {
      if (!v.is_object()) fail(source, k, "must be {\"threshold\": t} or {\"fraction\": f}");
      for (const auto& [rk, rv] : v.items()) {
        if (!rv.is_number() || rv.get<double>() < 0.0 || rv.get<double>() > 1.0)
          fail(source, "retrieval." + rk, "must be a number in [0, 1]");
        if (rk == "threshold")
          p.retrieval_threshold = rv.get<double>();
        else if (rk == "fraction")
          p.retrieval_fraction = rv.get<double>();
        else
          fail(source, "retrieval." + rk, "is not a known key (threshold, fraction)");
      }
    } else if (k == "seed") {
      if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
        fail(source, k, "must be a non-negative integer");
      p.seed = v.get<uint64_t>();
    } else if (k == "name" || k == "description") {
      // documentation only
    } else {
      fail(source, k, "is not a known key (see docs/cache-plans.md)");
    }
  }
  json top = json::object();
  for (const char* k : {"policy", "params", "budget", "sinks", "recent"})
    if (j.contains(k)) top[k] = j[k];
  if (p.allocator == "profile" && p.head_profile.empty())
    throw Error(source +
                ": cache plan key 'allocator' = 'profile' needs 'head_profile' (a TSV file)");
  apply_head_fields(p.defaults, top, source, "", false);
  if (!j.contains("budget") &&
      !find_policy(p.defaults.policy, source).make(p.defaults.params, "params")->keeps_everything())
    throw Error(source +
                ": cache plan key 'budget' missing (a fraction like 0.5 or a token count)");
  check_protected(p.defaults, source, "");
  // Validate each policy's parameters once, at load time.
  find_policy(p.defaults.policy, source).make(p.defaults.params, source + ": params");
  return p;
}

CachePlan load_cache_plan(const std::string& name_or_path) {
  namespace fs = std::filesystem;
  std::string path = name_or_path;
  if (!fs::exists(path)) {
    const char* env = std::getenv("KVSIEVE_CONFIG_DIR");
    const fs::path dir = env != nullptr ? fs::path(env) : fs::path(KVSIEVE_SOURCE_DIR) / "configs";
    const fs::path named = dir / "cache" / (name_or_path + ".json");
    if (!fs::exists(named)) {
      std::string names;
      if (fs::is_directory(dir / "cache"))
        for (const auto& e : fs::directory_iterator(dir / "cache"))
          if (e.path().extension() == ".json")
            names += (names.empty() ? "" : ", ") + e.path().stem().string();
      throw Error("no cache plan file or shipped plan named '" + name_or_path +
                  "' (shipped: " + names + ")");
    }
    path = named.string();
  }
  std::ifstream f(path);
  if (!f) throw Error(path + ": cannot open cache plan");
  std::stringstream ss;
  ss << f.rdbuf();
  const json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) throw Error(path + ": cache plan is not valid JSON");
  return parse_cache_plan(j, path);
}

Calibration load_calibration(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw Error(path + ": cannot open calibration file (make one with kvsieve calibrate-qfilter)");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string bytes = ss.str();
  Calibration c;
  if (path.ends_with(".json")) {
    const json j = json::parse(bytes, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw Error(path + ": calibration is not a JSON object");
    for (const char* k : {"n_layer", "n_head_kv", "head_dim"})
      if (!j.contains(k) || !j[k].is_number_integer() || j[k].get<int64_t>() <= 0 ||
          j[k].get<int64_t>() > (1 << 16))
        throw Error(path + ": calibration key '" + k + "' must be a positive integer");
    c.n_layer = j["n_layer"].get<int>();
    c.n_head_kv = j["n_head_kv"].get<int>();
    c.head_dim = j["head_dim"].get<int>();
    const json& fl = j.value("filters", json());
    if (!fl.is_array() || static_cast<int>(fl.size()) != c.n_layer)
      throw Error(path + ": calibration key 'filters' must hold n_layer rows");
    for (int l = 0; l < c.n_layer; ++l) {
      if (!fl[l].is_array() || static_cast<int>(fl[l].size()) != c.n_head_kv)
        throw Error(path + ": filters[" + std::to_string(l) + "] must hold n_head_kv vectors");
      for (int h = 0; h < c.n_head_kv; ++h) {
        const json& vec = fl[l][h];
        if (!vec.is_array() || static_cast<int>(vec.size()) != c.head_dim)
          throw Error(path + ": filters[" + std::to_string(l) + "][" + std::to_string(h) +
                      "] must hold head_dim numbers");
        for (const auto& x : vec) {
          if (!x.is_number() || !std::isfinite(x.get<double>()))
            throw Error(path + ": filters[" + std::to_string(l) + "][" + std::to_string(h) +
                        "] holds a value that is not a finite number");
          c.data.push_back(x.get<float>());
        }
      }
    }
    return c;
  }
  constexpr size_t header = 8 + 3 * sizeof(int32_t);
  if (bytes.size() < header || bytes.compare(0, 8, "KVSCAL01") != 0)
    throw Error(path + ": not a calibration file (expected the magic KVSCAL01 or a .json name)");
  int32_t dims[3];
  std::memcpy(dims, bytes.data() + 8, sizeof dims);
  for (int32_t d : dims)
    if (d <= 0 || d > (1 << 16)) throw Error(path + ": calibration header has a bad dimension");
  c.n_layer = dims[0];
  c.n_head_kv = dims[1];
  c.head_dim = dims[2];
  const size_t n = static_cast<size_t>(c.n_layer) * c.n_head_kv * c.head_dim;
  if (bytes.size() != header + n * sizeof(float))
    throw Error(path + ": calibration file is " + std::to_string(bytes.size()) +
                " bytes, its header needs " + std::to_string(header + n * sizeof(float)));
  c.data.resize(n);
  std::memcpy(c.data.data(), bytes.data() + header, n * sizeof(float));
  for (float x : c.data)
    if (!std::isfinite(x)) throw Error(path + ": calibration holds a value that is not finite");
  return c;
}

void save_calibration(const Calibration& c, const std::string& path) {
  KVS_CHECK(c.data.size() == static_cast<size_t>(c.n_layer) * c.n_head_kv * c.head_dim);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw Error(path + ": cannot write calibration file");
    if (path.ends_with(".json")) {
      json fl = json::array();
      for (int l = 0; l < c.n_layer; ++l) {
        json row = json::array();
        for (int h = 0; h < c.n_head_kv; ++h)
          row.push_back(std::vector<float>(c.at(l, h), c.at(l, h) + c.head_dim));
        fl.push_back(std::move(row));
      }
      json j = {{"kind", "qfilter"},
                {"n_layer", c.n_layer},
                {"n_head_kv", c.n_head_kv},
                {"head_dim", c.head_dim},
                {"filters", std::move(fl)}};
      f << j.dump() << "\n";
    } else {
      const int32_t dims[3] = {c.n_layer, c.n_head_kv, c.head_dim};
      f.write("KVSCAL01", 8);
      f.write(reinterpret_cast<const char*>(dims), sizeof dims);
      f.write(reinterpret_cast<const char*>(c.data.data()),
              static_cast<std::streamsize>(c.data.size() * sizeof(float)));
    }
    if (!f) throw Error(path + ": write failed");
  }
  std::filesystem::rename(tmp, path);
}

ResolvedPlan resolve_cache_plan(const CachePlan& plan, int n_layer, int n_head_kv, int head_dim_k,
                                int head_dim_v) {
  ResolvedPlan r;
  r.n_layer = n_layer;
  r.n_head_kv = n_head_kv;
  r.heads.assign(static_cast<size_t>(n_layer) * n_head_kv, plan.defaults);
  r.k_dtype.assign(n_layer, plan.k_dtype);
  r.v_dtype.assign(n_layer, plan.v_dtype);
  for (const auto& o : plan.layer_overrides) {
    if (o.last >= n_layer)
      fail(plan.source, o.where,
           "names layer " + std::to_string(o.last) + " but the model has " +
               std::to_string(n_layer));
    for (int l = o.first; l <= o.last; ++l) {
      for (int h = 0; h < n_head_kv; ++h) {
        HeadPlan& hp = r.heads[static_cast<size_t>(l) * n_head_kv + h];
        apply_head_fields(hp, o.value, plan.source, o.where, true);
        check_protected(hp, plan.source, o.where);
      }
      if (o.value.is_object() && o.value.contains("storage")) {
        const json& s = o.value["storage"];
        if (s.is_string()) {
          r.k_dtype[l] = r.v_dtype[l] = parse_storage(s, plan.source, o.where + ".storage");
        } else if (s.is_object()) {
          for (const auto& [sk, sv] : s.items()) {
            if (sk == "k")
              r.k_dtype[l] = parse_storage(sv, plan.source, o.where + ".storage.k");
            else if (sk == "v")
              r.v_dtype[l] = parse_storage(sv, plan.source, o.where + ".storage.v");
            else
              fail(plan.source, o.where + ".storage." + sk, "is not a known key (k, v)");
          }
        } else {
          fail(plan.source, o.where + ".storage",
               "must be a type name or {\"k\": ..., \"v\": ...}");
        }
      }
    }
  }
  for (const auto& o : plan.head_overrides) {
    if (o.layer >= n_layer)
      fail(plan.source, o.where,
           "names layer " + std::to_string(o.layer) + " but the model has " +
               std::to_string(n_layer));
    if (o.head >= n_head_kv)
      fail(plan.source, o.where,
           "names KV head " + std::to_string(o.head) + " but the model has " +
               std::to_string(n_head_kv));
    HeadPlan& hp = r.heads[static_cast<size_t>(o.layer) * n_head_kv + o.head];
    apply_head_fields(hp, o.value, plan.source, o.where, false);
    check_protected(hp, plan.source, o.where);
  }
  for (int l = 0; l < n_layer; ++l) {
    if (!kv_dtype_supported(r.k_dtype[l], head_dim_k) ||
        !kv_dtype_supported(r.v_dtype[l], head_dim_v))
      fail(plan.source, "storage", "q8/q4 need a head dimension that is a multiple of 32");
  }
  return r;
}

}  // namespace kvs
