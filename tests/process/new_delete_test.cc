// Every replaceable operator new and operator delete, as a program built
// with -fsized-deallocation -faligned-new calls them. Results must be
// aligned as [basic.stc.dynamic.allocation] requires, as large as requested
// and really freed. Failures must follow [new.delete]: the throwing forms
// run the new-handler loop and throw std::bad_alloc, and the nothrow forms
// return nullptr.
#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "process_test_support.h"

namespace memward_test {
namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * kKiB;
constexpr size_t kDefaultNewAlignment = __STDCPP_DEFAULT_NEW_ALIGNMENT__;

// Keeps the compiler from removing a new/delete pair whose result is not
// otherwise used, which GCC may do for replaceable allocation functions.
void Escape(const void* pointer) { asm volatile("" : : "g"(pointer) : "memory"); }

// One replaceable allocation function, called through a common signature.
// The alignment argument is ignored by the forms that take none.
struct AllocationFunction {
  const char* id;
  bool nothrow;
  bool aligned;
  void* (*call)(size_t size, std::align_val_t alignment);
};

// One replaceable deallocation function, called through a common
// signature. Size and alignment are ignored by the forms that take none.
struct DeallocationFunction {
  const char* id;
  bool aligned;
  void (*call)(void* pointer, size_t size, std::align_val_t alignment);
};

const AllocationFunction kNew{"new", false, false,
                              [](size_t size, std::align_val_t) { return ::operator new(size); }};
const AllocationFunction kNewArray{
    "new_array", false, false, [](size_t size, std::align_val_t) { return ::operator new[](size); }};
const AllocationFunction kNothrowNew{"nothrow_new", true, false, [](size_t size, std::align_val_t) {
                                       return ::operator new(size, std::nothrow);
                                     }};
const AllocationFunction kNothrowNewArray{
    "nothrow_new_array", true, false,
    [](size_t size, std::align_val_t) { return ::operator new[](size, std::nothrow); }};
const AllocationFunction kAlignedNew{
    "aligned_new", false, true,
    [](size_t size, std::align_val_t alignment) { return ::operator new(size, alignment); }};
const AllocationFunction kAlignedNewArray{
    "aligned_new_array", false, true,
    [](size_t size, std::align_val_t alignment) { return ::operator new[](size, alignment); }};
const AllocationFunction kAlignedNothrowNew{
    "aligned_nothrow_new", true, true, [](size_t size, std::align_val_t alignment) {
      return ::operator new(size, alignment, std::nothrow);
    }};
const AllocationFunction kAlignedNothrowNewArray{
    "aligned_nothrow_new_array", true, true, [](size_t size, std::align_val_t alignment) {
      return ::operator new[](size, alignment, std::nothrow);
    }};

const DeallocationFunction kDelete{"delete", false,
                                   [](void* pointer, size_t, std::align_val_t) {
                                     ::operator delete(pointer);
                                   }};
const DeallocationFunction kSizedDelete{"sized_delete", false,
                                        [](void* pointer, size_t size, std::align_val_t) {
                                          ::operator delete(pointer, size);
                                        }};
const DeallocationFunction kNothrowDelete{"nothrow_delete", false,
                                          [](void* pointer, size_t, std::align_val_t) {
                                            ::operator delete(pointer, std::nothrow);
                                          }};
const DeallocationFunction kDeleteArray{"delete_array", false,
                                        [](void* pointer, size_t, std::align_val_t) {
                                          ::operator delete[](pointer);
                                        }};
const DeallocationFunction kSizedDeleteArray{"sized_delete_array", false,
                                             [](void* pointer, size_t size, std::align_val_t) {
                                               ::operator delete[](pointer, size);
                                             }};
const DeallocationFunction kNothrowDeleteArray{"nothrow_delete_array", false,
                                               [](void* pointer, size_t, std::align_val_t) {
                                                 ::operator delete[](pointer, std::nothrow);
                                               }};
const DeallocationFunction kAlignedDelete{
    "aligned_delete", true,
    [](void* pointer, size_t, std::align_val_t alignment) { ::operator delete(pointer, alignment); }};
const DeallocationFunction kSizedAlignedDelete{
    "sized_aligned_delete", true, [](void* pointer, size_t size, std::align_val_t alignment) {
      ::operator delete(pointer, size, alignment);
    }};
const DeallocationFunction kAlignedNothrowDelete{
    "aligned_nothrow_delete", true, [](void* pointer, size_t, std::align_val_t alignment) {
      ::operator delete(pointer, alignment, std::nothrow);
    }};
const DeallocationFunction kAlignedDeleteArray{
    "aligned_delete_array", true, [](void* pointer, size_t, std::align_val_t alignment) {
      ::operator delete[](pointer, alignment);
    }};
const DeallocationFunction kSizedAlignedDeleteArray{
    "sized_aligned_delete_array", true, [](void* pointer, size_t size, std::align_val_t alignment) {
      ::operator delete[](pointer, size, alignment);
    }};
const DeallocationFunction kAlignedNothrowDeleteArray{
    "aligned_nothrow_delete_array", true, [](void* pointer, size_t, std::align_val_t alignment) {
      ::operator delete[](pointer, alignment, std::nothrow);
    }};

// Every deallocation function paired with an allocation function whose
// result it may free; together the pairs call all 8 allocation and all 12
// deallocation forms.
struct FormPair {
  AllocationFunction allocation;
  DeallocationFunction deallocation;
};
const FormPair kFormPairs[] = {
    {kNew, kDelete},
    {kNew, kSizedDelete},
    {kNew, kNothrowDelete},
    {kNothrowNew, kDelete},
    {kNewArray, kDeleteArray},
    {kNewArray, kSizedDeleteArray},
    {kNewArray, kNothrowDeleteArray},
    {kNothrowNewArray, kDeleteArray},
    {kAlignedNew, kAlignedDelete},
    {kAlignedNew, kSizedAlignedDelete},
    {kAlignedNew, kAlignedNothrowDelete},
    {kAlignedNothrowNew, kAlignedDelete},
    {kAlignedNewArray, kAlignedDeleteArray},
    {kAlignedNewArray, kSizedAlignedDeleteArray},
    {kAlignedNewArray, kAlignedNothrowDeleteArray},
    {kAlignedNothrowNewArray, kSizedAlignedDeleteArray},
};
const AllocationFunction kAllocationFunctions[] = {
    kNew,        kNewArray,        kNothrowNew,        kNothrowNewArray,
    kAlignedNew, kAlignedNewArray, kAlignedNothrowNew, kAlignedNothrowNewArray,
};

// Alignments for the aligned forms: every power of two from 16 to 4096 (the
// page size), 64 KiB, and 2 MiB (the size of a transparent huge page).
const size_t kAlignments[] = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 64 * kKiB, 2 * kMiB};

