#include "accounting/symbolizer.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <elfutils/libdwfl.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accounting/loader_calls.h"

namespace memward::accounting {
namespace {

// The libdwfl functions memward calls, resolved with dlsym. libdw's
// interface has been stable since elfutils 0.1xx; Debian 12 ships 0.188.
struct LibdwApi {
  decltype(&dwfl_begin) begin = nullptr;
  decltype(&dwfl_end) end = nullptr;
  decltype(&dwfl_report_begin) report_begin = nullptr;
  decltype(&dwfl_report_end) report_end = nullptr;
  decltype(&dwfl_linux_proc_report) proc_report = nullptr;
  decltype(&dwfl_linux_proc_find_elf) proc_find_elf = nullptr;
  decltype(&dwfl_standard_find_debuginfo) find_debuginfo = nullptr;
  decltype(&dwfl_addrmodule) addrmodule = nullptr;
  decltype(&dwfl_module_addrname) module_addrname = nullptr;
  decltype(&dwfl_module_getsrc) module_getsrc = nullptr;
  decltype(&dwfl_lineinfo) lineinfo = nullptr;
  Dwfl_Callbacks callbacks = {};
  bool loaded = false;
};

LibdwApi g_libdw;
pthread_once_t g_libdw_once = PTHREAD_ONCE_INIT;

template <typename Function>
bool Resolve(void* handle, const char* name, Function* out) {
  *out = reinterpret_cast<Function>(dlsym(handle, name));
  return *out != nullptr;
}

// Loads libdw.so.1 once per process. The handle is never closed: a profile
// may be written again, and unloading elfutils buys nothing.
void LoadLibdw() {
  void* handle = nullptr;
  {
    LoaderCallLock lock;
    handle = dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
  }
  if (handle == nullptr) return;
  LibdwApi& api = g_libdw;
  bool ok = Resolve(handle, "dwfl_begin", &api.begin) && Resolve(handle, "dwfl_end", &api.end) &&
            Resolve(handle, "dwfl_report_begin", &api.report_begin) &&
            Resolve(handle, "dwfl_report_end", &api.report_end) &&
            Resolve(handle, "dwfl_linux_proc_report", &api.proc_report) &&
            Resolve(handle, "dwfl_linux_proc_find_elf", &api.proc_find_elf) &&
            Resolve(handle, "dwfl_standard_find_debuginfo", &api.find_debuginfo) &&
            Resolve(handle, "dwfl_addrmodule", &api.addrmodule) &&
            Resolve(handle, "dwfl_module_addrname", &api.module_addrname) &&
            Resolve(handle, "dwfl_module_getsrc", &api.module_getsrc) &&
            Resolve(handle, "dwfl_lineinfo", &api.lineinfo);
  if (!ok) return;
  api.callbacks.find_elf = api.proc_find_elf;
  api.callbacks.find_debuginfo = api.find_debuginfo;
  api.loaded = true;
}

// Opens a libdwfl session over this process's mappings, or returns null.
Dwfl* OpenSelf() {
  pthread_once(&g_libdw_once, LoadLibdw);
  if (!g_libdw.loaded) return nullptr;
  Dwfl* dwfl = g_libdw.begin(&g_libdw.callbacks);
  if (dwfl == nullptr) return nullptr;
  g_libdw.report_begin(dwfl);
  int error = g_libdw.proc_report(dwfl, getpid());
  if (g_libdw.report_end(dwfl, nullptr, nullptr) != 0 || error != 0) {
    g_libdw.end(dwfl);
    return nullptr;
  }
  return dwfl;
}

std::string HexBytes(const unsigned char* bytes, size_t length) {
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (size_t i = 0; i < length; i++) {
    hex.push_back(kDigits[bytes[i] >> 4]);
    hex.push_back(kDigits[bytes[i] & 0xf]);
  }
  return hex;
}

size_t AlignNote(size_t size) { return (size + 3) & ~static_cast<size_t>(3); }

// The maximum build ID length kept: GNU ld writes 20 bytes (SHA-1), 16 for MD5.
constexpr size_t kMaxBuildId = 64;

// One object as the dl_iterate_phdr callback copies it. The callback runs
// under the dynamic loader's lock and must not allocate: an allocation may
// be sampled, and libunwind's capture takes its own lock and then the
// loader's, so a second thread doing that would deadlock with this one.
constexpr int kMaxExecutableSegments = 8;

struct ExecutableSegment {
  uintptr_t start = 0, limit = 0;
  uint64_t file_offset = 0;
};

struct LoadedObject {
  ExecutableSegment segments[kMaxExecutableSegments];
  int segment_count = 0;
  size_t name_offset = 0;  // into ObjectList::names
  size_t name_length = 0;
  unsigned char build_id[kMaxBuildId] = {};
  size_t build_id_length = 0;
};

// Storage the callback fills without allocating; sized by a first pass.
struct ObjectList {
  LoadedObject* objects = nullptr;
  size_t capacity = 0;
  size_t count = 0;
  char* names = nullptr;
  size_t names_capacity = 0;
  size_t names_used = 0;
  bool overflowed = false;  // an object was loaded between the passes
};

// Copies the GNU build ID from the object's PT_NOTE segments.
void CopyBuildId(const dl_phdr_info* info, LoadedObject* object) {
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)& header = info->dlpi_phdr[i];
    if (header.p_type != PT_NOTE) continue;
    const auto* cursor = reinterpret_cast<const unsigned char*>(info->dlpi_addr + header.p_vaddr);
    const unsigned char* end = cursor + header.p_memsz;
    while (cursor + sizeof(ElfW(Nhdr)) <= end) {
      const auto* note = reinterpret_cast<const ElfW(Nhdr)*>(cursor);
      const unsigned char* name = cursor + sizeof(ElfW(Nhdr));
      const unsigned char* description = name + AlignNote(note->n_namesz);
      if (description + note->n_descsz > end) break;
      if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 &&
          memcmp(name, "GNU", 4) == 0 && note->n_descsz <= kMaxBuildId) {
        memcpy(object->build_id, description, note->n_descsz);
        object->build_id_length = note->n_descsz;
        return;
      }
      cursor = description + AlignNote(note->n_descsz);
    }
  }
}

