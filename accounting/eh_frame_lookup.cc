// .eh_frame_hdr search and CIE/FDE parsing. Runs on a cache miss inside
// malloc: no heap memory, and only the loader's lock.
//
// With sample_tables_from_file the tables are read from the object's file
// (accounting/object_file.h), so that the file pages around each read do
// not join the host's RSS. Dropping mapped pages after each lookup with
// MADV_DONTNEED instead was tried and undone. It discards a program's own
// writes to a read-only segment, such as a vtable patched after mprotect
// or a debugger's write. It also zeroes a segment that the program moved
// to anonymous memory.
#include "accounting/eh_frame_lookup.h"

#include <elf.h>
#include <link.h>
#include <stddef.h>

#include "accounting/cfi_program.h"
#include "accounting/dwarf_reader.h"
#include "accounting/object_file.h"
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

// Each CIE and FDE is read from the file with one pread of up to this many
// bytes into a stack buffer, and a longer entry is parsed in place in the
// mapping. The largest FDE of Debian 12's libc is 196 bytes, of libcrypto
// 340 and of libssl 496. Only 4 of libstdc++'s 4,869 FDEs are longer than
// 512 (760 at most). Their CIEs take 20 to 32 bytes.
constexpr size_t kFdeBufferBytes = 512;
constexpr size_t kCieBufferBytes = 128;

// Returns the bytes of the CIE or FDE at `address`, length field first,
// from `buffer` (`capacity` bytes) or the mapping, and sets `end` past
// them. Returns nullptr for a zero or 64-bit length.
const uint8_t* ViewEntry(const ObjectFile& file, uintptr_t address, uint8_t* buffer,
                         size_t capacity, const uint8_t*& end) {
  uint32_t length = 0;
  const size_t copied = file.ReadFromFile(address, buffer, capacity);
  if (copied >= sizeof(length)) {
    memcpy(&length, buffer, sizeof(length));
    if (length != 0 && length != 0xffffffff && sizeof(length) + size_t{length} <= copied) {
      end = buffer + sizeof(length) + length;
      return buffer;
    }
  }
  const auto* entry = reinterpret_cast<const uint8_t*>(address);
  memcpy(&length, entry, sizeof(length));
  if (length == 0 || length == 0xffffffff) return nullptr;  // no 64-bit DWARF
  end = entry + sizeof(length) + length;
  return entry;
}

