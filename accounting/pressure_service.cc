// The warden's pressure tick: reading, ladder step, actions, decisions.
#include "accounting/pressure_service.h"

#include <pthread.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <atomic>

#include "accounting/cgroup_monitor.h"
#include "accounting/decision_log.h"
#include "accounting/pressure_admission.h"
#include "accounting/pressure_endpoints.h"
#include "accounting/pressure_forecast.h"
#include "accounting/reclaimer_registry.h"
#include "accounting/warden.h"
#include "accounting/warden_internal.h"
#include "alloc/arena_decay.h"
#include "alloc/bootstrap.h"
#include "alloc/engine.h"
#include "alloc/growth_signal.h"
#include "alloc/purge.h"
#include "base/json_writer.h"
#include "base/log.h"
#include "base/settings.h"

namespace memward::accounting {
namespace {

using base::SettingId;

constexpr int64_t kReclaimNowTimeoutNs = 10LL * 1000 * 1000 * 1000;

PressureInput NoInput(void*) { return PressureInput{}; }

// The default source: the process's cgroup monitor. A reading without a
// memory controller (ok false) leaves the level at normal.
PressureInput CgroupInput(void*) {
  const CgroupReading reading = ProcessCgroupMonitor().Read();
  PressureInput input;
  input.ok = reading.ok;
  input.limit_bytes = reading.limit_bytes;
  input.working_set_bytes = reading.working_set_bytes;
  input.usage_bytes = reading.usage_bytes;
  input.psi_some_avg10 = reading.psi_some_avg10;
  input.psi_full_avg10 = reading.psi_full_avg10;
  return input;
}

// Written by tests before they step the service; read on the warden thread.
constinit std::atomic<PressureInputSource> g_source{CgroupInput};
constinit std::atomic<void*> g_source_context{nullptr};

// The ladder and the decay in force. Touched only on the warden thread,
// after g_started is set.
constinit PressureLadder g_ladder{};
constinit int64_t g_decay_in_force_ms = -2;  // -2: the configured setting

// Guarded by g_state_lock: the last reading and step, the pending
// ReclaimNow and tick requests.
constinit pthread_mutex_t g_state_lock = PTHREAD_MUTEX_INITIALIZER;
constinit pthread_cond_t g_state_changed = PTHREAD_COND_INITIALIZER;
constinit PressureInput g_last_input{};
constinit LadderStep g_last_step{};
constinit uint64_t g_ticks = 0;
// EvaluatePressureNow requests, and the last request a finished tick had
// seen before it read its input.
constinit uint64_t g_tick_requests = 0;
constinit uint64_t g_tick_requests_served = 0;
constinit uint64_t g_reclaim_request_bytes = 0;
constinit uint64_t g_reclaim_requests = 0;   // requests handed over
constinit uint64_t g_reclaim_completed = 0;  // requests the warden finished
constinit uint64_t g_reclaim_result = 0;

constinit pthread_mutex_t g_start_lock = PTHREAD_MUTEX_INITIALIZER;
constinit std::atomic<bool> g_started{false};

int64_t MonotonicNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

int64_t ThreadCpuNs() {
  timespec now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

const base::Settings& Settings() { return alloc::CurrentSettings(); }

void RecordLevelDecision(DecisionKind kind, int64_t value) {
  Decision decision;
  decision.kind = kind;
  decision.level = CurrentPressureLevel();
  decision.value = value;
  RecordDecision(decision);
}

void ApplyDecay(const LadderStep& step) {
  if (step.decay == DecayChange::kNone) return;
  int64_t decay_ms = Settings().Get(SettingId::kDirtyDecay);
  if (step.decay == DecayChange::kShorten) {
    decay_ms = step.level >= PressureLevel::kHigh ? 0
                                                  : Settings().Get(SettingId::kPressureDirtyDecay);
  }
  if (decay_ms == g_decay_in_force_ms) return;
  alloc::SetDirtyDecayOfArenas(decay_ms);
  g_decay_in_force_ms = decay_ms;
  RecordLevelDecision(DecisionKind::kDecay, step.decay == DecayChange::kRestore ? -1 : decay_ms);
}

uint64_t PurgeAndRecord() {
  const int64_t start = MonotonicNs();
  const uint64_t purged = alloc::PurgeUnusedPages();
  Decision decision;
  decision.kind = DecisionKind::kPurge;
  decision.level = CurrentPressureLevel();
  decision.value = static_cast<int64_t>(purged);
  decision.elapsed_us = (MonotonicNs() - start) / 1000;
  RecordDecision(decision);
  return purged;
}

int CpuSharePercent() { return static_cast<int>(Settings().Get(SettingId::kReclaimCpuShare)); }

// Whether the reclaim pass of the last full tick freed memory. Touched only
// on the warden thread.
constinit bool g_last_pass_freed = false;

// Carries out one ladder step. `reclaim_target_bytes` is the step's target,
// or the early reclaim's at the normal level. Returns whether memory was
// freed or purged.
bool ApplyStep(const PressureInput& input, const LadderStep& step, uint64_t reclaim_target_bytes) {
  if (step.rose || step.fell) {
    SetCurrentPressureLevel(step.level);
    RecordLevelDecision(DecisionKind::kLevelChange, static_cast<int64_t>(input.working_set_bytes));
  }
  ApplyDecay(step);

  const uint64_t excess =
      input.working_set_bytes > g_ladder.ExitBytes(PressureLevel::kCritical, input.limit_bytes)
          ? input.working_set_bytes - g_ladder.ExitBytes(PressureLevel::kCritical, input.limit_bytes)
          : 0;
  const int marked = UpdatePressureAdmission(step.level, input.limit_bytes, excess);
  if (marked > 0 && step.rose) RecordLevelDecision(DecisionKind::kRejectSet, marked);

  // The reclaimers run before the purge of a rise, so the first reclaimer
  // call does not wait for it, and one purge returns both the pages that
  // were dirty and those the reclaimers just freed.
  ReclaimPassResult pass;
  if (reclaim_target_bytes > 0) {
    pass = RunReclaimPass(reclaim_target_bytes, MonotonicNs(), CpuSharePercent());
  }
  g_last_pass_freed = pass.freed_bytes > 0;
  if (pass.freed_bytes > 0) {
    // Freed memory is dirty pages in jemalloc until purged, and the working
    // set only falls once they are returned. This purge counts toward the
    // reclaim CPU cap.
    const int64_t cpu_before = ThreadCpuNs();
    PurgeAndRecord();
    ChargeReclaimCpu(ThreadCpuNs() - cpu_before);
    return true;
  }
  if (step.purge) PurgeAndRecord();
  return step.purge;
}

// Runs the latest ReclaimNow request that another thread handed over.
// Requests that arrive together are merged: the latest size wins, and every
// waiting caller gets its result.
void ServeReclaimRequest() {
  pthread_mutex_lock(&g_state_lock);
  const uint64_t latest = g_reclaim_requests;
  const bool pending = latest != g_reclaim_completed;
  const uint64_t bytes = g_reclaim_request_bytes;
  pthread_mutex_unlock(&g_state_lock);
  if (!pending) return;
  const uint64_t freed = ReclaimNow(bytes);
  pthread_mutex_lock(&g_state_lock);
  g_reclaim_result = freed;
  g_reclaim_completed = latest;
  pthread_cond_broadcast(&g_state_changed);
  pthread_mutex_unlock(&g_state_lock);
}

// The pressure descriptor watched now and the monitor generation it came
// from. Touched only on the warden thread (and by StartPressureService
// before the task is registered).
constinit int g_watched_fd = -1;
constinit uint64_t g_watched_generation = UINT64_MAX;

void Tick(void*);

// The warden's id of the pressure task, -1 before it is registered. Read by
// the allocator's wake-up inside malloc.
constinit std::atomic<int> g_task_id{-1};

// Runs the pressure task soon, and no other warden task. Safe inside malloc.
void WakePressureTask() { Warden::Get().WakeTask(g_task_id.load(std::memory_order_acquire)); }

// The forecast and what the last full reading showed. Touched only on the
// warden thread.
constinit GrowthForecast g_forecast{};
constinit int64_t g_last_full_read_ns = 0;
// Usage less working set at the last full reading: the inactive file pages
// that a usage-only read subtracts.
constinit uint64_t g_inactive_file_bytes = 0;

// The smallest wake-up step: a tenant batch (1 MiB) is the finest growth
// the allocator reports for tagged memory, so a smaller step would not
// wake the warden sooner.
constexpr uint64_t kMinWakeBytes = 1 << 20;

bool ForecastEnabled() { return Settings().GetBool(SettingId::kPressureForecast); }

int64_t IntervalNs() { return Settings().Get(SettingId::kPressureInterval) * 1000000; }

// The working set at which the warden reclaims at the normal level: the
// soft threshold, or earlier by pressure_lead of growth at the measured
// rate. The default lead, 100 ms, covers the warden's wait for a CPU, the
// reclaim and the purge. On a 2-CPU machine at a load average of 14, the
// cache test's working set grew up to 7.4 MiB past the early reclaim point
// before the purge brought it down: 74 ms at 100 MiB/s.
uint64_t EarlyReclaimPoint(uint64_t limit_bytes) {
  const uint64_t soft_entry = g_ladder.EntryBytes(PressureLevel::kSoft, limit_bytes);
  if (!ForecastEnabled()) return soft_entry;
  const uint64_t goal = g_ladder.ExitBytes(PressureLevel::kSoft, limit_bytes);
  const int64_t lead_ns = Settings().Get(SettingId::kPressureLead) * 1000000;
  return EarlyReclaimBytes(soft_entry, goal, g_forecast.rate(), lead_ns);
}

// Returns the nearest working set above `working_set` at which the warden
// acts: the reclaim point (EarlyReclaimPoint, which at the soft level is
// where reclaim starts again after it brought the working set down) or the
// next level's threshold; UINT64_MAX when there is none.
uint64_t NextActionPoint(uint64_t working_set, uint64_t limit_bytes, PressureLevel level) {
  uint64_t point = UINT64_MAX;
  if (level < PressureLevel::kCritical) {
    const auto next = static_cast<PressureLevel>(static_cast<int>(level) + 1);
    point = g_ladder.EntryBytes(next, limit_bytes);
  }
  const uint64_t reclaim_point = EarlyReclaimPoint(limit_bytes);
  if (reclaim_point > working_set && reclaim_point < point) point = reclaim_point;
  return point > working_set ? point : UINT64_MAX;
}

// Sets the allocator's wake-up step to half the distance to the next
// action point, at most the pressure_wake_bytes setting, so growth that
// could reach it before the next read wakes the warden.
void AdaptGrowthWake(uint64_t working_set, uint64_t limit_bytes, PressureLevel level) {
  const uint64_t configured =
      static_cast<uint64_t>(Settings().Get(SettingId::kPressureWakeBytes));
  if (configured == 0) return;
  uint64_t step = configured;
  if (limit_bytes != 0) {
    const uint64_t point = NextActionPoint(working_set, limit_bytes, level);
    if (point != UINT64_MAX && (point - working_set) / 2 < step) step = (point - working_set) / 2;
  }
  if (step < kMinWakeBytes) step = kMinWakeBytes;
  alloc::SetGrowthWake(step, WakePressureTask);
}

// Runs the pressure task again before the working set is projected to reach
// the next action point (the periodic run stays as the latest).
void ScheduleNextRead(uint64_t working_set, uint64_t limit_bytes, PressureLevel level) {
  if (!ForecastEnabled() || limit_bytes == 0) return;
  const uint64_t point = NextActionPoint(working_set, limit_bytes, level);
  if (point == UINT64_MAX) return;
  const int64_t delay_ns = g_forecast.NextReadDelayNs(point - working_set, IntervalNs());
  if (delay_ns < IntervalNs()) Warden::Get().RunTaskAfter(g_task_id.load(), delay_ns);
}

// Returns whether a usage-only reading of `working_set` needs the full
// tick now: a level to enter or leave, or memory to reclaim. A fall, and a
// reclaim after a pass that freed nothing, wait kRateWindowNs after the
// last full tick, so reclaimers that cannot bring the working set down are
// not asked at every 2 ms read.
bool NeedsFullTick(uint64_t working_set, uint64_t limit_bytes, int64_t now_ns) {
  const PressureLevel level = g_ladder.level();
  if (level < PressureLevel::kCritical) {
    const auto next = static_cast<PressureLevel>(static_cast<int>(level) + 1);
    if (working_set >= g_ladder.EntryBytes(next, limit_bytes)) return true;
  }
  const bool reclaim_due = working_set >= EarlyReclaimPoint(limit_bytes) &&
                           working_set > g_ladder.ExitBytes(PressureLevel::kSoft, limit_bytes);
  if (reclaim_due && g_last_pass_freed) return true;
  if (now_ns - g_last_full_read_ns < kRateWindowNs) return false;
  if (level > PressureLevel::kNormal && working_set < g_ladder.ExitBytes(level, limit_bytes)) {
    return true;
  }
  return reclaim_due;
}

// Reads the cgroup's usage alone and, when nothing needs the full tick,
// updates the forecast and the wake-ups. Returns false when the full tick
// must run: a request is pending, the interval has passed since the last
// full reading, the source is not the cgroup, or the read failed.
bool QuickTick(bool requested) {
  const int64_t now = MonotonicNs();
  const PressureInput& last = g_last_input;
  if (requested || now - g_last_full_read_ns >= IntervalNs() || !last.ok ||
      last.limit_bytes == 0 || g_source.load(std::memory_order_acquire) != CgroupInput) {
    return false;
  }
  uint64_t usage = 0;
  if (!ProcessCgroupMonitor().ReadUsage(&usage)) return false;
  alloc::ResetGrowth();
  const uint64_t working_set = usage > g_inactive_file_bytes ? usage - g_inactive_file_bytes : 0;
  if (ForecastEnabled()) g_forecast.Note(now, working_set);
  if (NeedsFullTick(working_set, last.limit_bytes, now)) return false;
  AdaptGrowthWake(working_set, last.limit_bytes, g_ladder.level());
  ScheduleNextRead(working_set, last.limit_bytes, g_ladder.level());
  return true;
}

void FullTick(uint64_t serving);

void OnPressureEvent(int fd, uint32_t events, void*) {
  ProcessCgroupMonitor().AcknowledgePressureEvent();
  pthread_mutex_lock(&g_state_lock);
  const uint64_t serving = g_tick_requests;
  pthread_mutex_unlock(&g_state_lock);
  FullTick(serving);
}

// Watches the monitor's pressure descriptor, again whenever the monitor
// replaced it (rediscovery, or the first read in a forked child).
void RefreshPressureWatch() {
  if (g_source.load(std::memory_order_acquire) != CgroupInput) return;
  CgroupMonitor& monitor = ProcessCgroupMonitor();
  const uint64_t generation = monitor.generation();
  if (generation == g_watched_generation) return;
  if (g_watched_fd >= 0) Warden::Get().Unwatch(g_watched_fd);
  g_watched_fd = monitor.pressure_event_fd();
  g_watched_generation = generation;
  if (g_watched_fd >= 0 &&
      !Warden::Get().Watch(g_watched_fd, monitor.pressure_event_mask(), OnPressureEvent,
                           nullptr)) {
    base::Log("pressure: the warden could not watch the pressure descriptor %d; "
              "relying on the %lld ms timer",
              g_watched_fd,
              static_cast<long long>(Settings().Get(SettingId::kPressureInterval)));
    g_watched_fd = -1;
  }
}

// Returns the bytes to ask the reclaimers for at the normal level because
// the working set reached the early reclaim point; 0 otherwise.
uint64_t EarlyReclaimTarget(const PressureInput& input, const LadderStep& step) {
  if (step.level != PressureLevel::kNormal || !input.ok || input.limit_bytes == 0) return 0;
  if (input.working_set_bytes < EarlyReclaimPoint(input.limit_bytes)) return 0;
  const uint64_t goal = g_ladder.ExitBytes(PressureLevel::kSoft, input.limit_bytes);
  return input.working_set_bytes > goal ? input.working_set_bytes - goal : 0;
}

// Reads everything, steps the ladder and carries the step out. `serving` is
// the last EvaluatePressureNow request made before the reading.
void FullTick(uint64_t serving) {
  ServeReclaimRequest();
  alloc::ResetGrowth();
  PressureInputSource source = g_source.load(std::memory_order_acquire);
  const PressureInput input = source(g_source_context.load(std::memory_order_acquire));
  const int64_t now = MonotonicNs();
  g_last_full_read_ns = now;
  RefreshPressureWatch();
  const PressureInput previous = g_last_input;
  if (!input.ok && previous.ok) RecordLevelDecision(DecisionKind::kReadFailed, 0);
  g_inactive_file_bytes =
      input.usage_bytes > input.working_set_bytes ? input.usage_bytes - input.working_set_bytes : 0;
  if (ForecastEnabled() && input.ok) g_forecast.Note(now, input.working_set_bytes);
  const LadderStep step = g_ladder.Evaluate(input);
  uint64_t target = step.reclaim_target_bytes;
  if (target == 0 && ForecastEnabled()) target = EarlyReclaimTarget(input, step);
  const bool lowered = ApplyStep(input, step, target);
  AdaptGrowthWake(input.ok ? input.working_set_bytes : 0, input.ok ? input.limit_bytes : 0,
                  step.level);
  if (lowered) {
    // The reading predates the reclaim and purge, so it cannot place the
    // next read or wake-up: take a usage-only reading of the lowered working
    // set soon, or after the smallest growth the allocator reports.
    g_forecast.Restart();
    if (ForecastEnabled()) Warden::Get().RunTaskAfter(g_task_id.load(), kMinReadDelayNs);
    if (Settings().Get(SettingId::kPressureWakeBytes) != 0) {
      alloc::SetGrowthWake(kMinWakeBytes, WakePressureTask);
    }
  } else if (input.ok) {
    ScheduleNextRead(input.working_set_bytes, input.limit_bytes, step.level);
  }

  pthread_mutex_lock(&g_state_lock);
  g_last_input = input;
  g_last_step = step;
  g_ticks++;
  g_tick_requests_served = serving;
  pthread_cond_broadcast(&g_state_changed);
  pthread_mutex_unlock(&g_state_lock);
}

// The pressure task: a usage-only read when that is enough, else the full
// tick.
void Tick(void*) {
  pthread_mutex_lock(&g_state_lock);
  const uint64_t serving = g_tick_requests;
  const bool requested =
      serving != g_tick_requests_served || g_reclaim_requests != g_reclaim_completed;
  pthread_mutex_unlock(&g_state_lock);
  if (QuickTick(requested)) return;
  FullTick(serving);
}

// Waits until `done` holds under g_state_lock or the timeout passes.
template <typename Predicate>
bool WaitLocked(Predicate done) {
  timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += kReclaimNowTimeoutNs / 1000000000;
  while (!done()) {
    if (pthread_cond_timedwait(&g_state_changed, &g_state_lock, &deadline) != 0) return done();
  }
  return true;
}

void WriteReclaimersJson(base::JsonWriter& json) {
  ReclaimerInfo infos[kMaxReclaimers];
  const int count = ListReclaimers(infos, kMaxReclaimers);
  const int64_t now = MonotonicNs();
  json.Key("reclaimers").BeginArray();
  for (int i = 0; i < count && i < kMaxReclaimers; i++) {
    const ReclaimerInfo& info = infos[i];
    json.BeginObject();
    json.Key("id").Uint(info.id);
    json.Key("name").String(info.name);
    json.Key("priority").Int(info.priority);
    json.Key("calls").Uint(info.calls);
    json.Key("freed_bytes").Uint(info.freed_bytes);
    json.Key("empty_calls").Uint(info.empty_calls);
    json.Key("budget_overruns").Uint(info.budget_overruns);
    const int64_t backoff_ms =
        info.backoff_until_ns > now ? (info.backoff_until_ns - now) / 1000000 : 0;
    json.Key("backoff_remaining_ms").Int(backoff_ms);
    json.EndObject();
  }
  json.EndArray();
}

}  // namespace

void SetPressureInputSource(PressureInputSource source, void* context) {
  g_source_context.store(context, std::memory_order_release);
  g_source.store(source != nullptr ? source : NoInput, std::memory_order_release);
}

bool ReadPressureLevelIfStarted(PressureLevel* level) {
  if (!g_started.load(std::memory_order_acquire)) return false;
  *level = CurrentPressureLevel();
  return true;
}

bool StartPressureService() {
  if (g_started.load(std::memory_order_acquire)) return Warden::Get().Start();
  pthread_mutex_lock(&g_start_lock);
  bool ok = true;
  if (!g_started.load(std::memory_order_relaxed)) {
    const base::Settings& settings = Settings();
    g_ladder = PressureLadder(ThresholdsFromSettings(settings));
    const int64_t interval_ms = settings.Get(SettingId::kPressureInterval);
    int task_id = -1;
    ok = Warden::Get().AddPeriodic("pressure", interval_ms, Tick, nullptr, &task_id);
    g_task_id.store(task_id, std::memory_order_release);
    // The first reading comes at once, not one interval later.
    if (ok) Warden::Get().RunTaskAfter(task_id, 0);
    if (!ok) base::Log("pressure: the warden's task table is full; memory pressure is not watched");
    alloc::SetGrowthWake(static_cast<uint64_t>(settings.Get(SettingId::kPressureWakeBytes)),
                         WakePressureTask);
    g_started.store(ok, std::memory_order_release);
    RegisterPressureEndpoints();
  }
  pthread_mutex_unlock(&g_start_lock);
  return ok && Warden::Get().Start();
}

bool EvaluatePressureNow() {
  if (!StartPressureService()) return false;
  if (IsWardenThread()) {
    Tick(nullptr);
    return true;
  }
  // A tick that had already read its input when this request was made does
  // not count: the caller may have changed what the next reading returns.
  pthread_mutex_lock(&g_state_lock);
  const uint64_t request = ++g_tick_requests;
  pthread_mutex_unlock(&g_state_lock);
  WakePressureTask();
  pthread_mutex_lock(&g_state_lock);
  const bool done = WaitLocked([&] { return g_tick_requests_served >= request; });
  pthread_mutex_unlock(&g_state_lock);
  return done;
}

uint64_t ReclaimNow(uint64_t bytes) {
  if (IsWardenThread()) {
    ReclaimPassResult pass = RunReclaimPass(bytes, MonotonicNs(), CpuSharePercent());
    PurgeAndRecord();
    return pass.freed_bytes;
  }
  if (!StartPressureService()) return 0;
  pthread_mutex_lock(&g_state_lock);
  g_reclaim_request_bytes = bytes;
  const uint64_t request = ++g_reclaim_requests;
  pthread_mutex_unlock(&g_state_lock);
  WakePressureTask();
  pthread_mutex_lock(&g_state_lock);
  const bool done = WaitLocked([&] { return g_reclaim_completed >= request; });
  const uint64_t freed = done ? g_reclaim_result : 0;
  pthread_mutex_unlock(&g_state_lock);
  return freed;
}

uint64_t PurgeNow() { return PurgeAndRecord(); }

LadderThresholds CurrentThresholds() { return g_ladder.thresholds(); }

void WritePressureJson(std::string* out) {
  pthread_mutex_lock(&g_state_lock);
  const PressureInput input = g_last_input;
  const LadderStep step = g_last_step;
  const uint64_t ticks = g_ticks;
  pthread_mutex_unlock(&g_state_lock);
  const LadderThresholds thresholds = g_ladder.thresholds();

  base::JsonWriter json(out);
  json.BeginObject();
  json.Key("running").Bool(g_started.load(std::memory_order_acquire) &&
                           Warden::Get().IsRunning());
  json.Key("level").String(PressureLevelName(CurrentPressureLevel()));
  json.Key("ticks").Uint(ticks);
  json.Key("reading_ok").Bool(input.ok);
  json.Key("limit_bytes").Uint(input.limit_bytes);
  json.Key("working_set_bytes").Uint(input.working_set_bytes);
  json.Key("usage_percent").Int(step.usage_percent);
  json.Key("psi_some_avg10").Double(input.psi_some_avg10);
  json.Key("psi_full_avg10").Double(input.psi_full_avg10);
  json.Key("last_reclaim_target_bytes").Uint(step.reclaim_target_bytes);
  json.Key("thresholds_percent").BeginObject();
  json.Key("soft").Int(thresholds.soft_percent);
  json.Key("high").Int(thresholds.high_percent);
  json.Key("critical").Int(thresholds.critical_percent);
  json.Key("hysteresis").Int(thresholds.hysteresis_percent);
  json.EndObject();
  json.Key("admission").BeginObject();
  json.Key("fair_share_bytes").Uint(FairShareBytes());
  json.Key("shed_under_pressure").Uint(PressureShedCount());
  json.Key("rejected_under_pressure").Uint(PressureRejectCount());
  json.EndObject();
  WriteReclaimersJson(json);
  json.EndObject();
}

}  // namespace memward::accounting
