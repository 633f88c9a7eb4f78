#include "engine/engine.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "kernels/core/error.h"
#include "models/model/arch.h"

namespace kvs {

std::unique_ptr<Engine> Engine::load(const std::string& path, const EngineOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opts.device != "auto" && opts.device != "cpu" && opts.device != "cuda")
    throw Error("--device must be cpu, cuda or auto, got '" + opts.device + "'");
  std::unique_ptr<Engine> e(new Engine());
  e->attention_ = &find_attention_backend(opts.attention);
  e->weights_ = open_weights(path);
  ModelConfig cfg = read_model_config(e->weights_->metadata());
  e->model_ = std::make_unique<Model>(*e->weights_, std::move(cfg));
  e->tokenizer_ = load_tokenizer(*e->weights_);
  if (e->tokenizer_->n_vocab() > e->config().n_vocab)
    throw Error(path + ": tokenizer has " + std::to_string(e->tokenizer_->n_vocab()) +
                " tokens but the model's vocabulary is " + std::to_string(e->config().n_vocab));
  int threads = opts.threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads > 512) throw Error("--threads must be at most 512, got " + std::to_string(threads));
  e->pool_ = std::make_unique<ThreadPool>(threads);
  if (opts.device != "cpu") {
    std::string why;
    if (cuda_available(&why)) {
      try {
        e->device_model_ = load_cuda_model(*e->model_);
        spdlog::info("CUDA: {}", e->device_model_->description());
      } catch (const Error& err) {
        if (opts.device == "cuda") throw;
        spdlog::warn("running on the CPU: {}", err.what());
      }
    } else if (opts.device == "cuda") {
      throw Error("--device cuda: " + why);
    }
  }
  e->load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const ModelConfig& c = e->config();
  spdlog::info("loaded {} ({}, {} layers, {} heads / {} KV heads, vocab {}) in {:.2f} s on {}",
               path, c.arch, c.n_layer, c.n_head, c.n_head_kv, c.n_vocab, e->load_seconds_,
               e->device());
  return e;
}

}  // namespace kvs
