// Builds without CUDA: no device is ever available. With CUDA these come from engine/cuda/.
#include "engine/device_runner.h"

#include "kernels/core/error.h"

#ifndef KVSIEVE_HAVE_CUDA
namespace kvs {

bool cuda_available(std::string* why) {
  if (why != nullptr)
    *why = "this kvsieve was built without CUDA (configure with -DKVSIEVE_CUDA=ON and nvcc)";
  return false;
}

std::unique_ptr<DeviceModel> load_cuda_model(const Model&) {
  std::string why;
  cuda_available(&why);
  throw Error(why);
}

}  // namespace kvs
#endif
