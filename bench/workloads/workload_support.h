// Shared pieces of the workload programs: command-line options, a seeded
// random generator, object contents that can be written and verified, and the
// check that memward was really preloaded.
//
// The workloads use only the standard malloc/free/new/delete API, so the same
// binary measures any allocator loaded with LD_PRELOAD.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace workload {

// Prints "<program>: FAILED: <message>" on stderr and exits with status 1.
[[noreturn]] void Fail(const char* format, ...) __attribute__((format(printf, 1, 2)));

// Integer options of one workload, each with a small default (quick enough
// for a unit test) and a large one (for the benchmark report).
class Options {
 public:
  Options(std::string program, std::string summary);

  // Declares `--name=N`. `help` says what it sets and in what unit.
  void Add(std::string name, uint64_t small_default, uint64_t large_default,
           std::string help);

  // Parses argv: `--preset=small|large` picks the defaults, then `--name=N` or
  // `--name N` override them. `--help` prints usage and exits 0; anything
  // invalid prints usage and exits 2.
  void Parse(int argc, char** argv);

  uint64_t Get(std::string_view name) const;
  const std::string& preset() const { return preset_; }
  const std::string& program() const { return program_; }

  // One line with every option's value, for the workload's result output.
  std::string Describe() const;

 private:
  struct Option {
    std::string name;
    uint64_t small_default;
    uint64_t large_default;
    std::string help;
    uint64_t value;
    bool set;
  };
  void PrintUsage(FILE* stream) const;
  Option* Find(std::string_view name);

  std::string program_;
  std::string summary_;
  std::string preset_ = "small";
  std::vector<Option> options_;
};

// Fails unless memward's `memward_version` symbol is visible when the
// environment sets MEMWARD_EXPECT_LOADED=1; a test run under LD_PRELOAD then
// cannot pass silently with the system allocator. Prints the version found.
void CheckExpectedAllocator(const char* program);

// splitmix64: a small, fast generator with a 64-bit state, good enough for
// choosing sizes and slots; every thread seeds its own.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [low, high], both inclusive.
  uint64_t Between(uint64_t low, uint64_t high);
  // Log-uniform in [low, high]: as many values between 16 and 32 as between
  // 1024 and 2048, the usual shape of allocation sizes.
  uint64_t LogUniform(uint64_t low, uint64_t high);

 private:
  uint64_t state_;
};

// Mixes a 64-bit key into a well-spread 64-bit value (the splitmix64 finalizer).
uint64_t Mix(uint64_t key);

// Object layout used by the workloads: a 16-byte header with the key and the
// size, then a pattern computed from the key, so the thread that frees an
// object can check that it got back exactly what the allocating thread wrote.
inline constexpr size_t kMinObjectSize = 16;

// Writes header and pattern over the whole object. `size` >= kMinObjectSize.
void FillObject(void* object, size_t size, uint64_t key);

// Returns true when the header and the whole pattern are intact, and stores
// the key and size read from the header.
bool VerifyObject(const void* object, uint64_t* key, size_t* size);

// Mixed request-like sizes: mostly under 1 KiB, a tail up to 64 KiB.
size_t MixedSize(Random& random);

// Seconds on the monotonic clock.
double NowSeconds();

// Prints "<program>: ok <key=value ...>" on stdout.
void PrintResult(const Options& options, const std::string& fields, double seconds);

}  // namespace workload