// Returns the alignment the non-aligned forms must give a block of `size`
// bytes: any object of that size that does not have new-extended alignment
// must fit, and such an object's alignment divides its size and is at most
// __STDCPP_DEFAULT_NEW_ALIGNMENT__ ([basic.stc.dynamic.allocation]).
size_t RequiredDefaultAlignment(size_t size) {
  const size_t lowest_set_bit = size & (~size + 1);
  return lowest_set_bit < kDefaultNewAlignment ? lowest_set_bit : kDefaultNewAlignment;
}

std::vector<size_t> SizesFor(size_t alignment) {
  std::vector<size_t> sizes = {1, 7, 8, 12, 16, 24, 100, 4000, 14000, 40000, 300000, 5 * kMiB};
  for (size_t near : {alignment - 1, alignment, alignment + 1, 3 * alignment}) {
    if (near > 0) sizes.push_back(near);
  }
  return sizes;
}

// Sizes no allocation can satisfy. The last two overflow when rounded up to
// a size class or to an alignment, which an allocator must catch.
const size_t kImpossibleSizes[] = {
    std::numeric_limits<size_t>::max() / 2,
    std::numeric_limits<size_t>::max() / 2 + 1,
    std::numeric_limits<size_t>::max() - 4095,
    std::numeric_limits<size_t>::max(),
};

// Where a test's allocations come from. Inside a tenant scope memward routes
// them through its own paths: an owner header in front of each block in the
// shared arena, memward's per-thread cache for a dedicated arena, and a
// request arena for a request.
enum class ScopeKind { kNone, kSharedArena, kDedicatedArena, kRequest };
const ScopeKind kScopeKinds[] = {ScopeKind::kNone, ScopeKind::kSharedArena,
                                 ScopeKind::kDedicatedArena, ScopeKind::kRequest};

const char* ScopeName(ScopeKind kind) {
  switch (kind) {
    case ScopeKind::kNone: return "unscoped";
    case ScopeKind::kSharedArena: return "shared_arena";
    case ScopeKind::kDedicatedArena: return "dedicated_arena";
    case ScopeKind::kRequest: return "request";
  }
  return "unknown";
}