// First pass: counts objects and the bytes of their names. Allocates nothing.
int CountObjects(dl_phdr_info* info, size_t, void* data) {
  auto* list = static_cast<ObjectList*>(data);
  list->capacity++;
  list->names_capacity += info->dlpi_name != nullptr ? strlen(info->dlpi_name) + 1 : 1;
  return 0;
}

// Second pass: copies each object into the storage. Allocates nothing.
int CopyObject(dl_phdr_info* info, size_t, void* data) {
  auto* list = static_cast<ObjectList*>(data);
  const char* name = info->dlpi_name != nullptr ? info->dlpi_name : "";
  size_t length = strlen(name);
  if (list->count == list->capacity || list->names_used + length + 1 > list->names_capacity) {
    list->overflowed = true;
    return 1;  // stops the iteration
  }
  LoadedObject& object = list->objects[list->count++];
  for (int i = 0; i < info->dlpi_phnum && object.segment_count < kMaxExecutableSegments; i++) {
    const ElfW(Phdr)& header = info->dlpi_phdr[i];
    if (header.p_type != PT_LOAD || (header.p_flags & PF_X) == 0) continue;
    ExecutableSegment& segment = object.segments[object.segment_count++];
    segment.start = info->dlpi_addr + header.p_vaddr;
    segment.limit = segment.start + header.p_memsz;
    segment.file_offset = header.p_offset;
  }
  object.name_offset = list->names_used;
  object.name_length = length;
  memcpy(list->names + list->names_used, name, length + 1);
  list->names_used += length + 1;
  CopyBuildId(info, &object);
  return 0;
}

std::string ProgramPath() {
  char path[4096];
  ssize_t length = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (length <= 0) return {};
  return std::string(path, static_cast<size_t>(length));
}

// Appends the executable segments of `object`. The program itself is
// reported first, with an empty name; nameless objects after it (the vDSO)
// have no file to read and are left out.
void AddObjectMappings(const LoadedObject& object, const char* names, bool is_first,
                       std::vector<ExecutableMapping>* mappings) {
  std::string path(names + object.name_offset, object.name_length);
  if (path.empty() && is_first) path = ProgramPath();
  if (path.empty()) return;
  std::string build_id = HexBytes(object.build_id, object.build_id_length);
  for (int i = 0; i < object.segment_count; i++) {
    ExecutableMapping mapping;
    mapping.start = object.segments[i].start;
    mapping.limit = object.segments[i].limit;
    mapping.file_offset = object.segments[i].file_offset;
    mapping.path = path;
    mapping.build_id = build_id;
    mappings->push_back(std::move(mapping));
  }
}

