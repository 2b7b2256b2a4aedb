// IDX reader (the MNIST file format). zlib's gz* functions read gzip files and, transparently,
// plain files too, so one code path serves both.
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "sparseprox/data.h"
#include "sparseprox/error.h"

namespace sparseprox {

namespace {

constexpr std::uint32_t kImagesMagic = 0x00000803;  // unsigned byte, 3 dimensions
constexpr std::uint32_t kLabelsMagic = 0x00000801;  // unsigned byte, 1 dimension

std::string hex32(std::uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08X", static_cast<unsigned>(v));
    return buf;
}

bool file_exists(const std::string& path) {
    std::error_code ec;
    return std::filesystem::is_regular_file(path, ec);
}

// A gzip (or plain) file opened for reading, closed on every exit path.
class GzReader {
public:
    explicit GzReader(const std::string& path) : path_(path) {
        if (!file_exists(path)) throw Error("IDX file '" + path + "' does not exist");
        errno = 0;
        file_ = gzopen(path.c_str(), "rb");
        if (!file_)
            throw Error("cannot open IDX file '" + path + "': " + (errno ? std::strerror(errno) : "out of memory"));
        gzbuffer(file_, 1 << 18);  // fewer, larger reads than the 8 KiB default for the 47 MB MNIST images
    }
    ~GzReader() {
        if (file_) gzclose(file_);
    }
    GzReader(const GzReader&) = delete;
    GzReader& operator=(const GzReader&) = delete;

    // Reads up to n bytes; fewer only at the end of the data. Corrupt gzip data throws.
    std::size_t read(void* dst, std::size_t n) {
        auto* out = static_cast<unsigned char*>(dst);
        std::size_t done = 0;
        while (done < n) {
            const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
            const int got = gzread(file_, out + done, chunk);
            if (got < 0) fail();
            if (got == 0) break;
            done += static_cast<std::size_t>(got);
        }
        // zlib flags a gzip stream cut short as an error but may still hand back the bytes it had.
        int errnum = Z_OK;
        gzerror(file_, &errnum);
        if (errnum != Z_OK && errnum != Z_STREAM_END) fail();
        return done;
    }

    bool at_end() {
        unsigned char c;
        return read(&c, 1) == 0;
    }

private:
    [[noreturn]] void fail() {
        int errnum = Z_OK;
        const char* msg = gzerror(file_, &errnum);
        std::string what = msg && *msg ? msg : "read error";
        if (errnum == Z_ERRNO) what = std::strerror(errno);
        // zlib prefixes its messages with the path, which ours already names.
        if (what.compare(0, path_.size() + 2, path_ + ": ") == 0) what.erase(0, path_.size() + 2);
        throw Error("cannot read IDX file '" + path_ + "': " + what + " (corrupt or truncated gzip data?)");
    }

