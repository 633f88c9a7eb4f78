#include "engine/cuda/cuda_model.h"

#include "engine/cuda_backend_api.h"
#include "kernels/cuda/context.h"

namespace kvs {
namespace {

bool module_available(std::string* why) {
  return cuda::device_count(why) > 0;
}

std::unique_ptr<DeviceModel> module_load(const Model& m) {
  std::string why;
  if (!module_available(&why)) throw Error("no CUDA device: " + why);
  return std::make_unique<CudaModel>(m);
}

}  // namespace

CudaModel::CudaModel(const Model& m) : model_(m) {
  const ModelConfig& c = m.config();
  // Refuse before uploading anything: a half-uploaded model would only fail later.
  const auto check = [](const Tensor& t, const std::string& what) {
    if (!cuda::supports_dtype(t.dtype))
      throw Error(what + ": weight type " + std::string(dtype_name(t.dtype)) +
                  " has no CUDA kernel (use --device cpu)");
  };
  check(m.token_embd(), "token_embd");
  check(m.output(), "output");
  for (int il = 0; il < c.n_layer; ++il) {
    const LayerWeights& L = m.layer(il);
    const std::string p = "layer " + std::to_string(il) + " ";
    for (const auto& [t, n] : {std::pair{&L.wq, "attn_q"},
                               {&L.wk, "attn_k"},
                               {&L.wv, "attn_v"},
                               {&L.wo, "attn_output"},
                               {&L.gate, "ffn_gate"},
                               {&L.up, "ffn_up"},
                               {&L.down, "ffn_down"}})
      check(*t, p + n);
  }
  token_embd_ = matrix(m.token_embd());
  output_ = m.output().data == m.token_embd().data ? token_embd_ : matrix(m.output());
  const int64_t E = c.n_embd;
  const int64_t q_dim = int64_t{c.n_head} * c.head_dim_k;
  const int64_t k_dim = int64_t{c.n_head_kv} * c.head_dim_k;
  const int64_t v_dim = int64_t{c.n_head_kv} * c.head_dim_v;
  output_norm_ = vector(m.output_norm(), E);
  layers_.resize(c.n_layer);
  for (int il = 0; il < c.n_layer; ++il) {
    const LayerWeights& L = m.layer(il);
    CudaLayer& D = layers_[il];
    D.wq = matrix(L.wq);
    D.wk = matrix(L.wk);
    D.wv = matrix(L.wv);
    D.wo = matrix(L.wo);
    D.gate = matrix(L.gate);
    D.up = matrix(L.up);
    D.down = matrix(L.down);
    D.attn_norm = vector(L.attn_norm, E);
    D.bq = vector(L.bq, q_dim);
    D.bk = vector(L.bk, k_dim);
    D.bv = vector(L.bv, v_dim);
    D.q_norm = vector(L.q_norm, c.head_dim_k);
    D.k_norm = vector(L.k_norm, c.head_dim_k);
    D.post_attn_norm = vector(L.post_attn_norm, E);
    D.ffn_norm = vector(L.ffn_norm, E);
    D.post_ffw_norm = vector(L.post_ffw_norm, E);
  }
}

cuda::DeviceMatrix CudaModel::matrix(const Tensor& t) {
  cuda::DeviceBuffer& b = owned_.emplace_back(t.nbytes());
  b.upload(t.data, t.nbytes());
  bytes_ += t.nbytes();
  return {b.get(), t.dtype, t.cols(), t.rows()};
}

const float* CudaModel::vector(const float* host, int64_t n) {
  if (host == nullptr) return nullptr;
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  cuda::DeviceBuffer& b = owned_.emplace_back(bytes);
  b.upload(host, bytes);
  bytes_ += bytes;
  return b.as<float>();
}

std::string CudaModel::description() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, ", %.1f MiB of weights",
                static_cast<double>(bytes_) / (1024.0 * 1024.0));
  return cuda::device_description() + buf;
}

}  // namespace kvs

extern "C" __attribute__((visibility("default"))) const kvs::CudaBackendApi*
kvsieve_cuda_backend() {
  static const kvs::CudaBackendApi api{kvs::kCudaBackendApiVersion, kvs::module_available,
                                       kvs::module_load};
  return &api;
}
