// memward's cached unwinder against libunwind. For real stacks through
// recursion, libstdc++, libc and a dlopen'ed library, in new threads and in
// a forked child, both return the same frames from the same point. Repeated
// captures hit the rule cache, and a frame with an unsupported rule falls
// back to libunwind once it is loaded.
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "accounting/cached_unwinder.h"
#include "accounting/cfi_program.h"
#include "accounting/frame_rule_cache.h"
#include "accounting/stack_bounds.h"
#include "accounting/stack_capture.h"
#include "accounting/stack_hash.h"

// Calls `callback(argument)` from a frame whose CFI contains a
// DW_CFA_val_expression, which the cached unwinder does not interpret.
extern "C" int memward_test_call_with_expression(int (*callback)(void*), void* argument);
asm(R"(
  .text
  .globl memward_test_call_with_expression
  .type memward_test_call_with_expression, @function
memward_test_call_with_expression:
  .cfi_startproc
  pushq %rbp
  .cfi_def_cfa_offset 16
  .cfi_offset %rbp, -16
  movq %rsp, %rbp
  .cfi_def_cfa_register %rbp
  .cfi_escape 0x16, 0x0c, 0x02, 0x76, 0x00
  movq %rdi, %rax
  movq %rsi, %rdi
  call *%rax
  popq %rbp
  .cfi_def_cfa %rsp, 8
  ret
  .cfi_endproc
  .size memward_test_call_with_expression, . - memward_test_call_with_expression
)");

// Calls `callback(argument)` with rbp set to `frame_pointer`, from a frame
// whose CFI defines the CFA from rbp. A walk that trusts that rbp reads
// wherever it points.
extern "C" int memward_test_call_with_bad_rbp(int (*callback)(void*), void* argument,
                                              uintptr_t frame_pointer);
asm(R"(
  .text
  .globl memward_test_call_with_bad_rbp
  .type memward_test_call_with_bad_rbp, @function
memward_test_call_with_bad_rbp:
  .cfi_startproc
  pushq %rbp
  .cfi_def_cfa_offset 16
  .cfi_offset %rbp, -16
  movq %rsp, %rbp
  .cfi_def_cfa_register %rbp
  movq %rdx, %rbp
  movq %rdi, %rax
  movq %rsi, %rdi
  call *%rax
  popq %rbp
  .cfi_def_cfa %rsp, 8
  ret
  .cfi_endproc
  .size memward_test_call_with_bad_rbp, . - memward_test_call_with_bad_rbp
)");

// A function whose CFI marks the return address undefined, as a thread's
// first frame does: a walk that reaches it stops there.
extern "C" void memward_test_outermost();
asm(R"(
  .text
  .globl memward_test_outermost
  .type memward_test_outermost, @function
memward_test_outermost:
  .cfi_startproc
  .cfi_undefined rip
  nop
  nop
  ret
  .cfi_endproc
  .size memward_test_outermost, . - memward_test_outermost
)");

