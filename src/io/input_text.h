// Untrusted input in error messages, and JSON parsed from untrusted text.
//
// Error messages quote what they refuse, but a file may hold a value of any length, control
// bytes or a NUL (which would cut a C string short): excerpt() escapes and caps it. JSON
// nesting is bounded while parsing, so no later recursive walk (a dump(), a copy, a comparison)
// can run out of stack.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "sparseprox/error.h"  // excerpt, kExcerptChars

namespace sparseprox {


// A JSON value as compact text for an error message, cut after about `max` characters (and below
// 16 levels of nesting) the same way.
std::string json_excerpt(const nlohmann::json& value, std::size_t max = kExcerptChars);

// Deepest nesting of arrays and objects parse_json_input accepts. Model files and safetensors
// headers need 4 levels.
constexpr std::size_t kMaxJsonDepth = 64;

// Parses untrusted JSON text. Besides invalid JSON, nesting deeper than `max_depth` and a key
// repeated within one object (which JSON parsers resolve differently) are errors. Every error
// is a sparseprox::Error starting with `origin`.
nlohmann::json parse_json_input(std::string_view text, const std::string& origin,
                                std::size_t max_depth = kMaxJsonDepth);

}  // namespace sparseprox
