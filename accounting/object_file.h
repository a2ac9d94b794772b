// Reads the bytes of a loaded object at their run-time addresses, from the
// object's file with pread where that file is the one mapped.
//
// Reading a table through the object's mapping makes the kernel map up to
// 64 KiB of file pages around each fault (fault-around). Those pages stay
// in the host's RSS: 256 KiB of libc's and libstdc++'s unwind tables in
// workload_thread_churn's large preset. A pread copies the bytes and
// maps nothing. It costs system calls, which a seccomp filter may forbid,
// so the cached unwinder reads files only with sample_tables_from_file.
//
// The file is used only when it is a regular file and its GNU build ID
// (NT_GNU_BUILD_ID) equals the one in memory. Otherwise the object is read
// through its mapping. That covers a library replaced on disk after it was
// loaded, a deleted one, and a path that a mount namespace or chroot now
// resolves elsewhere. It also covers a file without a build ID and an
// object without an absolute path (the vDSO). A read that fails falls back to the mapping too, so a
// caller sees the mapped bytes either way.
//
// Used inside malloc: no heap memory, and errno is kept. Each lookup opens
// the file and closes it at the end, so memward holds no descriptor between
// lookups. A thread of the program that closes or dup2s over that number
// during a lookup can make it read another file. Its rules may then be
// wrong, but the walk that uses them still reads only inside the stack.
#ifndef MEMWARD_ACCOUNTING_OBJECT_FILE_H_
#define MEMWARD_ACCOUNTING_OBJECT_FILE_H_

#include <link.h>
#include <stddef.h>
#include <stdint.h>

namespace memward::accounting {

class ObjectFile {
 public:
  // Opens the file of `object` and checks its build ID, when `use_file`.
  // Reads go through the mapping when the file is not used.
  ObjectFile(const dl_phdr_info& object, bool use_file);
  ~ObjectFile();
  ObjectFile(const ObjectFile&) = delete;
  ObjectFile& operator=(const ObjectFile&) = delete;

  // Whether reads come from the file.
  bool reads_file() const { return fd_ >= 0; }

  // Copies the `size` bytes at run-time address `address`, which must lie
  // in one of the object's loaded segments, into `buffer`.
  void Read(uintptr_t address, void* buffer, size_t size) const;

  // Copies up to `capacity` bytes from run-time address `address` on, from
  // the file and within one loaded segment's file part, into `buffer`.
  // Returns the bytes copied: 0 when reads do not come from the file or the
  // read failed.
  size_t ReadFromFile(uintptr_t address, void* buffer, size_t capacity) const;

 private:
  // Returns the file offset of run-time address `address` when it lies in
  // the file part of a PT_LOAD segment, and sets `available` to the bytes
  // from there to that part's end. Returns -1 otherwise.
  int64_t FileOffsetOf(uintptr_t address, size_t& available) const;
  bool PreadAll(int64_t offset, void* buffer, size_t size) const;
  bool IsRegularFile() const;
  bool BuildIdMatches() const;

  const dl_phdr_info& object_;
  int saved_errno_;  // restored at destruction: malloc keeps the caller's errno
  int fd_ = -1;
};

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_OBJECT_FILE_H_