namespace memward::testing {
namespace {

using accounting::Unwinder;

constexpr uint64_t kCacheBound = uint64_t{16} << 20;
constexpr uint32_t kMaxFrames = 64;

struct Capture {
  std::vector<uintptr_t> cached;
  std::vector<uintptr_t> libunwind;
};

// Inlined, so that the innermost frame kept is the call site in CaptureBoth.
[[gnu::always_inline]] inline std::vector<uintptr_t> CaptureWith(Unwinder unwinder,
                                                                 uint8_t captures) {
  uintptr_t frames[kMaxFrames];
  uint64_t hash = 0;
  uint32_t depth = accounting::CaptureStackWith(unwinder, frames, kMaxFrames, &captures, &hash);
  EXPECT_EQ(hash, accounting::HashStack(frames, depth));
  return std::vector<uintptr_t>(frames, frames + depth);
}

// Captures with both unwinders from this frame. Their innermost frames are
// this function's two call sites, so only the frames after them compare.
// `libunwind_captures` selects unw_step (below 4) or unw_backtrace.
[[gnu::noinline]] Capture CaptureBoth(uint8_t libunwind_captures = 4) {
  Capture capture;
  capture.cached = CaptureWith(Unwinder::kCached, 0);
  capture.libunwind = CaptureWith(Unwinder::kLibunwind, libunwind_captures);
  asm volatile("" ::: "memory");
  return capture;
}

std::vector<uintptr_t> CallersOf(const std::vector<uintptr_t>& frames) {
  if (frames.empty()) return frames;
  return std::vector<uintptr_t>(frames.begin() + 1, frames.end());
}

// Checks that both unwinders found the same callers, and more than `min`.
void ExpectSameCallers(const Capture& capture, size_t min) {
  ASSERT_FALSE(capture.cached.empty());
  ASSERT_FALSE(capture.libunwind.empty());
  EXPECT_EQ(CallersOf(capture.cached), CallersOf(capture.libunwind));
  EXPECT_GT(capture.cached.size(), min);
}

[[gnu::noinline]] int CaptureCachedInto(void* argument) {
  *static_cast<std::vector<uintptr_t>*>(argument) = CaptureWith(Unwinder::kCached, 0);
  asm volatile("" ::: "memory");
  return 0;
}

// Returns the name of the function that contains `return_address`.
std::string FunctionOf(uintptr_t return_address) {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(return_address - 1), &info) == 0) return "";
  return info.dli_sname != nullptr ? info.dli_sname : "";
}

// Runs first in this program, before any test loads libunwind.
class CachedUnwinderBeforeFallbackTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(accounting::LoadUnwinder(Unwinder::kCached, kCacheBound), Unwinder::kCached);
  }
};

// Until libunwind is loaded, a stack with an unsupported rule keeps the
// frames above that frame; once loaded, the same stack is captured whole.
TEST_F(CachedUnwinderBeforeFallbackTest, UnsupportedRuleTruncatesUntilLoaded) {
  // libunwind stays loaded once this test has loaded it, so a repeat
  // (--gtest_repeat) cannot see the stack truncated.
  static bool ran_in_this_process = false;
  if (ran_in_this_process) GTEST_SKIP() << "runs once per process: libunwind is loaded now";
  ran_in_this_process = true;
  ASSERT_FALSE(accounting::LibunwindNeeded());
  accounting::CachedUnwinderCounts before = accounting::ReadCachedUnwinderCounts();
  std::vector<uintptr_t> truncated;
  memward_test_call_with_expression(CaptureCachedInto, &truncated);
  accounting::CachedUnwinderCounts after = accounting::ReadCachedUnwinderCounts();
  EXPECT_EQ(after.fallbacks, before.fallbacks + 1);
  EXPECT_EQ(after.truncated_stacks, before.truncated_stacks + 1);
  EXPECT_TRUE(accounting::LibunwindNeeded());
  ASSERT_FALSE(truncated.empty());
  EXPECT_EQ(FunctionOf(truncated.back()), "memward_test_call_with_expression");

  ASSERT_TRUE(accounting::LoadFallbackLibunwind());
  EXPECT_FALSE(accounting::LibunwindNeeded());
  std::vector<uintptr_t> whole;
  memward_test_call_with_expression(CaptureCachedInto, &whole);
  accounting::CachedUnwinderCounts loaded = accounting::ReadCachedUnwinderCounts();
  EXPECT_EQ(loaded.fallbacks, after.fallbacks + 1);
  EXPECT_EQ(loaded.truncated_stacks, after.truncated_stacks);
  ASSERT_GT(whole.size(), truncated.size());
  EXPECT_EQ(FunctionOf(whole[truncated.size() - 1]), "memward_test_call_with_expression");
}

class CachedUnwinderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(accounting::LoadUnwinder(Unwinder::kCached, kCacheBound), Unwinder::kCached);
    ASSERT_TRUE(accounting::LoadFallbackLibunwind());
  }
};

