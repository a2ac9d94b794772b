// The frame rule lookup read from the objects' files against the same
// lookup read through their mappings. Built without memward (the lookup
// uses no heap memory), once plain and once with AddressSanitizer and
// UndefinedBehaviorSanitizer.
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "accounting/eh_frame_lookup.h"
#include "accounting/frame_rule.h"
#include "accounting/object_file.h"
#include "gtest/gtest.h"

namespace memward::accounting {
namespace {

constexpr const char* kLargeLibrary = "libcrypto.so.3";
constexpr const char* kSmallLibrary = "libz.so.1";
// Loaded by FileReadsMapNoTablePages alone, so that no other test has
// mapped its tables.
constexpr const char* kUntouchedLibrary = "libssl.so.3";

// The load address, executable range and .eh_frame range of one object.
struct ObjectRanges {
  std::string name;
  uintptr_t text_begin = 0;
  uintptr_t text_end = 0;
  uintptr_t eh_frame_begin = 0;  // from .eh_frame_hdr to its segment's end
  uintptr_t eh_frame_end = 0;
};

int CollectRanges(dl_phdr_info* object, size_t, void* data) {
  auto* all = static_cast<std::vector<ObjectRanges>*>(data);
  ObjectRanges ranges;
  ranges.name = object->dlpi_name;
  uintptr_t header = 0;
  for (ElfW(Half) i = 0; i < object->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = object->dlpi_phdr[i];
    if (segment.p_type == PT_LOAD && (segment.p_flags & PF_X) != 0) {
      ranges.text_begin = object->dlpi_addr + segment.p_vaddr;
      ranges.text_end = ranges.text_begin + segment.p_memsz;
    }
    if (segment.p_type == PT_GNU_EH_FRAME) header = object->dlpi_addr + segment.p_vaddr;
  }
  for (ElfW(Half) i = 0; i < object->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = object->dlpi_phdr[i];
    const uintptr_t start = object->dlpi_addr + segment.p_vaddr;
    if (segment.p_type == PT_LOAD && header >= start && header < start + segment.p_memsz) {
      ranges.eh_frame_begin = header;
      ranges.eh_frame_end = start + segment.p_memsz;
    }
  }
  all->push_back(ranges);
  return 0;
}

// Returns the ranges of the loaded object whose path ends with `suffix`
// ("" for the main program).
ObjectRanges RangesOf(const std::string& suffix) {
  std::vector<ObjectRanges> all;
  dl_iterate_phdr(CollectRanges, &all);
  for (const ObjectRanges& ranges : all) {
    if (suffix.empty() ? ranges.name.empty()
                       : ranges.name.size() >= suffix.size() &&
                             ranges.name.compare(ranges.name.size() - suffix.size(),
                                                 suffix.size(), suffix) == 0) {
      return ranges;
    }
  }
  return {};
}

// Returns `count` addresses spread over the text of `ranges`.
std::vector<uintptr_t> AddressesIn(const ObjectRanges& ranges, size_t count) {
  std::vector<uintptr_t> addresses;
  const uintptr_t step = (ranges.text_end - ranges.text_begin) / (count + 1);
  for (size_t i = 1; i <= count; ++i) addresses.push_back(ranges.text_begin + i * step + 1);
  return addresses;
}

uint64_t Lookup(uintptr_t address, TableSource source) {
  uint64_t unloads = 0;
  return PackFrameRule(LookUpFrameRule(address, unloads, source));
}

// Returns how many pages of [begin, end) are mapped in this process.
size_t PresentPages(uintptr_t begin, uintptr_t end) {
  const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  size_t present = 0;
  for (uintptr_t page = begin & ~uintptr_t{4095}; page < end; page += 4096) {
    uint64_t entry = 0;
    EXPECT_EQ(pread(fd, &entry, sizeof(entry), static_cast<off_t>(page / 4096 * 8)), 8);
    present += (entry >> 63) & 1;
  }
  close(fd);
  return present;
}

// The object that contains an address, as dl_iterate_phdr describes it.
struct FoundObject {
  dl_phdr_info info;
  bool found = false;
};

int FindObject(dl_phdr_info* object, size_t, void* data) {
  auto* target = static_cast<std::pair<uintptr_t, FoundObject*>*>(data);
  for (ElfW(Half) i = 0; i < object->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = object->dlpi_phdr[i];
    const uintptr_t start = object->dlpi_addr + segment.p_vaddr;
    if (segment.p_type == PT_LOAD && target->first >= start &&
        target->first - start < segment.p_memsz) {
      target->second->info = *object;
      target->second->found = true;
      return 1;
    }
  }
  return 0;
}

FoundObject ObjectContaining(uintptr_t address) {
  FoundObject found;
  std::pair<uintptr_t, FoundObject*> target{address, &found};
  dl_iterate_phdr(FindObject, &target);
  return found;
}

TEST(EhFrameLookup, FileAndMappingRulesAgree) {
  ASSERT_NE(dlopen(kLargeLibrary, RTLD_NOW | RTLD_LOCAL), nullptr) << dlerror();
  for (const std::string& suffix : {std::string(""), std::string("/libc.so.6"),
                                    std::string("/libstdc++.so.6"), "/" + std::string(kLargeLibrary)}) {
    const ObjectRanges ranges = RangesOf(suffix);
    ASSERT_NE(ranges.text_begin, 0u) << "no loaded object ends with " << suffix;
    size_t cacheable = 0;
    for (uintptr_t address : AddressesIn(ranges, 2000)) {
      const uint64_t from_file = Lookup(address, TableSource::kFile);
      ASSERT_EQ(from_file, Lookup(address, TableSource::kMapping))
          << "address 0x" << std::hex << address << " in " << ranges.name;
      if ((from_file & kPackedNotCacheable) == 0) cacheable++;
    }
    EXPECT_GT(cacheable, 1000u) << "most addresses in " << ranges.name << " have a plain rule";
  }
}

TEST(EhFrameLookup, FileReadsMapNoTablePages) {
  ASSERT_NE(dlopen(kUntouchedLibrary, RTLD_NOW | RTLD_LOCAL), nullptr) << dlerror();
  const ObjectRanges ranges = RangesOf("/" + std::string(kUntouchedLibrary));
  ASSERT_NE(ranges.eh_frame_begin, 0u);
  const std::vector<uintptr_t> addresses = AddressesIn(ranges, 300);
  const size_t before = PresentPages(ranges.eh_frame_begin, ranges.eh_frame_end);
  for (uintptr_t address : addresses) Lookup(address, TableSource::kFile);
  EXPECT_EQ(PresentPages(ranges.eh_frame_begin, ranges.eh_frame_end), before)
      << "the lookups from the file mapped pages of the tables";

  // The same lookups through the mapping do map them, so the check above
  // can see pages mapped by a lookup.
  for (uintptr_t address : addresses) Lookup(address, TableSource::kMapping);
  EXPECT_GT(PresentPages(ranges.eh_frame_begin, ranges.eh_frame_end), before + 8);
}

// Copies the file at `from` to `to`.
void CopyFile(const std::string& from, const std::string& to) {
  const std::string command = "cp '" + from + "' '" + to + "'";
  ASSERT_EQ(system(command.c_str()), 0) << command;
}

// Copies kSmallLibrary to `path` and loads the copy into `*copy`.
void LoadCopyOfSmallLibrary(const std::string& path, void** copy) {
  ASSERT_NE(dlopen(kSmallLibrary, RTLD_NOW | RTLD_LOCAL), nullptr) << dlerror();
  CopyFile(RangesOf("/" + std::string(kSmallLibrary)).name, path);
  *copy = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(*copy, nullptr) << dlerror();
}

// A library replaced on disk after it was loaded: its path now names
// another file, whose bytes at the tables' offsets are not its tables.
TEST(EhFrameLookup, ReplacedFileIsReadThroughMapping) {
  char directory[] = "/tmp/memward-eh-frame-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  const std::string path = std::string(directory) + "/libcopy.so";
  ASSERT_NE(dlopen(kLargeLibrary, RTLD_NOW | RTLD_LOCAL), nullptr) << dlerror();
  void* copy = nullptr;
  LoadCopyOfSmallLibrary(path, &copy);
  ASSERT_NE(copy, nullptr);
  const ObjectRanges ranges = RangesOf("/libcopy.so");
  ASSERT_NE(ranges.text_begin, 0u);
  const FoundObject before = ObjectContaining(ranges.text_begin);
  ASSERT_TRUE(before.found);
  EXPECT_TRUE(ObjectFile(before.info, true).reads_file()) << "the copy as loaded is not read";

  // rename leaves the loaded inode mapped and points the path elsewhere.
  const std::string other = path + ".new";
  CopyFile(RangesOf("/" + std::string(kLargeLibrary)).name, other);
  ASSERT_EQ(rename(other.c_str(), path.c_str()), 0);
  const FoundObject after = ObjectContaining(ranges.text_begin);
  ASSERT_TRUE(after.found);
  EXPECT_FALSE(ObjectFile(after.info, true).reads_file()) << "another build ID was accepted";
  size_t cacheable = 0;
  for (uintptr_t address : AddressesIn(ranges, 500)) {
    const uint64_t from_file = Lookup(address, TableSource::kFile);
    ASSERT_EQ(from_file, Lookup(address, TableSource::kMapping))
        << "address 0x" << std::hex << address;
    if ((from_file & kPackedNotCacheable) == 0) cacheable++;
  }
  EXPECT_GT(cacheable, 250u);

  dlclose(copy);
  unlink(path.c_str());
  rmdir(directory);
}

TEST(EhFrameLookup, DeletedFileIsReadThroughMapping) {
  char directory[] = "/tmp/memward-eh-frame-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  const std::string path = std::string(directory) + "/libdeleted.so";
  void* copy = nullptr;
  LoadCopyOfSmallLibrary(path, &copy);
  ASSERT_NE(copy, nullptr);
  ASSERT_EQ(unlink(path.c_str()), 0);
  const ObjectRanges ranges = RangesOf("/libdeleted.so");
  const FoundObject object = ObjectContaining(ranges.text_begin);
  ASSERT_TRUE(object.found);

  errno = 1234;
  {
    const ObjectFile file(object.info, true);
    EXPECT_FALSE(file.reads_file());
  }
  EXPECT_EQ(errno, 1234) << "the failed open changed errno";
  size_t cacheable = 0;
  for (uintptr_t address : AddressesIn(ranges, 200)) {
    const uint64_t rule = Lookup(address, TableSource::kFile);
    if ((rule & kPackedNotCacheable) == 0) cacheable++;
  }
  EXPECT_GT(cacheable, 100u) << "the mapping's tables were not read";
  dlclose(copy);
  rmdir(directory);
}

// A FIFO renamed over a loaded library's path: an open without O_NONBLOCK
// would wait for a writer, inside malloc and under the loader's lock.
TEST(EhFrameLookup, FifoAtLibraryPathIsNotRead) {
  char directory[] = "/tmp/memward-eh-frame-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  const std::string path = std::string(directory) + "/libfifo.so";
  void* copy = nullptr;
  LoadCopyOfSmallLibrary(path, &copy);
  ASSERT_NE(copy, nullptr);
  const ObjectRanges ranges = RangesOf("/libfifo.so");
  const std::string fifo = path + ".fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  ASSERT_EQ(rename(fifo.c_str(), path.c_str()), 0);

  const FoundObject object = ObjectContaining(ranges.text_begin);
  ASSERT_TRUE(object.found);
  EXPECT_FALSE(ObjectFile(object.info, true).reads_file());
  for (uintptr_t address : AddressesIn(ranges, 100)) {
    ASSERT_EQ(Lookup(address, TableSource::kFile), Lookup(address, TableSource::kMapping))
        << "address 0x" << std::hex << address;
  }
  dlclose(copy);
  unlink(path.c_str());
  rmdir(directory);
}

TEST(EhFrameLookup, FileReadsKeepErrno) {
  const ObjectRanges ranges = RangesOf("/libc.so.6");
  errno = 4321;
  for (uintptr_t address : AddressesIn(ranges, 50)) Lookup(address, TableSource::kFile);
  EXPECT_EQ(errno, 4321);
}

}  // namespace
}  // namespace memward::accounting
