// The alloc hook behind MemwardExtentHooks; every other hook is jemalloc's.
// Chunks come from the chunk region (alloc/chunk_region.h) while it has
// room, and from mmap anywhere after that.
//
// jemalloc 5.3 with retain (the Linux default) grows an arena by asking the
// hook for 2 MiB and larger extents, never unmaps them and splits them
// itself, so rounding each request up to whole 2 MiB chunks costs address
// space only: the unused tail is never touched.
#include "alloc/extent_hooks.h"

#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <sys/mman.h>

#include <atomic>

#include "accounting/owner_map.h"
#include "alloc/chunk_region.h"
#include "alloc/engine.h"
#include "alloc/growth_signal.h"

namespace memward::alloc {
namespace {

using accounting::kChunkSize;

constinit extent_hooks_t g_hooks = {};
constinit bool g_hooks_ready = false;
constinit std::atomic<uint32_t> g_slot_for_new_arena{0};
constinit std::atomic<uint16_t> g_slot_by_arena[4096] = {};

uintptr_t RoundUp(uintptr_t value, uintptr_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}

uint16_t SlotOfArena(unsigned arena_index) {
  uint16_t slot = arena_index < 4096
                      ? g_slot_by_arena[arena_index].load(std::memory_order_acquire)
                      : 0;
  if (slot != 0) return slot;
  return static_cast<uint16_t>(g_slot_for_new_arena.load(std::memory_order_acquire));
}

// Maps `size` read-write bytes outside the chunk region at an address
// aligned to `alignment`, or returns nullptr.
void* MapAligned(size_t size, size_t alignment) {
  void* memory = MapAlignedRange(size, alignment, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS);
  if (memory != nullptr) NoteHeapGrowth(size);
  return memory;
}

void* AllocateChunks(extent_hooks_t* hooks, void* new_address, size_t size, size_t alignment,
                     bool* zero, bool* commit, unsigned arena_index) {
  // Growing in place at a given address is optional; jemalloc falls back.
  if (new_address != nullptr) return nullptr;
  int saved_errno = errno;
  size_t chunk_alignment = alignment > kChunkSize ? alignment : kChunkSize;
  size_t reserved = RoundUp(size, kChunkSize);
  bool commit_failed = false;
  void* memory = TakeRegionChunks(reserved, chunk_alignment, &commit_failed);
  const bool in_region = memory != nullptr;
  if (in_region) {
    NoteHeapGrowth(reserved);
  } else if (commit_failed) {
    // The same limit would refuse a mapping elsewhere, and opening the owned
    // range would slow every later free for good.
    errno = saved_errno;
    return nullptr;
  } else {
    // Before the chunks are recorded and handed out, so that free looks
    // them up in the owner map.
    OpenOwnedRangeToAll();
    memory = MapAligned(reserved, chunk_alignment);
  }
  if (memory != nullptr && !accounting::RecordChunks(memory, reserved, SlotOfArena(arena_index))) {
    // NOTE: the region's part stays taken, as after a failed commit.
    if (!in_region) munmap(memory, reserved);
    memory = nullptr;
  }
  errno = saved_errno;
  if (memory == nullptr) return nullptr;
  *zero = true;
  *commit = true;
  return memory;
}

// Keeps every chunk mapped: returning true opts out of the deallocation, so
// jemalloc retains the extent (purged) even with MALLOC_CONF=retain:false,
// and the owner map never names an address that another mapping could reuse.
bool KeepChunks(extent_hooks_t* hooks, void* address, size_t size, bool committed,
                unsigned arena_index) {
  return true;
}

}  // namespace

extent_hooks_s* MemwardExtentHooks() {
  if (g_hooks_ready) return &g_hooks;
  extent_hooks_t* defaults = nullptr;
  size_t length = sizeof(defaults);
  if (mwje_mallctl("arena.0.extent_hooks", &defaults, &length, nullptr, 0) != 0 ||
      defaults == nullptr) {
    return nullptr;
  }
  g_hooks = *defaults;
  g_hooks.alloc = AllocateChunks;
  g_hooks.dalloc = KeepChunks;
  g_hooks_ready = true;
  return &g_hooks;
}

void SetSlotForNewArena(uint32_t slot) {
  g_slot_for_new_arena.store(slot, std::memory_order_release);
}

bool IsMemwardArena(unsigned arena_index) {
  return arena_index < 4096 && g_slot_by_arena[arena_index].load(std::memory_order_acquire) != 0;
}

void SetSlotForArena(unsigned arena_index, uint32_t slot) {
  if (arena_index < 4096) {
    g_slot_by_arena[arena_index].store(static_cast<uint16_t>(slot), std::memory_order_release);
  }
}

}  // namespace memward::alloc
