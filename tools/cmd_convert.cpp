// kvsieve convert: a GGUF model to an HF directory (config.json, model.safetensors,
// tokenizer files). Progress and the summary go to stderr; stdout gets only the out dir.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "kernels/core/error.h"
#include "models/convert/convert.h"
#include "models/formats/weight_source.h"
#include "tools/command.h"
#include "tools/common.h"

namespace kvs::cli {
namespace {

struct ConvertArgs {
  std::string input;
  std::string out_dir;
  std::string dtype = "auto";
  bool force = false;
};

DType parse_dtype(const std::string& s, const std::string& input) {
  if (s == "f32") return DType::F32;
  if (s == "f16") return DType::F16;
  if (s == "bf16") return DType::BF16;
  if (s == "auto") return default_hf_dtype(*open_weights(input));
  throw Error("--dtype must be f32, f16, bf16 or auto, not '" + s + "'");
}

void run_convert(const ConvertArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  const DType dt = parse_dtype(a.dtype, a.input);
  spdlog::info("converting {} to {} ({})", a.input, a.out_dir, dtype_name(dt));
  Progress bar("convert");
  ConvertOptions opts;
  opts.force = a.force;
  size_t n_tensors = 0;
  opts.progress = [&](size_t done, size_t total, const std::string&) {
    n_tensors = total;
    bar.update(static_cast<int64_t>(done), static_cast<int64_t>(total));
  };
  convert_gguf_to_hf(a.input, a.out_dir, dt, opts);
  bar.finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::error_code ec;
  const auto bytes =
      std::filesystem::file_size(std::filesystem::path(a.out_dir) / "model.safetensors", ec);
  spdlog::info("wrote {} tensors ({:.1f} MiB, {}) to {} in {:.1f} s", n_tensors,
               ec ? 0.0 : static_cast<double>(bytes) / (1 << 20), dtype_name(dt), a.out_dir, secs);
  std::printf("%s\n", a.out_dir.c_str());
}

void setup_convert(CLI::App& sub) {
  auto a = std::make_shared<ConvertArgs>();
  sub.add_option("input", a->input, "GGUF model file")->required();
  sub.add_option("outdir", a->out_dir, "Output HF directory (created if needed)")->required();
  sub.add_option("--dtype", a->dtype, "Output dtype: f32, f16, bf16, or auto (from the GGUF)")
      ->capture_default_str();
  sub.add_flag("--force", a->force,
               "Overwrite a non-empty directory that is not a previous output");
  sub.callback([a] { run_convert(*a); });
}

}  // namespace
}  // namespace kvs::cli

KVS_COMMAND(convert, "Convert a GGUF model to an HF safetensors directory",
            kvs::cli::setup_convert);
