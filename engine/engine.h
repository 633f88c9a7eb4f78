#pragma once
// Engine: everything read-only after load (weights, configuration, tokenizer, thread pool,
// attention backend). One Engine serves many Sessions.
#include <memory>
#include <string>

#include "engine/device_runner.h"
#include "kernels/attention/backend.h"
#include "kernels/core/thread_pool.h"
#include "models/formats/weight_source.h"
#include "models/model/model.h"
#include "models/tokenizers/tokenizer.h"

namespace kvs {

struct EngineOptions {
  int threads = 0;                  // 0: all hardware threads
  std::string attention = "flash";  // attention backend name (`--attention`)
  // `--device`: "cpu", "cuda" (an error when no CUDA device is usable) or "auto" (cuda when
  // a device is present and the model's weight types run there, else cpu). The command line
  // defaults to auto; the library to cpu, so that callers opt in to the device.
  std::string device = "cpu";
};

class Engine {
 public:
  // path: a GGUF file or an HF directory. Throws kvs::Error on any problem with the files.
  static std::unique_ptr<Engine> load(const std::string& path, const EngineOptions& opts);

  const WeightSource& weights() const { return *weights_; }
  const ModelConfig& config() const { return model_->config(); }
  const Model& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const AttentionBackend& attention() const { return *attention_; }
  ThreadPool& pool() const { return *pool_; }
  double load_seconds() const { return load_seconds_; }
  // The weights on the accelerator, or null when sessions run on the CPU.
  const DeviceModel* device_model() const { return device_model_.get(); }
  // "cuda" or "cpu": where sessions without a cache plan run.
  const char* device() const { return device_model_ ? "cuda" : "cpu"; }

 private:
  Engine() = default;
  std::unique_ptr<WeightSource> weights_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  const AttentionBackend* attention_ = nullptr;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<DeviceModel> device_model_;  // after model_: it points into it
  double load_seconds_ = 0.0;
};

}  // namespace kvs
