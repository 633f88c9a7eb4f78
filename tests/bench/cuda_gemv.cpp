// bench_cuda_gemv: the decode GEMV's memory bandwidth per weight type, against the device's
// nominal HBM bandwidth (memory clock x bus width x 2) and a device-to-device copy. Each
// weight matrix is larger than the L2 cache (>= 256 MiB), so every call streams it from HBM.
// Output: a markdown table on stdout (docs/benchmarks.md records it; scripts/gpu-check.sh
// runs it). Timings: CUDA events around 20 calls after 3 warm-ups, median of 5 such runs.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/core/dtype.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/ops.h"

namespace kvs {
namespace {

constexpr int kWarmup = 3, kCalls = 20, kRuns = 5;

// Seconds per call of f(), median over kRuns runs of kCalls calls.
template <typename F>
double time_calls(cudaStream_t s, F f) {
  cudaEvent_t a, b;
  KVS_CUDA(cudaEventCreate(&a));
  KVS_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < kWarmup; ++i) f();
  std::vector<double> runs;
  for (int r = 0; r < kRuns; ++r) {
    KVS_CUDA(cudaEventRecord(a, s));
    for (int i = 0; i < kCalls; ++i) f();
    KVS_CUDA(cudaEventRecord(b, s));
    KVS_CUDA(cudaEventSynchronize(b));
    float ms = 0.0f;
    KVS_CUDA(cudaEventElapsedTime(&ms, a, b));
    runs.push_back(ms * 1e-3 / kCalls);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

int run() {
  std::string why;
  if (cuda::device_count(&why) == 0) {
    std::fprintf(stderr, "bench_cuda_gemv: no CUDA device: %s\n", why.c_str());
    return 1;
  }
  cuda::CudaContext ctx;
  const cudaStream_t s = ctx.stream();
  int clock_khz = 0, bus_bits = 0;
  double peak = 0.0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, 0) == cudaSuccess &&
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0) == cudaSuccess)
    peak = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0);
  cudaGetLastError();  // an attribute this toolkit no longer reports is not an error here

  const size_t copy_bytes = size_t{1} << 30;
  cuda::DeviceBuffer src(copy_bytes), dst(copy_bytes);
  KVS_CUDA(cudaMemsetAsync(src.get(), 1, copy_bytes, s));
  const double t_copy = time_calls(s, [&] {
    KVS_CUDA(cudaMemcpyAsync(dst.get(), src.get(), copy_bytes, cudaMemcpyDeviceToDevice, s));
  });
  const double copy_bw = 2.0 * copy_bytes / t_copy;  // read + write
  std::printf("device: %s\n", cuda::device_description().c_str());
  std::printf(
      "nominal HBM bandwidth: %.0f GB/s; device-to-device copy: %.0f GB/s (read + write)\n\n",
      peak * 1e-9, copy_bw * 1e-9);
  std::printf("| weight type | K | N | MiB | us per GEMV | GB/s | of nominal | of copy |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");

  const int64_t K = 4096;
  const DType types[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::Q4_K,
                         DType::Q5_K, DType::Q6_K, DType::F16,  DType::BF16};
  cuda::DeviceBuffer x(static_cast<size_t>(K) * 4);  // [1, K]
  KVS_CUDA(cudaMemsetAsync(x.get(), 0, x.bytes(), s));
  for (DType t : types) {
    const size_t rb = row_bytes(t, K);
    const int64_t N = static_cast<int64_t>((size_t{256} << 20) / rb);
    cuda::DeviceBuffer w(rb * static_cast<size_t>(N));  // [N][K] blocks of t
    // 0x3C bytes: every f16 scale is 1.06, finite, so no NaN path is timed.
    KVS_CUDA(cudaMemsetAsync(w.get(), 0x3C, w.bytes(), s));
    cuda::DeviceBuffer y(static_cast<size_t>(N) * 4);  // [1, N]
    const cuda::DeviceMatrix W{w.get(), t, K, N};
    const double sec = time_calls(s, [&] {
      cuda::matmul(x.as<float>(), 1, W, nullptr, y.as<float>(), ctx, cuda::GemmPath::Gemv);
    });
    const double bw = static_cast<double>(w.bytes()) / sec;
    const std::string name(dtype_name(t));
    std::printf(
        "| %s | %lld | %lld | %.0f | %.1f | %.0f | %s | %.0f%% |\n", name.c_str(),
        static_cast<long long>(K), static_cast<long long>(N), w.bytes() / 1048576.0, sec * 1e6,
        bw * 1e-9,
        peak > 0 ? (std::to_string(static_cast<int>(100 * bw / peak + 0.5)) + "%").c_str() : "n/a",
        100 * bw / copy_bw);
  }
  return 0;
}

}  // namespace
}  // namespace kvs

int main() {
  try {
    return kvs::run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_gemv: %s\n", e.what());
    return 1;
  }
}
