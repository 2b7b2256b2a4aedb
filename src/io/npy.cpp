// NumPy's .npy format: the magic "\x93NUMPY", a version (1.0: a 2-byte header length; 2.0 and
// 3.0: 4 bytes), then a Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...)}
// padded with spaces and a newline, then the data.
#include "sparseprox/npy.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "sparseprox/error.h"

namespace sparseprox {
namespace {

// The value of key `key` in the header dict: the text after "'key':" up to the next ',' at
// depth 0 (or the closing brace).
std::string dict_value(const std::string& header, const std::string& key, const std::string& path) {
    const std::size_t at = header.find("'" + key + "'");
    if (at == std::string::npos) throw Error(path + ": .npy header has no '" + key + "'");
    std::size_t i = header.find(':', at);
    if (i == std::string::npos) throw Error(path + ": .npy header entry '" + key + "' has no value");
    ++i;
    int depth = 0;
    std::string v;
    for (; i < header.size(); ++i) {
        const char c = header[i];
        if (c == '(') ++depth;
        if (c == ')') --depth;
        if (depth == 0 && (c == ',' || c == '}')) break;
        v.push_back(c);
    }
    const std::size_t b = v.find_first_not_of(" "), e = v.find_last_not_of(" ");
    return b == std::string::npos ? "" : v.substr(b, e - b + 1);
}

}  // namespace

NpyArray read_npy(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw Error(path + ": not a .npy file (no magic)");
    const int major = static_cast<unsigned char>(bytes[6]);
    std::size_t header_len = 0, offset = 0;
    if (major == 1) {
        header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8);
        offset = 10;
    } else if (major == 2 || major == 3) {
        if (bytes.size() < 12) throw Error(path + ": truncated .npy header");
        for (int k = 0; k < 4; ++k) header_len |= static_cast<std::size_t>(static_cast<unsigned char>(bytes[8 + k])) << (8 * k);
        offset = 12;
    } else {
        throw Error(path + ": .npy format version " + std::to_string(major) + " (expected 1, 2 or 3)");
    }
    if (header_len > bytes.size() - offset) throw Error(path + ": truncated .npy header");
    const std::string header = bytes.substr(offset, header_len);
    offset += header_len;
    const std::string descr = dict_value(header, "descr", path);
    std::size_t item = 0;
    if (descr == "'<f4'") item = 4;
    else if (descr == "'<f8'") item = 8;
    else throw Error(path + ": .npy dtype " + descr + " (expected float32 '<f4' or float64 '<f8')");
    if (dict_value(header, "fortran_order", path) != "False")
        throw Error(path + ": .npy 'fortran_order' must be False (C order)");
    std::string shape_text = dict_value(header, "shape", path);
    if (shape_text.size() < 2 || shape_text.front() != '(' || shape_text.back() != ')')
        throw Error(path + ": .npy 'shape' " + shape_text + " is not a tuple");
    NpyArray a;
    std::size_t count = 1;
    std::string num;
    auto flush = [&] {
        if (num.empty()) return;
        std::size_t v = 0;
        for (char c : num) {
            if (c < '0' || c > '9') throw Error(path + ": .npy 'shape' " + shape_text + " has a non-integer entry");
            if (v > (std::numeric_limits<std::size_t>::max() - 9) / 10) throw Error(path + ": .npy 'shape' too large");
            v = v * 10 + static_cast<std::size_t>(c - '0');
        }
        a.shape.push_back(v);
        if (v != 0 && count > std::numeric_limits<std::size_t>::max() / v) throw Error(path + ": .npy 'shape' too large");
        count *= v;
        num.clear();
    };
    for (std::size_t i = 1; i + 1 < shape_text.size(); ++i) {
        const char c = shape_text[i];
        if (c == ',') flush();
        else if (c != ' ') num.push_back(c);
    }
    flush();
    if (count > (bytes.size() - offset) / item || (bytes.size() - offset) != count * item)
        throw Error(path + ": .npy data hold " + std::to_string(bytes.size() - offset) + " bytes, shape " + shape_text +
                    " needs " + std::to_string(count * item));
    a.data.resize(count);
    const char* p = bytes.data() + offset;
    for (std::size_t i = 0; i < count; ++i) {
        double v;
        if (item == 4) {
            float f;
            std::memcpy(&f, p + 4 * i, 4);
            v = f;
        } else {
            std::memcpy(&v, p + 8 * i, 8);
        }
        if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max())
            throw Error(path + ": .npy value " + std::to_string(i) + " is not a finite float");
        a.data[i] = static_cast<float>(v);
    }
    return a;
}

std::string npy_bytes(const std::vector<float>& values, const std::vector<std::size_t>& shape) {
    std::string dims;
    for (std::size_t d : shape) dims += std::to_string(d) + ", ";
    if (shape.size() > 1) dims.resize(dims.size() - 1);  // "(3,)" for one dimension, "(3, 4)" else
    if (shape.size() > 1) dims.pop_back();
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    if (shape.size() == 1) header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(shape[0]) + ",), }";
    const std::size_t preamble = 10;
    header.append((64 - (preamble + header.size() + 1) % 64) % 64, ' ');
    header.push_back('\n');
    std::string out = "\x93NUMPY";
    out.push_back('\x01');
    out.push_back('\x00');
    out.push_back(static_cast<char>(header.size() & 0xFF));
    out.push_back(static_cast<char>((header.size() >> 8) & 0xFF));
    out += header;
    const std::size_t start = out.size();
    out.resize(start + 4 * values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, &values[i], 4);
        for (int k = 0; k < 4; ++k) out[start + 4 * i + k] = static_cast<char>((bits >> (8 * k)) & 0xFF);
    }
    return out;
}

}  // namespace sparseprox
