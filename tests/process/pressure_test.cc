// The pressure service on the real warden thread with fed readings: each
// level's actions (reclaimer targets, purge, decay, admission results), the
// hysteresis on the way down, the death-spiral guards and the JSON views.
//
// The binary contains memward's objects, so it calls the internal service
// and the C API directly. CTest runs it with pressure_interval=60s and
// pressure_forecast=false, so neither the timer nor a forecast read runs a
// tick during a test and each step is one EvaluatePressureNow.
#include "accounting/pressure_service.h"

#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "accounting/admin_endpoints.h"
#include "accounting/decision_log.h"
#include "accounting/pressure_state.h"
#include "accounting/reclaimer_registry.h"
#include "alloc/engine.h"
#include "memward/memward.h"

namespace memward::accounting {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kLimit = 1000 * kMiB;

// The reading the service gets at its next tick.
std::atomic<uint64_t> g_working_set{0};

PressureInput FedInput(void*) {
  PressureInput input;
  input.ok = true;
  input.limit_bytes = kLimit;
  input.working_set_bytes = g_working_set.load();
  return input;
}

void Step(uint64_t working_set_mib) {
  g_working_set.store(working_set_mib * kMiB);
  ASSERT_TRUE(EvaluatePressureNow()) << "the warden did not run the pressure tick";
}

// A reclaimer that records what it is asked and frees what it is asked, up
// to what it holds.
struct RecordingReclaimer {
  std::mutex mutex;
  uint64_t holds = 0;
  std::vector<uint64_t> targets;  // guarded by mutex
  bool on_other_thread = false;

  static uint64_t Count(void* context) {
    auto* self = static_cast<RecordingReclaimer*>(context);
    std::lock_guard<std::mutex> lock(self->mutex);
    return self->holds;
  }
  static uint64_t Reclaim(void* context, uint64_t target) {
    auto* self = static_cast<RecordingReclaimer*>(context);
    std::lock_guard<std::mutex> lock(self->mutex);
    self->targets.push_back(target);
    const uint64_t freed = target < self->holds ? target : self->holds;
    self->holds -= freed;
    return freed;
  }
  std::vector<uint64_t> TakeTargets() {
    std::lock_guard<std::mutex> lock(mutex);
    std::vector<uint64_t> taken;
    taken.swap(targets);
    return taken;
  }
  void Refill(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex);
    holds = bytes;
  }
};

memward_reclaimer_id Register(RecordingReclaimer* reclaimer, const char* name, int priority) {
  memward_reclaimer spec = {};
  spec.name = name;
  spec.priority = priority;
  spec.context = reclaimer;
  spec.count = RecordingReclaimer::Count;
  spec.reclaim = RecordingReclaimer::Reclaim;
  memward_reclaimer_id id = 0;
  EXPECT_EQ(memward_reclaimer_register(&spec, &id), MEMWARD_OK);
  return id;
}

int64_t ReadDirtyDecayMs() {
  ssize_t value = 0;
  size_t length = sizeof(value);
  if (mwje_mallctl("arenas.dirty_decay_ms", &value, &length, nullptr, 0) != 0) return -100;
  return value;
}

uint64_t CountOf(DecisionKind kind) {
  return ReadDecisionCounts().by_kind[static_cast<int>(kind)];
}

struct AdmitResult {
  memward_admission answer;
  memward_admission_reason reason;
};

AdmitResult Admit(memward_tenant_id tenant) {
  AdmitResult result{MEMWARD_ADMIT, MEMWARD_REASON_NONE};
  EXPECT_EQ(memward_admit(tenant, 0, &result.answer, &result.reason), MEMWARD_OK);
  return result;
}

class PressureServiceTest : public testing::Test {
 protected:
  void SetUp() override {
    SetPressureInputSource(FedInput, nullptr);
    Step(0);  // every test starts at the normal level
    ASSERT_EQ(CurrentPressureLevel(), PressureLevel::kNormal);
  }
};

