// gzip compression for exported profiles (pprof reads profile.proto gzipped).
// Uses zlib, loaded on first use: Debian's libz.so.1 is part of every base
// system.
#ifndef MEMWARD_ACCOUNTING_GZIP_H_
#define MEMWARD_ACCOUNTING_GZIP_H_

#include <string>
#include <string_view>

namespace memward::accounting {

// Compresses `data` into a gzip member (RFC 1952) in `out`. Returns false,
// leaving `out` empty, when zlib fails (out of memory) or cannot be loaded,
// or `data` is 2 GiB or more.
bool GzipCompress(std::string_view data, std::string* out);

// Decompresses one or more gzip members from `data` into `out`. Returns false
// for data that is not valid gzip. Used by the profile reader and tests.
bool GzipDecompress(std::string_view data, std::string* out);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_GZIP_H_