// Parses the CIE at `cie` into `program` and `info`, with `buffer`
// (kCieBufferBytes) for its copy, which `program` points into. Returns false when it is malformed or
// not supported.
bool ParseCie(const ObjectFile& file, uintptr_t cie, uint8_t* buffer, CfiProgram& program,
              CieInfo& info) {
  const uint8_t* end = nullptr;
  const uint8_t* entry = ViewEntry(file, cie, buffer, kCieBufferBytes, end);
  if (entry == nullptr) return false;
  DwarfReader in(entry + 4, end, cie + 4);
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
FrameRule RuleFromFde(const ObjectFile& file, uintptr_t fde, uintptr_t address) {
  uint8_t fde_buffer[kFdeBufferBytes];
  const uint8_t* end = nullptr;
  const uint8_t* entry = ViewEntry(file, fde, fde_buffer, sizeof(fde_buffer), end);
  if (entry == nullptr) return FrameRule{};
  DwarfReader in(entry + 4, end, fde + 4);
  uint32_t cie_distance = in.ReadU32();
  CfiProgram program;
  CieInfo info;
  uint8_t cie_buffer[kCieBufferBytes];
  if (!ParseCie(file, fde + 4 - cie_distance, cie_buffer, program, info)) return FrameRule{};
  uintptr_t start = in.ReadEncoded(info.fde_encoding, 0);
  uintptr_t range = in.ReadEncoded(info.fde_encoding & kEncodingFormatMask, 0);
  if (info.has_augmentation_data) in.Skip(in.ReadUleb());
  if (in.Overran() || address < start || address - start >= range) return FrameRule{};
  program.fde_begin = in.position();
  program.fde_end = end;
  program.function_start = start;
  return RunCfiProgram(program, address);
}

// The fixed part of .eh_frame_hdr: four encoding bytes, then the pointer to
// .eh_frame and the table's entry count, each at most 8 bytes.
constexpr size_t kHeaderBytes = 4 + 8 + 8;

// Search table entries read with one pread once the binary search has
// narrowed the range to them. Each pread is a system call (0.6 us on a
// 2-CPU AMD EPYC VM), and each halving before it takes one.
constexpr uint64_t kTableChunkEntries = 64;

// An entry of the .eh_frame_hdr search table: the function's start and its
// FDE, as offsets from the header.
struct TableEntry {
  int32_t start;
  int32_t fde;
};

// Returns the FDE offset of the last entry of `table` (`count` entries)
// that starts at or below `address`, or 0 when the first starts above it.
int32_t SearchTable(const ObjectFile& file, uintptr_t header, uintptr_t table, uint64_t count,
                    uintptr_t address) {
  auto start_of = [&](uint64_t i) {
    int32_t offset;
    file.Read(table + i * sizeof(TableEntry), &offset, sizeof(offset));
    return header + static_cast<uintptr_t>(static_cast<intptr_t>(offset));
  };
  uint64_t low = 0;
  uint64_t high = count;  // the entry is in [low, high)
  while (high - low > kTableChunkEntries) {
    uint64_t middle = low + (high - low) / 2;
    if (start_of(middle) <= address) {
      low = middle;
    } else {
      high = middle;
    }
  }

  TableEntry chunk[kTableChunkEntries];
  file.Read(table + low * sizeof(TableEntry), chunk, (high - low) * sizeof(TableEntry));
  auto chunk_start = [&](uint64_t i) {
    return header + static_cast<uintptr_t>(static_cast<intptr_t>(chunk[i].start));
  };
  if (chunk_start(0) > address) return 0;
  uint64_t found = 0;
  while (found + 1 < high - low && chunk_start(found + 1) <= address) found++;
  return chunk[found].fde;
}

// Finds the FDE for `address` in the search table of the .eh_frame_hdr at
// `header` (`size` bytes). Returns its address, or 0.
uintptr_t FindFde(const ObjectFile& file, uintptr_t header, uintptr_t size, uintptr_t address) {
  uint8_t bytes[kHeaderBytes];
  const size_t header_size = size < kHeaderBytes ? size : kHeaderBytes;
  file.Read(header, bytes, header_size);
  DwarfReader in(bytes, bytes + header_size, header);
  uint8_t version = in.ReadU8();
  uint8_t frame_pointer_encoding = in.ReadU8();
  uint8_t count_encoding = in.ReadU8();
  uint8_t table_encoding = in.ReadU8();
  // NOTE: objects without a sorted table (or with another encoding than the
  // one GNU ld and lld write) are not searched; their frames fall back.
  if (version != 1 || table_encoding != kEncodingDataRelativeSigned4) return 0;
  in.ReadEncoded(frame_pointer_encoding, header);
  uint64_t count = in.ReadEncoded(count_encoding, header);
  if (in.Overran() || count == 0) return 0;

  // The entries are sorted by start.
  const uintptr_t table = header + static_cast<uintptr_t>(in.position() - bytes);
  if (count > (header + size - table) / sizeof(TableEntry)) return 0;
  const int32_t fde_offset = SearchTable(file, header, table, count, address);
  if (fde_offset == 0) return 0;
  return header + static_cast<uintptr_t>(static_cast<intptr_t>(fde_offset));
}

struct Search {
  uintptr_t address = 0;
  TableSource source = TableSource::kFile;
  FrameRule rule;
  uint64_t unloads = 0;
  bool unloads_known = false;
};

// dl_iterate_phdr's callback: returns 1, with the rule, for the object
// that maps `address`, and parses while the loader's lock keeps the object
// from being unloaded.
int SearchObject(dl_phdr_info* object, size_t size, void* data) {
  auto* search = static_cast<Search*>(data);
  if (ReadUnloadCount(*object, size, search->unloads)) search->unloads_known = true;
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
    const ObjectFile file(*object, search->source == TableSource::kFile);
    const uintptr_t header = object->dlpi_addr + eh_frame_header->p_vaddr;
    const uintptr_t fde = FindFde(file, header, eh_frame_header->p_memsz, search->address);
    if (fde != 0) search->rule = RuleFromFde(file, fde, search->address);
  }
  return 1;
}

}  // namespace

MEMWARD_TEXT FrameRule LookUpFrameRule(uintptr_t return_address, uint64_t& unloads,
                                       TableSource source) {
  Search search;
  search.address = return_address - 1;
  search.source = source;
  dl_iterate_phdr(SearchObject, &search);
  if (search.unloads_known) unloads = search.unloads;
  return search.rule;
}

}  // namespace memward::accounting
