// Data readers: LIBSVM text, IDX (plain and gzipped), the Mackey-Glass generator, load_data,
// and the real data sets when they are present.
#include <gtest/gtest.h>

#include "test_util.h"
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "sparseprox/data.h"
#include "sparseprox/error.h"

#ifndef SPARSEPROX_DATA_DIR
#define SPARSEPROX_DATA_DIR ""
#endif

namespace fs = std::filesystem;
using namespace sparseprox;
using sparseprox::testing_util::throws_error_with;

namespace {


// A fresh folder per test, removed afterwards.
class DataTempDir : public sparseprox::testing_util::TempDirTest {
protected:
    std::string write_gz(const std::string& name, const std::string& bytes) const {
        const std::string p = path(name);
        gzFile f = gzopen(p.c_str(), "wb");
        EXPECT_NE(f, nullptr) << p;
        if (!f) return p;
        EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
        EXPECT_EQ(gzclose(f), Z_OK);
        return p;
    }
};

void put_be32(std::string& s, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xFF));
}

std::string idx_images(std::uint32_t count, std::uint32_t rows, std::uint32_t cols, const std::vector<std::uint8_t>& px,
                       std::uint32_t magic = 0x00000803) {
    std::string s;
    put_be32(s, magic);
    put_be32(s, count);
    put_be32(s, rows);
    put_be32(s, cols);
    s.append(px.begin(), px.end());
    return s;
}

std::string idx_labels(const std::vector<std::uint8_t>& labels, std::uint32_t magic = 0x00000801) {
    std::string s;
    put_be32(s, magic);
    put_be32(s, static_cast<std::uint32_t>(labels.size()));
    s.append(labels.begin(), labels.end());
    return s;
}

// Three 2x2 images whose pixels include both ends of the range.
const std::vector<std::uint8_t> kPixels = {0, 255, 51, 102, 127, 128, 1, 254, 200, 100, 0, 255};
const std::vector<std::uint8_t> kLabels = {3, 0, 7};

std::string data_dir() { return SPARSEPROX_DATA_DIR; }

}  // namespace

// ---- Dataset -----------------------------------------------------------------------------------

TEST(DatasetCheck, ValidateAcceptsConsistentSets) {
    Dataset r;
    r.name = "r";
    r.n_samples = 2;
    r.n_features = 3;
    r.n_outputs = 1;
    r.x = {1, 2, 3, 4, 5, 6};
    r.y = {0.5f, -0.5f};
    EXPECT_NO_THROW(r.validate());

    Dataset c;
    c.task = Task::classification;
    c.n_samples = 2;
    c.n_features = 1;
    c.n_outputs = 4;
    c.x = {0, 1};
    c.labels = {3, 0};
    EXPECT_NO_THROW(c.validate());
}

TEST(DatasetCheck, ValidateRejectsBadSizesValuesAndLabels) {
    Dataset d;
    d.name = "tiny";
    d.n_samples = 2;
    d.n_features = 2;
    d.n_outputs = 1;
    d.x = {1, 2, 3};
    d.y = {0, 0};
    EXPECT_TRUE(throws_error_with([&] { d.validate(); }, {"tiny", "x holds 3"}));
    d.x = {1, 2, 3, 4};
    d.y = {0};
    EXPECT_TRUE(throws_error_with([&] { d.validate(); }, {"tiny", "y holds 1"}));
    d.y = {0, std::numeric_limits<float>::quiet_NaN()};
    EXPECT_TRUE(throws_error_with([&] { d.validate(); }, {"tiny", "sample 1", "not finite"}));
    d.y = {0, 0};
    d.x[2] = std::numeric_limits<float>::infinity();
    EXPECT_TRUE(throws_error_with([&] { d.validate(); }, {"x of sample 1, feature 0"}));

    Dataset c;
    c.name = "cls";
    c.task = Task::classification;
    c.n_samples = 2;
    c.n_features = 1;
    c.n_outputs = 3;
    c.x = {0, 0};
    c.labels = {1, 3};
    EXPECT_TRUE(throws_error_with([&] { c.validate(); }, {"cls", "label of sample 1 is 3"}));
    c.labels = {-1, 0};
    EXPECT_TRUE(throws_error_with([&] { c.validate(); }, {"label of sample 0 is -1"}));
    c.labels = {0};
    EXPECT_TRUE(throws_error_with([&] { c.validate(); }, {"labels holds 1"}));
}

