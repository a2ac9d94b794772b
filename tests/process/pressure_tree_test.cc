// The pressure ladder fed by the real cgroup monitor from a prepared
// cgroup tree (v2 and v1 layouts) whose usage file the test rewrites step
// by step: the levels, the reclaimer targets, the hysteresis on the way
// down, the purges and the admission results.
//
// The monitor reads the tree under the cgroup_root setting, which is read
// at start-up, so each layout runs in a fresh process: the outer test
// prepares the tree and starts this binary again with MEMWARD_CONF naming
// it and a filter that selects the inner test.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../unit/cgroup_tree.h"
#include "accounting/decision_log.h"
#include "accounting/pressure_service.h"
#include "accounting/pressure_state.h"
#include "memward/memward.h"

namespace memward::accounting {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kLimit = 1000 * kMiB;
constexpr char kRootVariable[] = "MEMWARD_TEST_TREE_ROOT";
constexpr char kLayoutVariable[] = "MEMWARD_TEST_TREE_LAYOUT";

// The memory cgroup's directory and file names for one layout.
struct Layout {
  const char* name;
  const char* cgroup_line;
  const char* mountinfo_line;
  const char* dir;
  const char* limit_file;
  const char* usage_file;
  const char* stat_key;
};

const Layout kLayouts[] = {
    {"v2", "0::/app\n", "30 23 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n",
     "sys/fs/cgroup/app", "memory.max", "memory.current", "inactive_file"},
    {"v1", "4:memory:/app\n0::/\n",
     "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n",
     "sys/fs/cgroup/memory/app", "memory.limit_in_bytes", "memory.usage_in_bytes",
     "total_inactive_file"},
};

const Layout& LayoutNamed(const std::string& name) {
  for (const Layout& layout : kLayouts) {
    if (name == layout.name) return layout;
  }
  return kLayouts[0];
}

void PrepareTree(const testing::CgroupTree& tree, const Layout& layout) {
  tree.Write("proc/self/cgroup", layout.cgroup_line);
  tree.Write("proc/self/mountinfo", layout.mountinfo_line);
  tree.WriteMemTotal(64ULL << 30);
  const std::string dir = layout.dir;
  tree.Write(dir + "/" + layout.limit_file, std::to_string(kLimit) + "\n");
  tree.Write(dir + "/" + layout.usage_file, "0\n");
  tree.Write(dir + "/memory.stat", std::string(layout.stat_key) + " 0\n");
  tree.Write(dir + "/memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
}

// Runs this binary's inner test for `layout` in a new process.
void RunInner(const Layout& layout) {
  testing::CgroupTree tree;
  ASSERT_FALSE(tree.root().empty());
  PrepareTree(tree, layout);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::string conf =
        "pressure_interval=60s,pressure_forecast=false,cgroup_root=" + tree.root();
    setenv("MEMWARD_CONF", conf.c_str(), 1);
    setenv(kRootVariable, tree.root().c_str(), 1);
    setenv(kLayoutVariable, layout.name, 1);
    char self[4096];
    const ssize_t length = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (length <= 0) _exit(90);
    self[length] = '\0';
    execl(self, self, "--gtest_filter=PressureTreeInner.*", static_cast<char*>(nullptr));
    _exit(91);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the inner test crashed (status " << status << ")";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the inner test failed; its output is above";
}

TEST(PressureTreeTest, V2Layout) { RunInner(kLayouts[0]); }
TEST(PressureTreeTest, V1Layout) { RunInner(kLayouts[1]); }

// A reclaimer that records each target and frees all of it.
struct Recorder {
  std::mutex mutex;
  std::vector<uint64_t> targets;

  static uint64_t Count(void*) { return 10000 * kMiB; }
  static uint64_t Reclaim(void* context, uint64_t target) {
    auto* self = static_cast<Recorder*>(context);
    std::lock_guard<std::mutex> lock(self->mutex);
    self->targets.push_back(target);
    return target;
  }
  std::vector<uint64_t> Take() {
    std::lock_guard<std::mutex> lock(mutex);
    std::vector<uint64_t> taken;
    taken.swap(targets);
    return taken;
  }
};

class PressureTreeInner : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* root = getenv(kRootVariable);
    const char* layout = getenv(kLayoutVariable);
    if (root == nullptr || layout == nullptr) {
      GTEST_SKIP() << "runs only inside PressureTreeTest, which prepares the tree";
    }
    root_ = root;
    layout_ = &LayoutNamed(layout);
  }

  // Rewrites the usage file and the inactive file pages, then runs a tick.
  void Step(uint64_t usage_mib, uint64_t inactive_mib = 0) {
    const std::string dir = root_ + "/" + layout_->dir + "/";
    WriteText(dir + layout_->usage_file, std::to_string(usage_mib * kMiB) + "\n");
    WriteText(dir + "memory.stat",
              std::string(layout_->stat_key) + " " + std::to_string(inactive_mib * kMiB) + "\n");
    ASSERT_TRUE(EvaluatePressureNow());
  }

