// Parsing helpers shared by the sparseprox subcommands.
#pragma once

#include <cstddef>
#include <new>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "sparseprox/error.h"

namespace sparseprox {
namespace cli {

// "1e-4" or "1e-4,2e-4,..." -> floats; errors name the flag and the bad value.
std::vector<float> parse_float_list(const std::string& flag, const std::string& text);
// "2000" or "650,1200,1000,45" -> positive counts.
std::vector<std::size_t> parse_count_list(const std::string& flag, const std::string& text);
// "full" -> 0, otherwise a positive count.
std::size_t parse_batch(const std::string& text);

// Checks of a flag's text before CLI11 converts it (CLI11 would wrap "-1" into a huge unsigned
// count and accept "nan" as a duration).
//   whole_number(false): 0, 1, 2, ... up to 2^64 - 1; whole_number(true): 1, 2, ...
//   finite_non_negative(): a finite number >= 0.
CLI::Validator whole_number(bool positive);
CLI::Validator finite_non_negative();
//   fraction(): a number in [0, 1).
CLI::Validator fraction();

// "1.6 GB", "512 kB": a byte count for messages.
std::string byte_size(double bytes);

// fn(); an allocation failure inside it becomes an ordinary error, "out of memory <what>", so the
// message says what was too large.
template <class F>
auto or_out_of_memory(const std::string& what, F&& fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const std::bad_alloc&) {
        throw Error("out of memory " + what);
    }
}

}  // namespace cli
}  // namespace sparseprox
