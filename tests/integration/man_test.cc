// man-db's man formats pages through a pipeline (tbl, groff, troff, grotty)
// whose processes run under man-db's own seccomp filter. With memward
// preloaded, memward starts inside each of them under that filter, and the
// formatted page must be the same as without it.
#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "harness/process.h"
#include "harness/procfs.h"

namespace memward::integration {
namespace {

using std::chrono::seconds;

constexpr const char* kMan = "/usr/bin/man";

// man_db.conf with NOCACHE added, so that man never writes formatted pages
// to /var/cache/man.
void write_man_config(const TempDir& dir) {
  std::string config = read_text_file("/etc/manpath.config");
  ASSERT_FALSE(config.empty()) << "/etc/manpath.config is missing or empty";
  write_text_file(dir / "man_db.conf", config + "\nNOCACHE\n");
}

ProcessOptions man_options(const TempDir& dir, const std::string& section,
                           const std::string& page) {
  ProcessOptions options;
  // -d prints man's debugging output on stderr, including a line for each
  // seccomp filter it loads. The page still goes to stdout.
  options.argv = {kMan, "-d", "-C", (dir / "man_db.conf").string(), section, page};
  options.env = {{"MANPAGER", "cat"}, {"PAGER", "cat"}, {"MANWIDTH", "100"},
                 {"LC_ALL", "C.UTF-8"}};
  options.unset_env = {"MAN_DISABLE_SECCOMP", "MANOPT", "MANPATH", "MANSECT", "MANROFFOPT",
                       "GROFF_SGR", "MAN_KEEP_FORMATTING"};
  return options;
}

// Names of the programs whose dynamic loader ran memward's initializer,
// from LD_DEBUG=files output (one file per process). A program is named by
// the "needed by PROGRAM" entries that are not shared libraries.
std::set<std::string> programs_that_initialized(const std::filesystem::path& debug_dir,
                                                const std::string& library_path) {
  std::set<std::string> programs;
  for (const auto& entry : std::filesystem::directory_iterator(debug_dir)) {
    const std::string log = read_text_file(entry.path());
    if (log.find("calling init: " + library_path) == std::string::npos) continue;
    std::istringstream lines(log);
    std::string line;
    while (std::getline(lines, line)) {
      std::size_t needed = line.find("needed by ");
      if (needed == std::string::npos) continue;
      std::string program = line.substr(needed + 10);
      program = program.substr(0, program.find(' '));
      if (program.find(".so") != std::string::npos) continue;
      programs.insert(std::filesystem::path(program).filename().string());
    }
  }
  return programs;
}

class ManPage : public testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(ManPage, FormatsInSandbox) {
  const auto& [section, page] = GetParam();
  TempDir dir("memward-man");
  write_man_config(dir);
  if (HasFatalFailure()) return;

  RunResult control = run_program(man_options(dir, section, page), seconds(30));
  ASSERT_TRUE(control.exited_with(0)) << "man without LD_PRELOAD failed\n" << control.description;
  ASSERT_FALSE(control.stdout_text.empty()) << control.description;

  ProcessOptions options = man_options(dir, section, page);
  options.ld_preload = preload_path();
  RunResult run = run_program(options, seconds(30));
  ASSERT_TRUE(run.exited_with(0)) << run.description;
  EXPECT_NE(run.stderr_text.find("loading seccomp filter (permissive: 0)"), std::string::npos)
      << "man did not report loading its seccomp filter, so the sandbox was not tested\n"
      << run.description;
  EXPECT_EQ(memward_messages(run.stderr_text), std::vector<std::string>{});
  EXPECT_TRUE(run.stdout_text == control.stdout_text)
      << "the formatted page differs from the one made without LD_PRELOAD ("
      << run.stdout_text.size() << " bytes against " << control.stdout_text.size() << ")\n"
      << run.description;

  // A third run only to see where memward started. Its output is not
  // compared: a sandboxed process that cannot open LD_DEBUG_OUTPUT writes
  // the loader's messages into the pipeline instead.
  std::filesystem::create_directories(dir / "ld-debug");
  options.env.emplace_back("LD_DEBUG", "files");
  options.env.emplace_back("LD_DEBUG_OUTPUT", (dir / "ld-debug" / "process").string());
  RunResult traced = run_program(options, seconds(30));
  ASSERT_TRUE(traced.exited_with(0)) << traced.description;
  const std::set<std::string> programs =
      programs_that_initialized(dir / "ld-debug", preload_path());
  for (const char* program : {"man", "groff", "troff", "grotty"}) {
    EXPECT_EQ(programs.count(program), 1u)
        << preload_library_name() << " was not initialized in " << program;
  }
}

INSTANTIATE_TEST_SUITE_P(Pages, ManPage,
                         testing::Values(std::pair<std::string, std::string>{"1", "bash"},
                                         std::pair<std::string, std::string>{"5", "passwd"}),
                         [](const auto& info) { return info.param.second; });

}  // namespace
}  // namespace memward::integration
