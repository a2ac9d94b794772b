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

}  // namespace memward

#endif  // MEMWARD_MEMWARD_HPP_
