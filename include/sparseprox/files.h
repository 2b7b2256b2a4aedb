// SparseProx: writing outputs so that readers never see a half-written file.
#pragma once

#include <string>

#include "sparseprox/export.h"

namespace sparseprox {

// Writes bytes to a temporary file in the same folder, flushes it, then renames it over `path`.
// Throws sparseprox::Error naming the path on any failure (the temporary file is removed).
SPARSEPROX_API void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace sparseprox
