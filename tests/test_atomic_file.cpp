// Output files: written whole or not at all, through symbolic links, with temporary names no
// other process can guess or plant.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "core/atomic_file.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace sparseprox;
using sparseprox::testing_util::throws_error_with;

namespace {

class AtomicFile : public sparseprox::testing_util::TempDirTest {
protected:
    std::string slurp(const std::string& p) const {
        std::ifstream in(p, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }
    std::size_t temp_files() const {
        std::size_t n = 0;
        for (const auto& e : fs::directory_iterator(dir()))
            n += e.path().filename().string().find(".tmp.") != std::string::npos;
        return n;
    }
};

}  // namespace

TEST_F(AtomicFile, WritesReplacesAndLeavesNoTemporaryFile) {
    const std::string p = path("out.json");
    write_file_atomic(p, "first");
    EXPECT_EQ(slurp(p), "first");
    write_file_atomic(p, "second, longer");
    EXPECT_EQ(slurp(p), "second, longer");
    EXPECT_EQ(temp_files(), 0u);
}

TEST_F(AtomicFile, APlantedTemporaryNameCannotRedirectTheWrite) {
    // The old temporary name was "<path>.tmp.<pid>", opened without O_EXCL: a link planted there
    // made the write land in the link's target.
    const std::string victim = write("victim.txt", "precious");
    const std::string p = path("out.json");
    fs::create_symlink(victim, p + ".tmp." + std::to_string(::getpid()));
    write_file_atomic(p, "report");
    EXPECT_EQ(slurp(victim), "precious");
    EXPECT_EQ(slurp(p), "report");
    EXPECT_FALSE(fs::is_symlink(p));
}

TEST_F(AtomicFile, ALinkIsWrittenThroughAndStays) {
    const std::string target = write("target.json", "old");
    const std::string link = path("link.json");
    fs::create_symlink("target.json", link);  // relative, as users make them
    write_file_atomic(link, "new");
    EXPECT_TRUE(fs::is_symlink(link));
    EXPECT_EQ(slurp(target), "new");
    EXPECT_EQ(resolve_output_path(link), (fs::path(dir()) / "target.json").string());
    // A link to a file that does not exist yet creates it.
    const std::string dangling = path("dangling.json");
    fs::create_symlink("later.json", dangling);
    write_file_atomic(dangling, "made");
    EXPECT_TRUE(fs::is_symlink(dangling));
    EXPECT_EQ(slurp(path("later.json")), "made");
    EXPECT_EQ(temp_files(), 0u);
}

TEST_F(AtomicFile, AnExistingFileKeepsItsPermissions) {
    const std::string p = write("mode.json", "x");
    fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
    write_file_atomic(p, "y");
    EXPECT_EQ(fs::status(p).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
}

TEST_F(AtomicFile, WritabilityIsCheckedUpFront) {
    EXPECT_NO_THROW(check_writable(path("fine.json"), "--report"));
    EXPECT_FALSE(fs::exists(path("fine.json")));
    EXPECT_EQ(temp_files(), 0u);
    EXPECT_TRUE(throws_error_with([&] { check_writable(path("no/such/folder/x.json"), "--report"); },
                                  {"--report", "folder", "does not exist"}));
    fs::create_directories(path("sub"));
    EXPECT_TRUE(throws_error_with([&] { check_writable(path("sub"), "--save"); }, {"--save", "is a directory"}));
    EXPECT_TRUE(throws_error_with([&] { check_writable("", "--trace-csv"); }, {"--trace-csv", "empty"}));
    if (::geteuid() != 0) {  // root writes anywhere
        fs::create_directories(path("locked"));
        fs::permissions(path("locked"), fs::perms::owner_read | fs::perms::owner_exec);
        EXPECT_TRUE(throws_error_with([&] { check_writable(path("locked/x.json"), "--report"); },
                                      {"--report", "cannot create a file"}));
        fs::permissions(path("locked"), fs::perms::owner_all);
    }
}

TEST_F(AtomicFile, AFolderIsNotReadAsAnEmptyFile) {
    fs::create_directories(path("folder"));
    EXPECT_TRUE(throws_error_with([&] { read_file(path("folder")); }, {"folder", "is a directory"}));
}
