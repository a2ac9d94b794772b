// libmemward.so: the library that programs link against to use memward's API.
#include "accounting/sampler.h"
#include "accounting/pressure_service.h"
#include "accounting/admin_service.h"
#include "accounting/profile_service.h"
#include "alloc/bootstrap.h"
#include "alloc/macros.h"
#include "preload/fork_handlers.h"

extern "C" MEMWARD_EXPORT const char* memward_library_kind(void) { return "linked"; }

namespace {

__attribute__((constructor)) void StartLinkedLibrary() {
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
