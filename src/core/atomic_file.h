// Writes that never leave a half-written file behind: data goes to a temporary file in the
// target's folder ("<name>.tmp.<12 random characters>", created with O_EXCL), is written and
// fsync'ed, renamed over the target, and the folder is fsync'ed so the rename is durable.
//
// A target that is a symbolic link is written through: the link's final target is replaced and
// the link stays. Temporary files in progress are registered, so a signal handler can remove
// them (remove_pending_temp_files is async-signal-safe).
#pragma once

#include <string>

namespace sparseprox {

// Throws sparseprox::Error naming the path on any failure (the temporary file is removed).
void write_file_atomic(const std::string& path, const std::string& bytes);

// Whole file into memory; throws sparseprox::Error naming the path when it cannot be read (a
// folder included).
std::string read_file(const std::string& path);

// Where write_file_atomic(path) writes: path with every symbolic link along the final component
// followed (at most 40); path itself when it is not a link. Relative link targets are taken
// from the link's folder.
std::string resolve_output_path(const std::string& path);

// Checks, before any work, that write_file_atomic(path) can succeed as far as the file system
// tells: the target is not a folder, its folder exists and a file can be created there (one is
// created and removed). Throws sparseprox::Error starting with `what` (e.g. "--report") and
// naming the path.
void check_writable(const std::string& path, const std::string& what);

// Unlinks every temporary file a write_file_atomic in progress holds. Async-signal-safe: for
// signal handlers.
void remove_pending_temp_files() noexcept;

// For programs: on SIGINT, SIGTERM and SIGHUP (where the disposition is still the default),
// remove the pending temporary files, then die of the signal as before. SIGXFSZ is ignored, so
// a write past the file-size limit fails with an error (and removes its temporary file) instead
// of killing the process. Call once, early.
void install_temp_file_cleanup();

}  // namespace sparseprox
