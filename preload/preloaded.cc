// libmemward_preload.so: memward loaded into an unchanged program with
// LD_PRELOAD. It serves the same API as libmemward.so, for programs that look
// it up with dlsym.
#include "alloc/bootstrap.h"
#include "alloc/macros.h"
#include "memward/memward.h"

extern "C" MEMWARD_EXPORT const char* memward_version(void) { return MEMWARD_VERSION_STRING; }
extern "C" MEMWARD_EXPORT const char* memward_library_kind(void) { return "preload"; }

namespace {

__attribute__((constructor)) void StartPreloadedLibrary() {
  memward::alloc::StartDeferredFeatures();
}

}  // namespace