// Three functions that call each other in turn, so the stack mixes their
// frames, which differ in size and saved registers.
[[gnu::noinline]] Capture RecurseA(int depth);
[[gnu::noinline]] Capture RecurseB(int depth, int unused) {
  volatile char padding[96] = {};
  padding[depth % 96] = static_cast<char>(unused);
  asm volatile("" : : "r"(padding) : "memory");
  Capture capture = RecurseA(depth - 1);
  asm volatile("" ::: "memory");
  return capture;
}
[[gnu::noinline]] Capture RecurseC(int depth) {
  Capture capture = RecurseB(depth - 1, depth);
  asm volatile("" ::: "memory");
  return capture;
}
[[gnu::noinline]] Capture RecurseA(int depth) {
  if (depth <= 0) return CaptureBoth();
  Capture capture = RecurseC(depth - 1);
  asm volatile("" ::: "memory");
  return capture;
}

TEST_F(CachedUnwinderTest, RecursionMatchesLibunwind) {
  for (int depth = 0; depth < 50; depth += 7) {
    SCOPED_TRACE(depth);
    ExpectSameCallers(RecurseA(depth), static_cast<size_t>(depth / 3));
  }
}

// Frames past the 64 kept are cut the same way by both.
TEST_F(CachedUnwinderTest, DeepStackCutAtMaxFrames) {
  Capture capture = RecurseA(90);
  EXPECT_EQ(capture.cached.size(), kMaxFrames);
  EXPECT_EQ(CallersOf(capture.cached), CallersOf(capture.libunwind));
}

TEST_F(CachedUnwinderTest, StdSortComparatorMatchesLibunwind) {
  std::vector<int> values = {5, 3, 9, 1, 7, 2, 8, 6, 4, 0, 11, 10, 13, 12, 15, 14, 17, 16};
  Capture capture;
  bool captured = false;
  std::sort(values.begin(), values.end(), [&](int left, int right) {
    if (!captured && left + right == 20) {
      capture = CaptureBoth();
      captured = true;
    }
    return left < right;
  });
  ASSERT_TRUE(captured);
  ExpectSameCallers(capture, 3);
}

int CaptureFromQsort(const void* left, const void* right) {
  static thread_local Capture* target = nullptr;
  if (left == nullptr) {
    target = static_cast<Capture*>(const_cast<void*>(right));
    return 0;
  }
  if (target != nullptr && target->cached.empty()) *target = CaptureBoth();
  return *static_cast<const int*>(left) - *static_cast<const int*>(right);
}

TEST_F(CachedUnwinderTest, QsortCallbackInLibcMatchesLibunwind) {
  Capture capture;
  CaptureFromQsort(nullptr, &capture);
  int values[] = {4, 2, 7, 1, 9, 3};
  qsort(values, 6, sizeof(int), CaptureFromQsort);
  CaptureFromQsort(nullptr, nullptr);
  ExpectSameCallers(capture, 3);
  // Frame 0 is in CaptureBoth, frame 1 in CaptureFromQsort, frame 2 in qsort.
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(capture.cached[2] - 1), &info), 0);
  EXPECT_NE(std::string(info.dli_fname).find("libc.so"), std::string::npos) << info.dli_fname;
}

int CaptureIntoArgument(void* argument) {
  *static_cast<Capture*>(argument) = CaptureBoth();
  return 0;
}

// Loads the helper library, captures through five of its frames, and
// unloads it. Returns false, with a message, when the library or its
// function is not found.
bool CaptureThroughHelper(Capture& capture) {
  void* library = dlopen(MEMWARD_CACHED_UNWINDER_HELPER_PATH, RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    ADD_FAILURE() << "dlopen failed: " << dlerror();
    return false;
  }
  auto call_through = reinterpret_cast<int (*)(int (*)(void*), void*, int)>(
      dlsym(library, "memward_test_call_through"));
  if (call_through == nullptr) {
    ADD_FAILURE() << "memward_test_call_through not found in the helper library";
    dlclose(library);
    return false;
  }
  call_through(CaptureIntoArgument, &capture, 5);
  EXPECT_EQ(dlclose(library), 0) << dlerror();
  return true;
}