// Enters a scope of `kind` on construction and leaves it on destruction.
// Check ok() after constructing.
class TestScope {
 public:
  explicit TestScope(ScopeKind kind) : kind_(kind) {
    if (kind == ScopeKind::kNone) return;
    memward_tenant_options options;
    memward_tenant_options_init(&options);
    options.dedicated_arena = kind == ScopeKind::kDedicatedArena ? 1 : 0;
    memward_tenant_id tenant = 0;
    const char* name = kind == ScopeKind::kDedicatedArena ? "new-delete-dedicated"
                                                          : "new-delete-shared";
    RegisterOrFindTenant(name, options, &tenant);
    if (::testing::Test::HasFatalFailure()) return;
    const int status = kind == ScopeKind::kRequest ? memward_request_begin(tenant, &request_)
                                                   : memward_scope_enter(tenant, &saved_);
    EXPECT_EQ(status, MEMWARD_OK) << "entering a " << ScopeName(kind)
                                  << " scope: " << memward_strerror(status);
    entered_ = status == MEMWARD_OK;
  }
  ~TestScope() {
    if (!entered_) return;
    const int status = kind_ == ScopeKind::kRequest ? memward_request_end(&request_, nullptr)
                                                    : memward_scope_exit(&saved_);
    EXPECT_EQ(status, MEMWARD_OK) << "leaving a " << ScopeName(kind_)
                                  << " scope: " << memward_strerror(status);
  }
  bool ok() const { return kind_ == ScopeKind::kNone || entered_; }

 private:
  ScopeKind kind_;
  bool entered_ = false;
  memward_scope saved_{};
  memward_request request_{};
};

// GoogleTest prints parameters with these when a test fails.
void PrintTo(const AllocationFunction& function, std::ostream* out) { *out << function.id; }
void PrintTo(const FormPair& pair, std::ostream* out) {
  *out << pair.allocation.id << " then " << pair.deallocation.id;
}

void PrintTo(ScopeKind kind, std::ostream* out) { *out << ScopeName(kind); }

std::string PairName(const ::testing::TestParamInfo<std::tuple<FormPair, ScopeKind>>& info) {
  const FormPair& pair = std::get<0>(info.param);
  return std::string(pair.allocation.id) + "_then_" + pair.deallocation.id + "_" +
         ScopeName(std::get<1>(info.param));
}
std::string FunctionName(
    const ::testing::TestParamInfo<std::tuple<AllocationFunction, ScopeKind>>& info) {
  return std::string(std::get<0>(info.param).id) + "_" + ScopeName(std::get<1>(info.param));
}

class NewDeleteFormTest
    : public ProcessTest,
      public ::testing::WithParamInterface<std::tuple<FormPair, ScopeKind>> {};

TEST_P(NewDeleteFormTest, AlignedAndLargeEnough) {
  const FormPair& form = std::get<0>(GetParam());
  TestScope scope(std::get<1>(GetParam()));
  ASSERT_TRUE(scope.ok());
  const std::vector<size_t> alignments =
      form.allocation.aligned ? std::vector<size_t>(std::begin(kAlignments), std::end(kAlignments))
                              : std::vector<size_t>{kDefaultNewAlignment};
  for (size_t alignment : alignments) {
    for (size_t size : SizesFor(alignment)) {
      void* block = form.allocation.call(size, std::align_val_t(alignment));
      Escape(block);
      ASSERT_NE(block, nullptr) << "size " << size << ", alignment " << alignment;

      const size_t required =
          form.allocation.aligned ? alignment : RequiredDefaultAlignment(size);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(block) % required, 0u)
          << block << " for size " << size << " is not aligned to " << required;
      EXPECT_GE(malloc_usable_size(block), size)
          << "usable size of a block of " << size << " bytes, alignment " << alignment;

      FillPattern(block, size, size + alignment);
      EXPECT_TRUE(CheckPattern(block, size, size + alignment)) << "size " << size;
      form.deallocation.call(block, size, std::align_val_t(alignment));
    }
  }
}

// A deallocation function that did not free (or freed into another heap)
// would leave stats.allocated high.
TEST_P(NewDeleteFormTest, DeleteReturnsMemoryToHeap) {
  const FormPair& form = std::get<0>(GetParam());
  TestScope scope(std::get<1>(GetParam()));
  ASSERT_TRUE(scope.ok());
  const size_t alignment = form.allocation.aligned ? 256 : kDefaultNewAlignment;
  // 100 KiB is above the largest size jemalloc 5.3's thread cache keeps by
  // default (32 KiB), so frees reach the arena directly. The small blocks
  // reach it when the thread's caches are flushed.
  const size_t sizes[] = {100 * kKiB, 48, 1000};
  constexpr int kBlocksPerSize = 256;

  const HeapStats before = SettleAndReadHeapStats();
  std::vector<std::pair<void*, size_t>> blocks;
  size_t requested = 0;
  for (size_t size : sizes) {
    for (int i = 0; i < kBlocksPerSize; ++i) {
      void* block = form.allocation.call(size, std::align_val_t(alignment));
      Escape(block);
      ASSERT_NE(block, nullptr);
      blocks.emplace_back(block, size);
      requested += size;
    }
  }
  const HeapStats during = SettleAndReadHeapStats();
  EXPECT_GE(during.allocated, before.allocated + requested)
      << "stats.allocated did not count the blocks: " << FormatHeapStats(during);

  for (const auto& [block, size] : blocks) {
    form.deallocation.call(block, size, std::align_val_t(alignment));
  }
  blocks.clear();
  blocks.shrink_to_fit();
  const HeapStats after = SettleAndReadHeapStats();
  // 64 KiB covers GoogleTest's own bookkeeping between the two readings.
  EXPECT_LT(after.allocated, before.allocated + 64 * kKiB)
      << "memory freed with " << form.deallocation.id << " is still allocated\n before: "
      << FormatHeapStats(before) << "\n after:  " << FormatHeapStats(after);
}

