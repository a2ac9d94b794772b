// Counting wrappers for libunwind's mmap and munmap, installed in its PLT.
#include "accounting/unwinder_memory.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>

#include "alloc/macros.h"

namespace memward::accounting {
namespace {

using MmapFunction = void* (*)(void*, size_t, int, int, int, off_t);
using MunmapFunction = int (*)(void*, size_t);

// Set once by CountLibraryMappings before the slots point at the wrappers.
constinit MmapFunction g_real_mmap = nullptr;
constinit MunmapFunction g_real_munmap = nullptr;
constinit uint64_t g_max_bytes = 0;
constinit uint64_t g_page_size = 4096;

constinit std::atomic<uint64_t> g_mapped_bytes{0};
constinit std::atomic<uint64_t> g_rejected_mappings{0};

uint64_t WholePages(size_t length) { return (length + g_page_size - 1) & ~(g_page_size - 1); }

// A thread's trace cache in libunwind 1.6.2: 2^14 entries of 16 bytes,
// mapped at the thread's first capture and unmapped when it exits.
constexpr size_t kTraceCacheBytes = size_t{1} << 18;

// Trace caches of exited threads, kept mapped for the next new thread.
// Mapping a fresh one and unmapping it again cost a short-lived thread
// about 20 us of system time (page faults, and the TLB shootdown of munmap);
// a spare is only zeroed. The spares stay counted in g_mapped_bytes.
constexpr int kSpareTraceCaches = 4;
constinit std::atomic<uintptr_t> g_spare_trace_caches[kSpareTraceCaches] = {};
// Set, for good, before libunwind maps anything else of a trace cache's
// length (a file, say). From then on an unmapped block of that length may
// not be a trace cache, so none is kept as a spare.
constinit std::atomic<bool> g_other_mapping_of_cache_length{false};

bool IsTraceCacheRequest(void* address, size_t length, int protection, int flags) {
  return address == nullptr && length == kTraceCacheBytes &&
         protection == (PROT_READ | PROT_WRITE) && flags == (MAP_PRIVATE | MAP_ANONYMOUS);
}

// Returns a spare trace cache, zeroed as a new anonymous mapping is, or
// nullptr when there is none.
MEMWARD_TEXT void* TakeSpareTraceCache() {
  for (std::atomic<uintptr_t>& spare : g_spare_trace_caches) {
    if (spare.load(std::memory_order_relaxed) == 0) continue;
    uintptr_t block = spare.exchange(0, std::memory_order_acquire);
    if (block == 0) continue;
    memset(reinterpret_cast<void*>(block), 0, kTraceCacheBytes);
    return reinterpret_cast<void*>(block);
  }
  return nullptr;
}

// Keeps `block` as a spare; returns false when every spare slot is taken.
MEMWARD_TEXT bool KeepSpareTraceCache(void* block) {
  for (std::atomic<uintptr_t>& spare : g_spare_trace_caches) {
    uintptr_t empty = 0;
    if (spare.compare_exchange_strong(empty, reinterpret_cast<uintptr_t>(block),
                                      std::memory_order_release, std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

// Runs inside malloc (libunwind maps a thread's cache at its first capture),
// so it only calls the real mmap and atomics.
MEMWARD_TEXT void* CountingMmap(void* address, size_t length, int protection, int flags, int fd,
                                off_t offset) {
  if (IsTraceCacheRequest(address, length, protection, flags)) {
    void* spare = TakeSpareTraceCache();
    if (spare != nullptr) return spare;
  } else if (length == kTraceCacheBytes) {
    g_other_mapping_of_cache_length.store(true);
  }
  uint64_t bytes = WholePages(length);
  uint64_t before = g_mapped_bytes.fetch_add(bytes, std::memory_order_relaxed);
  if ((flags & MAP_ANONYMOUS) != 0 && before + bytes > g_max_bytes) {
    g_mapped_bytes.fetch_sub(bytes, std::memory_order_relaxed);
    g_rejected_mappings.fetch_add(1, std::memory_order_relaxed);
    errno = ENOMEM;
    return MAP_FAILED;
  }
  void* result = g_real_mmap(address, length, protection, flags, fd, offset);
  if (result == MAP_FAILED) g_mapped_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  return result;
}

// libunwind unmaps only whole mappings of its own, with their mapped length.
MEMWARD_TEXT int CountingMunmap(void* address, size_t length) {
  if (length == kTraceCacheBytes && !g_other_mapping_of_cache_length.load() &&
      KeepSpareTraceCache(address)) {
    return 0;
  }
  int result = g_real_munmap(address, length);
  if (result == 0) g_mapped_bytes.fetch_sub(WholePages(length), std::memory_order_relaxed);
  return result;
}

// The relocation tables and symbols of a loaded object, from its dynamic
// section.
struct DynamicTables {
  const ElfW(Rela)* plt_relocations = nullptr;
  size_t plt_bytes = 0;
  const ElfW(Rela)* relocations = nullptr;
  size_t relocation_bytes = 0;
  const ElfW(Sym)* symbols = nullptr;
  const char* strings = nullptr;
};

// glibc stores most dynamic-section addresses relocated, but a few
// architectures and loaders keep them as offsets from the load address.
uintptr_t LoadedAddress(const link_map* map, ElfW(Addr) value) {
  return value < map->l_addr ? map->l_addr + value : value;
}

bool ReadDynamicTables(const link_map* map, DynamicTables* tables) {
  for (const ElfW(Dyn)* entry = map->l_ld; entry->d_tag != DT_NULL; entry++) {
    switch (entry->d_tag) {
      case DT_JMPREL:
        tables->plt_relocations =
            reinterpret_cast<const ElfW(Rela)*>(LoadedAddress(map, entry->d_un.d_ptr));
        break;
      case DT_PLTRELSZ:
        tables->plt_bytes = entry->d_un.d_val;
        break;
      case DT_PLTREL:
        if (entry->d_un.d_val != DT_RELA) return false;
        break;
      case DT_RELA:
        tables->relocations =
            reinterpret_cast<const ElfW(Rela)*>(LoadedAddress(map, entry->d_un.d_ptr));
        break;
      case DT_RELASZ:
        tables->relocation_bytes = entry->d_un.d_val;
        break;
      case DT_SYMTAB:
        tables->symbols = reinterpret_cast<const ElfW(Sym)*>(LoadedAddress(map, entry->d_un.d_ptr));
        break;
      case DT_STRTAB:
        tables->strings = reinterpret_cast<const char*>(LoadedAddress(map, entry->d_un.d_ptr));
        break;
      default:
        break;
    }
  }
  return tables->symbols != nullptr && tables->strings != nullptr;
}

// Returns the address of the slot that the relocations bind to `name`
// (a PLT slot or a GOT entry), or nullptr.
void** FindSlot(const link_map* map, const DynamicTables& tables, const char* name) {
  const ElfW(Rela)* lists[] = {tables.plt_relocations, tables.relocations};
  const size_t sizes[] = {tables.plt_bytes, tables.relocation_bytes};
  for (int list = 0; list < 2; list++) {
    if (lists[list] == nullptr) continue;
    size_t count = sizes[list] / sizeof(ElfW(Rela));
    for (size_t i = 0; i < count; i++) {
      const ElfW(Rela)& relocation = lists[list][i];
      uint32_t type = ELF64_R_TYPE(relocation.r_info);
      if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) continue;
      const ElfW(Sym)& symbol = tables.symbols[ELF64_R_SYM(relocation.r_info)];
      if (strcmp(tables.strings + symbol.st_name, name) != 0) continue;
      return reinterpret_cast<void**>(map->l_addr + relocation.r_offset);
    }
  }
  return nullptr;
}

// Writes `value` into `slot`, making its page writable for the write when
// it lies in a read-only area (full RELRO).
bool WriteSlot(void** slot, void* value) {
  uintptr_t page = reinterpret_cast<uintptr_t>(slot) & ~(g_page_size - 1);
  if (mprotect(reinterpret_cast<void*>(page), g_page_size, PROT_READ | PROT_WRITE) != 0) {
    return false;
  }
  __atomic_store_n(slot, value, __ATOMIC_RELEASE);
  return true;
}

}  // namespace

bool CountLibraryMappings(void* library, uint64_t max_bytes) {
  link_map* map = nullptr;
  if (dlinfo(library, RTLD_DI_LINKMAP, &map) != 0 || map == nullptr) return false;
  DynamicTables tables;
  if (!ReadDynamicTables(map, &tables)) return false;
  void** mmap_slot = FindSlot(map, tables, "mmap");
  void** munmap_slot = FindSlot(map, tables, "munmap");
  if (mmap_slot == nullptr || munmap_slot == nullptr) return false;

  long page_size = sysconf(_SC_PAGESIZE);
  if (page_size > 0) g_page_size = static_cast<uint64_t>(page_size);
  g_max_bytes = max_bytes;
  // The library was opened with RTLD_NOW, so its slots already hold libc's
  // functions.
  g_real_mmap = reinterpret_cast<MmapFunction>(*mmap_slot);
  g_real_munmap = reinterpret_cast<MunmapFunction>(*munmap_slot);
  // NOTE: a slot page that was read-only stays writable afterwards; the
  // page's original protection is not recorded anywhere to restore it.
  // mmap first: should the second write fail, mappings are counted and
  // never subtracted, which overstates the memory instead of wrapping.
  return WriteSlot(mmap_slot, reinterpret_cast<void*>(&CountingMmap)) &&
         WriteSlot(munmap_slot, reinterpret_cast<void*>(&CountingMunmap));
}

uint64_t UnwinderMappedBytes() { return g_mapped_bytes.load(std::memory_order_relaxed); }

uint64_t UnwinderRejectedMappings() { return g_rejected_mappings.load(std::memory_order_relaxed); }

}  // namespace memward::accounting
