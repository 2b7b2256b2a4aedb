// Shared by the fuzz harnesses: the readers take paths, so each input is written to a scratch
// file first (in /dev/shm when there is one: no disk traffic).
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace sparseprox_fuzz {

// A folder of this process's scratch files, removed at exit.
inline const std::filesystem::path& scratch_dir() {
    static const std::filesystem::path dir = [] {
        std::error_code ec;
        std::filesystem::path base = std::filesystem::is_directory("/dev/shm", ec)
                                         ? std::filesystem::path("/dev/shm")
                                         : std::filesystem::temp_directory_path();
        std::filesystem::path d = base / ("sparseprox_fuzz_" + std::to_string(::getpid()));
        std::filesystem::create_directories(d);
        std::atexit([] {
            std::error_code e;
            std::filesystem::remove_all(scratch_dir(), e);
        });
        return d;
    }();
    return dir;
}

// Writes bytes to the scratch file `name` and returns its path.
inline std::string put(const std::string& name, const std::uint8_t* data, std::size_t size) {
    const std::string path = (scratch_dir() / name).string();
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (size && std::fwrite(data, 1, size, f) != size) std::abort();
    std::fclose(f);
    return path;
}

// A property every accepted input must have; a violation is a finding.
#define SPARSEPROX_FUZZ_CHECK(cond)                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            std::fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            std::abort();                                                                  \
        }                                                                                  \
    } while (0)

}  // namespace sparseprox_fuzz