INSTANTIATE_TEST_SUITE_P(AllForms, NewDeleteFormTest,
                         ::testing::Combine(::testing::ValuesIn(kFormPairs),
                                            ::testing::ValuesIn(kScopeKinds)),
                         PairName);

// Restores the process's new-handler when a test ends, whatever it set.
class NewHandlerGuard {
 public:
  NewHandlerGuard() : previous_(std::get_new_handler()) {}
  ~NewHandlerGuard() { std::set_new_handler(previous_); }

 private:
  std::new_handler previous_;
};

// A new-handler that counts its calls and uninstalls itself on the third,
// so that operator new gives up.
int counting_handler_calls = 0;
void CountThenUninstall() {
  ++counting_handler_calls;
  if (counting_handler_calls == 3) std::set_new_handler(nullptr);
}

struct HandlerException : std::bad_alloc {
  const char* what() const noexcept override { return "thrown by the test's new-handler"; }
};
int throwing_handler_calls = 0;
void CountThenThrow() {
  ++throwing_handler_calls;
  throw HandlerException();
}

class AllocationFunctionTest
    : public ProcessTest,
      public ::testing::WithParamInterface<std::tuple<AllocationFunction, ScopeKind>> {};

TEST_P(AllocationFunctionTest, ImpossibleSizeFails) {
  const AllocationFunction& function = std::get<0>(GetParam());
  TestScope scope(std::get<1>(GetParam()));
  ASSERT_TRUE(scope.ok());
  NewHandlerGuard guard;
  std::set_new_handler(nullptr);
  for (size_t size : kImpossibleSizes) {
    const std::align_val_t alignment{4096};
    if (function.nothrow) {
      void* block = function.call(size, alignment);
      Escape(block);
      EXPECT_EQ(block, nullptr) << function.id << " of " << size << " bytes";
    } else {
      EXPECT_THROW(Escape(function.call(size, alignment)), std::bad_alloc)
          << function.id << " of " << size << " bytes";
    }
  }
}

// [new.delete.single]: the throwing forms call the new-handler and retry
// until no handler is installed. libstdc++'s nothrow forms are defined as
// calls to the throwing ones, so they run the same loop. A program that
// installs a handler to release an emergency reserve depends on both.
TEST_P(AllocationFunctionTest, NewHandlerRunsUntilUninstalled) {
  const AllocationFunction& function = std::get<0>(GetParam());
  TestScope scope(std::get<1>(GetParam()));
  ASSERT_TRUE(scope.ok());
  NewHandlerGuard guard;
  counting_handler_calls = 0;
  std::set_new_handler(CountThenUninstall);
  const size_t impossible = std::numeric_limits<size_t>::max() / 2;
  if (function.nothrow) {
    void* block = function.call(impossible, std::align_val_t(64));
    Escape(block);
    EXPECT_EQ(block, nullptr);
  } else {
    EXPECT_THROW(Escape(function.call(impossible, std::align_val_t(64))), std::bad_alloc);
  }
  EXPECT_EQ(counting_handler_calls, 3) << function.id << " did not retry until the handler was gone";
  EXPECT_EQ(std::get_new_handler(), nullptr);
}

