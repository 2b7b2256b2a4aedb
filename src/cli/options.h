// Parsing helpers shared by the sparseprox subcommands.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace sparseprox {
namespace cli {

// "1e-4" or "1e-4,2e-4,..." -> floats; errors name the flag and the bad value.
std::vector<float> parse_float_list(const std::string& flag, const std::string& text);
// "2000" or "650,1200,1000,45" -> positive counts.
std::vector<std::size_t> parse_count_list(const std::string& flag, const std::string& text);
// "full" -> 0, otherwise a positive count.
std::size_t parse_batch(const std::string& text);

}  // namespace cli
}  // namespace sparseprox