TEST_F(PressureServiceTest, LadderActsAtEachLevel) {
  // Tenants: "heavy" has 20 MiB live against a 10 MiB soft limit. "light"
  // has no limit and almost nothing live.
  memward_tenant_options options;
  memward_tenant_options_init(&options);
  options.soft_limit = 10 * kMiB;
  memward_tenant_id heavy = 0;
  memward_tenant_id light = 0;
  ASSERT_EQ(memward_tenant_register("heavy", &options, &heavy), MEMWARD_OK);
  ASSERT_EQ(memward_tenant_register("light", nullptr, &light), MEMWARD_OK);
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(heavy, &saved), MEMWARD_OK);
  std::vector<char*> blocks;
  for (int i = 0; i < 20; i++) blocks.push_back(static_cast<char*>(malloc(kMiB)));
  ASSERT_EQ(memward_thread_flush(), MEMWARD_OK);
  ASSERT_EQ(memward_scope_exit(&saved), MEMWARD_OK);

  RecordingReclaimer first;
  RecordingReclaimer second;
  first.Refill(30 * kMiB);
  second.Refill(500 * kMiB);
  // Registered in the reverse of their priority order.
  memward_reclaimer_id second_id = Register(&second, "second", 5);
  memward_reclaimer_id first_id = Register(&first, "first", 1);
  const int64_t configured_decay = ReadDirtyDecayMs();

  // Normal: nothing is asked, the soft limit alone sheds "heavy".
  uint64_t purges = CountOf(DecisionKind::kPurge);
  const uint64_t reclaims = CountOf(DecisionKind::kReclaim);
  ASSERT_NO_FATAL_FAILURE(Step(500));
  EXPECT_TRUE(first.TakeTargets().empty());
  EXPECT_TRUE(second.TakeTargets().empty());
  EXPECT_EQ(Admit(heavy).answer, MEMWARD_SHED);
  EXPECT_EQ(Admit(heavy).reason, MEMWARD_REASON_SOFT_LIMIT);
  EXPECT_EQ(Admit(light).answer, MEMWARD_ADMIT);

  // Soft at 80 %, which is 50 MiB above the 75 % goal. "first" gives its
  // 30 MiB and "second" the remaining 20 MiB. Dirty pages are purged, and
  // the decay is shortened to pressure_dirty_decay (250 ms).
  ASSERT_NO_FATAL_FAILURE(Step(800));
  memward_pressure_level level;
  ASSERT_EQ(memward_pressure_get(&level), MEMWARD_OK);
  EXPECT_EQ(level, MEMWARD_PRESSURE_SOFT);
  EXPECT_EQ(first.TakeTargets(), std::vector<uint64_t>{30 * kMiB});
  EXPECT_EQ(second.TakeTargets(), std::vector<uint64_t>{20 * kMiB});
  // One purge on the rise, after the reclaim: it returns the pages that
  // were dirty and those the reclaimers freed.
  EXPECT_EQ(CountOf(DecisionKind::kPurge), purges + 1);
  EXPECT_EQ(CountOf(DecisionKind::kReclaim), reclaims + 2) << "one per reclaimer called";
  EXPECT_EQ(ReadDirtyDecayMs(), 250);
  EXPECT_EQ(Admit(heavy).reason, MEMWARD_REASON_SOFT_LIMIT);

  // High at 90 %, so 150 MiB is requested, from "second" alone because
  // "first" is empty. "heavy" is shed for pressure. "light" is within its
  // fair share (1000 MiB divided among the tenants).
  purges = CountOf(DecisionKind::kPurge);
  ASSERT_NO_FATAL_FAILURE(Step(900));
  EXPECT_TRUE(first.TakeTargets().empty());
  EXPECT_EQ(second.TakeTargets(), std::vector<uint64_t>{150 * kMiB});
  EXPECT_GT(CountOf(DecisionKind::kPurge), purges);
  EXPECT_EQ(ReadDirtyDecayMs(), 0);
  AdmitResult high = Admit(heavy);
  EXPECT_EQ(high.answer, MEMWARD_SHED);
  EXPECT_EQ(high.reason, MEMWARD_REASON_PRESSURE);
  EXPECT_EQ(Admit(light).answer, MEMWARD_ADMIT);

  // Critical at 95 %: heavy, the tenant furthest over its share, is
  // rejected; light is still admitted.
  ASSERT_NO_FATAL_FAILURE(Step(960));
  EXPECT_EQ(second.TakeTargets(), std::vector<uint64_t>{210 * kMiB});
  AdmitResult critical = Admit(heavy);
  EXPECT_EQ(critical.answer, MEMWARD_REJECT);
  EXPECT_EQ(critical.reason, MEMWARD_REASON_PRESSURE);
  EXPECT_EQ(Admit(light).answer, MEMWARD_ADMIT);
  EXPECT_GE(PressureRejectCount(), 1u);
  EXPECT_GE(PressureShedCount(), 1u);

  // Down with hysteresis: each level stays until 5 points below its entry.
  struct Down {
    uint64_t working_set_mib;
    PressureLevel level;
  };
  for (const Down& down : {Down{920, PressureLevel::kCritical}, Down{880, PressureLevel::kHigh},
                           Down{820, PressureLevel::kSoft}, Down{740, PressureLevel::kNormal}}) {
    SCOPED_TRACE(testing::Message() << "working set " << down.working_set_mib << " MiB");
    ASSERT_NO_FATAL_FAILURE(Step(down.working_set_mib));
    EXPECT_EQ(CurrentPressureLevel(), down.level);
  }
  // Back to normal: decay restored, admission by limits alone.
  EXPECT_EQ(ReadDirtyDecayMs(), configured_decay);
  EXPECT_EQ(Admit(heavy).reason, MEMWARD_REASON_SOFT_LIMIT);

  EXPECT_EQ(memward_reclaimer_unregister(first_id), MEMWARD_OK);
  EXPECT_EQ(memward_reclaimer_unregister(second_id), MEMWARD_OK);
  EXPECT_EQ(memward_reclaimer_unregister(second_id), MEMWARD_ERROR_NOT_FOUND);
  for (char* block : blocks) free(block);
}

