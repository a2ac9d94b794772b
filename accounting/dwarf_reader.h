// A bounded reader of the byte encodings in .eh_frame and .eh_frame_hdr:
// fixed-size little-endian integers, LEB128, and DW_EH_PE pointer encodings
// (Linux Standard Base Core 5.0, "Exception Frames").
#ifndef MEMWARD_ACCOUNTING_DWARF_READER_H_
#define MEMWARD_ACCOUNTING_DWARF_READER_H_

#include <stdint.h>
#include <string.h>

namespace memward::accounting {

// DW_EH_PE pointer encodings.
constexpr uint8_t kEncodingOmit = 0xff;
constexpr uint8_t kEncodingFormatMask = 0x0f;
constexpr uint8_t kEncodingBaseMask = 0x70;
constexpr uint8_t kEncodingIndirect = 0x80;
constexpr uint8_t kEncodingPcRelative = 0x10;
constexpr uint8_t kEncodingDataRelative = 0x30;
constexpr uint8_t kEncodingDataRelativeSigned4 = 0x3b;

// Reads past `end` return zero and set Overran(), so a truncated table
// yields a rejected rule instead of a read out of bounds.
class DwarfReader {
 public:
  DwarfReader() = default;
  DwarfReader(const uint8_t* begin, const uint8_t* end) : position_(begin), end_(end) {}
  // Reads a copy of bytes whose run-time address is `address_of_begin`, so
  // that pc-relative pointers are resolved against the original place.
  DwarfReader(const uint8_t* begin, const uint8_t* end, uintptr_t address_of_begin)
      : position_(begin),
        end_(end),
        address_bias_(address_of_begin - reinterpret_cast<uintptr_t>(begin)) {}

  bool AtEnd() const { return position_ >= end_; }
  bool Overran() const { return overran_; }
  const uint8_t* position() const { return position_; }

  uint8_t ReadU8() { return static_cast<uint8_t>(ReadFixed(1)); }
  uint16_t ReadU16() { return static_cast<uint16_t>(ReadFixed(2)); }
  uint32_t ReadU32() { return static_cast<uint32_t>(ReadFixed(4)); }
  uint64_t ReadU64() { return ReadFixed(8); }

  uint64_t ReadUleb() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t byte = ReadU8();
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    overran_ = true;
    return 0;
  }

  int64_t ReadSleb() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t byte = ReadU8();
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) {
        if (shift + 7 < 64 && (byte & 0x40) != 0) value |= ~uint64_t{0} << (shift + 7);
        return static_cast<int64_t>(value);
      }
    }
    overran_ = true;
    return 0;
  }

  // Reads a pointer in `encoding`. `data_base` is the base of datarel
  // pointers (the start of .eh_frame_hdr). Indirect pointers are returned
  // without being followed, since the walk only skips them.
  uintptr_t ReadEncoded(uint8_t encoding, uintptr_t data_base) {
    if (encoding == kEncodingOmit) return 0;
    uintptr_t field_address = reinterpret_cast<uintptr_t>(position_) + address_bias_;
    uint64_t value = ReadEncodedValue(encoding & kEncodingFormatMask);
    if (value == 0) return 0;
    switch (encoding & kEncodingBaseMask) {
      case 0:
        return static_cast<uintptr_t>(value);
      case kEncodingPcRelative:
        return field_address + static_cast<uintptr_t>(value);
      case kEncodingDataRelative:
        return data_base + static_cast<uintptr_t>(value);
      default:  // textrel, funcrel and aligned do not occur on x86-64 Linux
        overran_ = true;
        return 0;
    }
  }

  void Skip(uint64_t bytes) {
    if (bytes > static_cast<uint64_t>(end_ - position_)) {
      overran_ = true;
      position_ = end_;
      return;
    }
    position_ += bytes;
  }

 private:
  uint64_t ReadFixed(int size) {
    if (end_ - position_ < size) {
      overran_ = true;
      position_ = end_;
      return 0;
    }
    uint64_t value = 0;
    memcpy(&value, position_, static_cast<size_t>(size));
    position_ += size;
    return value;
  }

  // Reads the value part of a pointer, sign-extended for the signed forms.
  uint64_t ReadEncodedValue(uint8_t format) {
    switch (format) {
      case 0x00: return ReadU64();  // absptr
      case 0x01: return ReadUleb();
      case 0x02: return ReadU16();
      case 0x03: return ReadU32();
      case 0x04: return ReadU64();
      case 0x09: return static_cast<uint64_t>(ReadSleb());
      case 0x0a: return static_cast<uint64_t>(static_cast<int64_t>(static_cast<int16_t>(ReadU16())));
      case 0x0b: return static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(ReadU32())));
      case 0x0c: return ReadU64();
      default:
        overran_ = true;
        return 0;
    }
  }

  const uint8_t* position_ = nullptr;
  const uint8_t* end_ = nullptr;
  uintptr_t address_bias_ = 0;  // run-time address minus buffer address
  bool overran_ = false;
};

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_DWARF_READER_H_
