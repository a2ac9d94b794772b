// libmemward.so: the library that programs link against to use memward's API.
#include "accounting/pressure_service.h"
#include "accounting/profile_service.h"
#include "accounting/sampler.h"
#include "alloc/bootstrap.h"
#include "alloc/macros.h"
#include "preload/fork_handlers.h"

extern "C" MEMWARD_EXPORT const char* memward_library_kind(void) { return "linked"; }

namespace {

__attribute__((constructor)) void StartLinkedLibrary() {
  memward::preload::InstallForkHandlers();
  memward::alloc::StartDeferredFeatures();
  if (memward::alloc::CurrentSettings().GetBool(memward::base::SettingId::kPressureMonitor)) {
    memward::accounting::StartPressureService();
  }
  memward::accounting::StartSampler();
  memward::accounting::StartProfileService();
}

}  // namespace
