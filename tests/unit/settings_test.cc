// The settings table and the MEMWARD_CONF parser.
#include "base/settings.h"

#include <string.h>

#include <string>
#include <vector>

#include "base/log.h"
#include "gtest/gtest.h"

namespace memward::base {
namespace {

std::vector<std::string> ParseAndCollect(const char* text, Settings* settings) {
  std::vector<std::string> messages;
  ParseSettings(
      text, settings,
      [](const SettingProblem& problem, void* context) {
        char message[kMaxLogMessage];
        FormatSettingProblem(problem, message, sizeof(message));
        static_cast<std::vector<std::string>*>(context)->push_back(message);
      },
      &messages);
  return messages;
}

TEST(Settings, DefaultsComeFromTable) {
  Settings settings;
  for (const SettingSpec& spec : kSettingSpecs) {
    if (spec.kind == SettingKind::kText) {
      ASSERT_NE(spec.default_text, nullptr) << spec.name;
      EXPECT_STREQ(settings.GetText(spec.id), spec.default_text) << spec.name;
      continue;
    }
    EXPECT_EQ(settings.Get(spec.id), spec.default_value) << spec.name;
    EXPECT_GE(spec.default_value, spec.min_value) << spec.name;
    EXPECT_LE(spec.default_value, spec.max_value) << spec.name;
    EXPECT_EQ(&kSettingSpecs[static_cast<int>(spec.id)], &spec) << spec.name;
  }
}

TEST(Settings, ParsesEveryKind) {
  Settings settings;
  EXPECT_TRUE(ParseAndCollect(" narenas = 8 ,dirty_decay=5s,muzzy_decay=250ms,"
                              "oversize_threshold=64m,background_thread=yes,strict=false",
                              &settings)
                  .empty());
  EXPECT_EQ(settings.Get(SettingId::kNarenas), 8);
  EXPECT_EQ(settings.Get(SettingId::kDirtyDecay), 5000);
  EXPECT_EQ(settings.Get(SettingId::kMuzzyDecay), 250);
  EXPECT_EQ(settings.Get(SettingId::kOversizeThreshold), 64 << 20);
  EXPECT_TRUE(settings.GetBool(SettingId::kBackgroundThread));
  EXPECT_FALSE(settings.GetBool(SettingId::kStrict));
}

TEST(Settings, TextValueIsStored) {
  Settings settings;
  EXPECT_TRUE(ParseAndCollect("cgroup_root = /tmp/tree ,narenas=2", &settings).empty());
  EXPECT_STREQ(settings.GetText(SettingId::kCgroupRoot), "/tmp/tree");
  EXPECT_EQ(settings.Get(SettingId::kNarenas), 2);
}

TEST(Settings, OverlongTextKeepsValue) {
  Settings settings;
  std::string text = "cgroup_root=" + std::string(kMaxSettingText + 1, 'x');
  std::vector<std::string> messages = ParseAndCollect(text.c_str(), &settings);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("cgroup_root"), std::string::npos) << messages[0];
  EXPECT_NE(messages[0].find("at most 255 bytes"), std::string::npos) << messages[0];
  EXPECT_NE(messages[0].find("keeping \"/\""), std::string::npos) << messages[0];
  EXPECT_STREQ(settings.GetText(SettingId::kCgroupRoot), "/");
}

TEST(Settings, ChoiceAcceptsListedValues) {
  for (const char* value : {"cached", "libunwind", "frame_pointers"}) {
    Settings settings;
    std::string text = std::string("sample_unwinder=") + value;
    EXPECT_TRUE(ParseAndCollect(text.c_str(), &settings).empty()) << text;
    EXPECT_STREQ(settings.GetText(SettingId::kSampleUnwinder), value);
  }
}

TEST(Settings, ChoiceRejectsOtherValues) {
  for (const char* value : {"libunwnd", "cached|libunwind", "cache", "cachedx"}) {
    Settings settings;
    std::string text = std::string("sample_unwinder=") + value;
    std::vector<std::string> messages = ParseAndCollect(text.c_str(), &settings);
    ASSERT_EQ(messages.size(), 1u) << text;
    EXPECT_NE(messages[0].find("invalid value"), std::string::npos) << messages[0];
    EXPECT_NE(messages[0].find("expected one of cached|libunwind|frame_pointers"),
              std::string::npos)
        << messages[0];
    EXPECT_STREQ(settings.GetText(SettingId::kSampleUnwinder), "cached");
  }
}

// The message names the value kept, which an earlier pair may have set.
TEST(Settings, RejectedChoiceNamesKeptValue) {
  Settings settings;
  std::vector<std::string> messages =
      ParseAndCollect("sample_unwinder=libunwind,sample_unwinder=bogus", &settings);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("keeping \"libunwind\""), std::string::npos) << messages[0];
  EXPECT_STREQ(settings.GetText(SettingId::kSampleUnwinder), "libunwind");
}

