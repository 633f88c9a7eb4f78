#pragma once
// The boundary between kvsieve and its CUDA backend, a module (libkvsieve_cuda.so) loaded on
// first use: linking cuBLAS into the binary cost every run about 150 MiB of resident memory
// (cublasLt's relocated tables), GPU or not. Both sides are built from one tree by one
// compiler, so C++ types cross it; the version guards against a stale module.
#include <memory>
#include <string>

#include "engine/device_runner.h"

namespace kvs {

struct CudaBackendApi {
  int version;
  bool (*available)(std::string* why);
  std::unique_ptr<DeviceModel> (*load)(const Model& m);
};

constexpr int kCudaBackendApiVersion = 2;  // 2: DeviceCacheSpec

}  // namespace kvs

// The module's one exported entry point.
extern "C" const kvs::CudaBackendApi* kvsieve_cuda_backend();
