#include "accounting/gzip.h"

#include <dlfcn.h>
#include <limits.h>
#include <zlib.h>

#include <mutex>

#include "accounting/loader_calls.h"
#include "base/log.h"

namespace memward::accounting {
namespace {

// windowBits of 15 plus 16 selects the gzip wrapper in deflateInit2 and, for
// inflateInit2, accepts only gzip.
constexpr int kGzipWindowBits = 15 + 16;
constexpr int kMemoryLevel = 8;  // zlib's default
constexpr size_t kChunk = 64 * 1024;

// zlib's functions, loaded with dlopen when the first profile is compressed.
// Linking libz.so.1 mapped it into every process, about 84 KiB resident
// (smaps of a small preloaded program), for a feature most processes never
// use. Only called outside malloc, so dlopen is safe here.
struct Zlib {
  decltype(&::deflateInit2_) deflate_init2 = nullptr;
  decltype(&::deflateBound) deflate_bound = nullptr;
  decltype(&::deflate) deflate = nullptr;
  decltype(&::deflateEnd) deflate_end = nullptr;
  decltype(&::inflateInit2_) inflate_init2 = nullptr;
  decltype(&::inflateReset) inflate_reset = nullptr;
  decltype(&::inflate) inflate = nullptr;
  decltype(&::inflateEnd) inflate_end = nullptr;
};

template <typename Function>
bool Resolve(void* library, const char* name, Function* function) {
  *function = reinterpret_cast<Function>(dlsym(library, name));
  return *function != nullptr;
}

bool LoadZlib(Zlib* zlib) {
  void* library = nullptr;
  {
    LoaderCallLock lock;
    library = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
  }
  if (library == nullptr) {
    base::Log("profiles cannot be compressed: dlopen(libz.so.1) failed: %s; install zlib1g",
              dlerror());
    return false;
  }
  bool resolved = Resolve(library, "deflateInit2_", &zlib->deflate_init2) &&
                  Resolve(library, "deflateBound", &zlib->deflate_bound) &&
                  Resolve(library, "deflate", &zlib->deflate) &&
                  Resolve(library, "deflateEnd", &zlib->deflate_end) &&
                  Resolve(library, "inflateInit2_", &zlib->inflate_init2) &&
                  Resolve(library, "inflateReset", &zlib->inflate_reset) &&
                  Resolve(library, "inflate", &zlib->inflate) &&
                  Resolve(library, "inflateEnd", &zlib->inflate_end);
  if (!resolved) base::Log("profiles cannot be compressed: libz.so.1 lacks a function memward uses");
  return resolved;
}

// Returns the loaded functions, or nullptr when zlib cannot be loaded.
const Zlib* GetZlib() {
  static Zlib zlib;
  static bool loaded = false;
  static std::once_flag once;
  std::call_once(once, [] { loaded = LoadZlib(&zlib); });
  return loaded ? &zlib : nullptr;
}

}  // namespace

bool GzipCompress(std::string_view data, std::string* out) {
  out->clear();
  // One deflate call takes at most UINT_MAX bytes (zlib's uInt).
  if (data.size() > UINT_MAX / 2) return false;
  const Zlib* zlib = GetZlib();
  if (zlib == nullptr) return false;
  z_stream stream = {};
  if (zlib->deflate_init2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kGzipWindowBits,
                          kMemoryLevel, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                          static_cast<int>(sizeof(z_stream))) != Z_OK) {
    return false;
  }
  out->resize(zlib->deflate_bound(&stream, data.size()));
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out->data());
  stream.avail_out = static_cast<uInt>(out->size());
  // deflateBound is an upper bound for one deflate call with Z_FINISH.
  int result = zlib->deflate(&stream, Z_FINISH);
  zlib->deflate_end(&stream);
  if (result != Z_STREAM_END) {
    out->clear();
    return false;
  }
  out->resize(stream.total_out);
  return true;
}

bool GzipDecompress(std::string_view data, std::string* out) {
  out->clear();
  if (data.size() > UINT_MAX) return false;
  const Zlib* zlib = GetZlib();
  if (zlib == nullptr) return false;
  z_stream stream = {};
  if (zlib->inflate_init2(&stream, kGzipWindowBits, ZLIB_VERSION,
                          static_cast<int>(sizeof(z_stream))) != Z_OK) {
    return false;
  }
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  int result = Z_OK;
  char buffer[kChunk];
  while (result != Z_STREAM_END || stream.avail_in > 0) {
    if (result == Z_STREAM_END) {
      // Another gzip member follows (gzip allows concatenated members).
      if (zlib->inflate_reset(&stream) != Z_OK) break;
    }
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof(buffer);
    result = zlib->inflate(&stream, Z_NO_FLUSH);
    if (result != Z_OK && result != Z_STREAM_END) break;
    out->append(buffer, sizeof(buffer) - stream.avail_out);
    if (result == Z_OK && stream.avail_in == 0 && stream.avail_out != 0) break;
  }
  zlib->inflate_end(&stream);
  if (result != Z_STREAM_END) {
    out->clear();
    return false;
  }
  return true;
}

}  // namespace memward::accounting