TEST(Settings, ChoiceIgnoresCase) {
  Settings settings;
  EXPECT_TRUE(ParseAndCollect("sample_unwinder=LibUnwind", &settings).empty());
  EXPECT_STREQ(settings.GetText(SettingId::kSampleUnwinder), "LibUnwind");
}

// An empty admin_socket turns the server off, as its help text states. Other
// settings still reject an empty value.
TEST(Settings, EmptyAdminSocketIsAccepted) {
  Settings settings;
  EXPECT_TRUE(ParseAndCollect("admin_socket=", &settings).empty());
  EXPECT_STREQ(settings.GetText(SettingId::kAdminSocket), "");

  std::vector<std::string> messages = ParseAndCollect("cgroup_root=,narenas=", &settings);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_NE(messages[0].find("missing value"), std::string::npos) << messages[0];
  EXPECT_NE(messages[1].find("missing value"), std::string::npos) << messages[1];
}

TEST(Settings, ControlCharactersAreNotEchoed) {
  Settings settings;
  std::vector<std::string> messages =
      ParseAndCollect("narenas=1\x1b[2J,sample_intervl\x07=1k", &settings);
  ASSERT_EQ(messages.size(), 2u);
  for (const std::string& message : messages) {
    for (char c : message) {
      EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f) << message;
    }
  }
  EXPECT_NE(messages[0].find("\"1?[2J\""), std::string::npos) << messages[0];
  EXPECT_NE(messages[1].find("sample_intervl?"), std::string::npos) << messages[1];
}

TEST(Settings, AcceptsNeverAndBareZero) {
  Settings settings;
  EXPECT_TRUE(ParseAndCollect("dirty_decay=never,muzzy_decay=0", &settings).empty());
  EXPECT_EQ(settings.Get(SettingId::kDirtyDecay), -1);
  EXPECT_EQ(settings.Get(SettingId::kMuzzyDecay), 0);
}

TEST(Settings, SizeSuffixes) {
  const SettingSpec& spec = kSettingSpecs[static_cast<int>(SettingId::kOversizeThreshold)];
  struct Case {
    const char* text;
    int64_t bytes;
  } cases[] = {{"4096", 4096}, {"4k", 4096}, {"4K", 4096}, {"4kib", 4096},
               {"3m", 3 << 20}, {"2g", int64_t{2} << 30}, {"10b", 10}};
  for (const Case& c : cases) {
    int64_t value = 0;
    SettingError error;
    EXPECT_TRUE(ParseSettingValue(spec, c.text, strlen(c.text), &value, &error)) << c.text;
    EXPECT_EQ(value, c.bytes) << c.text;
  }
}

TEST(Settings, BadValuesKeepDefault) {
  Settings settings;
  auto messages = ParseAndCollect("dirty_decay=abc,narenas=99999,muzzy_decay=5,strict=", &settings);
  ASSERT_EQ(messages.size(), 4u);
  EXPECT_EQ(settings.Get(SettingId::kDirtyDecay), 1000);
  EXPECT_EQ(settings.Get(SettingId::kNarenas), 0);
  EXPECT_EQ(settings.Get(SettingId::kMuzzyDecay), 0);
  EXPECT_NE(messages[0].find("invalid value \"abc\" for dirty_decay"), std::string::npos)
      << messages[0];
  EXPECT_NE(messages[0].find("a time with ms or s"), std::string::npos) << messages[0];
  EXPECT_NE(messages[0].find("keeping 1s"), std::string::npos) << messages[0];
  EXPECT_NE(messages[1].find("value out of range \"99999\" for narenas"), std::string::npos)
      << messages[1];
  EXPECT_NE(messages[2].find("for muzzy_decay"), std::string::npos) << messages[2];
  EXPECT_NE(messages[3].find("missing value"), std::string::npos) << messages[3];
}

