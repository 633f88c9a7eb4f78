// kvsieve quantize: rewrite a GGUF model with its weight matrices in another type.
#include <spdlog/spdlog.h>

#include "kernels/core/error.h"
#include "models/convert/requantize.h"
#include "tools/command.h"
#include "tools/common.h"

namespace kvs::cli {
namespace {

struct QuantizeArgs {
  std::string in, out, type;
};

void setup_quantize(CLI::App& app) {
  static QuantizeArgs a;
  app.add_option("input", a.in, "Input GGUF file")->required();
  app.add_option("output", a.out, "Output GGUF file")->required();
  app.add_option("--type", a.type, "Target type: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1")
      ->required();
  app.callback([] {
    const auto t = dtype_from_name(a.type);
    if (!t) throw Error("unknown --type '" + a.type + "'");
    RequantizeOptions o;
    o.type = *t;
    Progress bar("quantize");
    o.progress = [&](size_t d, size_t n) {
      bar.update(static_cast<int64_t>(d), static_cast<int64_t>(n));
    };
    requantize_gguf(a.in, a.out, o);
    bar.finish();
    spdlog::info("wrote {} ({})", a.out, a.type);
  });
}

}  // namespace

KVS_COMMAND(quantize, "Rewrite a GGUF model with its weights in another type", setup_quantize);

}  // namespace kvs::cli