  static void WriteText(const std::string& path, const std::string& text) {
    FILE* file = fopen(path.c_str(), "w");
    ASSERT_NE(file, nullptr) << path;
    fputs(text.c_str(), file);
    fclose(file);
  }

  std::string root_;
  const Layout* layout_ = nullptr;
};

memward_admission AdmitAnswer(memward_tenant_id tenant, memward_admission_reason* reason) {
  memward_admission answer = MEMWARD_ADMIT;
  EXPECT_EQ(memward_admit(tenant, 0, &answer, reason), MEMWARD_OK);
  return answer;
}

TEST_F(PressureTreeInner, StepsThroughLevels) {
  SCOPED_TRACE(layout_->name);
  Recorder recorder;
  memward_reclaimer spec = {};
  spec.name = "recorder";
  spec.context = &recorder;
  spec.count = Recorder::Count;
  spec.reclaim = Recorder::Reclaim;
  memward_reclaimer_id id = 0;
  ASSERT_EQ(memward_reclaimer_register(&spec, &id), MEMWARD_OK);

  // "greedy" has 40 MiB live against a 20 MiB soft limit.
  memward_tenant_options options;
  memward_tenant_options_init(&options);
  options.soft_limit = 20 * kMiB;
  memward_tenant_id greedy = 0;
  ASSERT_EQ(memward_tenant_register("greedy", &options, &greedy), MEMWARD_OK);
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(greedy, &saved), MEMWARD_OK);
  std::vector<void*> blocks;
  for (int i = 0; i < 40; i++) blocks.push_back(malloc(kMiB));
  ASSERT_EQ(memward_thread_flush(), MEMWARD_OK);
  ASSERT_EQ(memward_scope_exit(&saved), MEMWARD_OK);

  const uint64_t purges_before = ReadDecisionCounts().by_kind[static_cast<int>(DecisionKind::kPurge)];
  struct Case {
    uint64_t usage_mib;
    uint64_t inactive_mib;
    PressureLevel level;
    uint64_t target_mib;  // expected reclaim target, 0 for no call
    memward_admission greedy_answer;
    memward_admission_reason greedy_reason;
  };
  const Case cases[] = {
      // Rising. 900 MiB of usage with 200 MiB inactive file pages is a 700
      // MiB working set: normal.
      {500, 0, PressureLevel::kNormal, 0, MEMWARD_SHED, MEMWARD_REASON_SOFT_LIMIT},
      {900, 200, PressureLevel::kNormal, 0, MEMWARD_SHED, MEMWARD_REASON_SOFT_LIMIT},
      {810, 0, PressureLevel::kSoft, 60, MEMWARD_SHED, MEMWARD_REASON_SOFT_LIMIT},
      {905, 0, PressureLevel::kHigh, 155, MEMWARD_SHED, MEMWARD_REASON_PRESSURE},
      {970, 0, PressureLevel::kCritical, 220, MEMWARD_REJECT, MEMWARD_REASON_PRESSURE},
      // Falling: each level stays until 5 points under its threshold.
      {910, 0, PressureLevel::kCritical, 160, MEMWARD_REJECT, MEMWARD_REASON_PRESSURE},
      {890, 0, PressureLevel::kHigh, 140, MEMWARD_SHED, MEMWARD_REASON_PRESSURE},
      {860, 0, PressureLevel::kHigh, 110, MEMWARD_SHED, MEMWARD_REASON_PRESSURE},
      {840, 0, PressureLevel::kSoft, 90, MEMWARD_SHED, MEMWARD_REASON_SOFT_LIMIT},
      {760, 0, PressureLevel::kSoft, 10, MEMWARD_SHED, MEMWARD_REASON_SOFT_LIMIT},
      {740, 0, PressureLevel::kNormal, 0, MEMWARD_SHED, MEMWARD_REASON_SOFT_LIMIT},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "usage " << c.usage_mib << " MiB, inactive "
                                    << c.inactive_mib << " MiB");
    ASSERT_NO_FATAL_FAILURE(Step(c.usage_mib, c.inactive_mib));
    EXPECT_EQ(CurrentPressureLevel(), c.level);
    const std::vector<uint64_t> targets = recorder.Take();
    if (c.target_mib == 0) {
      EXPECT_TRUE(targets.empty());
    } else {
      EXPECT_EQ(targets, std::vector<uint64_t>{c.target_mib * kMiB});
    }
    memward_admission_reason reason = MEMWARD_REASON_NONE;
    EXPECT_EQ(AdmitAnswer(greedy, &reason), c.greedy_answer);
    EXPECT_EQ(reason, c.greedy_reason);
  }
  // Three rises, each with a purge on the rise and one after its reclaim,
  // plus one purge after each other reclaim: at least one per rise.
  const uint64_t purges = ReadDecisionCounts().by_kind[static_cast<int>(DecisionKind::kPurge)];
  EXPECT_GE(purges - purges_before, 3u);

  EXPECT_EQ(memward_reclaimer_unregister(id), MEMWARD_OK);
  for (void* block : blocks) free(block);
}

}  // namespace
}  // namespace memward::accounting
