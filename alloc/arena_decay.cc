// Dirty page decay per kind of arena.
#include "alloc/arena_decay.h"

#include <sys/types.h>

#include <atomic>

#include "alloc/bootstrap.h"
#include "alloc/engine.h"
#include "alloc/extent_hooks.h"
#include "base/log.h"
#include "base/settings.h"

namespace memward::alloc {
namespace {

// The automatic arenas' decay now in force after the ladder or the admin
// server changed it, or kFromSettings before any change.
constexpr int64_t kFromSettings = INT64_MIN;
constinit std::atomic<int64_t> g_dirty_decay_in_force{kFromSettings};
// The sampler's arena index plus one, or 0 before it exists.
constinit std::atomic<unsigned> g_sampler_arena_plus_one{0};

// Returns whether `arena_index` takes the scope arenas' decay.
bool TakesScopeDecay(unsigned arena_index) {
  return IsMemwardArena(arena_index) &&
         arena_index + 1 != g_sampler_arena_plus_one.load(std::memory_order_acquire);
}

void WriteArenaDecay(unsigned arena_index, int64_t decay_ms) {
  char name[64];
  base::Format(name, sizeof(name), "arena.%u.dirty_decay_ms", arena_index);
  ssize_t value = static_cast<ssize_t>(decay_ms);
  // An index without an initialised arena fails harmlessly.
  mwje_mallctl(name, nullptr, nullptr, &value, sizeof(value));
}

}  // namespace

int64_t DirtyDecayInForce() {
  int64_t decay = g_dirty_decay_in_force.load(std::memory_order_acquire);
  if (decay != kFromSettings) return decay;
  return CurrentSettings().Get(base::SettingId::kDirtyDecay);
}

int64_t ScopeArenaDecay(int64_t dirty_decay_ms, int64_t scope_decay_ms) {
  if (dirty_decay_ms < 0) return scope_decay_ms;
  if (scope_decay_ms < 0) return dirty_decay_ms;
  return dirty_decay_ms < scope_decay_ms ? dirty_decay_ms : scope_decay_ms;
}

void SetDirtyDecayOfArenas(int64_t dirty_decay_ms) {
  g_dirty_decay_in_force.store(dirty_decay_ms, std::memory_order_release);
  const int64_t scope_decay_ms = ScopeArenaDecay(
      dirty_decay_ms, CurrentSettings().Get(base::SettingId::kScopeDirtyDecay));
  ssize_t value = static_cast<ssize_t>(dirty_decay_ms);
  // The default for arenas created later; ApplyNewArenaDecay overrides it
  // for memward's own.
  mwje_mallctl("arenas.dirty_decay_ms", nullptr, nullptr, &value, sizeof(value));
  unsigned arenas = 0;
  size_t length = sizeof(arenas);
  mwje_mallctl("arenas.narenas", &arenas, &length, nullptr, 0);
  for (unsigned arena = 0; arena < arenas; arena++) {
    WriteArenaDecay(arena, TakesScopeDecay(arena) ? scope_decay_ms : dirty_decay_ms);
  }
}

void ApplyNewArenaDecay(unsigned arena_index, bool is_sampler_arena) {
  if (is_sampler_arena) {
    g_sampler_arena_plus_one.store(arena_index + 1, std::memory_order_release);
    WriteArenaDecay(arena_index, DirtyDecayInForce());
    return;
  }
  WriteArenaDecay(arena_index,
                  ScopeArenaDecay(DirtyDecayInForce(),
                                  CurrentSettings().Get(base::SettingId::kScopeDirtyDecay)));
}

}  // namespace memward::alloc
