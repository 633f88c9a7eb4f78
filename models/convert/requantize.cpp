#include "models/convert/requantize.h"

#include <vector>

#include "kernels/core/error.h"
#include "kernels/core/quant.h"
#include "models/formats/gguf_reader.h"
#include "models/formats/gguf_writer.h"

namespace kvs {

void requantize_gguf(const std::string& in_path, const std::string& out_path,
                     const RequantizeOptions& opts) {
  switch (opts.type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
      break;
    default:
      throw Error("cannot quantize to " + std::string(dtype_name(opts.type)) +
                  " (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1)");
  }
  auto src = open_gguf(in_path);
  GgufWriter w;
  for (const auto& [key, value] : src->metadata().entries()) {
    if (key == "general.alignment") continue;  // the writer sets its own
    if (key == "general.file_type") continue;  // no longer true after requantizing
    w.add(key, value);
  }
  // [total bytes] converted tensor data, kept alive until write() returns
  std::vector<std::vector<uint8_t>> storage;
  storage.reserve(src->tensors().size());
  size_t done = 0;
  for (const TensorInfo& t : src->tensors()) {
    const bool matrix = t.n_dims >= 2;
    const DType to = matrix ? opts.type : DType::F32;
    const int64_t cols = t.ne[0];
    const int64_t rows = t.nelements() / cols;
    if (cols % dtype_traits(to).block_size != 0)
      throw Error(in_path + ": tensor '" + t.name + "' has rows of " + std::to_string(cols) +
                  " elements, not a multiple of " + std::string(dtype_name(to)) + "'s block size");
    std::vector<float> row(static_cast<size_t>(cols));  // [cols] one dequantized row
    std::vector<uint8_t> out(row_bytes(to, cols) * static_cast<size_t>(rows));
    const size_t in_row = row_bytes(t.dtype, cols), out_row = row_bytes(to, cols);
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(t.dtype, static_cast<const uint8_t*>(t.data) + in_row * r, row.data(), cols);
      quantize_row(to, row.data(), out.data() + out_row * r, cols);
    }
    storage.push_back(std::move(out));
    std::vector<int64_t> ne(t.ne.begin(), t.ne.begin() + t.n_dims);
    w.add_tensor(t.name, to, ne, storage.back().data(), storage.back().size());
    if (opts.progress) opts.progress(++done, src->tensors().size());
  }
  w.write(out_path);
}

}  // namespace kvs