// A reclaimer that claims 100 MiB and never frees anything.
uint64_t ClaimsMuch(void*) { return 100 * kMiB; }
std::atomic<int> g_stubborn_calls{0};
uint64_t FreesNothing(void*, uint64_t) {
  g_stubborn_calls.fetch_add(1);
  return 0;
}

// Reclaim passes with synthetic clock values, far from the real monotonic
// clock so that the CPU-cap window of other tests does not interfere.
constexpr int64_t kSyntheticEpochNs = int64_t{1} << 60;
constexpr int64_t kMs = 1000 * 1000;

TEST_F(PressureServiceTest, EmptyReclaimerBacksOffExponentially) {
  memward_reclaimer spec = {};
  spec.name = "stubborn";
  spec.count = ClaimsMuch;
  spec.reclaim = FreesNothing;
  memward_reclaimer_id id = 0;
  ASSERT_EQ(memward_reclaimer_register(&spec, &id), MEMWARD_OK);
  g_stubborn_calls.store(0);
  const uint64_t backoffs = CountOf(DecisionKind::kBackoff);

  // Each row: the time of a pass and whether the reclaimer is called then.
  // Back-off after the n-th empty call: 250 ms * 2^(n-1).
  struct Pass {
    int64_t at_ms;
    bool called;
  };
  const Pass passes[] = {{0, true},     {100, false},  {249, false}, {251, true},
                         {700, false},  {752, true},   {1700, false}, {1753, true},
                         {3700, false}, {3754, true}};
  int expected_calls = 0;
  for (const Pass& pass : passes) {
    SCOPED_TRACE(testing::Message() << "pass at " << pass.at_ms << " ms");
    ReclaimPassResult result =
        RunReclaimPass(10 * kMiB, kSyntheticEpochNs + pass.at_ms * kMs, 100);
    if (pass.called) expected_calls++;
    EXPECT_EQ(g_stubborn_calls.load(), expected_calls);
    EXPECT_EQ(result.backed_off, pass.called ? 0 : 1);
    EXPECT_EQ(result.freed_bytes, 0u);
  }
  EXPECT_EQ(CountOf(DecisionKind::kBackoff), backoffs + 5);

  // The service keeps stepping at the soft level without calling it again
  // inside its back-off.
  EXPECT_EQ(memward_reclaimer_unregister(id), MEMWARD_OK);
}

// Burns about 30 ms of CPU time and frees a little.
uint64_t BurnsCpu(void*, uint64_t) {
  timespec start;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
  for (;;) {
    timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    const int64_t spent = (now.tv_sec - start.tv_sec) * 1000000000LL + now.tv_nsec - start.tv_nsec;
    if (spent > 30 * kMs) break;
  }
  return 4096;
}

