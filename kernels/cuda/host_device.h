#pragma once
// KVS_HD marks functions compiled for both the host and the device: the device kernels use
// them, and host tests check them against the CPU code on machines without a GPU. Outside
// nvcc it is plain `inline`, so such headers build in every configuration.
#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define KVS_HD __host__ __device__ __forceinline__
#else
#define KVS_HD inline
#endif
