// The settings table and a parser that never allocates.
#include "base/settings.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <algorithm>

#include "base/log.h"

namespace memward::base {
const SettingSpec* FindSetting(const char* name, size_t length) {
  for (const SettingSpec& spec : kSettingSpecs) {
    if (strlen(spec.name) == length && memcmp(spec.name, name, length) == 0) return &spec;
  }
  return nullptr;
}

namespace {

bool EqualsIgnoringCase(const char* text, size_t length, const char* word) {
  if (strlen(word) != length) return false;
  for (size_t i = 0; i < length; i++) {
    char c = text[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != word[i]) return false;
  }
  return true;
}

bool ParseBool(const char* value, size_t length, int64_t* out) {
  static const char* const kTrue[] = {"true", "1", "yes", "on"};
  static const char* const kFalse[] = {"false", "0", "no", "off"};
  for (const char* word : kTrue) {
    if (EqualsIgnoringCase(value, length, word)) {
      *out = 1;
      return true;
    }
  }
  for (const char* word : kFalse) {
    if (EqualsIgnoringCase(value, length, word)) {
      *out = 0;
      return true;
    }
  }
  return false;
}

// Reads the leading decimal digits of `value`. Returns the number of digits
// read (0 if there are none); a number past INT64_MAX sets `overflow`.
size_t ParseDigits(const char* value, size_t length, int64_t* out, bool* overflow) {
  int64_t number = 0;
  size_t i = 0;
  *overflow = false;
  for (; i < length && value[i] >= '0' && value[i] <= '9'; i++) {
    int digit = value[i] - '0';
    if (number > (INT64_MAX - digit) / 10) *overflow = true;
    if (!*overflow) number = number * 10 + digit;
  }
  *out = number;
  return i;
}

// Returns the multiplier for a unit suffix, or 0 if the suffix is not one.
int64_t UnitMultiplier(SettingKind kind, const char* suffix, size_t length) {
  if (kind == SettingKind::kSize) {
    if (length == 0 || EqualsIgnoringCase(suffix, length, "b")) return 1;
    if (EqualsIgnoringCase(suffix, length, "k") || EqualsIgnoringCase(suffix, length, "kib")) {
      return kKiB;
    }
    if (EqualsIgnoringCase(suffix, length, "m") || EqualsIgnoringCase(suffix, length, "mib")) {
      return kMiB;
    }
    if (EqualsIgnoringCase(suffix, length, "g") || EqualsIgnoringCase(suffix, length, "gib")) {
      return kGiB;
    }
    return 0;
  }
  if (kind == SettingKind::kTime) {
    if (EqualsIgnoringCase(suffix, length, "ms")) return 1;
    if (EqualsIgnoringCase(suffix, length, "s")) return 1000;
    // A bare 0 needs no unit.
    return 0;
  }
  return length == 0 ? 1 : 0;
}

// Returns whether `value` is one of the '|'-separated `choices`, compared
// without regard to case like the other kinds' words.
bool IsOneOfChoices(const char* choices, const char* value, size_t length) {
  const char* choice = choices;
  for (;;) {
    const char* end = strchr(choice, '|');
    size_t choice_length = end != nullptr ? static_cast<size_t>(end - choice) : strlen(choice);
    if (choice_length == length && strncasecmp(value, choice, length) == 0) return true;
    if (end == nullptr) return false;
    choice = end + 1;
  }
}

}  // namespace

bool ParseSettingValue(const SettingSpec& spec, const char* value, size_t length,
                       int64_t* out, SettingError* error) {
  if (length == 0) {
    if (spec.kind == SettingKind::kText && spec.allows_empty) {
      *out = 0;
      return true;
    }
    *error = SettingError::kMissingValue;
    return false;
  }
  *error = SettingError::kInvalidValue;
  if (spec.kind == SettingKind::kBool) return ParseBool(value, length, out);
  if (spec.kind == SettingKind::kText) {
    // The text itself is stored by the caller; only its length, and its
    // membership in `choices` where the row has them, are checked.
    if (length > kMaxSettingText) {
      *error = SettingError::kOutOfRange;
      return false;
    }
    if (spec.choices != nullptr && !IsOneOfChoices(spec.choices, value, length)) return false;
    *out = static_cast<int64_t>(length);
    return true;
  }
  if (spec.allows_never && EqualsIgnoringCase(value, length, "never")) {
    *out = -1;
    return true;
  }

  int64_t number = 0;
  bool overflow = false;
  size_t digits = ParseDigits(value, length, &number, &overflow);
  if (digits == 0) return false;
  int64_t multiplier = UnitMultiplier(spec.kind, value + digits, length - digits);
  if (multiplier == 0 && spec.kind == SettingKind::kTime && number == 0 && digits == length) {
    multiplier = 1;
  }
  if (multiplier == 0) return false;
  if (overflow || number > INT64_MAX / multiplier) {
    *error = SettingError::kOutOfRange;
    return false;
  }
  number *= multiplier;
  if (number < spec.min_value || number > spec.max_value) {
    *error = SettingError::kOutOfRange;
    return false;
  }
  *out = number;
  return true;
}

size_t FormatSettingValue(const SettingSpec& spec, int64_t value, char* buffer,
                          size_t capacity) {
  switch (spec.kind) {
    case SettingKind::kBool:
      return Format(buffer, capacity, "%s", value != 0 ? "true" : "false");
    case SettingKind::kCount:
      return Format(buffer, capacity, "%lld", static_cast<long long>(value));
    case SettingKind::kSize:
      if (value != 0 && value % kGiB == 0) {
        return Format(buffer, capacity, "%lldg", static_cast<long long>(value / kGiB));
      }
      if (value != 0 && value % kMiB == 0) {
        return Format(buffer, capacity, "%lldm", static_cast<long long>(value / kMiB));
      }
      if (value != 0 && value % kKiB == 0) {
        return Format(buffer, capacity, "%lldk", static_cast<long long>(value / kKiB));
      }
      return Format(buffer, capacity, "%lld", static_cast<long long>(value));
    case SettingKind::kText:
      return Format(buffer, capacity, "%lld bytes", static_cast<long long>(value));
    case SettingKind::kTime:
      if (value < 0) return Format(buffer, capacity, "never");
      if (value != 0 && value % 1000 == 0) {
        return Format(buffer, capacity, "%llds", static_cast<long long>(value / 1000));
      }
      return Format(buffer, capacity, "%lldms", static_cast<long long>(value));
  }
  return Format(buffer, capacity, "?");
}

const char* DescribeSettingKind(const SettingSpec& spec) {
  switch (spec.kind) {
    case SettingKind::kBool: return "true or false (also 1 or 0, yes or no, on or off)";
    case SettingKind::kCount: return "a whole number";
    case SettingKind::kSize: return "a size in bytes with an optional k, m or g suffix";
    case SettingKind::kText: return "text without commas, at most 255 bytes";
    case SettingKind::kTime:
      return spec.allows_never ? "a time with ms or s, or never" : "a time with ms or s";
  }
  return "?";
}

namespace {

// Returns the edit distance (insertions, deletions, substitutions) between
// `key` and `name`, or a large number for a key too long to compare. Runs at
// start-up, so it uses two rows on the stack and allocates nothing.
size_t EditDistance(const char* key, size_t key_length, const char* name) {
  constexpr size_t kMaxLength = 64;
  const size_t name_length = strlen(name);
  if (key_length > kMaxLength || name_length > kMaxLength) return SIZE_MAX;
  size_t previous[kMaxLength + 1];
  size_t current[kMaxLength + 1];
  for (size_t j = 0; j <= name_length; j++) previous[j] = j;
  for (size_t i = 1; i <= key_length; i++) {
    current[0] = i;
    for (size_t j = 1; j <= name_length; j++) {
      const size_t substitution = previous[j - 1] + (key[i - 1] == name[j - 1] ? 0 : 1);
      const size_t insertion = current[j - 1] + 1;
      const size_t deletion = previous[j] + 1;
      current[j] = std::min({substitution, insertion, deletion});
    }
    memcpy(previous, current, (name_length + 1) * sizeof(size_t));
  }
  return previous[name_length];
}

// Returns the known setting closest to an unknown key, or nullptr when none
// is within a third of the key's length (at least 2 edits).
const char* ClosestSettingName(const char* key, size_t key_length) {
  const size_t limit = std::max<size_t>(2, key_length / 3);
  const char* closest = nullptr;
  size_t best = SIZE_MAX;
  for (const SettingSpec& spec : kSettingSpecs) {
    const size_t distance = EditDistance(key, key_length, spec.name);
    if (distance < best) {
      best = distance;
      closest = spec.name;
    }
  }
  return best <= limit ? closest : nullptr;
}

bool IsControlCharacter(char c) {
  return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
}

// Replaces control characters with '?', so that a setting's value cannot
// move the cursor or clear the terminal that shows the log.
void ReplaceControlCharacters(char* text) {
  for (; *text != '\0'; text++) {
    if (IsControlCharacter(*text)) *text = '?';
  }
}

}  // namespace

size_t FormatSettingProblem(const SettingProblem& problem, char* buffer, size_t capacity) {
  const int key_length = static_cast<int>(problem.key_length);
  if (problem.spec == nullptr) {
    size_t length = Format(buffer, capacity, "MEMWARD_CONF: unknown setting \"");
    for (int i = 0; i < key_length && length + 1 < capacity; i++) {
      buffer[length++] = IsControlCharacter(problem.key[i]) ? '?' : problem.key[i];
    }
    length += Format(buffer + length, capacity - length, "\" is ignored");
    const char* closest = ClosestSettingName(problem.key, problem.key_length);
    if (closest != nullptr) {
      length += Format(buffer + length, capacity - length, "; did you mean %s?", closest);
    }
    length += Format(buffer + length, capacity - length,
                     " (the README's settings table and `build/bin/memward-settings "
                     "--markdown` list every setting)");
    return length;
  }
  const SettingSpec& spec = *problem.spec;
  char value[64];
  size_t value_length = problem.value_length < sizeof(value) - 1 ? problem.value_length
                                                                 : sizeof(value) - 1;
  memcpy(value, problem.value, value_length);
  value[value_length] = '\0';
  ReplaceControlCharacters(value);
  char low[32], high[32], fallback[32];
  FormatSettingValue(spec, spec.min_value, low, sizeof(low));
  FormatSettingValue(spec, spec.max_value, high, sizeof(high));
  FormatSettingValue(spec, problem.kept_value, fallback, sizeof(fallback));
  const char* reason = problem.error == SettingError::kMissingValue ? "missing value"
                       : problem.error == SettingError::kOutOfRange ? "value out of range"
                                                                      : "invalid value";
  if (spec.kind == SettingKind::kBool) {
    return Format(buffer, capacity, "MEMWARD_CONF: %s \"%s\" for %s (expected %s); keeping %s",
                  reason, value, spec.name, DescribeSettingKind(spec), fallback);
  }
  if (spec.kind == SettingKind::kText) {
    char kept[80] = "the current value";
    if (problem.kept_text != nullptr) Format(kept, sizeof(kept), "\"%s\"", problem.kept_text);
    const char* expected = spec.choices != nullptr ? spec.choices : DescribeSettingKind(spec);
    return Format(buffer, capacity, "MEMWARD_CONF: %s \"%s\" for %s (expected %s%s); keeping %s",
                  reason, value, spec.name, spec.choices != nullptr ? "one of " : "", expected,
                  kept);
  }
  return Format(buffer, capacity,
                "MEMWARD_CONF: %s \"%s\" for %s (expected %s, from %s to %s); keeping %s",
                reason, value, spec.name, DescribeSettingKind(spec), low, high, fallback);
}

namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Narrows [begin, end) to drop surrounding white space.
void Trim(const char*& begin, const char*& end) {
  while (begin < end && IsSpace(*begin)) begin++;
  while (end > begin && IsSpace(end[-1])) end--;
}

}  // namespace