TEST(Settings, DefaultPressureThresholdsAscend) {
  Settings settings;
  char message[kMaxLogMessage] = {};
  EXPECT_TRUE(CheckPressureThresholds(settings, message, sizeof(message)));
  EXPECT_STREQ(message, "");
}

TEST(Settings, InvertedPressureThresholdsReported) {
  const char* cases[] = {
      "pressure_soft=95,pressure_high=90",
      "pressure_high=96",
      "pressure_critical=90",
      "pressure_soft=30,pressure_hysteresis=40",
  };
  for (const char* text : cases) {
    Settings settings;
    EXPECT_TRUE(ParseAndCollect(text, &settings).empty()) << text;
    char message[kMaxLogMessage] = {};
    EXPECT_FALSE(CheckPressureThresholds(settings, message, sizeof(message))) << text;
    const std::string reported = message;
    EXPECT_NE(reported.find("invalid pressure thresholds"), std::string::npos) << reported;
    EXPECT_NE(reported.find("soft < high < critical <= 100"), std::string::npos) << reported;
    EXPECT_NE(reported.find("using the defaults 80, 90, 95 and 5"), std::string::npos)
        << reported;
  }
}

TEST(Settings, UnknownKeyNamesTheList) {
  Settings settings;
  auto messages = ParseAndCollect("no_such_key=1,,", &settings);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("unknown setting \"no_such_key\""), std::string::npos);
  EXPECT_EQ(messages[0].find("did you mean"), std::string::npos) << messages[0];
  EXPECT_NE(messages[0].find("memward-settings --markdown"), std::string::npos) << messages[0];
}

TEST(Settings, MisspelledKeySuggestsClosest) {
  Settings settings;
  auto messages = ParseAndCollect("sample_intervl=1k,dirtydecay=1s,admin_sockets=/tmp/x.sock",
                                  &settings);
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_NE(messages[0].find("did you mean sample_interval?"), std::string::npos) << messages[0];
  EXPECT_NE(messages[1].find("did you mean dirty_decay?"), std::string::npos) << messages[1];
  EXPECT_NE(messages[2].find("did you mean admin_socket?"), std::string::npos) << messages[2];
  EXPECT_LT(messages[0].size(), 200u) << messages[0];
}

TEST(Settings, OverflowIsOutOfRange) {
  Settings settings;
  auto messages = ParseAndCollect("oversize_threshold=99999999999999999999,"
                                  "dirty_decay=9223372036854775807s",
                                  &settings);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(settings.Get(SettingId::kOversizeThreshold), 0);
}

TEST(Settings, RepeatedKeyKeepsValueInEffect) {
  Settings settings;
  auto messages = ParseAndCollect("narenas=4,narenas=bad", &settings);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(settings.Get(SettingId::kNarenas), 4);
  EXPECT_NE(messages[0].find("keeping 4"), std::string::npos) << messages[0];
}

TEST(Settings, FormatsValuesInAcceptedForm) {
  char buffer[32];
  const SettingSpec& decay = kSettingSpecs[static_cast<int>(SettingId::kDirtyDecay)];
  FormatSettingValue(decay, 1500, buffer, sizeof(buffer));
  EXPECT_STREQ(buffer, "1500ms");
  FormatSettingValue(decay, -1, buffer, sizeof(buffer));
  EXPECT_STREQ(buffer, "never");
  const SettingSpec& size = kSettingSpecs[static_cast<int>(SettingId::kOversizeThreshold)];
  FormatSettingValue(size, 8 << 20, buffer, sizeof(buffer));
  EXPECT_STREQ(buffer, "8m");
}

TEST(Format, Conversions) {
  char buffer[128];
  Format(buffer, sizeof(buffer), "%s|%d|%u|%ld|%llu|%zu|%x|%c|%%|%p", "text", -42, 42u, -7L,
         18446744073709551615ULL, size_t{5}, 255u, 'z', reinterpret_cast<void*>(0x10));
  EXPECT_STREQ(buffer, "text|-42|42|-7|18446744073709551615|5|ff|z|%|0x10");
  Format(buffer, sizeof(buffer), "%lld", static_cast<long long>(INT64_MIN));
  EXPECT_STREQ(buffer, "-9223372036854775808");
}

TEST(Format, TruncatesToCapacity) {
  char buffer[8];
  size_t length = Format(buffer, sizeof(buffer), "%s", "a long message");
  EXPECT_EQ(length, 7u);
  EXPECT_STREQ(buffer, "a long ");
}

}  // namespace
}  // namespace memward::base
