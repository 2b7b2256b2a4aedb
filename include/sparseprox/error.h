// SparseProx: the one error type every library call throws.
#pragma once

#include "sparseprox/export.h"

#include <stdexcept>
#include <string>

namespace sparseprox {

// Thrown by every library call on bad input or a failing backend call. The message names the
// file, field, value or library call at fault.
class SPARSEPROX_API Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace sparseprox
