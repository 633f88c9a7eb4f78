#pragma once
// The gated activations' formulas (ops::silu_mul / ops::gelu_tanh_mul of the CPU), shared by
// the elementwise kernels and the fused gate/up GEMV so that both give the same bits.
namespace kvs::cuda {

__device__ __forceinline__ float silu_times(float g, float u) {
  return g / (1.0f + expf(-g)) * u;
}

__device__ __forceinline__ float gelu_tanh_times(float g, float u) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * g * (1.0f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * u;
}

}  // namespace kvs::cuda
