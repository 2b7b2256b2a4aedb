// LIBSVM text reader: "label idx:value idx:value ..." per line.
//
// Numbers go through std::from_chars, which ignores the C locale (strtod would read "0,5" in a
// German locale and reject "0.5").
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "core/atomic_file.h"
#include "io/input_text.h"
#include "sparseprox/data.h"
#include "sparseprox/error.h"

namespace sparseprox {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

class LineError {
public:
    LineError(const std::string& path, std::size_t line) : path_(path), line_(line) {}
    [[noreturn]] void operator()(const std::string& what) const {
        throw Error("'" + path_ + "' line " + std::to_string(line_) + ": " + what);
    }

private:
    const std::string& path_;
    std::size_t line_;
};

// The whole token as a finite double; an optional leading '+' is allowed ("+1" labels are common).
bool parse_double(std::string_view token, double& out) {
    if (token.size() > 1 && token[0] == '+' && token[1] != '-' && token[1] != '+') token.remove_prefix(1);
    if (token.empty()) return false;
    const char* end = token.data() + token.size();
    const auto [ptr, ec] = std::from_chars(token.data(), end, out);
    // from_chars reports out-of-range for 1e999; that is an Inf for our purposes.
    if (ec == std::errc::result_out_of_range && ptr == end) {
        out = std::numeric_limits<double>::infinity();
        return true;
    }
    return ec == std::errc() && ptr == end;
}

// Finite and representable as float (1e39 would turn into Inf once stored).
bool fits_float(double v) {
    return std::isfinite(v) && std::fabs(v) <= static_cast<double>(std::numeric_limits<float>::max());
}

}  // namespace

Dataset read_libsvm(const std::string& path, std::size_t n_features) { return read_libsvm(path, n_features, LibsvmLimits{}); }

namespace {

Dataset read_libsvm_text(const std::string& path, const std::string& text, std::size_t n_features,
                         LibsvmLimits limits) {
    limits.max_features = std::min(limits.max_features, std::size_t{1} << 32);  // indices are stored in 32 bits
    if (n_features > limits.max_features)
        throw Error("'" + path + "': n_features = " + std::to_string(n_features) + " is above the limit of " +
                    std::to_string(limits.max_features) + " features");
    // Every row sparsely: the largest index decides the width only once the file is read.
    std::vector<float> labels;
    std::vector<std::size_t> row_start{0};  // entries of row r: [row_start[r], row_start[r+1])
    std::vector<std::uint32_t> indices;     // 0-based feature index (< max_features <= 2^32)
    std::vector<float> values;
    std::size_t max_index = 0;  // 1-based, largest seen
    const std::size_t index_limit = n_features != 0 ? n_features : limits.max_features;

    std::size_t line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string::npos) eol = text.size();
        std::string_view line(text.data() + pos, eol - pos);
        pos = eol + 1;
        ++line_no;
        const LineError fail(path, line_no);

        const std::size_t hash = line.find('#');
        if (hash != std::string_view::npos) line = line.substr(0, hash);

        std::size_t i = 0;
        auto next_token = [&]() -> std::string_view {
            while (i < line.size() && is_space(line[i])) ++i;
            const std::size_t begin = i;
            while (i < line.size() && !is_space(line[i])) ++i;
            return line.substr(begin, i - begin);
        };

        const std::string_view label_tok = next_token();
        if (label_tok.empty()) continue;  // blank or comment-only line
        double label = 0;
        if (!parse_double(label_tok, label)) fail("bad label '" + excerpt(label_tok) + "' (expected a number)");
        if (!fits_float(label)) fail("label '" + excerpt(label_tok) + "' is not a finite float");
        labels.push_back(static_cast<float>(label));

        std::size_t previous = 0;
        for (std::string_view tok = next_token(); !tok.empty(); tok = next_token()) {
            const std::size_t colon = tok.find(':');
            if (colon == std::string_view::npos)
                fail("feature '" + excerpt(tok) + "' has no ':' (expected index:value)");
            const std::string_view idx_tok = tok.substr(0, colon);
            const std::string_view val_tok = tok.substr(colon + 1);

            unsigned long long idx = 0;
            const auto [ptr, ec] = std::from_chars(idx_tok.data(), idx_tok.data() + idx_tok.size(), idx);
            const bool digits = !idx_tok.empty() && ptr == idx_tok.data() + idx_tok.size();
            if (digits && ec == std::errc::result_out_of_range)
                fail("feature index " + excerpt(idx_tok) + " is above the limit of " + std::to_string(index_limit) +
                     (n_features != 0 ? " (n_features)" : " features"));
            if (!digits || ec != std::errc())
                fail("feature index '" + excerpt(idx_tok) + "' is not a positive integer");
            if (idx == 0) fail("feature index 0 is not positive (indices start at 1)");
            if (idx <= previous)
                fail("feature index " + std::to_string(idx) + " does not ascend (follows " + std::to_string(previous) +
                     ")");
            if (n_features != 0 && idx > n_features)
                fail("feature index " + std::to_string(idx) + " exceeds n_features = " + std::to_string(n_features));
            if (idx > limits.max_features)
                fail("feature index " + std::to_string(idx) + " is above the limit of " +
                     std::to_string(limits.max_features) + " features");
            previous = static_cast<std::size_t>(idx);

            double v = 0;
            if (!parse_double(val_tok, v))
                fail("value '" + excerpt(val_tok) + "' of feature " + std::to_string(idx) + " is not a number");
            if (!fits_float(v))
                fail("value '" + excerpt(val_tok) + "' of feature " + std::to_string(idx) +
                     " is NaN, Inf or beyond float range");
            indices.push_back(static_cast<std::uint32_t>(previous - 1));
            values.push_back(static_cast<float>(v));
            if (previous > max_index) max_index = previous;
        }
        row_start.push_back(indices.size());
    }

    if (labels.empty()) throw Error("'" + path + "' holds no samples (empty LIBSVM file)");

    Dataset d;
    d.name = std::filesystem::path(path).stem().string();
    if (d.name.empty()) d.name = path;
    d.task = Task::regression;
    d.n_samples = labels.size();
    d.n_features = n_features != 0 ? n_features : max_index;
    d.n_outputs = 1;
    if (d.n_features == 0) throw Error("'" + path + "' has no features on any line (cannot infer n_features)");
    if (d.n_features > limits.max_dense_values / d.n_samples)
        throw Error("'" + path + "': " + std::to_string(d.n_samples) + " samples x " + std::to_string(d.n_features) +
                    " features is more than the limit of " + std::to_string(limits.max_dense_values) +
                    " values held densely");
    d.x.assign(d.n_samples * d.n_features, 0.0f);  // missing features are 0
    for (std::size_t r = 0; r < d.n_samples; ++r)
        for (std::size_t e = row_start[r]; e < row_start[r + 1]; ++e) d.x[r * d.n_features + indices[e]] = values[e];
    d.y = std::move(labels);
    return d;
}

}  // namespace

Dataset read_libsvm(const std::string& path, std::size_t n_features, const LibsvmLimits& limits) {
    const std::string text = read_file(path);  // names the path when missing, unreadable or a folder
    try {
        return read_libsvm_text(path, text, n_features, limits);
    } catch (const std::bad_alloc&) {
        throw Error("'" + path + "': out of memory reading " + std::to_string(text.size()) +
                    " bytes of LIBSVM text (the rows are held sparsely, then as one dense matrix)");
    }
}

}  // namespace sparseprox
