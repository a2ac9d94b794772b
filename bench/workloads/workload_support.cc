#include "workload_support.h"

#include <dlfcn.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace workload {
namespace {

const char* g_program = "workload";

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

}  // namespace

void Fail(const char* format, ...) {
  std::fprintf(stderr, "%s: FAILED: ", g_program);
  va_list arguments;
  va_start(arguments, format);
  std::vfprintf(stderr, format, arguments);
  va_end(arguments);
  std::fputc('\n', stderr);
  std::fflush(stderr);
  std::exit(1);
}

Options::Options(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {
  g_program = program_.c_str();
}

void Options::Add(std::string name, uint64_t small_default, uint64_t large_default,
                  std::string help) {
  options_.push_back(Option{std::move(name), small_default, large_default, std::move(help),
                            small_default, false});
}

Options::Option* Options::Find(std::string_view name) {
  for (Option& option : options_) {
    if (option.name == name) return &option;
  }
  return nullptr;
}

void Options::PrintUsage(FILE* stream) const {
  std::fprintf(stream, "usage: %s [--preset=small|large] [--OPTION=N ...]\n%s\n\n",
               program_.c_str(), summary_.c_str());
  std::fprintf(stream, "  %-14s %s\n", "--preset",
               "small (default, for tests) or large (for the benchmark report)");
  for (const Option& option : options_) {
    std::fprintf(stream, "  --%-12s %s (small %" PRIu64 ", large %" PRIu64 ")\n",
                 option.name.c_str(), option.help.c_str(), option.small_default,
                 option.large_default);
  }
}

void Options::Parse(int argc, char** argv) {
  // First pass: the preset, so that explicit options override its defaults
  // wherever they appear on the command line.
  std::vector<std::pair<std::string, std::string>> assignments;
  for (int i = 1; i < argc; ++i) {
    std::string_view argument = argv[i];
    if (argument == "--help" || argument == "-h") {
      PrintUsage(stdout);
      std::exit(0);
    }
    if (argument.substr(0, 2) != "--") {
      std::fprintf(stderr, "%s: unexpected argument \"%s\"; options start with --\n",
                   program_.c_str(), argv[i]);
      PrintUsage(stderr);
      std::exit(2);
    }
    argument.remove_prefix(2);
    std::string name, value;
    size_t equals = argument.find('=');
    if (equals != std::string_view::npos) {
      name = argument.substr(0, equals);
      value = argument.substr(equals + 1);
    } else if (i + 1 < argc) {
      name = argument;
      value = argv[++i];
    } else {
      std::fprintf(stderr, "%s: option --%s is missing its value\n", program_.c_str(),
                   std::string(argument).c_str());
      std::exit(2);
    }
    if (name == "preset") {
      if (value != "small" && value != "large") {
        std::fprintf(stderr, "%s: invalid --preset \"%s\"; expected small or large\n",
                     program_.c_str(), value.c_str());
        std::exit(2);
      }
      preset_ = value;
    } else {
      assignments.emplace_back(std::move(name), std::move(value));
    }
  }

  for (Option& option : options_) {
    option.value = preset_ == "large" ? option.large_default : option.small_default;
  }
  for (const auto& [name, value] : assignments) {
    Option* option = Find(name);
    if (option == nullptr) {
      std::fprintf(stderr, "%s: unknown option --%s\n", program_.c_str(), name.c_str());
      PrintUsage(stderr);
      std::exit(2);
    }
    char* end = nullptr;
    errno = 0;
    unsigned long long parsed = std::strtoull(value.c_str(), &end, 10);
    if (value.empty() || value[0] == '-' || *end != '\0' || errno == ERANGE) {
      std::fprintf(stderr, "%s: invalid value \"%s\" for --%s; expected a non-negative integer\n",
                   program_.c_str(), value.c_str(), name.c_str());
      std::exit(2);
    }
    option->value = parsed;
    option->set = true;
  }
}

uint64_t Options::Get(std::string_view name) const {
  for (const Option& option : options_) {
    if (option.name == name) return option.value;
  }
  Fail("internal error: option --%s was never declared", std::string(name).c_str());
}

std::string Options::Describe() const {
  std::string text = "preset=" + preset_;
  for (const Option& option : options_) {
    text += " " + option.name + "=" + std::to_string(option.value);
  }
  return text;
}

void CheckExpectedAllocator(const char* program) {
  const char* expect = std::getenv("MEMWARD_EXPECT_LOADED");
  if (expect == nullptr || std::strcmp(expect, "1") != 0) return;

  using VersionFunction = const char* (*)();
  auto version = reinterpret_cast<VersionFunction>(dlsym(RTLD_DEFAULT, "memward_version"));
  if (version == nullptr) {
    Fail("MEMWARD_EXPECT_LOADED=1 but memward_version is not defined in the process; "
         "check that LD_PRELOAD names libmemward_preload.so (LD_PRELOAD=\"%s\")",
         std::getenv("LD_PRELOAD") != nullptr ? std::getenv("LD_PRELOAD") : "");
  }
  std::printf("%s: memward %s is loaded\n", program, version());
}

uint64_t Random::Next() {
  state_ += kGolden;
  return Mix(state_);
}

uint64_t Random::Between(uint64_t low, uint64_t high) {
  return low + Next() % (high - low + 1);
}

uint64_t Random::LogUniform(uint64_t low, uint64_t high) {
  double unit = static_cast<double>(Next() >> 11) * 0x1.0p-53;
  double value = std::exp(std::log(static_cast<double>(low)) +
                          unit * (std::log(static_cast<double>(high) + 1) -
                                  std::log(static_cast<double>(low))));
  uint64_t rounded = static_cast<uint64_t>(value);
  return rounded < low ? low : (rounded > high ? high : rounded);
}

uint64_t Mix(uint64_t key) {
  key = (key ^ (key >> 30)) * 0xBF58476D1CE4E5B9ull;
  key = (key ^ (key >> 27)) * 0x94D049BB133111EBull;
  return key ^ (key >> 31);
}

void FillObject(void* object, size_t size, uint64_t key) {
  auto* bytes = static_cast<unsigned char*>(object);
  uint64_t header[2] = {key, size};
  std::memcpy(bytes, header, sizeof(header));

  uint64_t word = Mix(key);
  size_t offset = sizeof(header);
  for (; offset + 8 <= size; offset += 8) {
    std::memcpy(bytes + offset, &word, 8);
    word += kGolden;
  }
  for (size_t shift = 0; offset < size; ++offset, shift += 8) {
    bytes[offset] = static_cast<unsigned char>(word >> shift);
  }
}

bool VerifyObject(const void* object, uint64_t* key, size_t* size) {
  const auto* bytes = static_cast<const unsigned char*>(object);
  uint64_t header[2];
  std::memcpy(header, bytes, sizeof(header));
  *key = header[0];
  *size = header[1];
  if (*size < kMinObjectSize || *size > (uint64_t{1} << 40)) return false;

  uint64_t expected = Mix(*key);
  size_t offset = sizeof(header);
  for (; offset + 8 <= *size; offset += 8) {
    uint64_t word;
    std::memcpy(&word, bytes + offset, 8);
    if (word != expected) return false;
    expected += kGolden;
  }
  for (size_t shift = 0; offset < *size; ++offset, shift += 8) {
    if (bytes[offset] != static_cast<unsigned char>(expected >> shift)) return false;
  }
  return true;
}

size_t MixedSize(Random& random) {
  uint64_t bucket = random.Next() % 100;
  if (bucket < 60) return random.Between(16, 128);
  if (bucket < 85) return random.Between(129, 1024);
  if (bucket < 97) return random.Between(1025, 8192);
  return random.Between(8193, 65536);
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void PrintResult(const Options& options, const std::string& fields, double seconds) {
  std::printf("%s: ok %s %s seconds=%.3f\n", options.program().c_str(),
              options.Describe().c_str(), fields.c_str(), seconds);
  std::fflush(stdout);
}

}  // namespace workload