// A handler may throw std::bad_alloc or a class derived from it. The
// throwing forms let it reach the caller as a bad_alloc; the nothrow forms
// are noexcept and must return nullptr instead, or the program terminates.
// The nothrow case therefore runs in a child process.
TEST_P(AllocationFunctionTest, ThrowingNewHandler) {
  const AllocationFunction& function = std::get<0>(GetParam());
  TestScope scope(std::get<1>(GetParam()));
  ASSERT_TRUE(scope.ok());
  const size_t impossible = std::numeric_limits<size_t>::max() / 2;
  if (!function.nothrow) {
    NewHandlerGuard guard;
    throwing_handler_calls = 0;
    std::set_new_handler(CountThenThrow);
    EXPECT_THROW(Escape(function.call(impossible, std::align_val_t(64))), std::bad_alloc);
    EXPECT_EQ(throwing_handler_calls, 1);
    return;
  }

  fflush(nullptr);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0) << "fork failed";
  if (pid == 0) {
    ArmChildAlarm();
    throwing_handler_calls = 0;
    std::set_new_handler(CountThenThrow);
    void* block = function.call(impossible, std::align_val_t(64));
    Escape(block);
    if (block != nullptr) _exit(10);
    if (throwing_handler_calls != 1) _exit(11);
    _exit(0);
  }
  const ChildOutcome outcome = WaitForChild(pid, kChildDeadline);
  EXPECT_TRUE(outcome.ExitedWithZero())
      << function.id << " with a throwing new-handler: the child " << outcome.Describe()
      << " (status 10: returned non-null, 11: handler not called once, SIGABRT: the"
         " exception escaped the noexcept function)";
}

// A tenant with an enforced hard limit makes operator new fail for a size
// that the heap could serve, so a new-handler can make room: it frees a
// reserve held in the tenant, and the retry must then succeed. Without a
// handler the throwing forms throw and the nothrow forms return nullptr.
void* limited_reserve = nullptr;
int reserve_handler_calls = 0;
void ReleaseReserve() {
  ++reserve_handler_calls;
  if (limited_reserve == nullptr) {
    std::set_new_handler(nullptr);
    return;
  }
  ::operator delete(limited_reserve);
  limited_reserve = nullptr;
}

TEST_P(AllocationFunctionTest, NewHandlerMakesRoomUnderHardLimit) {
  const AllocationFunction& function = std::get<0>(GetParam());
  const ScopeKind kind = std::get<1>(GetParam());
  if (kind == ScopeKind::kNone) GTEST_SKIP() << "limits apply to tenant scopes only";

  constexpr size_t kLimit = 1 * kMiB;
  constexpr size_t kReserve = 700 * kKiB;
  constexpr size_t kRequest = 500 * kKiB;
  memward_tenant_options options;
  memward_tenant_options_init(&options);
  options.hard_limit = kLimit;
  options.enforce_hard_limit = 1;
  options.dedicated_arena = kind == ScopeKind::kDedicatedArena ? 1 : 0;
  memward_tenant_id tenant = 0;
  const std::string name = std::string("new-delete-limited-") + ScopeName(kind);
  ASSERT_NO_FATAL_FAILURE(RegisterOrFindTenant(name.c_str(), options, &tenant));

  memward_scope saved{};
  memward_request request{};
  const int entered = kind == ScopeKind::kRequest ? memward_request_begin(tenant, &request)
                                                  : memward_scope_enter(tenant, &saved);
  ASSERT_EQ(entered, MEMWARD_OK) << memward_strerror(entered);
  NewHandlerGuard guard;
  const std::align_val_t alignment{256};

  // The reserve and the request together pass the limit.
  std::set_new_handler(nullptr);
  limited_reserve = ::operator new(kReserve);
  Escape(limited_reserve);
  if (function.nothrow) {
    void* rejected = function.call(kRequest, alignment);
    Escape(rejected);
    EXPECT_EQ(rejected, nullptr) << function.id << " passed the hard limit without a handler";
  } else {
    EXPECT_THROW(Escape(function.call(kRequest, alignment)), std::bad_alloc)
        << function.id << " passed the hard limit without a handler";
  }

  reserve_handler_calls = 0;
  std::set_new_handler(ReleaseReserve);
  void* block = nullptr;
  EXPECT_NO_THROW(block = function.call(kRequest, alignment));
  Escape(block);
  EXPECT_NE(block, nullptr) << function.id << " did not retry after the handler made room";
  EXPECT_EQ(reserve_handler_calls, 1);
  EXPECT_EQ(limited_reserve, nullptr);
  if (function.aligned) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(block) % 256, 0u);
  }
  EXPECT_GE(malloc_usable_size(block), kRequest);
  if (block != nullptr) ::operator delete(block);
  if (limited_reserve != nullptr) ::operator delete(limited_reserve);
  limited_reserve = nullptr;

  memward_tenant_stats stats{};
  ASSERT_EQ(memward_thread_flush(), MEMWARD_OK);
  ASSERT_EQ(memward_tenant_stats_get(tenant, &stats), MEMWARD_OK);
  EXPECT_GE(stats.refused_allocations, 2u) << "rejected allocations were not counted";
  const int left = kind == ScopeKind::kRequest ? memward_request_end(&request, nullptr)
                                               : memward_scope_exit(&saved);
  EXPECT_EQ(left, MEMWARD_OK) << memward_strerror(left);
}

