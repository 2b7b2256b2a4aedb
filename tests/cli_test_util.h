// Running the command-line tool from a test: its exit status and output.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace sparseprox {
namespace test {

struct CliRun {
    int status = -1;
    std::string output;
};

// The binary under test: the one built with the tests, or SPARSEPROX_TEST_CLI when set (to run
// these tests against another build).
inline std::string cli_path() {
    const char* env = std::getenv("SPARSEPROX_TEST_CLI");
    return env && *env ? env : SPARSEPROX_CLI_PATH;
}

// A shell command line with its standard error joined to its output.
inline CliRun run_shell(const std::string& cmd) {
    CliRun r;
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf{};
    while (fgets(buf.data(), buf.size(), p)) r.output += buf.data();
    const int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

inline CliRun run_cli(const std::string& args) {
    // A command that does not finish within minutes is a failure, not a stuck test suite.
    return run_shell("timeout 300 " + cli_path() + " " + args);
}

// The command under a limit on its address space (KiB), as `ulimit -v` sets it. The commands
// run this way end with an error in well under a second; one still running after a minute is
// stopped (status 124), so a hang under the limit fails its own case instead of stalling the suite.
inline CliRun run_cli_limited(const std::string& args, long kib) {
    return run_shell("ulimit -v " + std::to_string(kib) + " && timeout 60 " + cli_path() + " " + args);
}

inline std::filesystem::path temp_dir() {
    std::filesystem::path d = std::filesystem::temp_directory_path() / ("sparseprox_cli_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
}

}  // namespace test
}  // namespace sparseprox
