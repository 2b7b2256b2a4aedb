// SparseProx: writing outputs so that readers never see a half-written file. The data goes to a
// temporary file in the target's folder (created with O_EXCL under an unpredictable name), is
// written and fsync'ed, renamed over the target, and the folder is fsync'ed; a target that is a
// symbolic link is written through.
#pragma once

#include <string>

#include "sparseprox/export.h"

namespace sparseprox {

// Writes bytes to a temporary file in the same folder, flushes it, then renames it over `path`.
// Throws sparseprox::Error naming the path on any failure (the temporary file is removed).
SPARSEPROX_API void write_file_atomic(const std::string& path, const std::string& bytes);

// Where write_file_atomic(path) writes: path with every symbolic link along the final component
// followed (at most 40); path itself when it is not a link. Relative link targets are taken
// from the link's folder.
SPARSEPROX_API std::string resolve_output_path(const std::string& path);

// Checks, before any work, that write_file_atomic(path) can succeed as far as the file system
// tells: the target is not a folder, its folder exists and a file can be created there (one is
// created and removed). Throws sparseprox::Error starting with `what` (e.g. "--report") and
// naming the path.
SPARSEPROX_API void check_writable(const std::string& path, const std::string& what);

// Unlinks every temporary file a write_file_atomic in progress holds. Async-signal-safe: for
// signal handlers.
SPARSEPROX_API void remove_pending_temp_files() noexcept;

// For programs: on SIGINT, SIGTERM and SIGHUP (where the disposition is still the default),
// remove the pending temporary files, then die of the signal as before. SIGXFSZ is ignored, so
// a write past the file-size limit fails with an error (and removes its temporary file) instead
// of killing the process. Call once, early.
SPARSEPROX_API void install_temp_file_cleanup();

}  // namespace sparseprox
