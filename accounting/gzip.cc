#include "accounting/gzip.h"

#include <limits.h>
#include <zlib.h>

namespace memward::accounting {
namespace {

// windowBits of 15 plus 16 selects the gzip wrapper in deflateInit2 and, for
// inflateInit2, accepts only gzip.
constexpr int kGzipWindowBits = 15 + 16;
constexpr int kMemoryLevel = 8;  // zlib's default
constexpr size_t kChunk = 64 * 1024;

}  // namespace

bool GzipCompress(std::string_view data, std::string* out) {
  out->clear();
  // One deflate call takes at most UINT_MAX bytes (zlib's uInt).
  if (data.size() > UINT_MAX / 2) return false;
  z_stream stream = {};
  if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kGzipWindowBits, kMemoryLevel,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    return false;
  }
  out->resize(deflateBound(&stream, data.size()));
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out->data());
  stream.avail_out = static_cast<uInt>(out->size());
  // deflateBound is an upper bound for one deflate call with Z_FINISH.
  int result = deflate(&stream, Z_FINISH);
  deflateEnd(&stream);
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
  z_stream stream = {};
  if (inflateInit2(&stream, kGzipWindowBits) != Z_OK) return false;
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  int result = Z_OK;
  char buffer[kChunk];
  while (result != Z_STREAM_END || stream.avail_in > 0) {
    if (result == Z_STREAM_END) {
      // Another gzip member follows (gzip allows concatenated members).
      if (inflateReset(&stream) != Z_OK) break;
    }
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof(buffer);
    result = inflate(&stream, Z_NO_FLUSH);
    if (result != Z_OK && result != Z_STREAM_END) break;
    out->append(buffer, sizeof(buffer) - stream.avail_out);
    if (result == Z_OK && stream.avail_in == 0 && stream.avail_out != 0) break;
  }
  inflateEnd(&stream);
  if (result != Z_STREAM_END) {
    out->clear();
    return false;
  }
  return true;
}

}  // namespace memward::accounting
