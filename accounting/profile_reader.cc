#include "accounting/profile_reader.h"

#include <stdio.h>

#include "accounting/gzip.h"

namespace memward::accounting {
namespace {

// A cursor over protobuf wire-format bytes. Every read checks bounds and
// sets `failed` instead of reading past the end.
class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}

  bool done() const { return position_ >= data_.size() || failed_; }
  bool failed() const { return failed_; }
  void MarkFailed() { failed_ = true; }

  uint64_t Varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (position_ >= data_.size()) break;
      uint8_t byte = static_cast<uint8_t>(data_[position_++]);
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    failed_ = true;
    return 0;
  }

  std::string_view Bytes() {
    uint64_t length = Varint();
    if (failed_ || length > data_.size() - position_) {
      failed_ = true;
      return {};
    }
    std::string_view bytes = data_.substr(position_, length);
    position_ += length;
    return bytes;
  }

  // Skips a field of `wire_type` that the reader does not use.
  void Skip(int wire_type) {
    switch (wire_type) {
      case 0: Varint(); break;
      case 1: Advance(8); break;
      case 2: Bytes(); break;
      case 5: Advance(4); break;
      default: failed_ = true;
    }
  }

 private:
  void Advance(size_t count) {
    if (count > data_.size() - position_) {
      failed_ = true;
      return;
    }
    position_ += count;
  }

  std::string_view data_;
  size_t position_ = 0;
  bool failed_ = false;
};

// Reads a repeated integer field, packed or not, appending to `out`.
template <typename Integer>
void ReadIntegers(WireReader* reader, int wire_type, std::vector<Integer>* out) {
  if (wire_type == 0) {
    out->push_back(static_cast<Integer>(reader->Varint()));
    return;
  }
  WireReader packed(reader->Bytes());
  while (!packed.done()) out->push_back(static_cast<Integer>(packed.Varint()));
  if (packed.failed()) reader->MarkFailed();
}

struct RawLabel {
  int64_t key = 0, str = 0;
};
struct RawSample {
  std::vector<uint64_t> location_ids;
  std::vector<int64_t> values;
  std::vector<RawLabel> labels;
};
struct RawLocation {
  uint64_t id = 0, address = 0;
  std::vector<uint64_t> function_ids;
};

RawLabel ReadLabel(std::string_view bytes, bool* ok) {
  RawLabel label;
  WireReader reader(bytes);
  while (!reader.done()) {
    uint64_t key = reader.Varint();
    int field = static_cast<int>(key >> 3), type = static_cast<int>(key & 7);
    if (field == 1 && type == 0) label.key = static_cast<int64_t>(reader.Varint());
    else if (field == 2 && type == 0) label.str = static_cast<int64_t>(reader.Varint());
    else reader.Skip(type);
  }
  *ok = *ok && !reader.failed();
  return label;
}

RawSample ReadSample(std::string_view bytes, bool* ok) {
  RawSample sample;
  WireReader reader(bytes);
  while (!reader.done()) {
    uint64_t key = reader.Varint();
    int field = static_cast<int>(key >> 3), type = static_cast<int>(key & 7);
    if (field == 1) ReadIntegers(&reader, type, &sample.location_ids);
    else if (field == 2) ReadIntegers(&reader, type, &sample.values);
    else if (field == 3 && type == 2) sample.labels.push_back(ReadLabel(reader.Bytes(), ok));
    else reader.Skip(type);
  }
  *ok = *ok && !reader.failed();
  return sample;
}

RawLocation ReadLocation(std::string_view bytes, bool* ok) {
  RawLocation location;
  WireReader reader(bytes);
  while (!reader.done()) {
    uint64_t key = reader.Varint();
    int field = static_cast<int>(key >> 3), type = static_cast<int>(key & 7);
    if (field == 1 && type == 0) {
      location.id = reader.Varint();
    } else if (field == 3 && type == 0) {
      location.address = reader.Varint();
    } else if (field == 4 && type == 2) {
      WireReader line(reader.Bytes());
      while (!line.done()) {
        uint64_t line_key = line.Varint();
        if ((line_key >> 3) == 1 && (line_key & 7) == 0) {
          location.function_ids.push_back(line.Varint());
        } else {
          line.Skip(static_cast<int>(line_key & 7));
        }
      }
      *ok = *ok && !line.failed();
    } else {
      reader.Skip(type);
    }
  }
  *ok = *ok && !reader.failed();
  return location;
}

// Reads a Function message: its id and the string index of its name.
std::pair<uint64_t, int64_t> ReadFunction(std::string_view bytes, bool* ok) {
  std::pair<uint64_t, int64_t> function{0, 0};
  WireReader reader(bytes);
  while (!reader.done()) {
    uint64_t key = reader.Varint();
    int field = static_cast<int>(key >> 3), type = static_cast<int>(key & 7);
    if (field == 1 && type == 0) function.first = reader.Varint();
    else if (field == 2 && type == 0) function.second = static_cast<int64_t>(reader.Varint());
    else reader.Skip(type);
  }
  *ok = *ok && !reader.failed();
  return function;
}

