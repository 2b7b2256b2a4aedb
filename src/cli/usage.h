// Usage errors in the command line's own words: unknown flags and commands (with the closest
// known name), missing or unconvertible values.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace sparseprox {
namespace cli {

// Edit distance (insertions, deletions, substitutions, adjacent swaps) between two names.
std::size_t edit_distance(const std::string& a, const std::string& b);
// The known name closest to `word` when it is close enough to be a typo of it; else "".
std::string closest_name(const std::string& word, const std::vector<std::string>& known);
// "; did you mean '--lambda'?" or "".
std::string did_you_mean(const std::string& word, const std::vector<std::string>& known);

// The long names of a (sub)command's flags, help and version included.
std::vector<std::string> flag_names(const CLI::App& app);

// The message for a CLI11 parse error (not help or version), without the "sparseprox: error: "
// prefix: "--lr needs a value", "--lr: 'abc' is not a number", ...
std::string usage_message(const CLI::ParseError& e, const CLI::App& app);

// The message for arguments a command did not take (CLI11 leaves them as "remaining"): the first
// unknown flag with the closest known one, or the first unexpected word. `command` is the
// command line's prefix ("sparseprox train"); `elsewhere` are other commands' apps, to say
// "a flag of 'sparseprox search'".
std::string extras_message(const std::vector<std::string>& extras, const CLI::App& app, const std::string& command,
                           const std::vector<const CLI::App*>& elsewhere);

}  // namespace cli
}  // namespace sparseprox
