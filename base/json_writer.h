// A streaming JSON writer into a std::string, for the admin server and the
// exporters. It allocates, so it runs on the warden thread or a caller's
// thread, never inside malloc.
//
//   JsonWriter json(&out);
//   json.BeginObject();
//   json.Key("live_bytes").Int(42);
//   json.Key("name").String("tenant-a");
//   json.EndObject();
//
// The writer inserts commas itself; a caller writes keys only inside objects
// and values only after a key or inside arrays.
#ifndef MEMWARD_BASE_JSON_WRITER_H_
#define MEMWARD_BASE_JSON_WRITER_H_

#include <stdint.h>

#include <string>
#include <string_view>

namespace memward::base {

class JsonWriter {
 public:
  explicit JsonWriter(std::string* out) : out_(out) {}

  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view key);
  // Writes `text` with JSON escapes; bytes that are not valid UTF-8 become
  // U+FFFD, so any input yields valid JSON.
  JsonWriter& String(std::string_view text);
  JsonWriter& Int(int64_t value);
  JsonWriter& Uint(uint64_t value);
  // Non-finite values, which JSON cannot express, are written as null.
  JsonWriter& Double(double value);
  JsonWriter& Bool(bool value);
  JsonWriter& Null();

 private:
  void BeforeValue();

  std::string* out_;
  // True when the next value or key at the current level needs a comma.
  bool need_comma_ = false;
  bool after_key_ = false;
};

// Appends `text` to `out` as a JSON string literal, quotes included.
void AppendJsonString(std::string_view text, std::string* out);

}  // namespace memward::base

#endif  // MEMWARD_BASE_JSON_WRITER_H_