std::pair<int64_t, int64_t> ReadValueType(std::string_view bytes, bool* ok) {
  std::pair<int64_t, int64_t> value_type{0, 0};
  WireReader reader(bytes);
  while (!reader.done()) {
    uint64_t key = reader.Varint();
    int field = static_cast<int>(key >> 3), type = static_cast<int>(key & 7);
    if (field == 1 && type == 0) value_type.first = static_cast<int64_t>(reader.Varint());
    else if (field == 2 && type == 0) value_type.second = static_cast<int64_t>(reader.Varint());
    else reader.Skip(type);
  }
  *ok = *ok && !reader.failed();
  return value_type;
}

}  // namespace

int DecodedProfile::SampleIndex(std::string_view type) const {
  for (size_t i = 0; i < sample_types.size(); i++) {
    if (sample_types[i].first == type) return static_cast<int>(i);
  }
  return -1;
}

std::vector<std::string> DecodedProfile::StackNames(const DecodedSample& sample) const {
  std::vector<std::string> names;
  for (uint64_t id : sample.location_ids) {
    auto functions = location_functions.find(id);
    if (functions != location_functions.end() && !functions->second.empty()) {
      names.insert(names.end(), functions->second.begin(), functions->second.end());
      continue;
    }
    char address[32];
    auto found = location_addresses.find(id);
    snprintf(address, sizeof(address), "0x%lx",
             static_cast<unsigned long>(found != location_addresses.end() ? found->second : 0));
    names.push_back(address);
  }
  return names;
}

bool DecodeProfile(std::string_view data, DecodedProfile* profile, std::string* error) {
  std::string inflated;
  if (data.size() >= 2 && static_cast<uint8_t>(data[0]) == 0x1f &&
      static_cast<uint8_t>(data[1]) == 0x8b) {
    if (!GzipDecompress(data, &inflated)) {
      *error = "invalid gzip data";
      return false;
    }
    data = inflated;
  }
  std::vector<std::string> strings;
  std::vector<std::pair<int64_t, int64_t>> sample_types;
  std::vector<RawSample> samples;
  std::vector<RawLocation> locations;
  std::map<uint64_t, int64_t> function_names;
  int64_t default_sample_type = 0;
  bool ok = true;
  WireReader reader(data);
  while (!reader.done()) {
    uint64_t key = reader.Varint();
    int field = static_cast<int>(key >> 3), type = static_cast<int>(key & 7);
    if (field == 1 && type == 2) sample_types.push_back(ReadValueType(reader.Bytes(), &ok));
    else if (field == 2 && type == 2) samples.push_back(ReadSample(reader.Bytes(), &ok));
    else if (field == 4 && type == 2) locations.push_back(ReadLocation(reader.Bytes(), &ok));
    else if (field == 5 && type == 2) function_names.insert(ReadFunction(reader.Bytes(), &ok));
    else if (field == 6 && type == 2) strings.emplace_back(reader.Bytes());
    else if (field == 12 && type == 0) profile->period = static_cast<int64_t>(reader.Varint());
    else if (field == 14 && type == 0) default_sample_type = static_cast<int64_t>(reader.Varint());
    else reader.Skip(type);
  }
  if (!ok || reader.failed()) {
    *error = "malformed profile.proto: a field runs past the end of its message";
    return false;
  }
  auto text = [&](int64_t index) -> std::string {
    if (index < 0 || static_cast<size_t>(index) >= strings.size()) {
      ok = false;
      return {};
    }
    return strings[static_cast<size_t>(index)];
  };
  for (const auto& [type_index, unit_index] : sample_types) {
    profile->sample_types.emplace_back(text(type_index), text(unit_index));
  }
  for (const RawLocation& location : locations) {
    std::vector<std::string>& names = profile->location_functions[location.id];
    for (uint64_t function_id : location.function_ids) {
      auto name = function_names.find(function_id);
      if (name != function_names.end()) names.push_back(text(name->second));
    }
    profile->location_addresses[location.id] = location.address;
  }
  for (const RawSample& raw : samples) {
    DecodedSample sample;
    sample.location_ids = raw.location_ids;
    sample.values = raw.values;
    for (const RawLabel& label : raw.labels) {
      if (label.str != 0) sample.labels.emplace_back(text(label.key), text(label.str));
    }
    if (sample.values.size() != profile->sample_types.size()) ok = false;
    profile->samples.push_back(std::move(sample));
  }
  if (default_sample_type != 0) profile->default_sample_type = text(default_sample_type);
  if (!ok) {
    *error = "malformed profile.proto: a string index or a sample's value count is invalid";
    return false;
  }
  return true;
}

}  // namespace memward::accounting
