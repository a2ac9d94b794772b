#include "memward_hooks.h"

#include <malloc.h>

#include <cstdio>

namespace memward::gateway {

MemwardHooks::MemwardHooks(const HookSettings& hooks, const std::vector<TenantConfig>& tenants)
    : settings_(hooks), tenant_ids_(tenants.size(), MEMWARD_PROCESS_TENANT) {
  loaded_ = memward_version() != nullptr;
  library_kind_ = memward_library_kind();
  if (!loaded_ || (!hooks.scopes && !hooks.admission)) return;
  for (std::size_t i = 0; i < tenants.size(); ++i) {
    const TenantConfig& tenant = tenants[i];
    memward_tenant_options options;
    memward_tenant_options_init(&options);
    options.soft_limit = tenant.soft_limit;
    options.hard_limit = tenant.hard_limit;
    options.enforce_hard_limit = tenant.enforce_hard_limit ? 1 : 0;
    options.dedicated_arena = tenant.dedicated_arena ? 1 : 0;
    memward_tenant_id id = MEMWARD_PROCESS_TENANT;
    int status = memward_tenant_register(tenant.name.c_str(), &options, &id);
    if (status == MEMWARD_ERROR_EXISTS) {
      // Registered before, by an earlier gateway start in this process (tests).
      status = memward_tenant_find(tenant.name.c_str(), &id);
      if (status == MEMWARD_OK) {
        status = memward_tenant_set_limits(id, tenant.soft_limit, tenant.hard_limit,
                                           options.enforce_hard_limit);
      }
    }
    if (status != MEMWARD_OK) {
      std::fprintf(stderr,
                   "memward-gateway: registering tenant %s with memward failed: %s; its requests "
                   "run without memward scopes or admission\n",
                   tenant.name.c_str(), memward_strerror(status));
      continue;
    }
    tenant_ids_[i] = id;
  }
}

AdmissionResult MemwardHooks::Admit(std::size_t tenant_index, std::uint64_t expected_bytes) const {
  if (!loaded_ || !settings_.admission) return AdmissionResult::kAdmit;
  memward_tenant_id id = tenant_ids_[tenant_index];
  if (id != MEMWARD_PROCESS_TENANT) {
    memward_admission answer = MEMWARD_ADMIT;
    memward_admission_reason reason = MEMWARD_REASON_NONE;
    if (memward_admit(id, expected_bytes, &answer, &reason) == MEMWARD_OK &&
        answer != MEMWARD_ADMIT) {
      return reason == MEMWARD_REASON_PRESSURE ? AdmissionResult::kPressure
                                               : AdmissionResult::kTenantOverBudget;
    }
  }
  // The ladder sheds new work at "high" and above. memward_admit includes
  // that once the ladder runs; asking directly also covers tenants without
  // an id. NOT_LOADED (no ladder in this memward) leaves the level normal.
  memward_pressure_level level = MEMWARD_PRESSURE_NORMAL;
  if (memward_pressure_get(&level) == MEMWARD_OK && level >= MEMWARD_PRESSURE_HIGH) {
    return AdmissionResult::kPressure;
  }
  return AdmissionResult::kAdmit;
}

void MemwardHooks::Purge() const {
  if (memward_purge() != MEMWARD_OK) malloc_trim(0);
}

RequestMemory::RequestMemory(const MemwardHooks& hooks, std::size_t tenant_index) {
  if (!hooks.loaded() || !hooks.settings().scopes) return;
  tenant_ = hooks.tenant_id(tenant_index);
  if (tenant_ == MEMWARD_PROCESS_TENANT) return;
  if (memward_request_begin(tenant_, &request_) != MEMWARD_OK) return;
  // memward_request_begin makes the request current; leave it at once, so
  // that other coroutines on this thread run outside it until Enter().
  memward_scope_exit(&request_.saved);
  begun_ = true;
}

RequestMemory::~RequestMemory() { End(); }

const memward_request_summary& RequestMemory::End() {
  if (begun_ && !ended_) {
    ended_ = true;
    if (memward_request_end(&request_, &summary_) != MEMWARD_OK) summary_ = {};
  }
  return summary_;
}

RequestMemory::Scope::Scope(const RequestMemory* memory, bool include_request) {
  if (memory->tenant_ == MEMWARD_PROCESS_TENANT || memory->ended_) return;
  tenant_entered_ = memward_scope_enter(memory->tenant_, &tenant_saved_) == MEMWARD_OK;
  if (include_request && memory->begun_) {
    request_entered_ = memward_request_enter(&memory->request_, &request_saved_) == MEMWARD_OK;
  }
}

RequestMemory::Scope::~Scope() {
  if (request_entered_) memward_scope_exit(&request_saved_);
  if (tenant_entered_) memward_scope_exit(&tenant_saved_);
}

}  // namespace memward::gateway
