#pragma once
// Shared by the CUDA tests: skip without a device, and move vectors to and from it.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/device_runner.h"
#include "kernels/cuda/device_buffer.h"

namespace kvs::test {

// Skips the test with one clear line when no CUDA device can be used.
#define KVS_REQUIRE_CUDA()                                                                 \
  do {                                                                                     \
    std::string kvs_why_;                                                                  \
    if (!::kvs::cuda_available(&kvs_why_)) GTEST_SKIP() << "no CUDA device: " << kvs_why_; \
  } while (0)

template <typename T>
cuda::DeviceBuffer to_device(const std::vector<T>& v) {
  cuda::DeviceBuffer b(v.size() * sizeof(T));
  if (!v.empty()) b.upload(v.data(), v.size() * sizeof(T));
  return b;
}

template <typename T>
std::vector<T> to_host(const cuda::DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  KVS_CUDA(cudaDeviceSynchronize());
  KVS_CUDA(cudaMemcpy(v.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

// max |a - b| / max(1, max |b|): one number per comparison, stated per dtype in the tests.
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 1.0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, static_cast<double>(std::abs(a[i] - b[i])));
    den = std::max(den, static_cast<double>(std::abs(b[i])));
  }
  return num / den;
}

}  // namespace kvs::test
