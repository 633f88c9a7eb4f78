#pragma once
// A model evaluated on an accelerator (CUDA), with its own KV cache holding every token of
// the context (sliding-window layers: their window), stored in the types a full-cache plan
// names. Sessions without a plan, or with a plan that keeps every token, run on it; plans
// that evict stay on the CPU until the cache manager runs on the device.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/core/dtype.h"

namespace kvs {

// How a device runner stores its KV cache: per layer, K and V in F32, F16, BF16, Q8_0 or Q4_0
// (the CPU cache's storage types, same bytes). Empty: F32 everywhere.
struct DeviceCacheSpec {
  std::vector<DType> k_dtype, v_dtype;  // [n_layer]
};

class Model;

class DeviceRunner {
 public:
  virtual ~DeviceRunner() = default;
  // Evaluates tokens at positions [n_past, n_past + T), T <= the runner's batch, and writes
  // the logits of the last n_logits of them to host memory: [n_logits, n_vocab].
  virtual void forward(std::span<const int32_t> tokens, int64_t n_past, int64_t n_logits,
                       float* logits) = 0;
  virtual size_t kv_bytes_in_use(int64_t n_past) const = 0;
  virtual size_t kv_bytes_allocated() const = 0;
  virtual int64_t kv_tokens_in_layer(int layer, int64_t n_past) const = 0;
};

class DeviceModel {
 public:
  virtual ~DeviceModel() = default;
  virtual std::string description() const = 0;  // device and uploaded bytes, for logs
  virtual size_t weight_bytes() const = 0;
  virtual std::unique_ptr<DeviceRunner> make_runner(int n_ctx, int n_batch,
                                                    const DeviceCacheSpec& cache) const = 0;
};

// Whether a CUDA device can be used; *why says why not (built without CUDA, no device).
bool cuda_available(std::string* why);
// Uploads the model's weights to CUDA device 0. Throws kvs::Error when the model cannot run
// there (a weight type without a device kernel, not enough device memory, ...). The Model
// must outlive the result.
std::unique_ptr<DeviceModel> load_cuda_model(const Model& m);

}  // namespace kvs
