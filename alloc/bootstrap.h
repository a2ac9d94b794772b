// One-time start-up of memward: settings from MEMWARD_CONF and the options
// handed to the embedded jemalloc before it initialises.
//
// Bootstrap runs inside the first malloc, possibly before any constructor and
// before libc has finished its own start-up, so it takes no lock, never
// allocates and never calls getenv or dlsym: it reads `environ` directly and
// writes problems to stderr with write(2). Concurrent callers wait for the one
// that runs it; nothing it calls can re-enter malloc, so that wait cannot be
// on the waiting thread itself.
#ifndef MEMWARD_ALLOC_BOOTSTRAP_H_
#define MEMWARD_ALLOC_BOOTSTRAP_H_

#include <stddef.h>

#include "base/settings.h"

namespace memward::alloc {

// Runs the bootstrap if no thread has; returns once it is complete.
void Bootstrap();

// The settings in force. Valid after Bootstrap; never changes afterwards
// except through run-time setters that document their own rules.
const base::Settings& CurrentSettings();

// Stores a new value for a setting whose row is marked `runtime`, after the
// caller has applied it (PUT /config on the warden thread). Readers may see
// the old or the new value; each is a single aligned 64-bit store.
void StoreRuntimeSetting(base::SettingId id, int64_t value);

// Starts what must not start inside malloc: jemalloc's background threads and
// the exit statistics, when their settings ask for them. Called from the
// libraries' constructors.
void StartDeferredFeatures();

// Turns jemalloc's background threads back on in a forked child, where
// jemalloc's own fork handler has turned them off. Called from memward's
// child fork handler, which runs after jemalloc's.
void RestartDeferredFeaturesInChild();

// The option string handed to jemalloc, for diagnostics and tests.
const char* EngineOptions();

// The system page size, read once at bootstrap.
size_t PageSize();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_BOOTSTRAP_H_