TEST_F(PressureServiceTest, CpuCapSkipsPassesForRestOfWindow) {
  memward_reclaimer spec = {};
  spec.name = "slow";
  spec.count = ClaimsMuch;
  spec.reclaim = BurnsCpu;
  memward_reclaimer_id id = 0;
  ASSERT_EQ(memward_reclaimer_register(&spec, &id), MEMWARD_OK);
  const uint64_t capped = CountOf(DecisionKind::kCpuCapped);
  const int64_t window = kSyntheticEpochNs + 1000 * 1000 * kMs;

  // 1 % of a second is 10 ms: the first pass (30 ms) spends it all.
  ReclaimPassResult first = RunReclaimPass(kMiB, window, 1);
  EXPECT_EQ(first.asked, 1);
  EXPECT_FALSE(first.cpu_capped);
  ReclaimPassResult second = RunReclaimPass(kMiB, window + 500 * kMs, 1);
  EXPECT_TRUE(second.cpu_capped);
  EXPECT_EQ(second.asked, 0);
  EXPECT_EQ(CountOf(DecisionKind::kCpuCapped), capped + 1);
  // The next window starts with a fresh allowance.
  ReclaimPassResult third = RunReclaimPass(kMiB, window + 1001 * kMs, 1);
  EXPECT_EQ(third.asked, 1);
  EXPECT_EQ(memward_reclaimer_unregister(id), MEMWARD_OK);
}

TEST_F(PressureServiceTest, ReclaimNowFromOtherThread) {
  RecordingReclaimer reclaimer;
  reclaimer.Refill(8 * kMiB);
  memward_reclaimer_id id = Register(&reclaimer, "manual", 0);
  EXPECT_EQ(ReclaimNow(3 * kMiB), 3 * kMiB);
  EXPECT_EQ(reclaimer.TakeTargets(), std::vector<uint64_t>{3 * kMiB});
  EXPECT_EQ(ReclaimNow(100 * kMiB), 5 * kMiB);
  EXPECT_EQ(memward_reclaimer_unregister(id), MEMWARD_OK);
}

TEST_F(PressureServiceTest, RegistrationRejectsInvalidInput) {
  memward_reclaimer spec = {};
  memward_reclaimer_id id = 0;
  spec.count = ClaimsMuch;
  spec.reclaim = FreesNothing;
  EXPECT_EQ(memward_reclaimer_register(&spec, &id), MEMWARD_ERROR_INVALID);  // no name
  spec.name = "";
  EXPECT_EQ(memward_reclaimer_register(&spec, &id), MEMWARD_ERROR_INVALID);
  std::string long_name(64, 'x');
  spec.name = long_name.c_str();
  EXPECT_EQ(memward_reclaimer_register(&spec, &id), MEMWARD_ERROR_INVALID);
  spec.name = "ok";
  spec.reclaim = nullptr;
  EXPECT_EQ(memward_reclaimer_register(&spec, &id), MEMWARD_ERROR_INVALID);
  EXPECT_EQ(memward_reclaimer_register(nullptr, &id), MEMWARD_ERROR_INVALID);
  EXPECT_EQ(memward_pressure_get(nullptr), MEMWARD_ERROR_INVALID);
  EXPECT_EQ(memward_reclaimer_unregister(999999), MEMWARD_ERROR_NOT_FOUND);
}

// Unregister from another thread waits for a call in progress.
std::atomic<bool> g_in_call{false};
std::atomic<bool> g_call_finished{false};
uint64_t SlowReclaim(void*, uint64_t) {
  g_in_call.store(true);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  g_call_finished.store(true);
  return 1;
}

TEST_F(PressureServiceTest, UnregisterWaitsForCallInProgress) {
  memward_reclaimer spec = {};
  spec.name = "sleepy";
  spec.count = ClaimsMuch;
  spec.reclaim = SlowReclaim;
  memward_reclaimer_id id = 0;
  ASSERT_EQ(memward_reclaimer_register(&spec, &id), MEMWARD_OK);
  std::thread reclaim([] { ReclaimNow(kMiB); });
  while (!g_in_call.load()) std::this_thread::yield();
  EXPECT_EQ(memward_reclaimer_unregister(id), MEMWARD_OK);
  EXPECT_TRUE(g_call_finished.load());
  reclaim.join();
}

