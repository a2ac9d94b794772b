// Micro benchmarks of the allocation fast path through the standard API only.
//
// The binary links no allocator of its own: the runner starts it once per
// allocator with LD_PRELOAD (or none, for glibc), so every allocator runs the
// same machine code. Every benchmark reports items_per_second, where one item
// is one allocation together with its free; the runner turns that into
// nanoseconds per item. With two threads, both threads' items are counted
// against the wall time, so the number is the cost per item at full load.
#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <array>
#include <cstdlib>
#include <new>

namespace {

// Sizes from the smallest class up to 64 KiB, beyond jemalloc 5.3's default
// thread-cache limit of 32 KiB (opt.tcache_max), so both paths are visible.
void SizeArguments(benchmark::internal::Benchmark* benchmark) {
  for (int64_t size : {16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536}) {
    benchmark->Arg(size);
  }
}

void SmallSizeArguments(benchmark::internal::Benchmark* benchmark) {
  for (int64_t size : {16, 64, 256, 1024, 4096}) benchmark->Arg(size);
}

// malloc immediately followed by free of the same pointer: the thread-cache
// round trip, the cheapest path an allocator has.
void BM_MallocFreePair(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* pointer = std::malloc(size);
    benchmark::DoNotOptimize(pointer);
    std::free(pointer);
  }
  state.SetItemsProcessed(state.iterations());
}

// 100 mallocs, then 100 frees in allocation order. Where a size class's
// thread-cache bin has fewer than 100 slots, part of each batch goes through
// the arena.
constexpr size_t kBatch = 100;

void BM_MallocFreeBatch(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  std::array<void*, kBatch> pointers;
  for (auto _ : state) {
    for (void*& pointer : pointers) {
      pointer = std::malloc(size);
      benchmark::DoNotOptimize(pointer);
    }
    for (void* pointer : pointers) std::free(pointer);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

// operator new and the unsized operator delete, which code built without
// sized deallocation (or with it turned off) calls.
void BM_NewDelete(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* pointer = ::operator new(size);
    benchmark::DoNotOptimize(pointer);
    ::operator delete(pointer);
  }
  state.SetItemsProcessed(state.iterations());
}

// operator new and the sized operator delete (C++14), which GCC emits for
// `delete p` on a complete type; the size spares the allocator a lookup.
void BM_NewDeleteSized(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* pointer = ::operator new(size);
    benchmark::DoNotOptimize(pointer);
    ::operator delete(pointer, size);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_MallocFreePair)->Apply(SizeArguments)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_MallocFreeBatch)->Apply(SizeArguments)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_NewDelete)->Apply(SmallSizeArguments)->Threads(1)->UseRealTime();
BENCHMARK(BM_NewDeleteSized)->Apply(SmallSizeArguments)->Threads(1)->UseRealTime();

}  // namespace

// BENCHMARK_MAIN, plus the memward version in the JSON context when memward is
// preloaded, so the runner can tell that the preload took effect.
int main(int argc, char** argv) {
  using VersionFunction = const char* (*)();
  auto version = reinterpret_cast<VersionFunction>(dlsym(RTLD_DEFAULT, "memward_version"));
  if (version != nullptr) benchmark::AddCustomContext("memward_version", version());

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
