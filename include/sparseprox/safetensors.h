// SparseProx: model files in the safetensors format (JSON header + little-endian float32).
#pragma once

#include "sparseprox/export.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sparseprox/model.h"

namespace sparseprox {

enum class DType { f32, i64 };

struct SPARSEPROX_API Tensor {
    std::vector<std::size_t> shape;
    std::vector<float> data;  // row-major (dtype f32)
    DType dtype = DType::f32;
    std::vector<std::int64_t> ints;  // row-major (dtype i64: index arrays such as CSR's)
};

struct SPARSEPROX_API TensorFile {
    std::map<std::string, Tensor> tensors;
    std::map<std::string, std::string> metadata;  // "__metadata__": string values only
};

// Low level. Tensors are "F32" (Tensor::data) or "I64" (Tensor::ints); the reader rejects other dtypes,
// bad header lengths, overlapping or out-of-range offsets, truncation and NaN/Inf values, with
// errors that name the file and the tensor. Writes go to a temporary file renamed into place.
// Writer: tensors stored contiguously in name order, the JSON header padded with spaces to a
// multiple of 8 bytes, "__metadata__" only when there is metadata; a tensor whose shape does
// not match its data, a NaN/Inf value or the name "__metadata__" is an error. Reader: as the
// format requires, the tensors' byte ranges must cover the data buffer exactly (no overlap,
// gap or trailing bytes), and metadata values must be strings.
SPARSEPROX_API void write_safetensors(const std::string& path, const TensorFile& file);
SPARSEPROX_API TensorFile read_safetensors(const std::string& path);

// A model as tensors layers.<i>.weight and layers.<i>.bias, i counting weight layers from 0: a
// dense layer's weight is (n_out, n_in) as PyTorch's Linear, a conv2d layer's (c_out, c_in, kh,
// kw) as PyTorch's Conv2d, the bias (n_out) or (c_out); with metadata "format" = "sparseprox", "architecture" = the model JSON,
// and whatever `metadata` adds (the trainer adds "lambda", "seed", "lr"); `metadata` may not
// use the keys "format" or "architecture".
SPARSEPROX_API void save_model(const std::string& path, const Model& model,
                const std::map<std::string, std::string>& metadata = {});
// Reads a file written by save_model (or any file with the same tensor names and an
// "architecture" entry); checks every tensor's shape against the architecture. A missing or
// misshapen tensor, a tensor the architecture has no place for, or a "format" other than
// "sparseprox" is an error naming the file and tensor. `metadata` receives every entry.
SPARSEPROX_API Model load_model(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

}  // namespace sparseprox
