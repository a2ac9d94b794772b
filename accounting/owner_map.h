// The address-to-owner map: which memward-created arena owns an address.
//
// memward's extent hooks (alloc/extent_hooks.cc) give each arena it creates
// whole 2 MiB chunks, aligned to 2 MiB, and record the arena's slot for every
// chunk here. A free first tests the owned range (OwnedRange below), which
// untagged memory is outside of, and only then finds the owner with two
// loads: the map's base pointer and the chunk's entry. Entry 0 means "not a memward arena" (the
// automatic arenas of untagged memory). Chunks are never handed back to the
// kernel while their arena lives (jemalloc 5.3 retains address space), and
// memward never destroys an arena, so an entry never changes once written.
//
// The map is one flat array of 32-bit entries over the 47-bit user address
// space: 2^26 entries, 256 MiB of address space reserved read-only with
// MAP_NORESERVE on the first tenant's set-up. RecordChunks makes writable,
// and touches, only the pages for chunks in use (one 4 KiB page of map
// covers 2 GiB of heap), and only those pages count against RLIMIT_DATA.
// An entry contains the slot in its low 16 bits and the chunk's number in
// its high 16 bits.
//
// Page tags: each numbered chunk has one byte per 4 KiB page, which the
// allocator sets when it hands out a block that starts on that page (see
// alloc/page_tags.h for what the byte means). The first 65,535 chunks (128 GiB
// of memward arenas) get a number; later ones get 0, whose tags read 0. The
// tag table takes 32 MiB of address space, reserved with the map, and 512
// bytes resident per numbered chunk in use.
#ifndef MEMWARD_ACCOUNTING_OWNER_MAP_H_
#define MEMWARD_ACCOUNTING_OWNER_MAP_H_

#include <stddef.h>
#include <stdint.h>

#include <atomic>

