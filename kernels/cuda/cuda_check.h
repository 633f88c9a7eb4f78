#pragma once
// Host-side checks of CUDA and cuBLAS status codes. A failing call becomes a kvs::Error that
// names the call and its source line; nothing is thrown from device code or callbacks.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "kernels/core/error.h"

namespace kvs::cuda {

[[noreturn]] void throw_cuda(cudaError_t e, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas(cublasStatus_t s, const char* call, const char* file, int line);

}  // namespace kvs::cuda

#define KVS_CUDA(call)                                                                     \
  do {                                                                                     \
    const cudaError_t kvs_e_ = (call);                                                     \
    if (kvs_e_ != cudaSuccess) ::kvs::cuda::throw_cuda(kvs_e_, #call, __FILE__, __LINE__); \
  } while (0)

#define KVS_CUBLAS(call)                                            \
  do {                                                              \
    const cublasStatus_t kvs_s_ = (call);                           \
    if (kvs_s_ != CUBLAS_STATUS_SUCCESS)                            \
      ::kvs::cuda::throw_cublas(kvs_s_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, execution errors at the
// next synchronizing call.
#define KVS_CUDA_LAUNCHED() KVS_CUDA(cudaGetLastError())
