#include "accounting/protobuf_writer.h"

namespace memward::accounting {
namespace {

constexpr int kWireVarint = 0;
constexpr int kWireLengthDelimited = 2;

}  // namespace

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

void ProtobufWriter::RawVarint(uint64_t value) { AppendVarint(value, out_); }

void ProtobufWriter::Key(int field, int wire_type) {
  RawVarint((static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type));
}

void ProtobufWriter::Varint(int field, uint64_t value) {
  Key(field, kWireVarint);
  RawVarint(value);
}

void ProtobufWriter::VarintIfNonZero(int field, uint64_t value) {
  if (value != 0) Varint(field, value);
}

void ProtobufWriter::Bytes(int field, std::string_view bytes) {
  Key(field, kWireLengthDelimited);
  RawVarint(bytes.size());
  out_->append(bytes);
}

void ProtobufWriter::PackedVarints(int field, const std::vector<uint64_t>& values) {
  if (values.empty()) return;
  std::string packed;
  for (uint64_t value : values) AppendVarint(value, &packed);
  Bytes(field, packed);
}

}  // namespace memward::accounting
