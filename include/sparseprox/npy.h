// SparseProx: NumPy .npy arrays of inputs and outputs.
#pragma once

#include "sparseprox/export.h"

#include <cstddef>
#include <string>
#include <vector>

namespace sparseprox {

struct SPARSEPROX_API NpyArray {
    std::vector<std::size_t> shape;
    std::vector<float> data;  // C order
};

// Reads a .npy file (format version 1, 2 or 3) of little-endian float32 ('<f4') or float64
// ('<f8', converted to float), C order. Another dtype, Fortran order, a shape that does not
// match the data, truncation and NaN/Inf values are errors naming the file and the field.
SPARSEPROX_API NpyArray read_npy(const std::string& path);

// The bytes of a version 1.0 .npy file of float32 values in C order with `shape`.
SPARSEPROX_API std::string npy_bytes(const std::vector<float>& values, const std::vector<std::size_t>& shape);

}  // namespace sparseprox
