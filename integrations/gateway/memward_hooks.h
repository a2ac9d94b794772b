// The gateway's calls into memward: tenant registration, admission, request
// scopes and purging. Each is switched by the config's "hooks" object, and
// every call degrades to nothing when memward is not loaded (the API is weak).
#pragma once

#include <memward/memward.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"

namespace memward::gateway {

enum class AdmissionResult {
  kAdmit,
  kTenantOverBudget,  // rejected with 429
  kPressure,          // rejected with 503
};

// The memward state of the whole process. Thread-safe after construction:
// the tenant ids are written once by the constructor.
class MemwardHooks {
 public:
  // Registers the config's tenants with their budgets when memward is loaded
  // and `hooks.scopes` or `hooks.admission` is on. Logs each failure on
  // stderr and continues with that tenant unregistered (no scope, always
  // admitted).
  MemwardHooks(const HookSettings& hooks, const std::vector<TenantConfig>& tenants);

  bool loaded() const { return loaded_; }
  const char* library_kind() const { return library_kind_; }
  const HookSettings& settings() const { return settings_; }

  // The tenant's memward id, or MEMWARD_PROCESS_TENANT when it has none.
  memward_tenant_id tenant_id(std::size_t tenant_index) const { return tenant_ids_[tenant_index]; }

  // Asks memward whether a tenant's request may start. `expected_bytes` is
  // the caller's estimate of the request's memory.
  AdmissionResult Admit(std::size_t tenant_index, std::uint64_t expected_bytes) const;

  // Returns free memory to the operating system: memward_purge(), or
  // malloc_trim(0) when memward is not loaded.
  void Purge() const;

 private:
  HookSettings settings_;
  bool loaded_ = false;
  const char* library_kind_ = "none";
  std::vector<memward_tenant_id> tenant_ids_;
};

// The memward request of one HTTP request, begun on the thread that handles
// the connection. memward scopes are per thread and must be exited in
// reverse order, so no scope may stay open while another coroutine runs.
// Between co_awaits, each synchronous step runs inside an Enter() guard.
class RequestMemory {
 public:
  // Makes the request current around one synchronous step: the tenant's
  // scope, then the request inside it. Exits both on destruction.
  class Scope {
   public:
    Scope(const RequestMemory* memory, bool include_request);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    bool tenant_entered_ = false;
    bool request_entered_ = false;
    memward_scope tenant_saved_{};
    memward_scope request_saved_{};
  };

  RequestMemory() = default;
  // Begins a memward request for the tenant when scopes are on and the
  // tenant is registered; otherwise every call is a no-op.
  RequestMemory(const MemwardHooks& hooks, std::size_t tenant_index);
  ~RequestMemory();
  RequestMemory(const RequestMemory&) = delete;
  RequestMemory& operator=(const RequestMemory&) = delete;

  Scope Enter() const { return Scope(this, true); }
  // Makes only the tenant current, for memory that outlives the request
  // (cache entries): it is charged to the tenant, and the request's arena
  // can still be emptied and reused when the request ends.
  Scope EnterTenant() const { return Scope(this, false); }

  // Ends the request. Everything allocated in its scopes that is still live
  // counts as escaped. Safe to call once; later calls return the first
  // summary.
  const memward_request_summary& End();

  // True when a memward request with its own arena was open, so the peak
  // and escaped bytes of End() are meaningful.
  bool measured() const { return begun_ && summary_.had_arena != 0; }

 private:
  memward_tenant_id tenant_ = MEMWARD_PROCESS_TENANT;
  bool begun_ = false;
  bool ended_ = false;
  memward_request request_{};
  memward_request_summary summary_{};
};

}  // namespace memward::gateway
