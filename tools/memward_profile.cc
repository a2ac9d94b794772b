// memward-profile: works with heap profiles that memward wrote.
//
//   memward-profile diff [--sample_index=TYPE] [--format=top|folded] BEFORE AFTER
//
// compares two profiles (pprof profile.proto, gzipped or not) by stack of
// function names. `top` (the default) lists the innermost functions whose
// totals changed most; `folded` writes "stack BEFORE AFTER" lines, the
// input of differential flame graphs (flamegraph.pl). TYPE is one of
// alloc_objects, alloc_space, inuse_objects and inuse_space (the default).
#include <stdio.h>

#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "accounting/profile_diff.h"
#include "accounting/profile_reader.h"

namespace {

using memward::accounting::DecodedProfile;

constexpr size_t kTopLimit = 30;

int Usage() {
  fprintf(stderr,
          "usage: memward-profile diff [--sample_index=TYPE] [--format=top|folded] "
          "BEFORE AFTER\n"
          "  TYPE: alloc_objects, alloc_space, inuse_objects or inuse_space (default)\n");
  return 2;
}

bool Load(const std::string& path, DecodedProfile* profile) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    fprintf(stderr, "memward-profile: cannot open %s\n", path.c_str());
    return false;
  }
  std::stringstream contents;
  contents << file.rdbuf();
  std::string error;
  if (!memward::accounting::DecodeProfile(contents.str(), profile, &error)) {
    fprintf(stderr, "memward-profile: %s: %s\n", path.c_str(), error.c_str());
    return false;
  }
  return true;
}

int Diff(const std::vector<std::string_view>& arguments) {
  std::string sample_index = "inuse_space";
  std::string format = "top";
  std::vector<std::string> files;
  for (std::string_view argument : arguments) {
    if (argument.starts_with("--sample_index=")) {
      sample_index = argument.substr(15);
    } else if (argument.starts_with("--format=")) {
      format = argument.substr(9);
    } else if (argument.starts_with("--")) {
      fprintf(stderr, "memward-profile: unknown option %.*s\n",
              static_cast<int>(argument.size()), argument.data());
      return Usage();
    } else {
      files.emplace_back(argument);
    }
  }
  if (files.size() != 2 || (format != "top" && format != "folded")) return Usage();
  DecodedProfile before, after;
  if (!Load(files[0], &before) || !Load(files[1], &after)) return 1;
  std::vector<memward::accounting::StackDelta> deltas;
  std::string error;
  if (!memward::accounting::DiffProfiles(before, after, sample_index, &deltas, &error)) {
    fprintf(stderr, "memward-profile: %s\n", error.c_str());
    return 1;
  }
  std::string out = format == "folded" ? memward::accounting::FormatDiffFolded(deltas)
                                       : memward::accounting::FormatDiffTop(deltas, kTopLimit);
  fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]) != "diff") return Usage();
  return Diff(std::vector<std::string_view>(argv + 2, argv + argc));
}
