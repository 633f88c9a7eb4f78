#include "kernels/cuda/context.h"

#include <cstdio>

namespace kvs::cuda {

void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  throw Error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
              ") in " + call + " at " + file + ":" + std::to_string(line));
}

void throw_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  throw Error(std::string("cuBLAS error ") + cublasGetStatusName(s) + " in " + call + " at " +
              file + ":" + std::to_string(line));
}

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why != nullptr) *why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky error so later CPU-only runs are unaffected
    return 0;
  }
  if (n == 0 && why != nullptr) *why = "no CUDA device";
  return n;
}

std::string device_description() {
  cudaDeviceProp p{};
  KVS_CUDA(cudaGetDeviceProperties(&p, 0));
  char mem[32];
  std::snprintf(mem, sizeof mem, "%.1f GiB",
                static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
         mem + ")";
}

CudaContext::CudaContext() {
  KVS_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  KVS_CUBLAS(cublasCreate(&blas_));
  KVS_CUBLAS(cublasSetStream(blas_, stream_));
}

CudaContext::~CudaContext() {
  if (blas_ != nullptr) cublasDestroy(blas_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void CudaContext::synchronize() const {
  KVS_CUDA(cudaStreamSynchronize(stream_));
}

}  // namespace kvs::cuda
