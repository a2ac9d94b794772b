// Symbolization of sampled return addresses when a profile is written.
//
// Mappings come from dl_iterate_phdr: one per executable PT_LOAD segment,
// with its file offset and GNU build ID, so pprof can match them to binaries.
// Names, files and lines come from elfutils' libdwfl, which is loaded with
// dlopen the first time a profile is written, so that the preloaded library
// gains no link dependency. libdw reads .symtab and, where the binary has
// it, DWARF .debug_line. Names are demangled with abi::__cxa_demangle. When
// libdw.so.1 cannot be loaded, dladdr is used instead: it reads only the
// dynamic symbol table (exported functions) and gives no file or line.
//
// A Symbolizer allocates, reads files and may take the dynamic loader's
// lock, so it runs on the warden thread or a caller's thread, never inside
// malloc. One instance is not thread safe; use one per profile written.
#ifndef MEMWARD_ACCOUNTING_SYMBOLIZER_H_
#define MEMWARD_ACCOUNTING_SYMBOLIZER_H_

#include <stdint.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace memward::accounting {

// One executable segment of a loaded object.
struct ExecutableMapping {
  uintptr_t start = 0;  // first byte in memory
  uintptr_t limit = 0;  // one past the last byte
  uint64_t file_offset = 0;  // offset in the file of the byte at `start`
  std::string path;  // absolute path; the program's own from /proc/self/exe
  std::string build_id;  // lowercase hex of NT_GNU_BUILD_ID, empty when absent
};

// Lists the executable segments of every object loaded, the program first.
// Its dl_iterate_phdr callbacks copy into storage sized beforehand and never
// allocate: an allocation there could be sampled, and libunwind takes its
// own lock before the loader's, so it would deadlock with another thread's
// capture.
std::vector<ExecutableMapping> ListExecutableMappings();

struct SymbolizedFrame {
  uintptr_t address = 0;  // the looked-up address: the return address minus one
  int mapping = -1;       // index into Symbolizer::mappings(), -1 when outside all
  std::string function;   // demangled name; empty when no symbol covers it
  std::string system_name;  // the symbol as in the binary (mangled for C++)
  std::string file;       // source file, empty without DWARF line tables
  int line = 0;           // 0 when unknown

  // Returns `function`, or "module+0xoffset" (or "0xaddress") when unknown.
  std::string DisplayName(const std::vector<ExecutableMapping>& mappings) const;
};

class Symbolizer {
 public:
  Symbolizer();
  ~Symbolizer();
  Symbolizer(const Symbolizer&) = delete;
  Symbolizer& operator=(const Symbolizer&) = delete;

  // Symbolizes the call that `return_address` returns to: lookups use the
  // address minus one, which lies inside the call instruction, so the line
  // is the call's and not the next statement's. Results are cached.
  const SymbolizedFrame& Lookup(uintptr_t return_address);

  const std::vector<ExecutableMapping>& mappings() const { return mappings_; }
  // Returns the index of the mapping that contains `address`, or -1.
  int FindMapping(uintptr_t address) const;
  // True when libdw was loaded, so names cover .symtab and lines are known.
  bool uses_libdw() const { return dwfl_ != nullptr; }
  // The name of the symbol source in use, "libdw" or "dladdr", for reports.
  const char* backend() const { return uses_libdw() ? "libdw" : "dladdr"; }

 private:
  void LookupWithLibdw(SymbolizedFrame* frame);
  void LookupWithDladdr(SymbolizedFrame* frame);

  std::vector<ExecutableMapping> mappings_;
  void* dwfl_ = nullptr;  // Dwfl*, owned; null when libdw is unavailable
  std::unordered_map<uintptr_t, SymbolizedFrame> cache_;
};

// Returns the demangled form of a C++ symbol, or `name` itself when it is not
// a mangled name.
std::string Demangle(const char* name);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_SYMBOLIZER_H_