using LayoutCall = int (*)(int (*)(void*), void*, uintptr_t);

// Captures with both unwinders through `call`, one of the layout libraries'
// functions, from one call site, so that the frames above it are the same
// in every capture.
[[gnu::noinline]] void CaptureThroughLayout(LayoutCall call, Capture& capture) {
  const uintptr_t decoy = reinterpret_cast<uintptr_t>(&memward_test_outermost) + 1;
  call(CaptureIntoArgument, &capture, decoy);
  asm volatile("" ::: "memory");
}

// A library loaded at the address of one unloaded before, with another
// frame rule at the same return address, and no rule miss in between. The
// old library's rule, still cached, would read the new frame's return
// address from where the new library keeps a decoy, which stops the walk.
// The loader check at the start of a capture empties the rule table first.
// libunwind (1.6.2) keeps the old rule too and stops at the decoy, so the
// stack is checked against the one through the first library instead.
TEST_F(CachedUnwinderTest, LibraryAtUnloadedAddressGetsItsOwnRules) {
  void* first = dlopen(MEMWARD_UNWIND_LAYOUT_A_PATH, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(first, nullptr) << dlerror();
  auto first_call = reinterpret_cast<LayoutCall>(dlsym(first, "memward_test_layout_call"));
  ASSERT_NE(first_call, nullptr);
  // The second capture caches the frames that only a walk without misses
  // passes, so that the capture through the second library meets none
  // before that library's frame.
  Capture through_first;
  for (int round = 0; round < 2; ++round) CaptureThroughLayout(first_call, through_first);
  ExpectSameCallers(through_first, 4);
  ASSERT_EQ(dlclose(first), 0) << dlerror();

  void* second = dlopen(MEMWARD_UNWIND_LAYOUT_B_PATH, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(second, nullptr) << dlerror();
  auto second_call = reinterpret_cast<LayoutCall>(dlsym(second, "memward_test_layout_call"));
  ASSERT_NE(second_call, nullptr);
  if (second_call != first_call) {
    dlclose(second);
    GTEST_SKIP() << "the loader placed the second library elsewhere";
  }
  std::this_thread::sleep_for(std::chrono::nanoseconds(2 * accounting::kLoaderCheckIntervalNs));
  Capture through_second;
  CaptureThroughLayout(second_call, through_second);
  const uintptr_t decoy = reinterpret_cast<uintptr_t>(&memward_test_outermost) + 1;
  EXPECT_EQ(std::count(through_second.cached.begin(), through_second.cached.end(), decoy), 0)
      << "the walk used the unloaded library's rule";
  // Only the frame in this test's body differs: each capture has its own
  // call site here.
  ASSERT_EQ(through_second.cached.size(), through_first.cached.size());
  for (size_t i = 0; i < through_first.cached.size(); ++i) {
    if (FunctionOf(through_first.cached[i]).empty()) continue;
    EXPECT_EQ(through_second.cached[i], through_first.cached[i]) << "frame " << i;
  }
  EXPECT_EQ(dlclose(second), 0) << dlerror();
}

TEST_F(CachedUnwinderTest, DlopenedLibraryMatchesLibunwind) {
  Capture capture;
  ASSERT_TRUE(CaptureThroughHelper(capture));
  ExpectSameCallers(capture, 6);
}

// After dlclose unloads the helper, the next miss empties the rule table,
// since another object may be loaded at the helper's addresses. The frames
// that an earlier capture cached then miss again.
TEST_F(CachedUnwinderTest, UnloadEmptiesRuleTable) {
  CaptureBoth();  // caches the frames from this test's body up
  Capture through_library;
  ASSERT_TRUE(CaptureThroughHelper(through_library));

  // Only this call site is new: without the unload, it would be the one miss.
  accounting::CachedUnwinderCounts before = accounting::ReadCachedUnwinderCounts();
  Capture after_unload = CaptureBoth();
  accounting::CachedUnwinderCounts after = accounting::ReadCachedUnwinderCounts();
  EXPECT_GT(after.rule_misses - before.rule_misses, 2u);
  ExpectSameCallers(after_unload, 2);
}

// Caches `count` made-up addresses `stride` bytes apart, as walks do: each
// round looks every address up and inserts the ones it misses. Returns 0
// when the last round found every address with its own rule, 1 when rounds
// ran out first and 2 when an address found another's rule. Runs in a
// forked child, so that the other tests do not share its tables.
int CacheAddressesInChild(uint64_t count, uint64_t stride) {
  const uintptr_t base = uintptr_t{0x7e0000000000};
  for (int round = 0; round < 8; ++round) {
    uint64_t found = 0;
    for (uint64_t i = 0; i < count; ++i) {
      accounting::FrameRuleTable table = accounting::CurrentFrameRuleTable();
      uint64_t rule = accounting::FindFrameRule(table, base + i * stride);
      if (rule == 0x100 + i) {
        ++found;
      } else if (rule != 0) {
        return 2;
      } else {
        accounting::InsertFrameRule(base + i * stride, 0x100 + i);
      }
    }
    if (found == count) return 0;
  }
  return 1;
}

// Returns the exit status of CacheAddressesInChild(count, stride), run in a
// child, or -1 when the child did not exit.
int CacheAddressesInForkedChild(uint64_t count, uint64_t stride) {
  fflush(nullptr);
  pid_t child = fork();
  if (child < 0) return -1;
  if (child == 0) _exit(CacheAddressesInChild(count, stride));
  int status = 0;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// The first table has 256 home entries, so that a small program's walks
// touch two of its pages. Many addresses, or call sites aligned alike that
// share their low bits, move the cache to larger tables without losing a
// rule. Exit status 1: an address still missed after 8 rounds; 2: an
// address found another's rule.
TEST_F(CachedUnwinderTest, RuleTableGrowsForManyOrAlignedAddresses) {
  CaptureBoth();
  EXPECT_EQ(CacheAddressesInForkedChild(3000, 1), 0) << "3,000 consecutive addresses";
  EXPECT_EQ(CacheAddressesInForkedChild(100, 32), 0) << "100 addresses 32 bytes apart";
  EXPECT_EQ(CacheAddressesInForkedChild(500, 32), 0) << "500 addresses 32 bytes apart";
  EXPECT_EQ(CacheAddressesInForkedChild(100, 64), 0) << "100 addresses 64 bytes apart";
  EXPECT_EQ(CacheAddressesInForkedChild(1000, 16), 0) << "1,000 addresses 16 bytes apart";
}

// A few addresses stay in the first table.
TEST_F(CachedUnwinderTest, FewAddressesKeepFirstTable) {
  fflush(nullptr);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    accounting::FrameRuleCacheCounts before = accounting::ReadFrameRuleCacheCounts();
    if (before.home_entries != accounting::kFrameRuleFirstHomeEntries) _exit(3);
    int status = CacheAddressesInChild(20, 8);
    accounting::FrameRuleCacheCounts after = accounting::ReadFrameRuleCacheCounts();
    if (status == 0 && after.home_entries != accounting::kFrameRuleFirstHomeEntries) _exit(4);
    _exit(status);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: the table had grown before this test, 4: 20 "
                                       "addresses moved the cache to a larger table";
}

// Captures with `unwinder` from one call site, so that every frame's
// return address is the same in each call from one place.
[[gnu::noinline]] std::vector<uintptr_t> CaptureFromOneSite(Unwinder unwinder) {
  std::vector<uintptr_t> frames = CaptureWith(unwinder, 4);
  asm volatile("" ::: "memory");
  return frames;
}

// While a fork is pending, a cached walk that meets only cached rules takes
// no lock and still captures. Captures that may take a lock (libunwind, or
// a walk that meets a new return address) keep the sample without frames.
TEST_F(CachedUnwinderTest, ForkPauseKeepsFullyCachedWalks) {
  std::vector<uintptr_t> cached[2];
  // Both rounds must call from one place, so the loop must not be unrolled:
  // its trip count is read from a volatile.
  volatile int rounds = 2;
  for (int round = 0; round < rounds; round++) {
    if (round == 1) accounting::PauseCapturesForFork();
    cached[round] = CaptureFromOneSite(Unwinder::kCached);
  }
  std::vector<uintptr_t> libunwind = CaptureFromOneSite(Unwinder::kLibunwind);
  std::vector<uintptr_t> new_site = CaptureWith(Unwinder::kCached, 4);
  accounting::ResumeCapturesAfterFork();

  ASSERT_GT(cached[0].size(), 3u);
  EXPECT_EQ(cached[1], cached[0]);
  EXPECT_TRUE(libunwind.empty());
  EXPECT_TRUE(new_site.empty());
  EXPECT_FALSE(CaptureWith(Unwinder::kLibunwind, 4).empty());
}

TEST_F(CachedUnwinderTest, RepeatedCapturesHitCache) {
  accounting::CachedUnwinderCounts before;
  // Two captures fill the table: when an earlier test unloaded a library,
  // the first one's first miss empties the table after some of its frames
  // were read from it.
  for (int i = 0; i < 12; ++i) {
    RecurseA(20);
    if (i == 1) before = accounting::ReadCachedUnwinderCounts();
  }
  accounting::CachedUnwinderCounts after = accounting::ReadCachedUnwinderCounts();
  EXPECT_GT(before.rule_entries, 5u);
  EXPECT_EQ(after.rule_misses, before.rule_misses);
  EXPECT_EQ(after.rule_entries, before.rule_entries);
  EXPECT_EQ(after.fallbacks, before.fallbacks);
}

TEST_F(CachedUnwinderTest, UnsupportedRuleFallsBack) {
  Capture capture;
  accounting::CachedUnwinderCounts before = accounting::ReadCachedUnwinderCounts();
  memward_test_call_with_expression(CaptureIntoArgument, &capture);
  accounting::CachedUnwinderCounts after = accounting::ReadCachedUnwinderCounts();
  EXPECT_EQ(after.fallbacks, before.fallbacks + 1);
  ExpectSameCallers(capture, 3);
  // The fallback's frames include the frame with the unsupported rule, after
  // those of CaptureBoth and CaptureIntoArgument.
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(capture.cached[2] - 1), &info), 0);
  ASSERT_NE(info.dli_sname, nullptr);
  EXPECT_STREQ(info.dli_sname, "memward_test_call_with_expression");
}

int CaptureCachedOnly(void* argument) {
  *static_cast<std::vector<uintptr_t>*>(argument) = CaptureWith(Unwinder::kCached, 0);
  return 0;
}

// A frame whose CFA comes from a wrong rbp stops the walk there, for an rbp
// outside the stack (small, heap, static data): no read past the stack and
// no fallback.
TEST_F(CachedUnwinderTest, WrongFramePointerStopsWalk) {
  static uintptr_t static_word = 0;
  std::vector<uintptr_t> heap_words(8, 0);
  const uintptr_t bad_values[] = {1, reinterpret_cast<uintptr_t>(heap_words.data()),
                                  reinterpret_cast<uintptr_t>(&static_word),
                                  ~uintptr_t{0} - 8};
  for (uintptr_t bad : bad_values) {
    SCOPED_TRACE(bad);
    std::vector<uintptr_t> frames;
    accounting::CachedUnwinderCounts before = accounting::ReadCachedUnwinderCounts();
    memward_test_call_with_bad_rbp(CaptureCachedOnly, &frames, bad);
    accounting::CachedUnwinderCounts after = accounting::ReadCachedUnwinderCounts();
    EXPECT_EQ(after.fallbacks, before.fallbacks);
    ASSERT_GE(frames.size(), 2u);
    Dl_info info{};
    ASSERT_NE(dladdr(reinterpret_cast<void*>(frames.back() - 1), &info), 0);
    ASSERT_NE(info.dli_sname, nullptr);
    EXPECT_STREQ(info.dli_sname, "memward_test_call_with_bad_rbp");
  }
}

Capture g_signal_capture;

void CaptureInSignalHandler(int) { g_signal_capture = CaptureBoth(); }

// The signal trampoline's CIE is a signal frame ('S'), so the capture
// falls back to libunwind, which steps through it to the interrupted code.
TEST_F(CachedUnwinderTest, SignalFrameFallsBack) {
  struct sigaction action = {};
  action.sa_handler = CaptureInSignalHandler;
  struct sigaction previous = {};
  ASSERT_EQ(sigaction(SIGUSR1, &action, &previous), 0);
  accounting::CachedUnwinderCounts before = accounting::ReadCachedUnwinderCounts();
  raise(SIGUSR1);
  accounting::CachedUnwinderCounts after = accounting::ReadCachedUnwinderCounts();
  sigaction(SIGUSR1, &previous, nullptr);
  EXPECT_EQ(after.fallbacks, before.fallbacks + 1);
  ExpectSameCallers(g_signal_capture, 3);
}

TEST_F(CachedUnwinderTest, ThreadFirstCaptureMatchesLibunwind) {
  for (int round = 0; round < 4; ++round) {
    Capture capture;
    // The first capture of the thread: libunwind steps with unw_step.
    std::thread worker([&] { capture = CaptureBoth(/*libunwind_captures=*/0); });
    worker.join();
    ExpectSameCallers(capture, 2);
  }
}

TEST_F(CachedUnwinderTest, ConcurrentThreadsMatchLibunwind) {
  constexpr int kThreads = 4;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&mismatches, t] {
      for (int i = 0; i < 100; ++i) {
        Capture capture = RecurseA(t * 5 + i % 11);
        if (CallersOf(capture.cached) != CallersOf(capture.libunwind)) mismatches[t]++;
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

TEST_F(CachedUnwinderTest, ForkedChildMatchesLibunwind) {
  RecurseA(10);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Capture capture = RecurseA(13);
    bool same = !capture.cached.empty() &&
                CallersOf(capture.cached) == CallersOf(capture.libunwind);
    _exit(same ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(StackBounds, ContainLocalVariable) {
  int local = 0;
  accounting::StackBounds bounds;
  ASSERT_TRUE(accounting::FindStackBounds(reinterpret_cast<uintptr_t>(&local), bounds));
  EXPECT_LE(bounds.low, reinterpret_cast<uintptr_t>(&local));
  EXPECT_GT(bounds.high, reinterpret_cast<uintptr_t>(&local));
  std::thread worker([] {
    int other = 0;
    accounting::StackBounds thread_bounds;
    ASSERT_TRUE(accounting::FindStackBounds(reinterpret_cast<uintptr_t>(&other), thread_bounds));
    EXPECT_LE(thread_bounds.low, reinterpret_cast<uintptr_t>(&other));
    EXPECT_GT(thread_bounds.high, reinterpret_cast<uintptr_t>(&other));
  });
  worker.join();
}

// Runs `instructions` as an FDE after gcc's usual CIE (CFA = rsp + 8, the
// return address at CFA - 8) for a function at 0x1000.
accounting::FrameRule RunFde(const std::vector<uint8_t>& instructions, uintptr_t address) {
  static const uint8_t kCie[] = {0x0c, 0x07, 0x08, 0x90, 0x01};
  accounting::CfiProgram program;
  program.cie_begin = kCie;
  program.cie_end = kCie + sizeof(kCie);
  program.fde_begin = instructions.data();
  program.fde_end = instructions.data() + instructions.size();
  program.function_start = 0x1000;
  return accounting::RunCfiProgram(program, address);
}

// push %rbp; mov %rsp,%rbp: the rows gcc emits for a frame-pointer prologue.
const std::vector<uint8_t> kFramePointerPrologue = {
    0x41, 0x0e, 0x10,  // advance 1; def_cfa_offset 16
    0x86, 0x02,        // offset rbp at CFA - 16
    0x43, 0x0d, 0x06,  // advance 3; def_cfa_register rbp
};

TEST(CfiProgram, RowsOfFramePointerPrologue) {
  accounting::FrameRule entry = RunFde(kFramePointerPrologue, 0x1000);
  EXPECT_EQ(entry.kind, accounting::FrameRuleKind::kCfaFromRsp);
  EXPECT_EQ(entry.cfa_offset, 8u);
  EXPECT_EQ(entry.rbp_offset, 0u);
  accounting::FrameRule pushed = RunFde(kFramePointerPrologue, 0x1002);
  EXPECT_EQ(pushed.kind, accounting::FrameRuleKind::kCfaFromRsp);
  EXPECT_EQ(pushed.cfa_offset, 16u);
  EXPECT_EQ(pushed.rbp_offset, 16u);
  accounting::FrameRule body = RunFde(kFramePointerPrologue, 0x1010);
  EXPECT_EQ(body.kind, accounting::FrameRuleKind::kCfaFromRbp);
  EXPECT_EQ(body.cfa_offset, 16u);
  EXPECT_EQ(body.rbp_offset, 16u);
}

TEST(CfiProgram, RememberAndRestoreState) {
  std::vector<uint8_t> program = kFramePointerPrologue;
  // advance 8; remember; def_cfa rsp+8; restore rbp; advance 1; restore_state
  program.insert(program.end(), {0x48, 0x0a, 0x0c, 0x07, 0x08, 0xc6, 0x41, 0x0b});
  accounting::FrameRule epilogue = RunFde(program, 0x100c);
  EXPECT_EQ(epilogue.kind, accounting::FrameRuleKind::kCfaFromRsp);
  EXPECT_EQ(epilogue.cfa_offset, 8u);
  EXPECT_EQ(epilogue.rbp_offset, 0u);
  accounting::FrameRule after = RunFde(program, 0x100d);
  EXPECT_EQ(after.kind, accounting::FrameRuleKind::kCfaFromRbp);
  EXPECT_EQ(after.rbp_offset, 16u);
}

TEST(CfiProgram, UnsupportedRulesNotCacheable) {
  const std::vector<std::vector<uint8_t>> programs = {
      {0x0f, 0x02, 0x77, 0x08},        // def_cfa_expression
      {0x16, 0x0c, 0x02, 0x77, 0x00},  // val_expression r12
      {0x0c, 0x03, 0x10},              // def_cfa rbx+16
      {0x09, 0x06, 0x03},              // register rbp in rbx
      {0x2f, 0x06, 0x02},              // GNU_negative_offset_extended
      {0x3c},                          // unknown opcode
      {0x0e},                          // truncated def_cfa_offset
  };
  for (const std::vector<uint8_t>& program : programs) {
    SCOPED_TRACE(static_cast<int>(program[0]));
    EXPECT_EQ(RunFde(program, 0x1000).kind, accounting::FrameRuleKind::kNotCacheable);
  }
}

TEST(CfiProgram, UndefinedReturnAddressIsOutermost) {
  EXPECT_EQ(RunFde({0x07, 0x10}, 0x1000).kind, accounting::FrameRuleKind::kOutermost);
}

TEST(CfiProgram, ArgsSizeAndNopIgnored) {
  accounting::FrameRule rule = RunFde({0x2e, 0x10, 0x00, 0x0e, 0x20}, 0x1000);
  EXPECT_EQ(rule.kind, accounting::FrameRuleKind::kCfaFromRsp);
  EXPECT_EQ(rule.cfa_offset, 32u);
}

}  // namespace
}  // namespace memward::testing
