// SparseProx: stopping a training run or a lambda search early, from another thread or from a
// signal handler.
//
// A request is process-wide: every run in progress (sparseprox::train, a search's runs) ends at
// its next step boundary, returns what it has (TrainResult::interrupted, SearchResult::
// interrupted) and later runs end at their first step, until clear_stop_request() is called.
#pragma once

#include "sparseprox/export.h"

namespace sparseprox {

// Asks every run in progress to stop at its next step boundary. Async-signal-safe.
SPARSEPROX_API void request_stop() noexcept;
// Whether a stop was requested (and not cleared since).
SPARSEPROX_API bool stop_requested() noexcept;
// Forgets the request (and the signal that made it), so that new runs train again.
SPARSEPROX_API void clear_stop_request() noexcept;

// For programs: the first SIGINT or SIGTERM calls request_stop() and is remembered
// (stop_signal()); the program then finishes the step in progress and writes its outputs. A
// second one of either removes the temporary files of writes in progress (as
// install_temp_file_cleanup does) and kills the process with that signal at once. A signal whose
// disposition is "ignore" (e.g. SIGINT of a background job) is left ignored. Call once, early
// (after install_temp_file_cleanup, whose SIGINT/SIGTERM handlers this replaces).
SPARSEPROX_API void install_stop_on_signal();
// The signal that requested the stop through install_stop_on_signal's handler; 0 when none did.
SPARSEPROX_API int stop_signal() noexcept;

}  // namespace sparseprox
