#include "cli/options.h"

#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "sparseprox/error.h"

namespace sparseprox {
namespace cli {

namespace {
std::vector<std::string> split(const std::string& text) {
    std::vector<std::string> parts;
    std::stringstream ss(text);
    std::string p;
    while (std::getline(ss, p, ',')) parts.push_back(p);
    if (!text.empty() && text.back() == ',') parts.emplace_back();
    return parts;
}
}  // namespace

std::vector<float> parse_float_list(const std::string& flag, const std::string& text) {
    std::vector<float> out;
    for (const auto& p : split(text)) {
        std::size_t used = 0;
        float v = 0;
        try {
            v = std::stof(p, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (p.empty() || used != p.size() || !std::isfinite(v))
            throw Error(flag + ": '" + p + "' is not a finite number (in '" + text + "')");
        out.push_back(v);
    }
    if (out.empty()) throw Error(flag + ": no value given");
    return out;
}

std::vector<std::size_t> parse_count_list(const std::string& flag, const std::string& text) {
    std::vector<std::size_t> out;
    for (const auto& p : split(text)) {
        if (p.empty() || p.find_first_not_of("0123456789") != std::string::npos || p.size() > 12)
            throw Error(flag + ": '" + p + "' is not a non-negative whole number (in '" + text + "')");
        out.push_back(static_cast<std::size_t>(std::stoull(p)));
    }
    if (out.empty()) throw Error(flag + ": no value given");
    return out;
}

CLI::Validator whole_number(bool positive) {
    return CLI::Validator(
        [positive](std::string& text) -> std::string {
            if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos)
                return "'" + text + "' is not a " + (positive ? "positive" : "non-negative") + " whole number";
            try {
                const unsigned long long v = std::stoull(text);
                if (positive && v == 0) return "0 is not allowed (at least 1; leave the flag out for the default)";
            } catch (const std::out_of_range&) {
                return "'" + text + "' is too large";
            }
            return std::string();
        },
        positive ? "POSITIVE" : "NON-NEGATIVE");
}

CLI::Validator finite_non_negative() {
    return CLI::Validator(
        [](std::string& text) -> std::string {
            std::size_t used = 0;
            double v = 0;
            try {
                v = std::stod(text, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (text.empty() || used != text.size() || !std::isfinite(v) || v < 0)
                return "'" + text + "' is not a finite number >= 0";
            return std::string();
        },
        "NON-NEGATIVE");
}

CLI::Validator fraction() {
    return CLI::Validator(
        [](std::string& text) -> std::string {
            std::size_t used = 0;
            double v = -1;
            try {
                v = std::stod(text, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (text.empty() || used != text.size() || !(v >= 0.0 && v < 1.0))
                return "'" + text + "' is not a fraction in [0, 1)";
            return std::string();
        },
        "FRACTION");
}

std::string byte_size(double bytes) {
    const char* units[] = {"bytes", "kB", "MB", "GB", "TB", "PB"};
    std::size_t u = 0;
    while (bytes >= 1000.0 && u + 1 < sizeof units / sizeof units[0]) {
        bytes /= 1000.0;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
    return buf;
}

std::size_t parse_batch(const std::string& text) {
    if (text == "full") return 0;
    const auto v = parse_count_list("--batch", text);
    if (v.size() != 1 || v[0] == 0) throw Error("--batch: '" + text + "' must be 'full' or a positive whole number");
    return v[0];
}

}  // namespace cli
}  // namespace sparseprox