// Returns this process's virtual memory size (VmSize) in bytes, or 0.
size_t VirtualMemoryBytes() {
  FILE* status = fopen("/proc/self/status", "r");
  if (status == nullptr) return 0;
  char line[256];
  size_t kib = 0;
  while (fgets(line, sizeof(line), status) != nullptr) {
    if (sscanf(line, "VmSize: %zu kB", &kib) == 1) break;
  }
  fclose(status);
  return kib * kKiB;
}

// Runs in a child: caps the address space 128 MiB above what is mapped and
// allocates 64 KiB blocks with `function` until it fails. With sampling off,
// memward's own path serves one allocation in 64 (each time the countdown's
// 4 MiB step runs out), so the failure is nearly always jemalloc's. Exit status 0 when
// the failure ran the new-handler loop; see the test for the others.
[[noreturn]] void ExhaustAddressSpace(const AllocationFunction& function) {
  ArmChildAlarm();
  if (memward_sample_interval_set(0) != MEMWARD_OK) _exit(20);
  const size_t mapped = VirtualMemoryBytes();
  if (mapped == 0) _exit(21);
  const rlimit limit{mapped + 128 * kMiB, mapped + 128 * kMiB};
  if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(22);
  counting_handler_calls = 0;
  std::set_new_handler(CountThenUninstall);
  static void* blocks[65536];
  size_t count = 0;
  bool failed = false;
  while (!failed && count < 65536) {
    try {
      void* block = function.call(64 * kKiB, std::align_val_t(64));
      Escape(block);
      failed = block == nullptr;
      if (block != nullptr) blocks[count++] = block;
    } catch (const std::bad_alloc&) {
      failed = true;
    }
  }
  if (!failed) _exit(23);
  if (counting_handler_calls != 3) _exit(24);
  for (size_t i = 0; i < count; i++) ::operator delete(blocks[i]);
  _exit(0);
}

// An untagged, unsampled operator new that jemalloc cannot serve (the
// address space is used up) runs the same new-handler loop as memward's own
// paths: three handler calls, then std::bad_alloc or nullptr.
TEST_P(AllocationFunctionTest, NewHandlerRunsWhenEngineFails) {
  const AllocationFunction& function = std::get<0>(GetParam());
  if (std::get<1>(GetParam()) != ScopeKind::kNone) GTEST_SKIP() << "untagged memory only";
  fflush(nullptr);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0) << "fork failed";
  if (pid == 0) ExhaustAddressSpace(function);
  const ChildOutcome outcome = WaitForChild(pid, kChildDeadline);
  EXPECT_TRUE(outcome.ExitedWithZero())
      << function.id << " under an address-space limit: the child " << outcome.Describe()
      << " (status 20: sampling not turned off, 21: VmSize not read, 22: setrlimit failed,"
         " 23: 4 GiB allocated without a failure, 24: handler not called 3 times)";
}

INSTANTIATE_TEST_SUITE_P(AllFunctions, AllocationFunctionTest,
                         ::testing::Combine(::testing::ValuesIn(kAllocationFunctions),
                                            ::testing::ValuesIn(kScopeKinds)),
                         FunctionName);

class NewDeleteTest : public ProcessTest {};

void ThrowBadAlloc() { throw std::bad_alloc(); }

