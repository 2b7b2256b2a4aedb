// Shared test fixtures.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>

#include "sparseprox/error.h"

namespace sparseprox {
namespace testing_util {

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

}  // namespace testing_util
}  // namespace sparseprox
