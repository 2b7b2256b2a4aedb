#include "core/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

#include "sparseprox/error.h"

namespace sparseprox {

namespace {

// ---- the registry of temporary files in progress ------------------------------------------------
//
// Fixed slots, no allocation: a signal handler walks them. A slot is registered (path copied,
// then state set to kReady) before the file is created, and released after it is renamed or
// removed, so a temporary file never exists unregistered.

constexpr int kFree = 0, kFilling = 1, kReady = 2;
constexpr std::size_t kSlots = 32;

struct Slot {
    std::atomic<int> state{kFree};
    char path[PATH_MAX];
};
std::array<Slot, kSlots> g_slots;

class Registered {
public:
    explicit Registered(const std::string& path) {
        if (path.size() >= PATH_MAX) throw Error("path '" + path + "' is too long");
        for (Slot& s : g_slots) {
            int expected = kFree;
            if (s.state.compare_exchange_strong(expected, kFilling)) {
                std::memcpy(s.path, path.c_str(), path.size() + 1);
                s.state.store(kReady);
                slot_ = &s;
                return;
            }
        }
        throw Error("too many files being written at once (writing '" + path + "')");
    }
    ~Registered() {
        if (slot_) slot_->state.store(kFree);
    }
    Registered(const Registered&) = delete;
    Registered& operator=(const Registered&) = delete;

private:
    Slot* slot_ = nullptr;
};

std::string random_suffix() {
    static const char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::random_device rd;  // the system's entropy source: names another process cannot predict
    std::string s;
    for (int i = 0; i < 12; ++i) s.push_back(kChars[rd() % (sizeof kChars - 1)]);
    return s;
}

std::string folder_of(const std::string& path) {
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    return parent.empty() ? std::string(".") : parent.string();
}

std::string error_text(int err) { return std::strerror(err); }

// A new temporary file beside `target`, opened O_EXCL; returns its fd and fills `tmp`.
int create_temp(const std::string& target, mode_t mode, std::string& tmp, std::unique_ptr<Registered>& reg) {
    for (int attempt = 0; attempt < 100; ++attempt) {
        tmp = target + ".tmp." + random_suffix();
        reg = std::make_unique<Registered>(tmp);
        const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd >= 0) return fd;
        const int err = errno;
        reg.reset();
        if (err != EEXIST) throw Error("cannot create a file in '" + folder_of(target) + "': " + error_text(err));
    }
    throw Error("cannot create a temporary file beside '" + target + "' (every name taken)");
}

bool write_all(int fd, const char* data, std::size_t n) {
    while (n > 0) {
        const ssize_t w = ::write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        data += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

void fsync_folder(const std::string& folder) {
    const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;  // the data is safe in the file; only the rename's durability is at stake
    ::fsync(fd);
    ::close(fd);
}

}  // namespace

std::string resolve_output_path(const std::string& path) {
    namespace fs = std::filesystem;
    fs::path p = path;
    for (int hops = 0; hops < 40; ++hops) {
        std::error_code ec;
        if (!fs::is_symlink(fs::symlink_status(p, ec))) return p.string();
        const fs::path target = fs::read_symlink(p, ec);
        if (ec) return p.string();
        p = target.is_absolute() ? target : p.parent_path() / target;
    }
    throw Error("'" + path + "': too many levels of symbolic links");
}

void check_writable(const std::string& path, const std::string& what) {
    namespace fs = std::filesystem;
    if (path.empty()) throw Error(what + ": the file name is empty");
    const std::string target = resolve_output_path(path);
    const std::string shown = target == path ? "'" + path + "'" : "'" + path + "' (a link to '" + target + "')";
    std::error_code ec;
    if (fs::is_directory(target, ec)) throw Error(what + " " + shown + " is a directory, not a file");
    const std::string folder = folder_of(target);
    if (!fs::is_directory(folder, ec))
        throw Error(what + " " + shown + ": folder '" + folder + "' does not exist");
    std::string tmp;
    std::unique_ptr<Registered> reg;
    try {
        const int fd = create_temp(target, 0600, tmp, reg);
        ::close(fd);
    } catch (const Error& e) {
        throw Error(what + " " + shown + ": " + e.what());
    }
    ::unlink(tmp.c_str());
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
    const std::string target = resolve_output_path(path);
    // An existing file keeps its permissions; a new one gets 0666 less the umask, as fopen's.
    mode_t mode = 0666;
    struct stat st {};
    const bool existed = ::stat(target.c_str(), &st) == 0 && S_ISREG(st.st_mode);
    if (existed) mode = st.st_mode & 07777;

    std::string tmp;
    std::unique_ptr<Registered> reg;
    int fd = -1;
    try {
        fd = create_temp(target, mode, tmp, reg);
    } catch (const Error& e) {
        throw Error("cannot write '" + path + "': " + e.what());
    }
    if (existed) ::fchmod(fd, mode);  // the umask may have narrowed it
    bool ok = write_all(fd, bytes.data(), bytes.size()) && ::fsync(fd) == 0;
    int err = errno;
    if (::close(fd) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (!ok) {
        ::unlink(tmp.c_str());
        throw Error("cannot write '" + path + "': " + error_text(err));
    }
    if (std::rename(tmp.c_str(), target.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw Error("cannot rename '" + tmp + "' to '" + target + "': " + error_text(e));
    }
    reg.reset();
    fsync_folder(folder_of(target));
}

std::string read_file(const std::string& path) {
    // A folder opens as a stream on some systems and reads as empty: say what it is.
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw Error("'" + path + "' is a directory, not a file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("cannot open '" + path + "': " + std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error("error reading '" + path + "'");
    return ss.str();
}

void remove_pending_temp_files() noexcept {
    for (Slot& s : g_slots)
        if (s.state.load() == kReady) ::unlink(s.path);
}

extern "C" void remove_temp_files_and_die(int sig) {
    const int saved = errno;
    remove_pending_temp_files();
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
    ::raise(sig);  // delivered when the handler returns: the process dies of the signal
    errno = saved;
}

void install_temp_file_cleanup() {
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
        struct sigaction old {};
        if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) continue;
        struct sigaction sa {};
        sa.sa_handler = remove_temp_files_and_die;
        sigemptyset(&sa.sa_mask);
        ::sigaction(sig, &sa, nullptr);
    }
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    ::sigaction(SIGXFSZ, &ign, nullptr);
}

}  // namespace sparseprox
