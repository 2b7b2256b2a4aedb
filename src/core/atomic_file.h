// Writes that never leave a half-written file behind: data goes to a temporary file in the
// target's folder ("<name>.tmp.<12 random characters>", created with O_EXCL), is written and
// fsync'ed, renamed over the target, and the folder is fsync'ed so the rename is durable.
//
// A target that is a symbolic link is written through: the link's final target is replaced and
// the link stays. Temporary files in progress are registered, so a signal handler can remove
// them (remove_pending_temp_files is async-signal-safe).
#pragma once

#include <string>

#include "sparseprox/files.h"  // write_file_atomic, public

namespace sparseprox {

// Whole file into memory; throws sparseprox::Error naming the path when it cannot be read (a
// folder included).
std::string read_file(const std::string& path);

// A signal handler's last act: removes the pending temporary files, restores the signal's default
// action and raises it again, so the process dies of it (async-signal-safe).
extern "C" void remove_temp_files_and_die(int sig);

}  // namespace sparseprox
