// SparseProx: the one error type every library call throws.
#pragma once

#include "sparseprox/export.h"

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sparseprox {

// Thrown by every library call on bad input or a failing backend call. The message names the
// file, field, value or library call at fault.
class SPARSEPROX_API Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A training run whose loss became NaN or infinite: it stops there. first_step..last_step are
// the steps (counted from 1) whose mean loss was not finite when the trainer looked.
class SPARSEPROX_API DivergedError : public Error {
public:
    DivergedError(const std::string& what, std::size_t first_step, std::size_t last_step)
        : Error(what), first_step_(first_step), last_step_(last_step) {}
    std::size_t first_step() const { return first_step_; }
    std::size_t last_step() const { return last_step_; }

private:
    std::size_t first_step_;
    std::size_t last_step_;
};

// The longest quotation of input an error message holds, by default.
constexpr std::size_t kExcerptChars = 64;

// Input quoted in an error message: at most about `max` characters of `text`, printable ASCII as
// it is, other bytes escaped (\n, \t, \0, \xNN); when cut, "... (N bytes)" follows.
SPARSEPROX_API std::string excerpt(std::string_view text, std::size_t max = kExcerptChars);

}  // namespace sparseprox