TEST(DatasetCheck, SliceCopiesRowsAndChecksRange) {
    Dataset d;
    d.name = "s";
    d.n_samples = 4;
    d.n_features = 2;
    d.n_outputs = 1;
    d.x = {0, 1, 10, 11, 20, 21, 30, 31};
    d.y = {0, 1, 2, 3};
    const Dataset s = d.slice(1, 2);
    EXPECT_EQ(s.n_samples, 2u);
    EXPECT_EQ(s.n_features, 2u);
    EXPECT_EQ(s.x, (std::vector<float>{10, 11, 20, 21}));
    EXPECT_EQ(s.y, (std::vector<float>{1, 2}));
    EXPECT_NO_THROW(s.validate());
    EXPECT_EQ(d.slice(4, 0).n_samples, 0u);
    EXPECT_TRUE(throws_error_with([&] { d.slice(3, 2); }, {"'s'", "[3, 3 + 2)", "4 samples"}));

    Dataset c;
    c.task = Task::classification;
    c.n_samples = 3;
    c.n_features = 1;
    c.n_outputs = 10;
    c.x = {0, 1, 2};
    c.labels = {5, 6, 7};
    const Dataset cs = c.slice(2, 1);
    EXPECT_EQ(cs.labels, (std::vector<std::int32_t>{7}));
    EXPECT_TRUE(cs.y.empty());
    EXPECT_EQ(cs.n_outputs, 10u);
}

// ---- LIBSVM ------------------------------------------------------------------------------------

using LibsvmReader = DataTempDir;

TEST_F(LibsvmReader, ReadsLabelsFeaturesCommentsAndGaps) {
    const std::string p = write("small.txt",
                                "# a comment line\n"
                                "1.5 1:0.25 3:-2\n"
                                "\n"
                                "+1 2:4e-1   # trailing comment\r\n"
                                "-0.5\n"
                                "\t2 1:1 2:2 3:3 4:4\n");
    const Dataset d = read_libsvm(p);
    EXPECT_EQ(d.name, "small");
    EXPECT_EQ(d.task, Task::regression);
    EXPECT_EQ(d.n_samples, 4u);
    EXPECT_EQ(d.n_features, 4u);  // inferred from the largest index
    EXPECT_EQ(d.n_outputs, 1u);
    EXPECT_EQ(d.y, (std::vector<float>{1.5f, 1.0f, -0.5f, 2.0f}));
    EXPECT_EQ(d.x, (std::vector<float>{0.25f, 0, -2, 0,  //
                                       0, 0.4f, 0, 0,    //
                                       0, 0, 0, 0,       //
                                       1, 2, 3, 4}));
    EXPECT_TRUE(d.labels.empty());
    EXPECT_NO_THROW(d.validate());
}

TEST_F(LibsvmReader, GivenFeatureCountPadsWithZeros) {
    const std::string p = write("pad.txt", "0 2:1\n1 1:3\n");
    const Dataset d = read_libsvm(p, 5);
    EXPECT_EQ(d.n_features, 5u);
    EXPECT_EQ(d.x, (std::vector<float>{0, 1, 0, 0, 0, 3, 0, 0, 0, 0}));
}

TEST_F(LibsvmReader, ErrorsNameFileAndLine) {
    EXPECT_TRUE(throws_error_with([&] { read_libsvm(path("absent.txt")); }, {"absent.txt"}));
    struct Case {
        const char* text;
        std::vector<std::string> parts;
    };
    const std::vector<Case> cases = {
        {"1 1:0\nabc 1:2\n", {"line 2", "bad label 'abc'"}},
        {"1 1:0\n2 1:2 3\n", {"line 2", "'3' has no ':'"}},
        {"1 x:0\n", {"line 1", "index 'x'"}},
        {"1 1:0\n1 -2:0\n", {"line 2", "index '-2'"}},
        {"1 0:5\n", {"line 1", "index 0"}},
        {"1 2:1 2:1\n", {"line 1", "index 2 does not ascend"}},
        {"1 3:1 2:1\n", {"line 1", "index 2 does not ascend"}},
        {"# c\n1 1:nan\n", {"line 2", "NaN"}},
        {"1 1:inf\n", {"line 1", "Inf"}},
        {"1 1:1e40\n", {"line 1", "float range"}},
        {"nan 1:1\n", {"line 1", "label"}},
        {"1 1:0.5x\n", {"line 1", "'0.5x'", "not a number"}},
        {"1 1:\n", {"line 1", "not a number"}},
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const std::string p = write("bad" + std::to_string(i) + ".txt", cases[i].text);
        std::vector<std::string> parts = cases[i].parts;
        parts.push_back(p);
        testing::AssertionResult r = testing::AssertionFailure();
        try {
            read_libsvm(p);
            r = testing::AssertionFailure() << "did not throw";
        } catch (const Error& e) {
            r = testing::AssertionSuccess();
            for (const auto& part : parts)
                if (std::string(e.what()).find(part) == std::string::npos)
                    r = testing::AssertionFailure() << "\"" << e.what() << "\" lacks \"" << part << "\"";
        }
        EXPECT_TRUE(r) << "case " << i << ": " << cases[i].text;
    }
    const std::string wide = write("wide.txt", "1 1:0\n2 7:1\n");
    EXPECT_TRUE(throws_error_with([&] { read_libsvm(wide, 6); }, {"wide.txt", "line 2", "exceeds n_features = 6"}));
    const std::string empty = write("empty.txt", "");
    EXPECT_TRUE(throws_error_with([&] { read_libsvm(empty); }, {"empty.txt", "no samples"}));
    const std::string only_comments = write("comments.txt", "# nothing\n\n   \n");
    EXPECT_TRUE(throws_error_with([&] { read_libsvm(only_comments); }, {"comments.txt", "no samples"}));
}