int ParseSettings(const char* text, Settings* settings, SettingProblemHandler handler,
                  void* context) {
  int problems = 0;
  const char* cursor = text;
  while (cursor != nullptr && *cursor != '\0') {
    const char* pair_end = strchr(cursor, ',');
    if (pair_end == nullptr) pair_end = cursor + strlen(cursor);
    const char* equals = static_cast<const char*>(memchr(cursor, '=', pair_end - cursor));
    const char* key = cursor;
    const char* key_end = equals != nullptr ? equals : pair_end;
    const char* value = equals != nullptr ? equals + 1 : pair_end;
    const char* value_end = pair_end;
    Trim(key, key_end);
    Trim(value, value_end);
    cursor = *pair_end == ',' ? pair_end + 1 : pair_end;
    if (key == key_end && value == value_end) continue;  // An empty pair, as in "a=1,,b=2".

    SettingProblem problem{SettingError::kUnknownKey, key, static_cast<size_t>(key_end - key),
                           value, static_cast<size_t>(value_end - value), nullptr, 0};
    problem.spec = FindSetting(key, problem.key_length);
    if (problem.spec != nullptr) {
      problem.kept_value = settings->Get(problem.spec->id);
      if (problem.spec->kind == SettingKind::kText) {
        problem.kept_text = settings->GetText(problem.spec->id);
      }
    }
    int64_t parsed = 0;
    if (problem.spec != nullptr &&
        ParseSettingValue(*problem.spec, value, problem.value_length, &parsed, &problem.error)) {
      if (problem.spec->kind == SettingKind::kText) {
        settings->SetText(problem.spec->id, value, problem.value_length);
      } else {
        settings->Set(problem.spec->id, parsed);
      }
      continue;
    }
    problems++;
    if (handler != nullptr) handler(problem, context);
  }
  return problems;
}