// A child forked while the warden runs and other threads allocate steps its
// own ladder on its own warden and calls its copy of the reclaimer.
TEST_F(PressureServiceTest, ForkedChildRunsLadder) {
  RecordingReclaimer reclaimer;
  reclaimer.Refill(500 * kMiB);
  memward_reclaimer_id id = Register(&reclaimer, "forked", 0);
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int i = 0; i < 2; i++) {
    workers.emplace_back([&stop] {
      while (!stop.load()) std::vector<std::string> strings(32, std::string(300, 'q'));
    });
  }
  for (int round = 0; round < 3; round++) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      reclaimer.TakeTargets();
      g_working_set.store(850 * kMiB);
      if (!EvaluatePressureNow()) _exit(2);
      if (CurrentPressureLevel() != PressureLevel::kSoft) _exit(3);
      if (reclaimer.TakeTargets() != std::vector<uint64_t>{100 * kMiB}) _exit(4);
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "child ended with status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "2: no tick, 3: wrong level, 4: wrong target";
  }
  stop.store(true);
  for (std::thread& worker : workers) worker.join();
  // The parent's ladder did not move.
  EXPECT_EQ(CurrentPressureLevel(), PressureLevel::kNormal);
  ASSERT_NO_FATAL_FAILURE(Step(0));
  EXPECT_EQ(memward_reclaimer_unregister(id), MEMWARD_OK);
}

TEST_F(PressureServiceTest, JsonViewsNameLevelAndDecisions) {
  ASSERT_NO_FATAL_FAILURE(Step(850));
  std::string pressure;
  WritePressureJson(&pressure);
  EXPECT_NE(pressure.find("\"level\":\"soft\""), std::string::npos) << pressure;
  EXPECT_NE(pressure.find("\"limit_bytes\":1048576000"), std::string::npos) << pressure;
  EXPECT_NE(pressure.find("\"thresholds_percent\""), std::string::npos) << pressure;
  std::string decisions;
  WriteDecisionsJson(&decisions);
  EXPECT_NE(decisions.find("\"kind\":\"level_change\""), std::string::npos) << decisions;
  EXPECT_NE(decisions.find("\"purge\":"), std::string::npos) << decisions;
  ASSERT_NO_FATAL_FAILURE(Step(0));
}

// Calls the registered handler for `method` and `path` as the admin server
// would, with `query` as the decoded query.
AdminResponse CallEndpoint(const char* method, const char* path,
                           std::vector<std::pair<std::string, std::string>> query = {}) {
  AdminResponse response;
  AdminEndpointMatch match = FindAdminEndpoint(method, path);
  EXPECT_NE(match.handler, nullptr) << method << " " << path << " is not registered";
  if (match.handler == nullptr) return response;
  AdminRequest request;
  request.method = method;
  request.path = path;
  request.query = std::move(query);
  match.handler(request, &response);
  return response;
}

TEST_F(PressureServiceTest, AdminEndpointsServeAndValidate) {
  RecordingReclaimer reclaimer;
  reclaimer.Refill(4 * kMiB);
  memward_reclaimer_id id = Register(&reclaimer, "endpoint", 0);

  AdminResponse pressure = CallEndpoint("GET", "/pressure");
  EXPECT_EQ(pressure.status, 200);
  EXPECT_NE(pressure.body.find("\"name\":\"endpoint\""), std::string::npos) << pressure.body;

  AdminResponse decisions = CallEndpoint("GET", "/decisions");
  EXPECT_EQ(decisions.status, 200);
  EXPECT_NE(decisions.body.find("\"counts\""), std::string::npos) << decisions.body;
  EXPECT_NE(decisions.body.find("\"shed_under_pressure\""), std::string::npos) << decisions.body;

  AdminResponse reclaim = CallEndpoint("POST", "/reclaim", {{"bytes", "1m"}});
  EXPECT_EQ(reclaim.status, 200);
  EXPECT_NE(reclaim.body.find("\"freed_bytes\":1048576"), std::string::npos) << reclaim.body;
  EXPECT_EQ(reclaimer.TakeTargets(), std::vector<uint64_t>{kMiB});

  for (const char* bad : {"", "abc", "-5", "1t", "65g", "12q"}) {
    SCOPED_TRACE(testing::Message() << "bytes=" << bad);
    EXPECT_EQ(CallEndpoint("POST", "/reclaim", {{"bytes", bad}}).status, 400);
  }
  EXPECT_EQ(CallEndpoint("POST", "/reclaim").status, 400);
  EXPECT_TRUE(reclaimer.TakeTargets().empty());
  EXPECT_EQ(memward_reclaimer_unregister(id), MEMWARD_OK);
}

}  // namespace
}  // namespace memward::accounting