TEST_F(LibsvmReader, HugeIndicesAreRefusedBeforeAllocating) {
    // 85 bytes claiming 3e9 features used to make a 12 GB dense matrix; an index between 2^61 and
    // 2^62 escaped as std::length_error.
    struct Case {
        std::string index, needle;
    };
    const std::vector<Case> cases = {
        {"16777217", "above the limit of 16777216 features"},
        {"3000000000", "above the limit of 16777216 features"},
        {std::to_string((std::uint64_t{1} << 61) + 5), "above the limit"},
        {"99999999999999999999999999", "above the limit"},
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const std::string p = write("huge" + std::to_string(i) + ".txt", "1 1:0.5\n2 " + cases[i].index + ":1\n");
        EXPECT_TRUE(throws_error_with([&] { read_libsvm(p); }, {p, "line 2", cases[i].needle})) << cases[i].index;
    }
    // The largest index the default allows is read (one row of 2^24 floats).
    const std::string ok = write("max.txt", "1 16777216:2\n");
    const Dataset d = read_libsvm(ok);
    EXPECT_EQ(d.n_features, 16777216u);
    EXPECT_EQ(d.x.back(), 2.0f);
}

TEST_F(LibsvmReader, LimitsAreAdjustable) {
    const std::string p = write("three.txt", "1 1:1\n2 5:1\n3 2:1\n");
    LibsvmLimits tight;
    tight.max_features = 4;
    EXPECT_TRUE(throws_error_with([&] { read_libsvm(p, 0, tight); }, {p, "line 2", "feature index 5", "limit of 4"}));
    LibsvmLimits small;
    small.max_dense_values = 14;  // 3 rows x 5 features = 15
    EXPECT_TRUE(throws_error_with([&] { read_libsvm(p, 0, small); }, {p, "3 samples x 5 features", "limit of 14"}));
    small.max_dense_values = 15;
    EXPECT_EQ(read_libsvm(p, 0, small).x.size(), 15u);
    EXPECT_TRUE(throws_error_with([&] { read_libsvm(p, 20, tight); }, {p, "n_features = 20", "limit of 4"}));
}

// ---- IDX ---------------------------------------------------------------------------------------

using IdxReader = DataTempDir;

TEST_F(IdxReader, ReadsPlainAndGzippedWithEveryScale) {
    const std::string images = idx_images(3, 2, 2, kPixels);
    const std::string labels = idx_labels(kLabels);
    const std::string ip = write("img-idx3-ubyte", images);
    const std::string lp = write("lab-idx1-ubyte", labels);
    const std::string igz = write_gz("img-idx3-ubyte.gz", images);
    const std::string lgz = write_gz("lab-idx1-ubyte.gz", labels);

    for (const auto& [img, lab] : {std::pair{ip, lp}, std::pair{igz, lgz}, std::pair{ip, lgz}}) {
        const Dataset raw = read_idx(img, lab, PixelScale::raw);
        EXPECT_EQ(raw.task, Task::classification);
        EXPECT_EQ(raw.n_samples, 3u);
        EXPECT_EQ(raw.n_features, 4u);
        EXPECT_EQ(raw.n_outputs, 8u);  // largest label 7, plus one
        EXPECT_EQ(raw.labels, (std::vector<std::int32_t>{3, 0, 7}));
        EXPECT_TRUE(raw.y.empty());
        ASSERT_EQ(raw.x.size(), kPixels.size());
        const Dataset unit = read_idx(img, lab, PixelScale::unit);
        const Dataset sym = read_idx(img, lab, PixelScale::symmetric);
        for (std::size_t i = 0; i < kPixels.size(); ++i) {
            EXPECT_EQ(raw.x[i], static_cast<float>(kPixels[i]));
            EXPECT_EQ(unit.x[i], static_cast<float>(kPixels[i] / 255.0));
            EXPECT_EQ(sym.x[i], static_cast<float>(kPixels[i] / 127.5 - 1.0));
        }
        EXPECT_EQ(sym.x[0], -1.0f);
        EXPECT_EQ(sym.x[1], 1.0f);
        EXPECT_EQ(unit.x[1], 1.0f);
        EXPECT_NO_THROW(sym.validate());
    }
    EXPECT_EQ(read_idx(igz, lgz).name, "img");
}

