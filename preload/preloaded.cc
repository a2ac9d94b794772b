// libmemward_preload.so: memward loaded into an unchanged program with
// LD_PRELOAD. It serves the same API as libmemward.so, for programs that look
// it up with dlsym or declare it weak (include/memward/memward.h).
#include "accounting/sampler.h"
#include "accounting/pressure_service.h"
#include "accounting/admin_service.h"
#include "accounting/profile_service.h"
#include "alloc/bootstrap.h"
#include "alloc/macros.h"
#include "preload/fork_handlers.h"

extern "C" MEMWARD_EXPORT const char* memward_library_kind(void) { return "preload"; }

namespace {

__attribute__((constructor)) void StartPreloadedLibrary() {
  memward::preload::InstallForkHandlers();
  memward::alloc::StartDeferredFeatures();
  memward::accounting::StartSampler();
  if (memward::alloc::CurrentSettings().GetBool(memward::base::SettingId::kPressureMonitor)) {
    memward::accounting::StartPressureService();
  }
  // Before the admin server, so that GET /heap and GET /leaks are registered
  // when it starts serving.
  memward::accounting::StartProfileService();
  memward::accounting::StartAdminService();
}

}  // namespace
