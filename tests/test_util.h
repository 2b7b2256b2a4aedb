// Shared test fixtures.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <random>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/layer_shapes.h"
#include "cpu/conv_winograd.h"
#include "sparseprox/data.h"
#include "sparseprox/error.h"

namespace sparseprox {
namespace testing_util {

// F(2x2, 3x3) in place of F(4x4, 3x3) while it lives: for the tests of exactness on dyadic data
// (F(2x2, 3x3)'s constants are 0, +-1 and +-1/2, so its sums stay exact) and of its own loops.
struct SmallWinogradTiles {
    bool saved = cpu::winograd_large_tiles_allowed();
    SmallWinogradTiles() { cpu::winograd_large_tiles_allowed() = false; }
    ~SmallWinogradTiles() { cpu::winograd_large_tiles_allowed() = saved; }
};

// n values of N(0, scale^2) from rng.
inline std::vector<float> randn(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// A convolution with square kernels, strides and padding (the parity harness's and the csr
// tests' shapes).
inline ConvShape square_conv(std::size_t batch, std::size_t c_in, std::size_t h, std::size_t w, std::size_t c_out,
                             std::size_t k, std::size_t stride, std::size_t pad) {
    ConvShape s;
    s.batch = batch;
    s.c_in = c_in;
    s.h_in = h;
    s.w_in = w;
    s.c_out = c_out;
    s.kh = s.kw = k;
    s.stride_h = s.stride_w = stride;
    s.pad_h = s.pad_w = pad;
    return s;
}

// Passes when fn throws sparseprox::Error whose message contains every one of `parts`.
inline ::testing::AssertionResult throws_error_with(const std::function<void()>& fn,
                                                    std::initializer_list<std::string> parts) {
    try {
        fn();
    } catch (const Error& e) {
        const std::string msg = e.what();
        for (const std::string& p : parts)
            if (msg.find(p) == std::string::npos)
                return ::testing::AssertionFailure() << "message \"" << msg << "\" lacks \"" << p << "\"";
        return ::testing::AssertionSuccess() << msg;
    } catch (const std::exception& e) {
        return ::testing::AssertionFailure() << "threw a non-sparseprox exception: " << e.what();
    }
    return ::testing::AssertionFailure() << "did not throw";
}

// A fresh folder per test under the system temp directory, removed afterwards.
class TempDirTest : public ::testing::Test {
protected:
    void SetUp() override {
        static std::atomic<int> counter{0};
        dir_ = std::filesystem::temp_directory_path() /
               ("sparseprox_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }
    std::string dir() const { return dir_.string(); }
    // Writes bytes to dir/name and returns the path.
    std::string write(const std::string& name, const std::string& bytes) const {
        const std::string p = path(name);
        std::ofstream out(p, std::ios::binary);
        out << bytes;
        EXPECT_TRUE(out.good()) << p;
        return p;
    }

private:
    std::filesystem::path dir_;
};

// A smooth 4-feature regression problem: n rows, x uniform in [-1, 1],
// y = sin(2 x0) x1 + 0.5 x2^2 - 0.3 x3.
inline Dataset smooth_regression(std::size_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    Dataset d;
    d.name = "smooth";
    d.task = Task::regression;
    d.n_samples = n;
    d.n_features = 4;
    d.n_outputs = 1;
    for (std::size_t i = 0; i < n; ++i) {
        float x[4];
        for (float& v : x) v = u(rng);
        d.x.insert(d.x.end(), x, x + 4);
        d.y.push_back(std::sin(2.0f * x[0]) * x[1] + 0.5f * x[2] * x[2] - 0.3f * x[3]);
    }
    return d;
}

}  // namespace testing_util
}  // namespace sparseprox