TEST_F(IdxReader, DirectoryMixesPlainAndGzipAndNamesTheSets) {
    fs::create_directories(path("digits"));
    write("digits/train-images-idx3-ubyte", idx_images(3, 2, 2, kPixels));
    write_gz("digits/train-labels-idx1-ubyte.gz", idx_labels(kLabels));
    write_gz("digits/t10k-images-idx3-ubyte.gz", idx_images(1, 2, 2, {9, 8, 7, 6}));
    write("digits/t10k-labels-idx1-ubyte", idx_labels({9}));
    // A plain file wins over a .gz of the same name: this corrupt .gz must never be opened.
    write("digits/train-images-idx3-ubyte.gz", "not gzip");

    const DataSplit s = read_idx_dir(path("digits") + "/", PixelScale::raw);
    EXPECT_EQ(s.train.name, "digits/train");
    EXPECT_EQ(s.test.name, "digits/test");
    EXPECT_EQ(s.train.n_samples, 3u);
    EXPECT_EQ(s.test.n_samples, 1u);
    EXPECT_EQ(s.train.n_outputs, 10u);
    EXPECT_EQ(s.test.n_outputs, 10u);
    EXPECT_EQ(s.test.labels, (std::vector<std::int32_t>{9}));
    EXPECT_EQ(s.test.x, (std::vector<float>{9, 8, 7, 6}));

    const DataSplit via_load = load_data("idx:" + path("digits"));
    EXPECT_EQ(via_load.train.x[0], -1.0f);  // symmetric by default
    EXPECT_EQ(via_load.train.x[1], 1.0f);
}

TEST_F(IdxReader, MissingFilesNameThePathsTried) {
    EXPECT_TRUE(throws_error_with([&] { read_idx(path("nope-images"), path("nope-labels")); }, {"nope-images"}));
    fs::create_directories(path("partial"));
    write("partial/train-images-idx3-ubyte", idx_images(3, 2, 2, kPixels));
    EXPECT_TRUE(throws_error_with([&] { read_idx_dir(path("partial")); },
                                  {"train-labels-idx1-ubyte'", "train-labels-idx1-ubyte.gz'"}));
    EXPECT_TRUE(throws_error_with([&] { read_idx_dir(path("no-such-dir")); }, {"no-such-dir"}));
}

TEST_F(IdxReader, WrongMagicShowsExpectedAndFoundInHex) {
    const std::string lp = write("l", idx_labels(kLabels));
    const std::string bad = write("bad-images", idx_images(3, 2, 2, kPixels, 0x00000802));
    EXPECT_TRUE(
        throws_error_with([&] { read_idx(bad, lp); }, {"bad-images", "expected 0x00000803", "found 0x00000802"}));
    // Images and labels swapped.
    const std::string ip = write("i", idx_images(3, 2, 2, kPixels));
    EXPECT_TRUE(throws_error_with([&] { read_idx(lp, ip); }, {"found 0x00000801", "labels file"}));
    const std::string bad_lab = write_gz("bad-labels.gz", idx_labels(kLabels, 0x12345678));
    EXPECT_TRUE(throws_error_with([&] { read_idx(ip, bad_lab); }, {"bad-labels.gz", "0x12345678", "0x00000801"}));
}

