#pragma once
// CudaContext: one stream, one cuBLAS handle and the scratch the ops reuse (dequantized
// weights and converted activations of the prefill GEMM). One per session: not shared
// between threads.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "kernels/cuda/device_buffer.h"

namespace kvs::cuda {

// Number of usable devices; 0 with the reason in *why (no driver, no device, ...).
int device_count(std::string* why);
// "NVIDIA H200 (sm_90, 139.8 GiB)" for device 0.
std::string device_description();

class CudaContext {
 public:
  CudaContext();
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  cudaStream_t stream() const { return stream_; }
  cublasHandle_t blas() const { return blas_; }
  void synchronize() const;

  DeviceBuffer gemm_w;  // [N][K] bf16 dequantized weight of the current prefill GEMM
  DeviceBuffer gemm_x;  // [T][K] bf16 activations of the current prefill GEMM
  DeviceBuffer act_q;   // [T][activation row bytes] the decode GEMV's quantized activations

 private:
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
};

}  // namespace kvs::cuda
