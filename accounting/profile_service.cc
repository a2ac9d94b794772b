#include "accounting/profile_service.h"

#include <pthread.h>
#include <time.h>

#include <atomic>
#include <memory>

#include "accounting/admin_endpoints.h"
#include "accounting/heap_snapshot.h"
#include "accounting/leak_detector.h"
#include "accounting/leak_report.h"
#include "accounting/profile_folded.h"
#include "accounting/profile_json.h"
#include "accounting/profile_pprof.h"
#include "accounting/sample_table.h"
#include "accounting/sampler.h"
#include "accounting/symbolizer.h"
#include "accounting/tenant.h"
#include "accounting/tenant_registry.h"
#include "accounting/warden.h"
#include "alloc/arena_registry.h"
#include "alloc/bootstrap.h"
#include "alloc/scope.h"
#include "alloc/thread_state.h"
#include "base/log.h"
#include "base/settings.h"

namespace memward::accounting {
namespace {

using base::SettingId;

// Guards g_detector. See the header for its place in the lock order.
pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
LeakDetector* g_detector = nullptr;  // created on first use, never freed
std::atomic<bool> g_started{false};
pthread_mutex_t g_start_lock = PTHREAD_MUTEX_INITIALIZER;

// The mapping whose innermost frames exports and sites drop: none, because
// the sampler already leaves memward's own frames (malloc, operator new,
// the sampler, all in the memward_text section) out when it captures. A
// mapping would be wrong where memward's objects are linked into the
// program itself, as in the endpoint tests.
constexpr uintptr_t kNoTrimming = 0;

int64_t RealtimeNs() {
  timespec now = {};
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

// Runs the service's work as memward's own, on whichever thread calls it: in
// memward's tenant scope, so no user tenant is charged, and with the
// thread's sampling countdown out of reach, so memward's bookkeeping (the
// detector's copy of the samples, the symbolizer) never shows up in the
// profiles and leak reports it writes.
class OwnWorkScope {
 public:
  OwnWorkScope() {
    int64_t& countdown = alloc::SamplerCountdown(alloc::t_thread_state);
    saved_countdown_ = countdown;
    countdown = INT64_MAX;
    const uint32_t slot = alloc::MemwardArenaSlot();
    if (slot != 0) {
      saved_scope_ = alloc::EnterScope(kMemwardTenant, slot, 0);
      entered_ = true;
    }
  }
  ~OwnWorkScope() {
    if (entered_) alloc::ExitScope(saved_scope_);
    alloc::SamplerCountdown(alloc::t_thread_state) = saved_countdown_;
  }
  OwnWorkScope(const OwnWorkScope&) = delete;
  OwnWorkScope& operator=(const OwnWorkScope&) = delete;

 private:
  int64_t saved_countdown_ = 0;
  alloc::SavedScope saved_scope_;
  bool entered_ = false;
};

// Returns the detector, creating it from the settings. Requires g_lock.
LeakDetector& DetectorLocked() {
  if (g_detector == nullptr) {
    const base::Settings& settings = alloc::CurrentSettings();
    LeakDetectorOptions options;
    options.windows = static_cast<int>(settings.Get(SettingId::kLeakWindows));
    options.site_depth = static_cast<uint32_t>(settings.Get(SettingId::kLeakSiteDepth));
    options.trim_address = kNoTrimming;
    g_detector = new LeakDetector(options);
  }
  return *g_detector;
}

void CloseWindowTask(void*) { CloseLeakWindowNow(); }

void HandleHeap(const AdminRequest& request, AdminResponse* response) {
  HeapFormat format = HeapFormat::kPprof;
  if (const std::string* name = request.QueryValue("format")) {
    if (*name == "folded") {
      format = HeapFormat::kFolded;
    } else if (*name == "json") {
      format = HeapFormat::kJson;
    } else if (*name != "pprof") {
      response->SetError(400, "invalid format '" + *name +
                                  "': expected pprof, folded or json");
      return;
    }
  }
  std::string error;
  if (!WriteHeapProfile(format, &response->body, &error)) {
    response->SetError(500, error);
    return;
  }
  switch (format) {
    case HeapFormat::kPprof:
      // The body is a gzip file, as pprof reads it; it is not a transfer
      // encoding, so no Content-Encoding header is sent.
      response->content_type = "application/octet-stream";
      response->headers.emplace_back("Content-Disposition",
                                     "attachment; filename=\"heap.pb.gz\"");
      break;
    case HeapFormat::kFolded:
      response->content_type = "text/plain; charset=utf-8";
      break;
    case HeapFormat::kJson:
      response->content_type = "application/json";
      break;
  }
}

void HandleLeaks(const AdminRequest&, AdminResponse* response) {
  response->content_type = "application/json";
  response->body = LeakReportJsonNow();
}

}  // namespace

HeapSnapshot TakeHeapSnapshot() {
  LoadUnwinderFallbackIfNeeded();
  HeapSnapshot snapshot;
  SnapshotSamples(&snapshot.live);
  SnapshotSiteTotals(&snapshot.sites);
  snapshot.interval_bytes = GetSamplerStats().interval_bytes;
  snapshot.wall_time_ns = RealtimeNs();
  snapshot.monotonic_ns = SampleClockNs();
  snapshot.tenant_names[kProcessTenant] = "process";
  snapshot.tenant_names[kMemwardTenant] = "memward";
  TenantId count = TenantCount();
  for (TenantId id = kFirstUserTenant; id < count && id < kMaxTenants; id++) {
    if (IsRegistered(id)) snapshot.tenant_names[id] = TenantAt(id).name;
  }
  return snapshot;
}

bool StartProfileService() {
  if (g_started.load(std::memory_order_acquire)) return true;
  pthread_mutex_lock(&g_start_lock);
  bool ok = g_started.load(std::memory_order_relaxed);
  if (!ok) {
    const int64_t window_ms = alloc::CurrentSettings().Get(SettingId::kLeakWindow);
    ok = Warden::Get().AddPeriodic("leak window", window_ms, CloseWindowTask, nullptr);
    if (!ok) base::Log("leak detector: the warden's task table is full; no leak windows run");
    RegisterAdminEndpoint("GET", "/heap",
                          "Heap profile of sampled allocations: ?format=pprof|folded|json",
                          HandleHeap);
    RegisterAdminEndpoint("GET", "/leaks", "Leak suspects of the last leak window (JSON)",
                          HandleLeaks);
    g_started.store(ok, std::memory_order_release);
  }
  pthread_mutex_unlock(&g_start_lock);
  return ok;
}

bool WriteHeapProfile(HeapFormat format, std::string* out, std::string* error) {
  OwnWorkScope own_work;
  HeapSnapshot snapshot = TakeHeapSnapshot();
  Symbolizer symbolizer;
  switch (format) {
    case HeapFormat::kPprof: {
      PprofOptions options;
      options.trim_address = kNoTrimming;
      if (!WritePprof(snapshot, &symbolizer, options, out)) {
        *error = "gzip compression of the heap profile failed";
        return false;
      }
      return true;
    }
    case HeapFormat::kFolded:
      *out = WriteFolded(snapshot, &symbolizer, FoldedValue::kInuseSpace, kNoTrimming);
      return true;
    case HeapFormat::kJson:
      *out = WriteHeapJson(snapshot, &symbolizer, kNoTrimming);
      return true;
  }
  return false;
}

void CloseLeakWindowNow() {
  OwnWorkScope own_work;
  pthread_mutex_lock(&g_lock);
  DetectorLocked().CloseWindow(TakeHeapSnapshot());
  pthread_mutex_unlock(&g_lock);
}

std::string LeakReportJsonNow() {
  OwnWorkScope own_work;
  LeakReportOptions options;
  options.window_ms = alloc::CurrentSettings().Get(SettingId::kLeakWindow);
  pthread_mutex_lock(&g_lock);
  // Symbolizing under the lock keeps the snapshot's records in place; it
  // delays the next window, never an allocation.
  Symbolizer symbolizer;
  std::string report = LeakReportJson(DetectorLocked(), &symbolizer, options);
  pthread_mutex_unlock(&g_lock);
  return report;
}

void LockProfileForFork() { pthread_mutex_lock(&g_lock); }

void UnlockProfileAfterFork() { pthread_mutex_unlock(&g_lock); }

}  // namespace memward::accounting