std::string Hex(uintptr_t value) {
  char text[32];
  snprintf(text, sizeof(text), "0x%lx", static_cast<unsigned long>(value));
  return text;
}

}  // namespace

std::vector<ExecutableMapping> ListExecutableMappings() {
  // Objects loaded between the counting and the copying pass make the copy
  // overflow; room for a few more, and a retry, cover that.
  constexpr size_t kSpareObjects = 8;
  constexpr int kAttempts = 4;
  std::vector<LoadedObject> objects;
  std::vector<char> names;
  ObjectList list;
  for (int attempt = 0; attempt < kAttempts; attempt++) {
    ObjectList sizes;
    {
      LoaderCallLock lock;
      dl_iterate_phdr(CountObjects, &sizes);
    }
    objects.assign(sizes.capacity + kSpareObjects, LoadedObject());
    names.assign(sizes.names_capacity + kSpareObjects * 256, '\0');
    list = ObjectList();
    list.objects = objects.data();
    list.capacity = objects.size();
    list.names = names.data();
    list.names_capacity = names.size();
    {
      LoaderCallLock lock;
      dl_iterate_phdr(CopyObject, &list);
    }
    if (!list.overflowed) break;
  }
  std::vector<ExecutableMapping> mappings;
  for (size_t i = 0; i < list.count; i++) {
    AddObjectMappings(objects[i], names.data(), i == 0, &mappings);
  }
  return mappings;
}

std::string Demangle(const char* name) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status != 0 || demangled == nullptr) return name;
  std::string result(demangled);
  free(demangled);
  return result;
}

std::string SymbolizedFrame::DisplayName(const std::vector<ExecutableMapping>& mappings) const {
  if (!function.empty()) return function;
  if (mapping < 0) return Hex(address);
  const ExecutableMapping& object = mappings[static_cast<size_t>(mapping)];
  const char* slash = strrchr(object.path.c_str(), '/');
  std::string base = slash != nullptr ? slash + 1 : object.path;
  return base + "+" + Hex(address - object.start + object.file_offset);
}

Symbolizer::Symbolizer() : mappings_(ListExecutableMappings()), dwfl_(OpenSelf()) {}

Symbolizer::~Symbolizer() {
  if (dwfl_ != nullptr) g_libdw.end(static_cast<Dwfl*>(dwfl_));
}

int Symbolizer::FindMapping(uintptr_t address) const {
  for (size_t i = 0; i < mappings_.size(); i++) {
    if (address >= mappings_[i].start && address < mappings_[i].limit) return static_cast<int>(i);
  }
  return -1;
}

const SymbolizedFrame& Symbolizer::Lookup(uintptr_t return_address) {
  auto [entry, inserted] = cache_.try_emplace(return_address);
  SymbolizedFrame& frame = entry->second;
  if (!inserted) return frame;
  frame.address = return_address > 0 ? return_address - 1 : 0;
  frame.mapping = FindMapping(frame.address);
  if (uses_libdw()) {
    LookupWithLibdw(&frame);
  } else {
    LookupWithDladdr(&frame);
  }
  return frame;
}

void Symbolizer::LookupWithLibdw(SymbolizedFrame* frame) {
  Dwfl_Module* module = g_libdw.addrmodule(static_cast<Dwfl*>(dwfl_), frame->address);
  if (module == nullptr) return;
  const char* name = g_libdw.module_addrname(module, frame->address);
  if (name != nullptr) {
    frame->system_name = name;
    frame->function = Demangle(name);
  }
  Dwfl_Line* line = g_libdw.module_getsrc(module, frame->address);
  if (line == nullptr) return;
  int line_number = 0;
  const char* file =
      g_libdw.lineinfo(line, nullptr, &line_number, nullptr, nullptr, nullptr);
  if (file != nullptr) frame->file = file;
  frame->line = line_number;
}

void Symbolizer::LookupWithDladdr(SymbolizedFrame* frame) {
  Dl_info info = {};
  if (dladdr(reinterpret_cast<void*>(frame->address), &info) == 0) return;
  if (info.dli_sname == nullptr) return;
  frame->system_name = info.dli_sname;
  frame->function = Demangle(info.dli_sname);
}

}  // namespace memward::accounting