// Runs in a child: with the address space used up, one thread's small
// operator new keeps failing (and running the handler), while the main
// thread reads the installed handler for one second. Exit status 0 when it
// never read anything but ThrowBadAlloc.
[[noreturn]] void ReadHandlerWhileNewFails() {
  ArmChildAlarm();
  if (memward_sample_interval_set(0) != MEMWARD_OK) _exit(20);
  const size_t mapped = VirtualMemoryBytes();
  const rlimit limit{mapped + 64 * kMiB, mapped + 64 * kMiB};
  if (mapped == 0 || setrlimit(RLIMIT_AS, &limit) != 0) _exit(21);
  std::set_new_handler(ThrowBadAlloc);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> failures{0};
  std::thread allocator([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      try {
        Escape(::operator new(1000));  // kept: the address space stays used up
      } catch (const std::bad_alloc&) {
        failures.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  uint64_t wrong_reads = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (std::chrono::steady_clock::now() < end) {
    if (std::get_new_handler() != ThrowBadAlloc) wrong_reads++;
  }
  stop.store(true);
  allocator.join();
  if (failures.load() == 0) _exit(22);
  _exit(wrong_reads == 0 ? 0 : 23);
}

// A failing operator new must leave the installed new-handler alone: other
// threads read and set it meanwhile. jemalloc's operator new, which memward
// jumps to, read it by uninstalling and reinstalling it.
TEST_F(NewDeleteTest, FailingNewKeepsHandlerInstalled) {
  fflush(nullptr);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0) << "fork failed";
  if (pid == 0) ReadHandlerWhileNewFails();
  const ChildOutcome outcome = WaitForChild(pid, kChildDeadline);
  EXPECT_TRUE(outcome.ExitedWithZero())
      << "the child " << outcome.Describe()
      << " (status 20: sampling not turned off, 21: address-space limit not set, 22: no"
         " allocation failed, 23: another thread read a different or no new-handler)";
}

// The mangled names of every replaceable operator new and delete on
// LP64: all must resolve to memward, or one form would mix two heaps.
TEST_F(NewDeleteTest, EveryFormResolvesToMemward) {
  const char* const kSymbols[] = {
      "_Znwm",
      "_Znam",
      "_ZnwmRKSt9nothrow_t",
      "_ZnamRKSt9nothrow_t",
      "_ZnwmSt11align_val_t",
      "_ZnamSt11align_val_t",
      "_ZnwmSt11align_val_tRKSt9nothrow_t",
      "_ZnamSt11align_val_tRKSt9nothrow_t",
      "_ZdlPv",
      "_ZdaPv",
      "_ZdlPvRKSt9nothrow_t",
      "_ZdaPvRKSt9nothrow_t",
      "_ZdlPvm",
      "_ZdaPvm",
      "_ZdlPvSt11align_val_t",
      "_ZdaPvSt11align_val_t",
      "_ZdlPvSt11align_val_tRKSt9nothrow_t",
      "_ZdaPvSt11align_val_tRKSt9nothrow_t",
      "_ZdlPvmSt11align_val_t",
      "_ZdaPvmSt11align_val_t",
  };
  for (const char* symbol : kSymbols) {
    EXPECT_NE(LibraryDefining(symbol).find("libmemward"), std::string::npos)
        << symbol << " resolves to '" << LibraryDefining(symbol) << "'";
  }
  // The program's own calls go through its GOT, which must agree.
  void* (*volatile plain_new)(size_t) = &::operator new;
  void (*volatile sized_aligned_delete)(void*, size_t, std::align_val_t) = &::operator delete;
  EXPECT_NE(LibraryContaining(reinterpret_cast<void*>(plain_new)).find("libmemward"),
            std::string::npos);
  EXPECT_NE(LibraryContaining(reinterpret_cast<void*>(sized_aligned_delete)).find("libmemward"),
            std::string::npos);
}

// Types with new-extended alignment: new-expressions call the aligned
// forms, and delete-expressions the sized aligned ones.
struct alignas(64) CacheLine {
  char bytes[64];
  int value = 0;
};
struct alignas(256) Aligned256 {
  int value = 0;
};
struct alignas(4096) PageAligned {
  char bytes[100];
};
// A non-trivial destructor makes array new-expressions store the element
// count in front of the array, so the block is larger than the array.
struct alignas(256) Counted256 {
  static inline int live = 0;
  int value;
  Counted256() : value(++live) {}
  ~Counted256() { --live; }
};

template <typename T>
bool IsAligned(const T* pointer) {
  return reinterpret_cast<uintptr_t>(pointer) % alignof(T) == 0;
}

TEST_F(NewDeleteTest, OverAlignedNewExpressions) {
  for (int i = 0; i < 100; ++i) {
    auto* line = new CacheLine;
    Escape(line);
    EXPECT_TRUE(IsAligned(line)) << line;
    EXPECT_GE(malloc_usable_size(line), sizeof(CacheLine));
    delete line;

    auto* aligned = new Aligned256;
    Escape(aligned);
    EXPECT_TRUE(IsAligned(aligned)) << aligned;
    delete aligned;

    auto* page = new (std::nothrow) PageAligned;
    Escape(page);
    ASSERT_NE(page, nullptr);
    EXPECT_TRUE(IsAligned(page)) << page;
    delete page;
  }

  for (size_t count : {1, 3, 17, 1000}) {
    auto* lines = new CacheLine[count];
    Escape(lines);
    EXPECT_TRUE(IsAligned(lines));
    delete[] lines;

    auto* counted = new Counted256[count];
    Escape(counted);
    EXPECT_TRUE(IsAligned(counted)) << "array of " << count;
    EXPECT_EQ(Counted256::live, static_cast<int>(count));
    EXPECT_EQ(counted[count - 1].value, static_cast<int>(count));
    delete[] counted;
    EXPECT_EQ(Counted256::live, 0);
  }
}

TEST_F(NewDeleteTest, OverAlignedTypesInContainers) {
  std::vector<CacheLine> lines;
  for (int i = 0; i < 2000; ++i) lines.push_back(CacheLine{{}, i});  // grows by reallocation
  for (const CacheLine& line : lines) ASSERT_TRUE(IsAligned(&line));
  EXPECT_EQ(lines[1999].value, 1999);

  std::list<Aligned256> list(500);
  for (const Aligned256& element : list) ASSERT_TRUE(IsAligned(&element));

  std::deque<Aligned256> deque;
  for (int i = 0; i < 1000; ++i) deque.push_front(Aligned256{i});
  for (const Aligned256& element : deque) ASSERT_TRUE(IsAligned(&element));

  std::map<int, Aligned256> map;
  std::unordered_map<int, CacheLine> unordered;
  for (int i = 0; i < 1000; ++i) {
    map[i].value = i;
    unordered[i].value = i;
  }
  for (const auto& [key, element] : map) ASSERT_TRUE(IsAligned(&element)) << key;
  for (const auto& [key, element] : unordered) ASSERT_TRUE(IsAligned(&element)) << key;

  auto shared = std::make_shared<Aligned256>();
  EXPECT_TRUE(IsAligned(shared.get()));
  auto shared_page = std::make_shared<PageAligned>();
  EXPECT_TRUE(IsAligned(shared_page.get()));
  auto unique_array = std::make_unique<Counted256[]>(33);
  EXPECT_TRUE(IsAligned(unique_array.get()));
  EXPECT_EQ(Counted256::live, 33);
  unique_array.reset();
  EXPECT_EQ(Counted256::live, 0);

  std::vector<PageAligned> pages(64);
  for (const PageAligned& page : pages) ASSERT_TRUE(IsAligned(&page));
}

// [expr.new]: a new-expression whose array size is negative, or whose
// size in bytes overflows, is erroneous and throws std::bad_array_new_length
// (with a nothrow allocation function it yields nullptr). A size that is
// representable but impossible reaches operator new[], which throws
// std::bad_alloc.
//
// NOTE: GCC 12 departs from this in two ways that the allocator cannot
// change, so the test expects what GCC does. First, GCC checks only the
// multiplication by the element size. A negative count of a one-byte type,
// or an overflow in adding the array cookie of a type with a destructor,
// reaches operator new[] as SIZE_MAX, which must then fail (std::bad_alloc,
// or nullptr from the nothrow forms). Second, where the multiplication
// overflows, GCC throws std::bad_array_new_length even from a nothrow
// new-expression, so those nothrow cases are not tested.
TEST_F(NewDeleteTest, HugeArrayCounts) {
  NewHandlerGuard guard;
  std::set_new_handler(nullptr);
  volatile int negative = -1;
  volatile size_t overflowing_lines = std::numeric_limits<size_t>::max() / sizeof(CacheLine) + 1;
  volatile size_t overflowing_ints = std::numeric_limits<size_t>::max() / 2;
  volatile size_t impossible_bytes = std::numeric_limits<size_t>::max() / 2;
  // Counted256's element size does not overflow, but adding its cookie does.
  volatile size_t overflowing_with_cookie = std::numeric_limits<size_t>::max() / sizeof(Counted256);

  // Rejected by the compiled code before any allocation.
  EXPECT_THROW(Escape(new CacheLine[overflowing_lines]), std::bad_array_new_length);
  EXPECT_THROW(Escape(new int[overflowing_ints]), std::bad_array_new_length);
  EXPECT_THROW(Escape(new int[negative]), std::bad_array_new_length);

  // Passed on to operator new[].
  EXPECT_THROW(Escape(new char[impossible_bytes]), std::bad_alloc);
  EXPECT_THROW(Escape(new char[negative]), std::bad_alloc);
  EXPECT_THROW(Escape(new Counted256[overflowing_with_cookie]), std::bad_alloc);
  EXPECT_EQ(Counted256::live, 0);

  char* nothrow_bytes = new (std::nothrow) char[impossible_bytes];
  Escape(nothrow_bytes);
  EXPECT_EQ(nothrow_bytes, nullptr);
  char* nothrow_negative = new (std::nothrow) char[negative];
  Escape(nothrow_negative);
  EXPECT_EQ(nothrow_negative, nullptr);
  // operator new[](SIZE_MAX, std::align_val_t(256), std::nothrow): rounding
  // SIZE_MAX up to the alignment overflows to 0, and an allocator that
  // misses that returns a tiny block for a huge array.
  Counted256* nothrow_counted = new (std::nothrow) Counted256[overflowing_with_cookie];
  Escape(nothrow_counted);
  EXPECT_EQ(nothrow_counted, nullptr);
  EXPECT_EQ(Counted256::live, 0);
}

}  // namespace
}  // namespace memward_test
