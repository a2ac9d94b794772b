// memward's C++ API: RAII wrappers over the C API of memward.h, using only
// the standard library.
//
//   auto tenant = memward::Tenant::Register("customer-42", {.soft_limit = 64 << 20});
//   if (tenant) {
//     memward::RequestScope request(*tenant);  // allocations come from a request arena
//     ...
//     memward::RequestSummary summary = request.End();
//   }
//
// Like the C API, every call is safe without memward in the process: it
// returns an error (or an empty optional) instead of crashing.
#ifndef MEMWARD_MEMWARD_HPP_
#define MEMWARD_MEMWARD_HPP_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "memward/memward.h"

namespace memward {

// A status code of the C API with its description.
class Status {
 public:
  explicit Status(int code = MEMWARD_OK) : code_(code) {}
  bool ok() const { return code_ == MEMWARD_OK; }
  int code() const { return code_; }
  std::string message() const { return memward_strerror(code_); }

 private:
  int code_;
};

struct TenantOptions {
  std::uint64_t soft_limit = 0;
  std::uint64_t hard_limit = 0;
  bool enforce_hard_limit = false;
  bool dedicated_arena = false;
};

enum class Admission { kAdmit = MEMWARD_ADMIT, kShed = MEMWARD_SHED, kReject = MEMWARD_REJECT };
enum class AdmissionReason {
  kNone = MEMWARD_REASON_NONE,
  kSoftLimit = MEMWARD_REASON_SOFT_LIMIT,
  kHardLimit = MEMWARD_REASON_HARD_LIMIT,
  kPressure = MEMWARD_REASON_PRESSURE,
};

struct AdmissionResult {
  Admission answer = Admission::kAdmit;
  AdmissionReason reason = AdmissionReason::kNone;
};

using TenantStats = memward_tenant_stats;
using RequestSummary = memward_request_summary;

// A registered tenant, by id. Copyable; tenants are never unregistered.
class Tenant {
 public:
  explicit Tenant(memward_tenant_id id) : id_(id) {}

  // Registers `name`; an existing name yields that tenant, unchanged.
  static std::optional<Tenant> Register(std::string_view name, const TenantOptions& options = {},
                                        Status* status = nullptr) {
    std::string terminated(name);
    memward_tenant_options c_options{options.soft_limit, options.hard_limit,
                                     options.enforce_hard_limit ? 1 : 0,
                                     options.dedicated_arena ? 1 : 0};
    memward_tenant_id id = 0;
    int code = memward_tenant_register(terminated.c_str(), &c_options, &id);
    if (status != nullptr) *status = Status(code);
    if (code != MEMWARD_OK && code != MEMWARD_ERROR_EXISTS) return std::nullopt;
    return Tenant(id);
  }

  static std::optional<Tenant> Find(std::string_view name) {
    std::string terminated(name);
    memward_tenant_id id = 0;
    if (memward_tenant_find(terminated.c_str(), &id) != MEMWARD_OK) return std::nullopt;
    return Tenant(id);
  }

  memward_tenant_id id() const { return id_; }

  Status SetLimits(std::uint64_t soft_limit, std::uint64_t hard_limit,
                   bool enforce_hard_limit) const {
    return Status(memward_tenant_set_limits(id_, soft_limit, hard_limit, enforce_hard_limit));
  }

  // Answers whether work expected to need `expected_bytes` should start.
  AdmissionResult Admit(std::uint64_t expected_bytes) const {
    memward_admission answer = MEMWARD_ADMIT;
    memward_admission_reason reason = MEMWARD_REASON_NONE;
    if (memward_admit(id_, expected_bytes, &answer, &reason) != MEMWARD_OK) return {};
    return {static_cast<Admission>(answer), static_cast<AdmissionReason>(reason)};
  }

  std::optional<TenantStats> Stats() const {
    TenantStats stats{};
    if (memward_tenant_stats_get(id_, &stats) != MEMWARD_OK) return std::nullopt;
    return stats;
  }

 private:
  memward_tenant_id id_;
};

// Makes a tenant current on this thread for the scope's lifetime.
class TenantScope {
 public:
  explicit TenantScope(const Tenant& tenant)
      : status_(memward_scope_enter(tenant.id(), &saved_)) {}
  ~TenantScope() {
    if (status_.ok()) memward_scope_exit(&saved_);
  }
  TenantScope(const TenantScope&) = delete;
  TenantScope& operator=(const TenantScope&) = delete;

  const Status& status() const { return status_; }

 private:
  memward_scope saved_{};
  Status status_;
};

// A request of a tenant, open for the object's lifetime (or until End).
class RequestScope {
 public:
  explicit RequestScope(const Tenant& tenant)
      : status_(memward_request_begin(tenant.id(), &request_)) {}
  ~RequestScope() { End(); }
  RequestScope(const RequestScope&) = delete;
  RequestScope& operator=(const RequestScope&) = delete;

