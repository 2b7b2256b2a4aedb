// Writes that never leave a half-written file behind: data goes to "<path>.tmp.<pid>" in the
// same folder, is flushed, then renamed over <path>.
#pragma once

#include <string>

namespace sparseprox {

// Throws sparseprox::Error naming the path on any failure (the temporary file is removed).
void write_file_atomic(const std::string& path, const std::string& bytes);

// Whole file into memory; throws sparseprox::Error naming the path when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace sparseprox