    std::string path_;
    gzFile file_ = nullptr;
};

std::uint32_t be32(const unsigned char* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | std::uint32_t(p[3]);
}

// Header words after the magic number: count (labels) or count, rows, cols (images).
std::vector<std::uint32_t> read_header(GzReader& in, const std::string& path, std::uint32_t magic, std::size_t n_dims,
                                       const char* kind) {
    // The magic number first: a swapped or foreign file gets named as such, not as "truncated".
    std::array<unsigned char, 16> buf{};
    const std::size_t want = 4 * (1 + n_dims);
    std::size_t got = in.read(buf.data(), 4);
    if (got == 4) {
        const std::uint32_t found = be32(buf.data());
        if (found != magic)
            throw Error("IDX " + std::string(kind) + " file '" + path + "' has the wrong magic number: expected " +
                        hex32(magic) + ", found " + hex32(found) +
                        (found == kImagesMagic   ? " (this is an images file)"
                         : found == kLabelsMagic ? " (this is a labels file)"
                                                 : ""));
        got += in.read(buf.data() + 4, want - 4);
    }
    if (got < want)
        throw Error("IDX " + std::string(kind) + " file '" + path + "' is truncated: the header needs " +
                    std::to_string(want) + " bytes, found " + std::to_string(got));
    std::vector<std::uint32_t> dims(n_dims);
    static const char* const kDimNames[] = {"count", "rows", "columns"};
    for (std::size_t i = 0; i < n_dims; ++i) {
        dims[i] = be32(buf.data() + 4 * (i + 1));
        if (dims[i] == 0) throw Error("IDX " + std::string(kind) + " file '" + path + "' has zero " + kDimNames[i]);
    }
    return dims;
}

// The header's byte count, read in blocks: memory grows only as data actually arrives, so a
// corrupt header announcing terabytes fails as "truncated" instead of exhausting memory.
std::vector<unsigned char> read_body(GzReader& in, const std::string& path, std::size_t n, const char* kind) {
    constexpr std::size_t kBlock = std::size_t(1) << 24;
    std::vector<unsigned char> out;
    while (out.size() < n) {
        const std::size_t have = out.size();
        const std::size_t want = std::min(n - have, kBlock);
        out.resize(have + want);
        const std::size_t got = in.read(out.data() + have, want);
        if (got < want)
            throw Error("IDX " + std::string(kind) + " file '" + path + "' is truncated: expected " +
                        std::to_string(n) + " data bytes after the header, found " + std::to_string(have + got));
    }
    if (!in.at_end())
        throw Error("IDX " + std::string(kind) + " file '" + path + "' has extra bytes after the " + std::to_string(n) +
                    " data bytes its header announces");
    return out;
}

std::array<float, 256> pixel_table(PixelScale scale) {
    std::array<float, 256> t{};
    for (int p = 0; p < 256; ++p) {
        switch (scale) {
            case PixelScale::unit: t[p] = static_cast<float>(p / 255.0); break;
            case PixelScale::symmetric: t[p] = static_cast<float>(p / 127.5 - 1.0); break;
            case PixelScale::raw: t[p] = static_cast<float>(p); break;
            default: throw Error("unknown PixelScale value " + std::to_string(static_cast<int>(scale)));
        }
    }
    return t;
}

std::string set_name(const std::string& path) {
    std::string s = std::filesystem::path(path).filename().string();
    for (const char* ext : {".gz", "-idx3-ubyte", "-idx1-ubyte"}) {
        const std::size_t n = std::strlen(ext);
        if (s.size() > n && s.compare(s.size() - n, n, ext) == 0) s.resize(s.size() - n);
    }
    return s.empty() ? path : s;
}

// "<dir>/<name>" or "<dir>/<name>.gz", whichever exists (the plain one first).
std::string find_in_dir(const std::string& dir, const std::string& name) {
    const std::string plain = (std::filesystem::path(dir) / name).string();
    const std::string gz = plain + ".gz";
    if (file_exists(plain)) return plain;
    if (file_exists(gz)) return gz;
    throw Error("IDX file not found: tried '" + plain + "' and '" + gz + "'");
}

std::string folder_name(const std::string& dir) {
    std::filesystem::path p(dir);
    if (p.filename().empty()) p = p.parent_path();
    const std::string s = p.filename().string();
    return s.empty() || s == "." ? std::string("idx") : s;
}

Dataset read_pair(const std::string& images_path, const std::string& labels_path, PixelScale scale, int max_label) {
    const std::array<float, 256> table = pixel_table(scale);

    GzReader img(images_path);
    const std::vector<std::uint32_t> dims = read_header(img, images_path, kImagesMagic, 3, "images");
    GzReader lab(labels_path);
    const std::vector<std::uint32_t> ldims = read_header(lab, labels_path, kLabelsMagic, 1, "labels");
    if (dims[0] != ldims[0])
        throw Error("IDX images file '" + images_path + "' holds " + std::to_string(dims[0]) +
                    " images but labels file '" + labels_path + "' holds " + std::to_string(ldims[0]) + " labels");

    const std::size_t count = dims[0];
    const std::size_t features = std::size_t(dims[1]) * dims[2];  // < 2^64: both factors < 2^32
    if (features > std::numeric_limits<std::size_t>::max() / sizeof(float) / count)
        throw Error("IDX images file '" + images_path + "': " + std::to_string(count) + " images of " +
                    std::to_string(dims[1]) + "x" + std::to_string(dims[2]) + " are too many to hold");

    const std::vector<unsigned char> labels8 = read_body(lab, labels_path, count, "labels");

    Dataset d;
    d.name = set_name(images_path);
    d.task = Task::classification;
    d.n_samples = count;
    d.n_features = features;
    d.labels.resize(count);
    int top = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const int l = labels8[i];
        if (max_label >= 0 && l > max_label)
            throw Error("IDX labels file '" + labels_path + "': label " + std::to_string(l) + " of item " +
                        std::to_string(i) + " is above " + std::to_string(max_label) + " (expected " +
                        std::to_string(max_label + 1) + " classes)");
        d.labels[i] = l;
        top = std::max(top, l);
    }
    d.n_outputs = max_label >= 0 ? std::size_t(max_label) + 1 : std::size_t(top) + 1;

    // A 256-entry table makes every scale exactly the formula's float rounding, at one lookup per pixel.
    const std::vector<unsigned char> pixels = read_body(img, images_path, count * features, "images");
    d.x.resize(pixels.size());
    std::transform(pixels.begin(), pixels.end(), d.x.begin(), [&](unsigned char p) { return table[p]; });
    return d;
}

}  // namespace

Dataset read_idx(const std::string& images_path, const std::string& labels_path, PixelScale scale) {
    return read_pair(images_path, labels_path, scale, -1);
}

DataSplit read_idx_dir(const std::string& dir, PixelScale scale) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) throw Error("IDX folder '" + dir + "' does not exist");
    // Resolve all four names first so a folder missing one file fails before any inflating.
    const std::string train_images = find_in_dir(dir, "train-images-idx3-ubyte");
    const std::string train_labels = find_in_dir(dir, "train-labels-idx1-ubyte");
    const std::string test_images = find_in_dir(dir, "t10k-images-idx3-ubyte");
    const std::string test_labels = find_in_dir(dir, "t10k-labels-idx1-ubyte");

    DataSplit split;
    split.train = read_pair(train_images, train_labels, scale, 9);
    split.test = read_pair(test_images, test_labels, scale, 9);
    if (split.train.n_features != split.test.n_features)
        throw Error("IDX folder '" + dir + "': training images have " + std::to_string(split.train.n_features) +
                    " pixels but test images have " + std::to_string(split.test.n_features));
    const std::string base = folder_name(dir);
    split.train.name = base + "/train";
    split.test.name = base + "/test";
    return split;
}

}  // namespace sparseprox
