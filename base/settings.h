// The table of memward's settings and the parser for MEMWARD_CONF.
//
// Every setting has one row in kSettingSpecs: name, kind, default, range, unit
// and help. The parser, the error messages, `memward-settings --markdown` (the
// README's table) and the C API all read that row, so they cannot disagree.
//
// MEMWARD_CONF holds `key=value` pairs separated by commas. Sizes take an
// optional k, m or g suffix (KiB, MiB, GiB); times take ms or s, or the word
// `never` where the setting allows it. An unknown key or an invalid value is
// reported and that key keeps its default; `strict=true` makes it fatal.
#ifndef MEMWARD_BASE_SETTINGS_H_
#define MEMWARD_BASE_SETTINGS_H_

#include <stddef.h>
#include <stdint.h>

namespace memward::base {

enum class SettingKind { kBool, kCount, kSize, kTime };

enum class SettingId : int {
  kStrict,
  kNarenas,
  kDirtyDecay,
  kMuzzyDecay,
  kOversizeThreshold,
  kBackgroundThread,
  kStatsAtExit,
  kNumSettings,
};

inline constexpr int kNumSettings = static_cast<int>(SettingId::kNumSettings);

// One row of the settings table. Times are stored in milliseconds and sizes
// in bytes; -1 stands for `never` in a time that allows it.
struct SettingSpec {
  SettingId id;
  const char* name;
  SettingKind kind;
  int64_t default_value;
  int64_t min_value;
  int64_t max_value;
  bool allows_never;
  const char* help;
};

extern const SettingSpec kSettingSpecs[kNumSettings];

// Returns the row for `name` (of length `length`), or nullptr.
const SettingSpec* FindSetting(const char* name, size_t length);

// The values of every setting, initialised to the defaults.
class Settings {
 public:
  Settings();
  int64_t Get(SettingId id) const { return values_[static_cast<int>(id)]; }
  bool GetBool(SettingId id) const { return Get(id) != 0; }
  void Set(SettingId id, int64_t value) { values_[static_cast<int>(id)] = value; }

 private:
  int64_t values_[kNumSettings];
};

// Why a `key=value` pair was not applied.
enum class SettingError { kUnknownKey, kMissingValue, kInvalidValue, kOutOfRange };

// One rejected pair. `key` and `value` point into the parsed text and are not
// NUL-terminated; `spec` is nullptr for an unknown key.
struct SettingProblem {
  SettingError error;
  const char* key;
  size_t key_length;
  const char* value;
  size_t value_length;
  const SettingSpec* spec;
};

using SettingProblemHandler = void (*)(const SettingProblem& problem, void* context);

// Parses `text` into `settings`, calling `handler` for each rejected pair; a
// rejected pair leaves its setting unchanged. Returns the number of problems.
// Never allocates, so it can run inside malloc's bootstrap.
int ParseSettings(const char* text, Settings* settings, SettingProblemHandler handler,
                  void* context);

// Parses one value for `spec` into `out`. On failure returns false and sets
// `error` to kMissingValue, kInvalidValue or kOutOfRange.
bool ParseSettingValue(const SettingSpec& spec, const char* value, size_t length,
                       int64_t* out, SettingError* error);

// Writes the value in the form MEMWARD_CONF accepts ("10s", "512k", "true").
size_t FormatSettingValue(const SettingSpec& spec, int64_t value, char* buffer,
                          size_t capacity);

// Describes the accepted form of a setting, for error messages and docs.
const char* DescribeSettingKind(const SettingSpec& spec);

// Formats the message for a rejected pair, naming the key, the value, the
// accepted form and the default that is kept.
size_t FormatSettingProblem(const SettingProblem& problem, char* buffer, size_t capacity);

}  // namespace memward::base

#endif  // MEMWARD_BASE_SETTINGS_H_