  // Ends the request and returns its summary; later calls return an empty
  // summary.
  RequestSummary End() {
    RequestSummary summary{};
    if (status_.ok() && !ended_) memward_request_end(&request_, &summary);
    ended_ = true;
    return summary;
  }

  const memward_request& handle() const { return request_; }
  const Status& status() const { return status_; }

 private:
  memward_request request_{};
  Status status_;
  bool ended_ = false;
};

// Every tenant's statistics, the process (untagged memory) and memward first.
inline std::vector<TenantStats> AllTenantStats() {
  std::size_t count = 0;
  if (memward_tenant_stats_list(nullptr, 0, &count) != MEMWARD_OK) return {};
  std::vector<TenantStats> stats(count);
  if (memward_tenant_stats_list(stats.data(), stats.size(), &count) != MEMWARD_OK) return {};
  stats.resize(count < stats.size() ? count : stats.size());
  return stats;
}

// Publishes this thread's unpublished counts and returns its cached memory.
inline Status FlushThread() { return Status(memward_thread_flush()); }

inline bool IsLoaded() { return memward_version() != nullptr; }

enum class PressureLevel {
  kNormal = MEMWARD_PRESSURE_NORMAL,
  kSoft = MEMWARD_PRESSURE_SOFT,
  kHigh = MEMWARD_PRESSURE_HIGH,
  kCritical = MEMWARD_PRESSURE_CRITICAL,
};

// The process's memory pressure level; empty without memward. The first
// call starts memward's warden thread.
inline std::optional<PressureLevel> CurrentPressure() {
  memward_pressure_level level = MEMWARD_PRESSURE_NORMAL;
  if (memward_pressure_get(&level) != MEMWARD_OK) return std::nullopt;
  return static_cast<PressureLevel>(level);
}

// Returns the process's dirty allocator pages to the operating system now.
inline Status Purge() { return Status(memward_purge()); }

// A cache or pool that gives memory back under pressure. Derive from it,
// implement ReclaimableBytes and Reclaim, and call Register; the destructor
// unregisters, and after Unregister returns no further call is made. Both
// run on memward's warden thread, never inside malloc and never two at once,
// so they must lock whatever the program's threads share with them.
//
// A derived class must call Unregister in its own destructor: by the time
// this base destructor runs, the derived members are gone.
class Reclaimer {
 public:
  Reclaimer() = default;
  virtual ~Reclaimer() { Unregister(); }
  Reclaimer(const Reclaimer&) = delete;
  Reclaimer& operator=(const Reclaimer&) = delete;

  // Bytes it could free now.
  virtual std::uint64_t ReclaimableBytes() = 0;
  // Frees about `target_bytes` and returns the bytes freed.
  virtual std::uint64_t Reclaim(std::uint64_t target_bytes) = 0;

  // Registers with memward; lower `priority` values are asked first.
  // `time_budget_us` is the time one Reclaim call should take (0: memward's
  // default). Registering twice is an error (MEMWARD_ERROR_INVALID).
  Status Register(std::string_view name, int priority = 0, std::uint32_t time_budget_us = 0) {
    if (registered_) return Status(MEMWARD_ERROR_INVALID);
    std::string terminated(name);
    memward_reclaimer reclaimer{};
    reclaimer.name = terminated.c_str();
    reclaimer.priority = priority;
    reclaimer.time_budget_us = time_budget_us;
    reclaimer.context = this;
    reclaimer.count = &Reclaimer::CountThunk;
    reclaimer.reclaim = &Reclaimer::ReclaimThunk;
    Status status(memward_reclaimer_register(&reclaimer, &id_));
    registered_ = status.ok();
    return status;
  }

  void Unregister() {
    if (registered_) memward_reclaimer_unregister(id_);
    registered_ = false;
  }

  bool registered() const { return registered_; }

 private:
  // An exception must not unwind through memward's C frames, so it counts
  // as nothing to free.
  static std::uint64_t CountThunk(void* context) {
    try {
      return static_cast<Reclaimer*>(context)->ReclaimableBytes();
    } catch (...) {
      return 0;
    }
  }
  static std::uint64_t ReclaimThunk(void* context, std::uint64_t target_bytes) {
    try {
      return static_cast<Reclaimer*>(context)->Reclaim(target_bytes);
    } catch (...) {
      return 0;
    }
  }

  memward_reclaimer_id id_ = 0;
  bool registered_ = false;
};

}  // namespace memward

#endif  // MEMWARD_MEMWARD_HPP_
