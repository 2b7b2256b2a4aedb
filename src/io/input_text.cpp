#include "io/input_text.h"

#include <cstdio>
#include <set>
#include <vector>

#include "sparseprox/error.h"

namespace sparseprox {

namespace {

// Appends one byte as it would read in a message.
void put_byte(std::string& out, unsigned char c) {
    switch (c) {
        case '\n': out += "\\n"; return;
        case '\r': out += "\\r"; return;
        case '\t': out += "\\t"; return;
        case '\0': out += "\\0"; return;
        case '\\': out += "\\\\"; return;
        default: break;
    }
    if (c >= 0x20 && c < 0x7F) {
        out.push_back(static_cast<char>(c));
        return;
    }
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02X", static_cast<unsigned>(c));
    out += buf;
}

void put_text(std::string& out, std::string_view text, std::size_t limit) {
    for (std::size_t i = 0; i < text.size() && out.size() < limit; ++i)
        put_byte(out, static_cast<unsigned char>(text[i]));
}

constexpr int kExcerptDepth = 16;

// Compact JSON, stopping once `out` holds `limit` characters.
void put_json(std::string& out, const nlohmann::json& j, std::size_t limit, int depth) {
    if (out.size() >= limit) return;
    switch (j.type()) {
        case nlohmann::json::value_t::object: {
            if (depth >= kExcerptDepth) {
                out += "{...}";
                return;
            }
            out += '{';
            bool first = true;
            for (auto it = j.begin(); it != j.end() && out.size() < limit; ++it) {
                if (!first) out += ',';
                first = false;
                out += '"';
                put_text(out, it.key(), limit);
                out += "\":";
                put_json(out, it.value(), limit, depth + 1);
            }
            out += '}';
            return;
        }
        case nlohmann::json::value_t::array: {
            if (depth >= kExcerptDepth) {
                out += "[...]";
                return;
            }
            out += '[';
            bool first = true;
            for (auto it = j.begin(); it != j.end() && out.size() < limit; ++it) {
                if (!first) out += ',';
                first = false;
                put_json(out, *it, limit, depth + 1);
            }
            out += ']';
            return;
        }
        case nlohmann::json::value_t::string:
            out += '"';
            put_text(out, j.get_ref<const std::string&>(), limit);
            out += '"';
            return;
        case nlohmann::json::value_t::binary: out += "<binary>"; return;
        default: out += j.dump(); return;  // a number, a boolean or null: short
    }
}

}  // namespace

std::string excerpt(std::string_view text, std::size_t max) {
    std::string out, piece;
    std::size_t i = 0;
    for (; i < text.size(); ++i) {
        piece.clear();
        put_byte(piece, static_cast<unsigned char>(text[i]));
        if (out.size() + piece.size() > max) break;
        out += piece;
    }
    if (i == text.size()) return out;
    return out + "... (" + std::to_string(text.size()) + " bytes)";
}

std::string json_excerpt(const nlohmann::json& value, std::size_t max) {
    std::string out;
    put_json(out, value, max + 1, 0);
    if (out.size() <= max) return out;
    out.resize(max);
    return out + "...";
}

nlohmann::json parse_json_input(std::string_view text, const std::string& origin, std::size_t max_depth) {
    using json = nlohmann::json;
    // One set of keys per open object; a marker for arrays keeps the stack aligned with depth.
    std::vector<std::set<std::string>> keys;
    std::vector<bool> is_object;
    auto guard = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
        switch (event) {
            case json::parse_event_t::object_start:
            case json::parse_event_t::array_start:
                if (static_cast<std::size_t>(depth) >= max_depth)
                    throw Error(origin + ": JSON nested deeper than " + std::to_string(max_depth) + " levels");
                is_object.push_back(event == json::parse_event_t::object_start);
                keys.emplace_back();
                break;
            case json::parse_event_t::object_end:
            case json::parse_event_t::array_end:
                if (!keys.empty()) {
                    keys.pop_back();
                    is_object.pop_back();
                }
                break;
            case json::parse_event_t::key:
                if (!keys.empty() && is_object.back() && parsed.is_string() &&
                    !keys.back().insert(parsed.get_ref<const std::string&>()).second)
                    throw Error(origin + ": key \"" + excerpt(parsed.get_ref<const std::string&>()) +
                                "\" appears twice in one JSON object");
                break;
            case json::parse_event_t::value: break;
        }
        return true;
    };
    try {
        return json::parse(text.begin(), text.end(), guard);
    } catch (const json::exception& e) {
        throw Error(origin + ": invalid JSON: " + excerpt(e.what(), 200));
    }
}

}  // namespace sparseprox