bool CheckPressureThresholds(const Settings& settings, char* buffer, size_t capacity) {
  const int64_t soft = settings.Get(SettingId::kPressureSoft);
  const int64_t high = settings.Get(SettingId::kPressureHigh);
  const int64_t critical = settings.Get(SettingId::kPressureCritical);
  const int64_t hysteresis = settings.Get(SettingId::kPressureHysteresis);
  if (PressureThresholdsAscend(soft, high, critical, hysteresis)) return true;

  const Settings defaults;
  Format(buffer, capacity,
         "MEMWARD_CONF: invalid pressure thresholds pressure_soft=%lld, pressure_high=%lld, "
         "pressure_critical=%lld, pressure_hysteresis=%lld: they must ascend (soft < high < "
         "critical <= 100, hysteresis < soft); using the defaults %lld, %lld, %lld and %lld",
         static_cast<long long>(soft), static_cast<long long>(high),
         static_cast<long long>(critical), static_cast<long long>(hysteresis),
         static_cast<long long>(defaults.Get(SettingId::kPressureSoft)),
         static_cast<long long>(defaults.Get(SettingId::kPressureHigh)),
         static_cast<long long>(defaults.Get(SettingId::kPressureCritical)),
         static_cast<long long>(defaults.Get(SettingId::kPressureHysteresis)));
  return false;
}

int ResetUnorderedPressureThresholds(Settings* settings, char* buffer, size_t capacity) {
  if (CheckPressureThresholds(*settings, buffer, capacity)) return 0;
  const Settings defaults;
  for (SettingId id : {SettingId::kPressureSoft, SettingId::kPressureHigh,
                       SettingId::kPressureCritical, SettingId::kPressureHysteresis}) {
    settings->Set(id, defaults.Get(id));
  }
  return 1;
}

}  // namespace memward::base
