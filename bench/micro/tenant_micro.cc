// Micro benchmarks of memward's tenant features, linked against libmemward.so:
// malloc/free pairs untagged, in a tenant scope (dedicated and shared arena)
// and in a request scope; scope entry and exit; request begin and end,
// including the purge of the emptied request arena.
//
// The untagged pair here runs in a process that has tenants, so the free
// path's owner lookup reads a real map. run_benchmarks.py compares these with
// malloc_micro's pairs under plain jemalloc in the same run.
#include <stdlib.h>

#include <vector>

#include "benchmark/benchmark.h"
#include "memward/memward.h"

namespace {

memward_tenant_id RegisterOnce(const char* name, bool dedicated) {
  memward_tenant_options options;
  memward_tenant_options_init(&options);
  options.dedicated_arena = dedicated ? 1 : 0;
  memward_tenant_id id = 0;
  int status = memward_tenant_register(name, &options, &id);
  if (status != MEMWARD_OK && status != MEMWARD_ERROR_EXISTS) abort();
  return id;
}

memward_tenant_id DedicatedTenant() {
  static memward_tenant_id id = RegisterOnce("bench-dedicated", true);
  return id;
}

memward_tenant_id SharedTenant() {
  static memward_tenant_id id = RegisterOnce("bench-shared", false);
  return id;
}

void RunPairs(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* block = malloc(size);
    benchmark::DoNotOptimize(block);
    free(block);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_UntaggedPair(benchmark::State& state) {
  DedicatedTenant();  // Makes the owner map real.
  RunPairs(state);
}

void BM_DedicatedTenantPair(benchmark::State& state) {
  memward_scope saved;
  memward_scope_enter(DedicatedTenant(), &saved);
  RunPairs(state);
  memward_scope_exit(&saved);
}

void BM_SharedTenantPair(benchmark::State& state) {
  memward_scope saved;
  memward_scope_enter(SharedTenant(), &saved);
  RunPairs(state);
  memward_scope_exit(&saved);
}

void BM_RequestPair(benchmark::State& state) {
  memward_request request;
  memward_request_begin(DedicatedTenant(), &request);
  RunPairs(state);
  memward_request_end(&request, nullptr);
}

void BM_ScopeEnterExit(benchmark::State& state) {
  memward_tenant_id id = DedicatedTenant();
  for (auto _ : state) {
    memward_scope saved;
    memward_scope_enter(id, &saved);
    benchmark::ClobberMemory();
    memward_scope_exit(&saved);
  }
  state.SetItemsProcessed(state.iterations());
}

// A request that allocates and frees `range(0)` 256-byte objects, then ends:
// the end flushes the thread's cache and purges the emptied arena.
void BM_RequestBeginEnd(benchmark::State& state) {
  memward_tenant_id id = DedicatedTenant();
  const int objects = static_cast<int>(state.range(0));
  std::vector<void*> blocks(static_cast<size_t>(objects));
  for (auto _ : state) {
    memward_request request;
    memward_request_begin(id, &request);
    for (int i = 0; i < objects; i++) blocks[static_cast<size_t>(i)] = malloc(256);
    for (int i = 0; i < objects; i++) free(blocks[static_cast<size_t>(i)]);
    memward_request_end(&request, nullptr);
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_UntaggedPair)->Arg(16)->Arg(64)->Arg(1024)->Arg(16384);
BENCHMARK(BM_DedicatedTenantPair)->Arg(16)->Arg(64)->Arg(1024)->Arg(16384);
BENCHMARK(BM_SharedTenantPair)->Arg(16)->Arg(64)->Arg(1024)->Arg(16384);
BENCHMARK(BM_RequestPair)->Arg(16)->Arg(64)->Arg(1024)->Arg(16384);
BENCHMARK(BM_ScopeEnterExit);
BENCHMARK(BM_RequestBeginEnd)->Arg(0)->Arg(16)->Arg(256);

BENCHMARK_MAIN();
