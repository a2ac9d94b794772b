// A minimal protocol buffers encoder for the wire format that pprof's
// profile.proto uses: varints, length-delimited fields and packed repeated
// integers. It appends to a std::string, so it allocates and runs on the
// warden thread or a caller's thread, never inside malloc.
#ifndef MEMWARD_ACCOUNTING_PROTOBUF_WRITER_H_
#define MEMWARD_ACCOUNTING_PROTOBUF_WRITER_H_

#include <stdint.h>

#include <string>
#include <string_view>
#include <vector>

namespace memward::accounting {

class ProtobufWriter {
 public:
  explicit ProtobufWriter(std::string* out) : out_(out) {}

  // Writes an int64, uint64 or bool field (wire type 0). Negative int64
  // values take ten bytes, as the wire format requires for non-zigzag ints.
  void Varint(int field, uint64_t value);
  // Writes a varint field only when `value` is not zero, as proto3 omits
  // default values.
  void VarintIfNonZero(int field, uint64_t value);
  // Writes a string, bytes or embedded message field (wire type 2).
  void Bytes(int field, std::string_view bytes);
  // Writes a packed repeated int64/uint64 field; nothing for an empty list.
  void PackedVarints(int field, const std::vector<uint64_t>& values);

 private:
  void Key(int field, int wire_type);
  void RawVarint(uint64_t value);

  std::string* out_;
};

// Appends `value` as a base-128 varint to `out`.
void AppendVarint(uint64_t value, std::string* out);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PROTOBUF_WRITER_H_
