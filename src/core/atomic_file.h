// Writes that never leave a half-written file behind: data goes to "<path>.tmp.<pid>" in the
// same folder, is flushed, then renamed over <path>.
#pragma once

#include <string>

#include "sparseprox/files.h"  // write_file_atomic, public

namespace sparseprox {

// Whole file into memory; throws sparseprox::Error naming the path when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace sparseprox
