#include "accounting/object_file.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

namespace memward::accounting {
namespace {

// The note type and owner of a GNU build ID.
constexpr ElfW(Word) kNoteGnuBuildId = 3;
constexpr char kGnuNoteName[] = "GNU";

// Build IDs are 16 bytes (md5, uuid) or 20 bytes (sha1); larger ones are
// allowed up to this size, which bounds the stack copy.
constexpr size_t kMaxBuildIdBytes = 64;

// A build ID's place in memory and its size.
struct BuildId {
  uintptr_t address = 0;
  size_t size = 0;
};

// Returns the build ID among the notes in [begin, end), whose name and
// description fields are padded to `alignment` (4, or 8 in a PT_NOTE
// segment aligned to 8, such as .note.gnu.property's).
BuildId FindBuildIdInNotes(uintptr_t begin, uintptr_t end, size_t alignment) {
  auto align = [alignment](size_t size) { return (size + alignment - 1) & ~(alignment - 1); };
  while (end - begin >= sizeof(ElfW(Nhdr))) {
    ElfW(Nhdr) header;
    memcpy(&header, reinterpret_cast<const void*>(begin), sizeof(header));
    const uintptr_t name = begin + sizeof(header);
    const uintptr_t description = name + align(header.n_namesz);
    const uintptr_t next = description + align(header.n_descsz);
    if (next > end || next <= begin) return {};
    if (header.n_type == kNoteGnuBuildId && header.n_namesz == sizeof(kGnuNoteName) &&
        memcmp(reinterpret_cast<const void*>(name), kGnuNoteName, sizeof(kGnuNoteName)) == 0) {
      return {description, header.n_descsz};
    }
    begin = next;
  }
  return {};
}

BuildId FindBuildId(const dl_phdr_info& object) {
  for (ElfW(Half) i = 0; i < object.dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = object.dlpi_phdr[i];
    if (segment.p_type != PT_NOTE) continue;
    const uintptr_t begin = object.dlpi_addr + segment.p_vaddr;
    const size_t alignment = segment.p_align == 8 ? 8 : 4;
    const BuildId id = FindBuildIdInNotes(begin, begin + segment.p_memsz, alignment);
    if (id.size != 0) return id;
  }
  return {};
}

// Returns the path to open for `object`: its absolute path, or the main
// program's through /proc (dl_iterate_phdr names the main program "").
const char* PathOf(const dl_phdr_info& object) {
  if (object.dlpi_name == nullptr) return nullptr;
  if (object.dlpi_name[0] == '/') return object.dlpi_name;
  if (object.dlpi_name[0] == '\0') return "/proc/self/exe";
  return nullptr;
}

}  // namespace

ObjectFile::ObjectFile(const dl_phdr_info& object, bool use_file)
    : object_(object), saved_errno_(errno) {
  if (!use_file) return;
  const char* path = PathOf(object);
  if (path == nullptr) return;
  // O_NONBLOCK: a FIFO renamed over the path would block the open, inside
  // malloc and under the loader's lock, until a writer came.
  fd_ = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd_ >= 0 && !(IsRegularFile() && BuildIdMatches())) {
    close(fd_);
    fd_ = -1;
  }
}

ObjectFile::~ObjectFile() {
  if (fd_ >= 0) close(fd_);
  errno = saved_errno_;
}

bool ObjectFile::IsRegularFile() const {
  struct stat status;
  return fstat(fd_, &status) == 0 && S_ISREG(status.st_mode);
}

bool ObjectFile::BuildIdMatches() const {
  const BuildId id = FindBuildId(object_);
  if (id.size < 8 || id.size > kMaxBuildIdBytes) return false;
  uint8_t from_file[kMaxBuildIdBytes];
  if (ReadFromFile(id.address, from_file, id.size) != id.size) return false;
  return memcmp(from_file, reinterpret_cast<const void*>(id.address), id.size) == 0;
}

int64_t ObjectFile::FileOffsetOf(uintptr_t address, size_t& available) const {
  for (ElfW(Half) i = 0; i < object_.dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = object_.dlpi_phdr[i];
    if (segment.p_type != PT_LOAD) continue;
    const uintptr_t start = object_.dlpi_addr + segment.p_vaddr;
    if (address < start || address - start >= segment.p_filesz) continue;
    available = segment.p_filesz - (address - start);
    return static_cast<int64_t>(segment.p_offset + (address - start));
  }
  return -1;
}

bool ObjectFile::PreadAll(int64_t offset, void* buffer, size_t size) const {
  auto* cursor = static_cast<uint8_t*>(buffer);
  while (size > 0) {
    const ssize_t count = pread(fd_, cursor, size, offset);
    if (count < 0 && errno == EINTR) continue;
    if (count <= 0) return false;
    cursor += count;
    offset += count;
    size -= static_cast<size_t>(count);
  }
  return true;
}

size_t ObjectFile::ReadFromFile(uintptr_t address, void* buffer, size_t capacity) const {
  if (fd_ < 0) return 0;
  size_t available = 0;
  const int64_t offset = FileOffsetOf(address, available);
  if (offset < 0) return 0;
  const size_t size = capacity < available ? capacity : available;
  return PreadAll(offset, buffer, size) ? size : 0;
}

void ObjectFile::Read(uintptr_t address, void* buffer, size_t size) const {
  if (ReadFromFile(address, buffer, size) == size) return;
  memcpy(buffer, reinterpret_cast<const void*>(address), size);
}

}  // namespace memward::accounting
