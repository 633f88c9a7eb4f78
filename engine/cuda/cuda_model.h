#pragma once
// The model's weights on a CUDA device: matrices as their raw GGUF blocks (uploaded once,
// read by the kernels directly), norms and biases as f32.
#include <vector>

#include "engine/device_runner.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/ops.h"
#include "models/model/model.h"

namespace kvs {

struct CudaLayer {
  cuda::DeviceMatrix wq, wk, wv, wo, gate, up, down;
  const float* attn_norm = nullptr;       // [n_embd]
  const float* bq = nullptr;              // [n_head*hd_k] or null
  const float* bk = nullptr;              // [n_kv*hd_k] or null
  const float* bv = nullptr;              // [n_kv*hd_v] or null
  const float* q_norm = nullptr;          // [hd_k] or null
  const float* k_norm = nullptr;          // [hd_k] or null
  const float* post_attn_norm = nullptr;  // [n_embd] or null
  const float* ffn_norm = nullptr;        // [n_embd]
  const float* post_ffw_norm = nullptr;   // [n_embd] or null
};

class CudaModel final : public DeviceModel {
 public:
  explicit CudaModel(const Model& m);

  std::string description() const override;
  size_t weight_bytes() const override { return bytes_; }
  std::unique_ptr<DeviceRunner> make_runner(int n_ctx, int n_batch,
                                            const DeviceCacheSpec& cache) const override;

  const Model& model() const { return model_; }
  const cuda::DeviceMatrix& token_embd() const { return token_embd_; }  // {n_embd, n_vocab}
  const cuda::DeviceMatrix& output() const { return output_; }          // {n_embd, n_vocab}
  const float* output_norm() const { return output_norm_; }             // [n_embd]
  const CudaLayer& layer(int il) const { return layers_[il]; }

 private:
  cuda::DeviceMatrix matrix(const Tensor& t);
  const float* vector(const float* host, int64_t n);  // null stays null

  const Model& model_;
  std::vector<cuda::DeviceBuffer> owned_;
  size_t bytes_ = 0;
  cuda::DeviceMatrix token_embd_, output_;
  const float* output_norm_ = nullptr;
  std::vector<CudaLayer> layers_;
};

}  // namespace kvs
