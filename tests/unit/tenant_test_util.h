// Helpers for the tenant tests: jemalloc statistics through mallctl and
// unique tenant names.
#ifndef MEMWARD_TESTS_UNIT_TENANT_TEST_UTIL_H_
#define MEMWARD_TESTS_UNIT_TENANT_TEST_UTIL_H_

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <atomic>
#include <string>

#include "memward/memward.h"

extern "C" int mallctl(const char* name, void* old_value, size_t* old_length, void* new_value,
                       size_t new_length);

namespace memward::testing {

inline void RefreshStats() {
  uint64_t epoch = 1;
  size_t length = sizeof(epoch);
  mallctl("epoch", &epoch, &length, &epoch, length);
}

inline size_t ReadSize(const std::string& name) {
  size_t value = 0;
  size_t length = sizeof(value);
  if (mallctl(name.c_str(), &value, &length, nullptr, 0) != 0) return SIZE_MAX;
  return value;
}

inline unsigned ReadUnsigned(const std::string& name) {
  unsigned value = 0;
  size_t length = sizeof(value);
  mallctl(name.c_str(), &value, &length, nullptr, 0);
  return value;
}

// Bytes jemalloc counts as allocated in arena `arena` (small and large).
inline size_t ArenaAllocated(unsigned arena) {
  std::string prefix = "stats.arenas." + std::to_string(arena);
  return ReadSize(prefix + ".small.allocated") + ReadSize(prefix + ".large.allocated");
}

// Returns a tenant name that no other test in this process uses.
inline std::string UniqueName(const std::string& base) {
  static std::atomic<int> counter{0};
  return base + "-" + std::to_string(counter.fetch_add(1));
}

inline memward_tenant_id Register(const std::string& name, bool dedicated = false,
                                  uint64_t soft = 0, uint64_t hard = 0, bool enforce = false) {
  memward_tenant_options options;
  memward_tenant_options_init(&options);
  options.dedicated_arena = dedicated ? 1 : 0;
  options.soft_limit = soft;
  options.hard_limit = hard;
  options.enforce_hard_limit = enforce ? 1 : 0;
  memward_tenant_id id = 0;
  if (memward_tenant_register(name.c_str(), &options, &id) != MEMWARD_OK) return 0;
  return id;
}

// Keeps the compiler from pairing and removing malloc and free.
inline void* volatile g_sink;

inline void* Allocate(size_t size) {
  void* pointer = malloc(size);
  g_sink = pointer;
  return pointer;
}

inline memward_tenant_stats Stats(memward_tenant_id id) {
  memward_tenant_stats stats{};
  memward_tenant_stats_get(id, &stats);
  return stats;
}

}  // namespace memward::testing

#endif  // MEMWARD_TESTS_UNIT_TENANT_TEST_UTIL_H_
