// GNU sort over a 50 MB file of random lines with two sorting threads and
// memward preloaded. The output must be byte-identical to the same sort
// without LD_PRELOAD.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "harness/process.h"
#include "harness/procfs.h"

namespace memward::integration {
namespace {

using std::chrono::seconds;

constexpr const char* kSort = "/usr/bin/sort";
constexpr std::size_t kInputBytes = 50'000'000;

// Writes lines of 0 to 119 characters drawn from letters, digits and
// spaces, so the short ones repeat often.
void write_random_lines(const std::filesystem::path& path, std::size_t size) {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
  std::mt19937_64 generator(20240611);
  std::string text;
  text.reserve(size + 128);
  while (text.size() < size) {
    std::uint64_t bits = generator();
    std::size_t length = bits % 120;
    for (std::size_t i = 0; i < length; ++i) {
      if (i % 10 == 0) bits = generator();
      text += kAlphabet[(bits >> (6 * (i % 10))) % (sizeof kAlphabet - 1)];
    }
    text += '\n';
  }
  write_text_file(path, text);
}

// Returns the offset of the first byte that differs, or -1 when the files
// are identical.
long long first_difference(const std::filesystem::path& left, const std::filesystem::path& right) {
  std::ifstream left_file(left, std::ios::binary);
  std::ifstream right_file(right, std::ios::binary);
  std::vector<char> left_buffer(1 << 20);
  std::vector<char> right_buffer(1 << 20);
  long long offset = 0;
  while (true) {
    left_file.read(left_buffer.data(), static_cast<std::streamsize>(left_buffer.size()));
    right_file.read(right_buffer.data(), static_cast<std::streamsize>(right_buffer.size()));
    std::streamsize left_count = left_file.gcount();
    std::streamsize right_count = right_file.gcount();
    std::streamsize common = std::min(left_count, right_count);
    for (std::streamsize i = 0; i < common; ++i) {
      if (left_buffer[i] != right_buffer[i]) return offset + i;
    }
    if (left_count != right_count) return offset + common;
    if (left_count == 0) return -1;
    offset += left_count;
  }
}

struct SortCase {
  std::string locale;
  // Size of sort's main memory buffer (-S). A small one makes sort write
  // sorted runs to temporary files and merge them.
  std::string buffer_size;
};

void PrintTo(const SortCase& sort_case, std::ostream* stream) {
  *stream << "LC_ALL=" << sort_case.locale << " -S " << sort_case.buffer_size;
}

class SortLargeFile : public testing::TestWithParam<SortCase> {};

ProcessOptions sort_options(const TempDir& dir, const std::string& output) {
  ProcessOptions options;
  options.argv = {kSort,
                  "--parallel=2",
                  "-S",
                  SortLargeFile::GetParam().buffer_size,
                  "-T",
                  (dir / "temp").string(),
                  "-o",
                  (dir / output).string(),
                  (dir / "input.txt").string()};
  options.env = {{"LC_ALL", SortLargeFile::GetParam().locale}};
  return options;
}

TEST_P(SortLargeFile, MatchesUnpreloadedSort) {
  TempDir dir("memward-sort");
  std::filesystem::create_directories(dir / "temp");
  write_random_lines(dir / "input.txt", kInputBytes);

  RunResult control = run_program(sort_options(dir, "expected.txt"), seconds(40));
  ASSERT_TRUE(control.exited_with(0)) << "sort without LD_PRELOAD failed\n" << control.description;

  ProcessOptions options = sort_options(dir, "actual.txt");
  options.ld_preload = preload_path();
  Process sort(options);
  EXPECT_TRUE(wait_for_library(sort, preload_library_name(), seconds(10)))
      << preload_library_name() << " was not seen mapped into sort";
  std::optional<int> status = sort.wait_for_exit(seconds(40));
  ASSERT_TRUE(status.has_value()) << "sort did not finish within 40 s\n" << sort.describe();
  ASSERT_EQ(describe_wait_status(*status), "exited with code 0") << sort.describe();
  EXPECT_EQ(sort.stderr_text(), "");

  EXPECT_EQ(std::filesystem::file_size(dir / "actual.txt"),
            std::filesystem::file_size(dir / "input.txt"));
  EXPECT_EQ(first_difference(dir / "expected.txt", dir / "actual.txt"), -1)
      << "the output of sort under LD_PRELOAD differs from the control run at that offset";
}

INSTANTIATE_TEST_SUITE_P(
    Buffers, SortLargeFile,
    testing::Values(SortCase{"C", "100M"}, SortCase{"C.UTF-8", "100M"}, SortCase{"C", "8M"}),
    [](const testing::TestParamInfo<SortCase>& info) {
      std::string name = info.param.locale + "_" + info.param.buffer_size;
      for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

}  // namespace
}  // namespace memward::integration