namespace memward::accounting {

inline constexpr unsigned kLgChunkSize = 21;
inline constexpr size_t kChunkSize = size_t{1} << kLgChunkSize;
inline constexpr unsigned kLgAddressSpace = 47;
inline constexpr size_t kOwnerMapEntries = size_t{1} << (kLgAddressSpace - kLgChunkSize);
inline constexpr unsigned kLgTagPage = 12;
inline constexpr size_t kTagsPerChunk = size_t{1} << (kLgChunkSize - kLgTagPage);
inline constexpr uint32_t kMaxChunkNumbers = 1u << 16;  // number 0 means "no tags"

// Until the map is reserved, its mask is 0 and its entries point to a single
// zero entry, so the lookup needs no null check. The reservation
// stores the map before the mask (release), and the lookup loads the mask
// first (acquire), so a new mask never indexes the single entry.
struct OwnerMap {
  std::atomic<uintptr_t> mask;
  std::atomic<uint32_t*> entries;
  // kMaxChunkNumbers rows of kTagsPerChunk bytes; row 0 is never written.
  std::atomic<uint8_t*> page_tags;
};
// Hidden, so the free path reads it with one RIP-relative load per field.
extern OwnerMap g_owner_map __attribute__((visibility("hidden")));

// The address range [base, end) that contains every chunk of memward's
// arenas (alloc/chunk_region.h): the whole address space when chunks had to
// be mapped outside the region. Outside it, a pointer is untagged memory.
// Until the first chunk the range is {UINTPTR_MAX, 1}, which contains no
// address and leaves only null below `end`, so a pointer at or above `end` is
// never null.
//
// The region is reserved below the addresses the kernel picks by itself, so
// untagged memory is nearly always at or above `end`, and free learns that
// with one compare. A pointer below `end` takes a second compare with
// `base`.
//
// Publication: a writer stores `base` before `end` (release), and a reader
// loads `end` before `base`. A pointer into a chunk reaches a thread only
// after the chunk's range was published, so that thread reads both new
// values. The range has a cache line of its own, so that no write to a
// neighbouring variable delays the compare on every free.
struct alignas(64) OwnedRange {
  std::atomic<uintptr_t> base;
  std::atomic<uintptr_t> end;
};
extern OwnedRange g_owned_range __attribute__((visibility("hidden")));

static_assert(sizeof(std::atomic<uintptr_t>) == sizeof(uintptr_t) &&
                  std::atomic<uintptr_t>::is_always_lock_free,
              "the range's fields are read as plain words");

// Returns whether `address` is at or above `bound`, a field of
// g_owned_range. GCC does not fold an atomic load into a compare, so the
// portable form costs an instruction more per compare on every free. An
// aligned 8-byte read from memory is atomic on x86-64, and x86-64 does not
// reorder two loads, so the memory operand is the load that the publication
// needs. volatile keeps the compiler from reusing an earlier result and
// keeps two compares in order.
inline bool AtOrAboveBound(uintptr_t address, const std::atomic<uintptr_t>& bound) {
#if defined(__x86_64__) && defined(__GCC_ASM_FLAG_OUTPUTS__)
  bool at_or_above;
  asm volatile("cmp %[bound], %[address]"
               : "=@ccae"(at_or_above)
               : [address] "r"(address),
                 [bound] "m"(*reinterpret_cast<const uintptr_t*>(&bound)));
  return at_or_above;
#else
  return address >= bound.load(std::memory_order_acquire);
#endif
}

// Returns whether `pointer` lies at or above the owned range's end: untagged
// memory, and not null.
inline bool AboveOwnedRange(const void* pointer) {
  return AtOrAboveBound(reinterpret_cast<uintptr_t>(pointer), g_owned_range.end);
}

inline bool InOwnedRange(const void* pointer) {
  if (__builtin_expect(AboveOwnedRange(pointer), 1)) return false;
  return AtOrAboveBound(reinterpret_cast<uintptr_t>(pointer), g_owned_range.base);
}

// Returns the map's entry for `pointer`: 0 (also for nullptr) when no
// memward arena owns it. Addresses above the 47-bit user space (possible only
// with 5-level paging and an explicit mmap hint) wrap around and are not
// supported.
//
// A pointer at or above the owned range costs one load folded into a compare.
// Inside it, the map is reserved (its chunks were recorded there
// before they were handed out).
inline uint32_t OwnerEntryOf(const void* pointer) {
  if (__builtin_expect(!InOwnedRange(pointer), 1)) return 0;
  uintptr_t mask = g_owner_map.mask.load(std::memory_order_acquire);
  uint32_t* entries = g_owner_map.entries.load(std::memory_order_relaxed);
  return entries[(reinterpret_cast<uintptr_t>(pointer) >> kLgChunkSize) & mask];
}

inline uint16_t SlotOfEntry(uint32_t entry) { return static_cast<uint16_t>(entry); }

// Returns the arena slot that owns `pointer`, or 0.
inline uint16_t OwnerSlotOf(const void* pointer) { return SlotOfEntry(OwnerEntryOf(pointer)); }

// Returns the address of the tag of the page that contains `pointer`, whose
// entry is `entry` (not 0). Row 0, for chunks without a number, reads 0.
inline uint8_t* PageTagAddress(uint32_t entry, const void* pointer) {
  uint8_t* tags = g_owner_map.page_tags.load(std::memory_order_relaxed);
  uintptr_t page = (reinterpret_cast<uintptr_t>(pointer) >> kLgTagPage) & (kTagsPerChunk - 1);
  return tags + ((static_cast<uintptr_t>(entry >> 16) << (kLgChunkSize - kLgTagPage)) | page);
}

// Returns the tag of the page that contains `pointer` (entry not 0).
inline uint8_t PageTagOf(uint32_t entry, const void* pointer) {
  return __atomic_load_n(PageTagAddress(entry, pointer), __ATOMIC_RELAXED);
}

// Sets the tag of the page that holds `pointer` (entry not 0); a chunk without
// a number keeps reading 0.
inline void SetPageTag(uint32_t entry, const void* pointer, uint8_t tag) {
  if ((entry >> 16) == 0) return;
  __atomic_store_n(PageTagAddress(entry, pointer), tag, __ATOMIC_RELAXED);
}

// Reserves the map. Returns false if the kernel refuses the reservation.
// Called outside malloc, before the first memward arena is created.
bool EnsureOwnerMap();

// Returns the resident bytes of the map and its page tags.
size_t OwnerMapResidentBytes();

// Records `slot` as the owner of every chunk in [address, address + size)
// and gives each chunk the next free number. Both bounds are multiples of
// kChunkSize. Returns false, recording nothing, when the map's pages for
// these chunks cannot be made writable.
bool RecordChunks(const void* address, size_t size, uint16_t slot);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_OWNER_MAP_H_
