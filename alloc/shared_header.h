// The owner header of allocations in the shared arena.
//
// Tenants without an arena of their own share one, so the arena cannot name
// the owner of an object there: each such allocation carries a 16-byte header
// right before the pointer the program gets. The header's check word ties it
// to its address, so a stray write or a foreign pointer is reported as
// corruption instead of crediting the wrong tenant. The charged size is the
// usable size of the whole block, header included, so memward's totals still
// equal jemalloc's allocated bytes.
#ifndef MEMWARD_ALLOC_SHARED_HEADER_H_
#define MEMWARD_ALLOC_SHARED_HEADER_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "accounting/tenant.h"
#include "base/log.h"

namespace memward::alloc {

inline constexpr uint32_t kSharedHeaderMagic = 0x4d574831;  // "MWH1"
inline constexpr size_t kSharedHeaderSize = 16;

struct SharedHeader {
  uint32_t magic;
  uint32_t tenant;
  uint32_t offset;  // from the start of the block to the program's pointer
  uint32_t check;
};
static_assert(sizeof(SharedHeader) == kSharedHeaderSize);

// The check word is the address bits 4 to 35 mixed with a seed of the tenant
// and the offset. Its seed is fixed for a scope, so the fast paths read it
// from the thread's state (ThreadState::header_seed) instead of computing it.
inline uint32_t SharedHeaderSeed(uint32_t tenant, uint32_t offset) {
  return (tenant * 0x9e3779b1u) ^ offset ^ kSharedHeaderMagic;
}

inline uint32_t SharedHeaderCheck(const void* pointer, uint32_t seed) {
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(pointer) >> 4) ^ seed;
}

inline uint32_t SharedHeaderCheck(const void* pointer, uint32_t tenant, uint32_t offset) {
  return SharedHeaderCheck(pointer, SharedHeaderSeed(tenant, offset));
}

// The header's first eight bytes as one little-endian word: magic, tenant.
inline uint64_t SharedHeaderWord0(uint32_t tenant) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the words follow x86-64's order");
  return kSharedHeaderMagic | (uint64_t{tenant} << 32);
}

// The last eight bytes for malloc's natural offset: offset, check.
inline uint64_t NaturalHeaderWord1(const void* pointer, uint32_t seed) {
  return kSharedHeaderSize | (uint64_t{SharedHeaderCheck(pointer, seed)} << 32);
}

// Returns the offset of the program's pointer inside a block aligned to
// `alignment` (0 for malloc's natural alignment).
inline size_t SharedHeaderOffset(size_t alignment) {
  return alignment > kSharedHeaderSize ? alignment : kSharedHeaderSize;
}

// Writes the header for `pointer` (the program's pointer).
inline void WriteSharedHeader(void* pointer, accounting::TenantId tenant, size_t offset) {
  auto* header = reinterpret_cast<SharedHeader*>(static_cast<char*>(pointer) - kSharedHeaderSize);
  header->magic = kSharedHeaderMagic;
  header->tenant = tenant;
  header->offset = static_cast<uint32_t>(offset);
  header->check = SharedHeaderCheck(pointer, tenant, header->offset);
}

// Writes the header of malloc's natural offset for `pointer`, from the
// scope's `word0` and `seed` (SharedHeaderWord0, SharedHeaderSeed): two
// 8-byte stores.
inline void WriteNaturalHeader(void* pointer, uint64_t word0, uint32_t seed) {
  uint64_t words[2] = {word0, NaturalHeaderWord1(pointer, seed)};
  memcpy(static_cast<char*>(pointer) - kSharedHeaderSize, words, sizeof(words));
}

// Returns whether `pointer` carries the header that WriteNaturalHeader writes
// with `word0` and `seed`: two 8-byte compares, for the free path of the
// owning scope. Any other header, corrupt or not, is for ReadSharedHeader to
// judge.
inline bool HasNaturalHeader(const void* pointer, uint64_t word0, uint32_t seed) {
  uint64_t words[2];
  memcpy(words, static_cast<const char*>(pointer) - kSharedHeaderSize, sizeof(words));
  return words[0] == word0 && words[1] == NaturalHeaderWord1(pointer, seed);
}

// Returns the validated header of `pointer`, or reports the corruption.
inline const SharedHeader& ReadSharedHeader(const void* pointer) {
  auto* header =
      reinterpret_cast<const SharedHeader*>(static_cast<const char*>(pointer) - kSharedHeaderSize);
  if (header->magic != kSharedHeaderMagic || header->tenant >= accounting::kMaxTenants ||
      header->check != SharedHeaderCheck(pointer, header->tenant, header->offset)) {
    base::Fatal("corrupt owner header before %p in the shared arena (magic 0x%x, tenant %u, "
                "offset %u, check 0x%x where 0x%x was expected): a write before the start of "
                "the block, or a pointer that memward did not return",
                pointer, header->magic, header->tenant, header->offset, header->check,
                SharedHeaderCheck(pointer, header->tenant, header->offset));
  }
  return *header;
}

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_SHARED_HEADER_H_