TEST_F(IdxReader, TruncatedAndCorruptFilesFail) {
    const std::string images = idx_images(3, 2, 2, kPixels);
    const std::string lp = write("l", idx_labels(kLabels));
    const std::string short_px = write("short-px", images.substr(0, images.size() - 1));
    EXPECT_TRUE(
        throws_error_with([&] { read_idx(short_px, lp); }, {"short-px", "truncated", "expected 12", "found 11"}));
    const std::string short_hdr = write("short-hdr", images.substr(0, 10));
    EXPECT_TRUE(throws_error_with([&] { read_idx(short_hdr, lp); }, {"short-hdr", "truncated", "header"}));
    const std::string short_gz = write_gz("short-gz.gz", images.substr(0, images.size() - 4));
    EXPECT_TRUE(throws_error_with([&] { read_idx(short_gz, lp); }, {"short-gz.gz", "truncated"}));
    // A header announcing ~4 billion labels over a 3-byte body fails fast as truncated.
    std::string huge_labels;
    put_be32(huge_labels, 0x00000801);
    put_be32(huge_labels, 0xFFFFFFFFu);
    huge_labels += "abc";
    std::string huge_images;
    put_be32(huge_images, 0x00000803);
    put_be32(huge_images, 0xFFFFFFFFu);
    put_be32(huge_images, 28);
    put_be32(huge_images, 28);
    EXPECT_TRUE(throws_error_with([&] { read_idx(write("hi", huge_images), write("hl", huge_labels)); },
                                  {"'" + path("hl") + "'", "truncated", "found 3"}));
    const std::string extra = write("extra", images + "x");
    EXPECT_TRUE(throws_error_with([&] { read_idx(extra, lp); }, {"extra", "extra bytes"}));

    // A gzip stream cut in half, and one with flipped bytes in its compressed body.
    const std::string good_gz = write_gz("good.gz", images);
    std::string gz_bytes;
    {
        std::ifstream in(good_gz, std::ios::binary);
        gz_bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    ASSERT_GT(gz_bytes.size(), 20u);
    const std::string cut = write("cut.gz", gz_bytes.substr(0, gz_bytes.size() / 2));
    EXPECT_TRUE(throws_error_with([&] { read_idx(cut, lp); }, {"cut.gz"}));
    std::string flipped = gz_bytes;
    for (std::size_t i = 10; i < flipped.size() - 8; ++i) flipped[i] = static_cast<char>(~flipped[i]);
    const std::string corrupt = write("corrupt.gz", flipped);
    EXPECT_TRUE(throws_error_with([&] { read_idx(corrupt, lp); }, {"corrupt.gz"}));
}

TEST_F(IdxReader, CountMismatchZeroDimensionsAndLabelRange) {
    const std::string ip = write("i", idx_images(3, 2, 2, kPixels));
    const std::string two = write("two-labels", idx_labels({1, 2}));
    EXPECT_TRUE(throws_error_with([&] { read_idx(ip, two); }, {"holds 3 images", "two-labels", "holds 2 labels"}));
    const std::string zero_rows = write("zero-rows", idx_images(3, 0, 2, {}));
    const std::string lp = write("l", idx_labels(kLabels));
    EXPECT_TRUE(throws_error_with([&] { read_idx(zero_rows, lp); }, {"zero-rows", "zero rows"}));
    const std::string zero_count = write("zero-count", idx_images(0, 2, 2, {}));
    EXPECT_TRUE(
        throws_error_with([&] { read_idx(zero_count, write("l0", idx_labels({}))); }, {"zero-count", "zero count"}));

    // Label 12 is fine for read_idx (13 classes) but not in a ten-class folder.
    const std::string l12 = write("l12", idx_labels({1, 12, 0}));
    EXPECT_EQ(read_idx(ip, l12).n_outputs, 13u);
    fs::create_directories(path("d"));
    write("d/train-images-idx3-ubyte", idx_images(3, 2, 2, kPixels));
    write("d/train-labels-idx1-ubyte", idx_labels({1, 12, 0}));
    write("d/t10k-images-idx3-ubyte", idx_images(1, 2, 2, {1, 2, 3, 4}));
    write("d/t10k-labels-idx1-ubyte", idx_labels({0}));
    EXPECT_TRUE(throws_error_with([&] { read_idx_dir(path("d")); }, {"train-labels-idx1-ubyte", "label 12", "item 1"}));
}

// ---- Mackey-Glass ------------------------------------------------------------------------------

TEST(MackeyGlass, SizesRangeAndNames) {
    const DataSplit s = mackey_glass();
    EXPECT_EQ(s.train.name, "mackey-glass/train");
    EXPECT_EQ(s.test.name, "mackey-glass/test");
    EXPECT_EQ(s.train.n_samples, 1000u);
    EXPECT_EQ(s.test.n_samples, 385u);
    for (const Dataset* d : {&s.train, &s.test}) {
        EXPECT_EQ(d->task, Task::regression);
        EXPECT_EQ(d->n_features, 6u);
        EXPECT_EQ(d->n_outputs, 1u);
        EXPECT_EQ(d->x.size(), d->n_samples * 6);
        EXPECT_EQ(d->y.size(), d->n_samples);
        EXPECT_NO_THROW(d->validate());
    }
    float lo = 2, hi = -2;
    for (const Dataset* d : {&s.train, &s.test}) {
        for (float v : d->x) lo = std::min(lo, v), hi = std::max(hi, v);
        for (float v : d->y) lo = std::min(lo, v), hi = std::max(hi, v);
    }
    // Every sample of the series appears somewhere, so the scaling's ends are reached exactly.
    EXPECT_EQ(lo, -1.0f);
    EXPECT_EQ(hi, 1.0f);
    // A chaotic series, not a settled one: the targets spread over most of the range.
    const auto [ymin, ymax] = std::minmax_element(s.train.y.begin(), s.train.y.end());
    EXPECT_GT(*ymax - *ymin, 1.5f);
}

TEST(MackeyGlass, DeterministicAndConsecutiveWindows) {
    MackeyGlassOptions o;
    o.n_train = 50;
    o.n_test = 20;
    o.window = 4;
    const DataSplit a = mackey_glass(o);
    const DataSplit b = mackey_glass(o);
    EXPECT_EQ(a.train.x, b.train.x);
    EXPECT_EQ(a.train.y, b.train.y);
    EXPECT_EQ(a.test.x, b.test.x);
    EXPECT_EQ(a.test.y, b.test.y);

    // Train rows then test rows form one sequence of windows sliding by one sample.
    std::vector<float> x = a.train.x, y = a.train.y;
    x.insert(x.end(), a.test.x.begin(), a.test.x.end());
    y.insert(y.end(), a.test.y.begin(), a.test.y.end());
    const std::size_t w = o.window, rows = o.n_train + o.n_test;
    for (std::size_t i = 0; i + 1 < rows; ++i) {
        EXPECT_EQ(y[i], x[(i + 1) * w + w - 1]) << "row " << i;
        for (std::size_t j = 0; j + 1 < w; ++j) EXPECT_EQ(x[i * w + j + 1], x[(i + 1) * w + j]) << "row " << i;
    }
}

TEST(MackeyGlass, HalvingTheStepBarelyMovesTheSeries) {
    // RK4 converges: over a short span (before chaos amplifies differences) dt = 0.1 and 0.05
    // give nearly the same samples. A wrong delayed term would show up as an O(dt) gap.
    MackeyGlassOptions o;
    o.discard = 0;
    o.n_train = 40;
    o.n_test = 10;
    MackeyGlassOptions fine = o;
    fine.dt = 0.05;
    const DataSplit a = mackey_glass(o);
    const DataSplit b = mackey_glass(fine);
    float worst = 0;
    for (std::size_t i = 0; i < a.train.x.size(); ++i) worst = std::max(worst, std::fabs(a.train.x[i] - b.train.x[i]));
    EXPECT_LT(worst, 1e-4f);
}

TEST(MackeyGlass, OptionsAreValidated) {
    auto with = [](const std::function<void(MackeyGlassOptions&)>& edit) {
        MackeyGlassOptions o;
        o.n_train = 10;
        o.n_test = 5;
        edit(o);
        return [o] { mackey_glass(o); };
    };
    EXPECT_TRUE(throws_error_with(with([](auto& o) { o.dt = 0; }), {"dt", "positive"}));
    EXPECT_TRUE(throws_error_with(with([](auto& o) { o.dt = -0.1; }), {"dt"}));
    EXPECT_TRUE(throws_error_with(with([](auto& o) { o.dt = 0.3; }), {"tau", "whole multiple of dt"}));
    EXPECT_TRUE(throws_error_with(with([](auto& o) { o.tau = 0; }), {"tau"}));
    EXPECT_TRUE(throws_error_with(with([](auto& o) { o.sample_every = 0.25; }), {"sample_every"}));
    EXPECT_TRUE(throws_error_with(with([](auto& o) { o.sample_every = 0; }), {"sample_every"}));
    EXPECT_TRUE(throws_error_with(with([](auto& o) { o.discard = -1; }), {"discard"}));
    EXPECT_TRUE(throws_error_with(with([](auto& o) { o.window = 0; }), {"window"}));
    EXPECT_TRUE(throws_error_with(with([](auto& o) { o.n_train = 0; }), {"n_train"}));
    EXPECT_TRUE(throws_error_with(with([](auto& o) { o.n_test = 0; }), {"n_test"}));
    EXPECT_TRUE(throws_error_with(with([](auto& o) { o.beta = std::nan(""); }), {"beta", "finite"}));
    EXPECT_TRUE(throws_error_with(with([](auto& o) { o.x0 = INFINITY; }), {"x0"}));
    EXPECT_TRUE(throws_error_with(with([](auto& o) {
                                      o.beta = 0;
                                      o.gamma = 0;
                                  }),
                                  {"constant"}));
    EXPECT_NO_THROW(with([](auto& o) {
        o.dt = 0.5;
        o.sample_every = 2;
        o.discard = 10;
    })());
}

// ---- load_data -----------------------------------------------------------------------------------

using LoadData = DataTempDir;

TEST_F(LoadData, SourcesAndSplits) {
    DataOptions opt;
    opt.mackey_glass.n_train = 30;
    opt.mackey_glass.n_test = 7;
    const DataSplit mg = load_data("mackey-glass", opt);
    EXPECT_EQ(mg.train.n_samples, 30u);
    EXPECT_EQ(mg.test.n_samples, 7u);

    std::string text;
    for (int i = 0; i < 5; ++i) text += std::to_string(i) + " 1:" + std::to_string(i) + " 2:1\n";
    const std::string p = write("five.txt", text);
    opt.libsvm_train_rows = 3;
    const DataSplit ls = load_data("libsvm:" + p, opt);
    EXPECT_EQ(ls.train.n_samples, 3u);
    EXPECT_EQ(ls.test.n_samples, 2u);
    EXPECT_EQ(ls.train.name, "five/train");
    EXPECT_EQ(ls.test.name, "five/test");
    EXPECT_EQ(ls.test.y, (std::vector<float>{3, 4}));
    EXPECT_EQ(ls.test.x, (std::vector<float>{3, 1, 4, 1}));

    opt.libsvm_train_rows = 5;
    EXPECT_TRUE(
        throws_error_with([&] { load_data("libsvm:" + p, opt); }, {"five.txt", "5 samples", "libsvm_train_rows"}));
    opt.libsvm_test_rows = 2;
    EXPECT_TRUE(throws_error_with([&] { load_data("libsvm:" + p, opt); }, {"libsvm_train_rows", "libsvm_test_rows"}));
}

TEST_F(LoadData, LibsvmSplitsByFractionRowsOrNone) {
    std::string text;
    for (int i = 0; i < 12; ++i) text += std::to_string(i) + " 1:" + std::to_string(i) + "\n";
    const std::string p = write("twelve.txt", text);
    DataOptions opt;  // the default: the last 20% of the rows test (2.4 -> 2)
    DataSplit s = load_data("libsvm:" + p, opt);
    EXPECT_EQ(s.train.n_samples, 10u);
    EXPECT_EQ(s.test.n_samples, 2u);
    EXPECT_EQ(s.test.y, (std::vector<float>{10, 11}));
    opt.libsvm_test_fraction = 0.5;
    EXPECT_EQ(load_data("libsvm:" + p, opt).test.n_samples, 6u);
    opt.libsvm_test_fraction = 0.0;  // no test rows
    s = load_data("libsvm:" + p, opt);
    EXPECT_EQ(s.train.n_samples, 12u);
    EXPECT_EQ(s.test.n_samples, 0u);
    opt.libsvm_test_fraction = 1.0;
    EXPECT_TRUE(throws_error_with([&] { load_data("libsvm:" + p, opt); }, {"libsvm_test_fraction"}));

    opt = DataOptions{};
    opt.libsvm_test_rows = 3;
    s = load_data("libsvm:" + p, opt);
    EXPECT_EQ(s.train.n_samples, 9u);
    EXPECT_EQ(s.test.y, (std::vector<float>{9, 10, 11}));
    opt.libsvm_test_rows = 12;
    EXPECT_TRUE(throws_error_with([&] { load_data("libsvm:" + p, opt); }, {"twelve.txt", "libsvm_test_rows = 12"}));

    opt = DataOptions{};
    opt.no_test = true;
    s = load_data("libsvm:" + p, opt);
    EXPECT_EQ(s.train.n_samples, 12u);
    EXPECT_EQ(s.test.n_samples, 0u);
    opt.libsvm_train_rows = 4;
    EXPECT_TRUE(throws_error_with([&] { load_data("libsvm:" + p, opt); }, {"no_test", "libsvm_train_rows"}));
}

TEST_F(LoadData, AShortFileIsNotAnError) {
    // Shorter than the paper's 1000 training rows: the default split still works.
    std::string text;
    for (int i = 0; i < 442; ++i) text += std::to_string(i % 7) + " 1:1 3:" + std::to_string(i) + "\n";
    const std::string p = write("diabetes.txt", text);
    const DataSplit s = load_data("libsvm:" + p);
    EXPECT_EQ(s.train.n_samples + s.test.n_samples, 442u);
    EXPECT_EQ(s.test.n_samples, 88u);
    // A single row: it trains, and there is no test set.
    const std::string one = write("one.txt", "1 1:1\n");
    const DataSplit o = load_data("libsvm:" + one);
    EXPECT_EQ(o.train.n_samples, 1u);
    EXPECT_EQ(o.test.n_samples, 0u);
}

TEST_F(LoadData, ASeparateTestFile) {
    const std::string train = write("pair.txt", "1 1:1\n2 2:1\n3 1:1 2:1\n");
    const std::string test = write("pair.t", "4 3:1\n5 1:2\n");  // uses a third feature
    DataOptions opt;
    opt.test_source = "libsvm:" + test;
    const DataSplit s = load_data("libsvm:" + train, opt);
    EXPECT_EQ(s.train.n_samples, 3u);  // the whole training file
    EXPECT_EQ(s.test.n_samples, 2u);
    EXPECT_EQ(s.train.n_features, 3u);  // widened to the test file's features
    EXPECT_EQ(s.test.n_features, 3u);
    EXPECT_EQ(s.train.x, (std::vector<float>{1, 0, 0, 0, 1, 0, 1, 1, 0}));
    EXPECT_EQ(s.test.x, (std::vector<float>{0, 0, 1, 2, 0, 0}));
    EXPECT_EQ(s.test.name, "pair/test");
    EXPECT_NO_THROW(s.train.validate());
    EXPECT_NO_THROW(s.test.validate());

    opt.libsvm_train_rows = 2;
    EXPECT_TRUE(throws_error_with([&] { load_data("libsvm:" + train, opt); }, {"libsvm_train_rows"}));
    opt.libsvm_train_rows = 0;
    opt.no_test = true;
    EXPECT_TRUE(throws_error_with([&] { load_data("libsvm:" + train, opt); }, {"test"}));
    opt.no_test = false;
    opt.test_source = "libsvm:" + path("absent.t");
    EXPECT_TRUE(throws_error_with([&] { load_data("libsvm:" + train, opt); }, {"absent.t"}));
    opt.test_source = "nonsense";
    EXPECT_TRUE(throws_error_with([&] { load_data("libsvm:" + train, opt); }, {"test data source", "nonsense"}));
    // Mackey-Glass has 6 features: a LIBSVM training file of 2 does not pair with it.
    opt.test_source = "mackey-glass";
    EXPECT_TRUE(throws_error_with([&] { load_data("libsvm:" + train, opt); }, {"6 and 2 features"}));
}

TEST_F(LoadData, NoTestSetForEverySource) {
    DataOptions opt;
    opt.no_test = true;
    opt.mackey_glass.n_train = 30;
    opt.mackey_glass.n_test = 7;
    const DataSplit mg = load_data("mackey-glass", opt);
    EXPECT_EQ(mg.train.n_samples, 30u);
    EXPECT_EQ(mg.test.n_samples, 0u);
    opt.libsvm_train_rows = 10;
    EXPECT_TRUE(throws_error_with([&] { load_data("mackey-glass", opt); }, {"libsvm_train_rows", "mackey-glass"}));
}

TEST(LoadDataSource, UnknownSourceListsTheAcceptedForms) {
    EXPECT_TRUE(throws_error_with([] { load_data("mnist"); }, {"'mnist'", "mackey-glass", "libsvm:PATH", "idx:DIR"}));
    EXPECT_TRUE(throws_error_with([] { load_data("libsvm:"); }, {"libsvm:PATH"}));
    EXPECT_TRUE(throws_error_with([] { load_data("idx:"); }, {"idx:DIR"}));
    EXPECT_TRUE(throws_error_with([] { load_data("libsvm:/no/such/file.txt"); }, {"/no/such/file.txt"}));
}

// ---- the real data sets ----------------------------------------------------------------------------

TEST(RealData, MackeyGlassLibsvmHasThePapersSplit) {
    const std::string file = data_dir() + "/mackey-glass/mg_scale.txt";
    if (data_dir().empty() || !fs::exists(file)) GTEST_SKIP() << "real data not found at '" << file << "'";
    DataOptions paper;
    paper.libsvm_train_rows = 1000;  // the paper's split (--train-rows 1000)
    const DataSplit s = load_data("libsvm:" + file, paper);
    EXPECT_EQ(s.train.n_samples, 1000u);
    EXPECT_EQ(s.test.n_samples, 385u);
    // The default: the last 20% of the 1385 rows.
    const DataSplit d = load_data("libsvm:" + file);
    EXPECT_EQ(d.train.n_samples, 1108u);
    EXPECT_EQ(d.test.n_samples, 277u);
    EXPECT_EQ(s.train.n_features, 6u);
    EXPECT_EQ(s.test.n_features, 6u);
    // The first line: "1.13351 1:0.440815 2:-0.0549122 ..."
    EXPECT_EQ(s.train.y[0], 1.13351f);
    EXPECT_EQ(s.train.x[0], 0.440815f);
    EXPECT_EQ(s.train.x[1], -0.0549122f);
    for (const Dataset* d : {&s.train, &s.test}) {
        EXPECT_NO_THROW(d->validate());
        for (float v : d->x) ASSERT_TRUE(v >= -1.0f && v <= 1.0f) << v;
        for (float v : d->y) ASSERT_TRUE(v >= 0.4f && v <= 1.32f) << v;
    }
}

TEST(RealData, MnistHasSixtyThousandAndTenThousandDigits) {
    const std::string dir = data_dir() + "/mnist";
    if (data_dir().empty() || !fs::is_directory(dir)) GTEST_SKIP() << "real data not found at '" << dir << "'";
    const DataSplit s = read_idx_dir(dir);
    EXPECT_EQ(s.train.name, "mnist/train");
    EXPECT_EQ(s.train.n_samples, 60000u);
    EXPECT_EQ(s.test.n_samples, 10000u);
    for (const Dataset* d : {&s.train, &s.test}) {
        EXPECT_EQ(d->n_features, 784u);
        EXPECT_EQ(d->n_outputs, 10u);
        EXPECT_EQ(d->task, Task::classification);
        const auto [lo, hi] = std::minmax_element(d->x.begin(), d->x.end());
        EXPECT_EQ(*lo, -1.0f);
        EXPECT_EQ(*hi, 1.0f);
        std::vector<std::size_t> per_class(10, 0);
        for (std::int32_t l : d->labels) {
            ASSERT_GE(l, 0);
            ASSERT_LE(l, 9);
            ++per_class[static_cast<std::size_t>(l)];
        }
        for (std::size_t c = 0; c < 10; ++c) EXPECT_GT(per_class[c], d->n_samples / 20) << "class " << c;
    }
    // The well-known first labels of the training and test sets.
    EXPECT_EQ(std::vector<std::int32_t>(s.train.labels.begin(), s.train.labels.begin() + 5),
              (std::vector<std::int32_t>{5, 0, 4, 1, 9}));
    EXPECT_EQ(std::vector<std::int32_t>(s.test.labels.begin(), s.test.labels.begin() + 5),
              (std::vector<std::int32_t>{7, 2, 1, 0, 4}));
}

TEST(RealData, FashionMnistLoadsThroughLoadData) {
    const std::string dir = data_dir() + "/fashion-mnist";
    if (data_dir().empty() || !fs::is_directory(dir)) GTEST_SKIP() << "real data not found at '" << dir << "'";
    DataOptions opt;
    opt.pixel_scale = PixelScale::unit;
    const DataSplit s = load_data("idx:" + dir, opt);
    EXPECT_EQ(s.train.n_samples, 60000u);
    EXPECT_EQ(s.test.n_samples, 10000u);
    EXPECT_EQ(s.train.n_features, 784u);
    const auto [lo, hi] = std::minmax_element(s.test.x.begin(), s.test.x.end());
    EXPECT_EQ(*lo, 0.0f);
    EXPECT_EQ(*hi, 1.0f);
}
