// .eh_frame_hdr search and CIE/FDE parsing. Runs on a cache miss inside
// malloc: no heap memory, and only the loader's lock.
//
// NOTE: the tables are read through the object's mapping, and the kernel
// maps up to 64 KiB of file pages around each fault, which stay in the
// host's RSS (256 KiB of libc's and libstdc++'s tables in
// workload_thread_churn). Dropping them after each lookup with
// MADV_DONTNEED was tried and undone: it discards a program's own writes
// to a read-only segment (a vtable patched after mprotect, a debugger's
// write) and zeroes a segment that the program moved to anonymous memory.
// Reading the tables with pread would leave no pages mapped.
#include "accounting/eh_frame_lookup.h"

#include <elf.h>
#include <link.h>
#include <stddef.h>

#include "accounting/cfi_program.h"
#include "accounting/dwarf_reader.h"
#include "alloc/macros.h"

namespace memward::accounting {
namespace {

constexpr uint64_t kRegisterReturnAddress = 16;

// The augmentation of a CIE that matters to the walk.
struct CieInfo {
  uint8_t fde_encoding = 0;  // DW_EH_PE_absptr unless an 'R' augmentation sets another
  bool has_augmentation_data = false;
};

// Parses the augmentation string and data of a CIE. Returns false for
// signal frames ('S') and unknown augmentations.
bool ParseAugmentation(DwarfReader& in, const char* augmentation, CieInfo& info) {
  if (augmentation[0] == '\0') return true;
  if (augmentation[0] != 'z') return false;
  info.has_augmentation_data = true;
  uint64_t length = in.ReadUleb();
  const uint8_t* data_end = in.position() + length;
  for (const char* letter = augmentation + 1; *letter != '\0'; ++letter) {
    if (*letter == 'R') {
      info.fde_encoding = in.ReadU8();
    } else if (*letter == 'P') {
      uint8_t encoding = in.ReadU8();
      in.ReadEncoded(encoding & ~kEncodingIndirect, 0);
    } else if (*letter == 'L') {
      in.ReadU8();
    } else {
      return false;
    }
  }
  if (in.position() > data_end) return false;
  in.Skip(static_cast<uint64_t>(data_end - in.position()));
  return !in.Overran();
}

// Parses the CIE at `cie` into `program` and `info`. Returns false when it
// is malformed or not supported.
bool ParseCie(const uint8_t* cie, CfiProgram& program, CieInfo& info) {
  DwarfReader header(cie, cie + 4);
  uint32_t length = header.ReadU32();
  if (length == 0 || length == 0xffffffff) return false;  // no 64-bit DWARF
  const uint8_t* end = cie + 4 + length;
  DwarfReader in(cie + 4, end);
  if (in.ReadU32() != 0) return false;  // a CIE's id is 0 in .eh_frame
  uint8_t version = in.ReadU8();
  if (version != 1 && version != 3) return false;
  const char* augmentation = reinterpret_cast<const char*>(in.position());
  while (!in.AtEnd() && in.ReadU8() != 0) {
  }
  program.code_alignment = in.ReadUleb();
  program.data_alignment = in.ReadSleb();
  uint64_t return_register = version == 1 ? in.ReadU8() : in.ReadUleb();
  if (return_register != kRegisterReturnAddress) return false;
  if (!ParseAugmentation(in, augmentation, info)) return false;
  program.cie_begin = in.position();
  program.cie_end = end;
  return !in.Overran();
}

// Parses the FDE at `fde` and returns the rule at `address`, which must be
// inside the FDE's range.
FrameRule RuleFromFde(const uint8_t* fde, uintptr_t address) {
  DwarfReader header(fde, fde + 4);
  uint32_t length = header.ReadU32();
  if (length == 0 || length == 0xffffffff) return FrameRule{};
  const uint8_t* end = fde + 4 + length;
  DwarfReader in(fde + 4, end);
  uint32_t cie_distance = in.ReadU32();
  CfiProgram program;
  CieInfo info;
  if (!ParseCie(fde + 4 - cie_distance, program, info)) return FrameRule{};
  uintptr_t start = in.ReadEncoded(info.fde_encoding, 0);
  uintptr_t range = in.ReadEncoded(info.fde_encoding & kEncodingFormatMask, 0);
  if (info.has_augmentation_data) in.Skip(in.ReadUleb());
  if (in.Overran() || address < start || address - start >= range) return FrameRule{};
  program.fde_begin = in.position();
  program.fde_end = end;
  program.function_start = start;
  return RunCfiProgram(program, address);
}

// Finds the FDE for `address` in the search table of the .eh_frame_hdr at
// `header` (`size` bytes), or returns nullptr.
const uint8_t* FindFde(const uint8_t* header, uintptr_t size, uintptr_t address) {
  DwarfReader in(header, header + size);
  uintptr_t base = reinterpret_cast<uintptr_t>(header);
  uint8_t version = in.ReadU8();
  uint8_t frame_pointer_encoding = in.ReadU8();
  uint8_t count_encoding = in.ReadU8();
  uint8_t table_encoding = in.ReadU8();
  // NOTE: objects without a sorted table (or with another encoding than the
  // one GNU ld and lld write) are not searched; their frames fall back.
  if (version != 1 || table_encoding != kEncodingDataRelativeSigned4) return nullptr;
  in.ReadEncoded(frame_pointer_encoding, base);
  uint64_t count = in.ReadEncoded(count_encoding, base);
  if (in.Overran() || count == 0) return nullptr;

  // The table's entries are pairs of 4-byte offsets from the header: the
  // function's start and its FDE, sorted by start.
  const uint8_t* table = in.position();
  if (count > static_cast<uint64_t>(header + size - table) / 8) return nullptr;
  auto entry_start = [&](uint64_t i) {
    int32_t offset;
    memcpy(&offset, table + i * 8, 4);
    return base + static_cast<uintptr_t>(static_cast<intptr_t>(offset));
  };
  if (address < entry_start(0)) return nullptr;

  uint64_t low = 0;
  uint64_t high = count;  // the FDE's entry is in [low, high)
  while (high - low > 1) {
    uint64_t middle = low + (high - low) / 2;
    if (entry_start(middle) <= address) {
      low = middle;
    } else {
      high = middle;
    }
  }

  int32_t fde_offset;
  memcpy(&fde_offset, table + low * 8 + 4, 4);
  return header + fde_offset;
}

struct Search {
  uintptr_t address = 0;
  FrameRule rule;
  uint64_t unloads = 0;
  bool unloads_known = false;
};

// dl_iterate_phdr's callback: returns 1, with the rule, for the object
// that maps `address`, and parses while the loader's lock keeps the object
// from being unloaded.
int SearchObject(dl_phdr_info* object, size_t size, void* data) {
  auto* search = static_cast<Search*>(data);
  if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof(object->dlpi_subs)) {
    search->unloads = object->dlpi_subs;
    search->unloads_known = true;
  }
  const ElfW(Phdr)* eh_frame_header = nullptr;
  bool contains = false;
  for (ElfW(Half) i = 0; i < object->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = object->dlpi_phdr[i];
    uintptr_t start = object->dlpi_addr + segment.p_vaddr;
    if (segment.p_type == PT_LOAD && search->address >= start &&
        search->address - start < segment.p_memsz) {
      contains = true;
    }
    if (segment.p_type == PT_GNU_EH_FRAME) eh_frame_header = &segment;
  }
  if (!contains) return 0;
  if (eh_frame_header != nullptr) {
    const auto* header =
        reinterpret_cast<const uint8_t*>(object->dlpi_addr + eh_frame_header->p_vaddr);
    const uint8_t* fde = FindFde(header, eh_frame_header->p_memsz, search->address);
    if (fde != nullptr) search->rule = RuleFromFde(fde, search->address);
  }
  return 1;
}

}  // namespace

MEMWARD_TEXT FrameRule LookUpFrameRule(uintptr_t return_address, uint64_t& unloads) {
  Search search;
  search.address = return_address - 1;
  dl_iterate_phdr(SearchObject, &search);
  if (search.unloads_known) unloads = search.unloads;
  return search.rule;
}

}  // namespace memward::accounting
