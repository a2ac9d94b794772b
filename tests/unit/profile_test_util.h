// Helpers for the exporter and leak detector tests: sample records whose
// frames are real return addresses in this test binary, and a runner for
// `go tool pprof` that keeps it offline.
#ifndef MEMWARD_TESTS_UNIT_PROFILE_TEST_UTIL_H_
#define MEMWARD_TESTS_UNIT_PROFILE_TEST_UTIL_H_

#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "accounting/sample_table.h"

namespace memward::testing {

// Returns the calling stack as return addresses, innermost first, like the
// sampler's frames. It is never inlined, so it is the innermost frame.
[[gnu::noinline]] inline std::vector<uintptr_t> CaptureStack() {
  void* addresses[accounting::kMaxSampleFrames];
  int depth = backtrace(addresses, accounting::kMaxSampleFrames);
  std::vector<uintptr_t> frames;
  for (int i = 0; i < depth; i++) frames.push_back(reinterpret_cast<uintptr_t>(addresses[i]));
  asm volatile("" ::: "memory");  // keeps the call from becoming a tail call
  return frames;
}

// Returns a live sample record of `bytes` requested bytes at `frames`,
// standing for `weight_bytes` bytes.
inline accounting::SampleRecord MakeRecord(uint64_t id, uint32_t site,
                                           const std::vector<uintptr_t>& frames,
                                           uint64_t bytes, double weight_bytes) {
  accounting::SampleRecord record = {};
  record.id = id;
  record.site = site;
  record.depth = static_cast<uint32_t>(frames.size());
  for (size_t i = 0; i < frames.size() && i < accounting::kMaxSampleFrames; i++) {
    record.frames[i] = frames[i];
  }
  record.requested_bytes = bytes;
  record.usable_bytes = bytes;
  record.weight_bytes = weight_bytes;
  record.weight_objects = weight_bytes / static_cast<double>(bytes);
  return record;
}

// Returns cumulative totals for a site with the given frames.
inline accounting::SiteTotals MakeSite(uint32_t site, const std::vector<uintptr_t>& frames,
                                       uint64_t samples, double bytes, double objects) {
  accounting::SiteTotals totals = {};
  totals.site = site;
  totals.depth = static_cast<uint32_t>(frames.size());
  for (size_t i = 0; i < frames.size() && i < accounting::kMaxSampleFrames; i++) {
    totals.frames[i] = frames[i];
  }
  totals.samples = samples;
  totals.alloc_weight_bytes = bytes;
  totals.alloc_weight_objects = objects;
  return totals;
}

// A temporary directory removed with its files by the destructor.
class ScratchDir {
 public:
  ScratchDir() {
    char pattern[] = "/tmp/memward-profile-XXXXXX";
    const char* made = mkdtemp(pattern);
    path_ = made != nullptr ? made : "";
  }
  ~ScratchDir() {
    if (!path_.empty()) system(("rm -rf '" + path_ + "'").c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, const std::string& data) {
  FILE* file = fopen(path.c_str(), "wb");
  if (file == nullptr) return;
  fwrite(data.data(), 1, data.size(), file);
  fclose(file);
}

#ifdef MEMWARD_GO_PATH
// Runs `go tool pprof ARGS PROFILE` with its caches and temporary files in
// `scratch`, and returns its standard output and error. pprof reads only the
// local file: no URL is passed, so it makes no network request.
inline std::string RunPprof(const std::string& scratch, const std::string& args,
                            const std::string& profile, int* exit_status) {
  std::string command = "env HOME='" + scratch + "' GOPATH='" + scratch + "/go' GOCACHE='" +
                        scratch + "/gocache' PPROF_TMPDIR='" + scratch +
                        "' GOFLAGS= GOPROXY=off '" MEMWARD_GO_PATH "' tool pprof " + args +
                        " '" + profile + "' 2>&1";
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    *exit_status = -1;
    return output;
  }
  char buffer[4096];
  size_t read;
  while ((read = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, read);
  *exit_status = pclose(pipe);
  return output;
}
#endif  // MEMWARD_GO_PATH

}  // namespace memward::testing

#endif  // MEMWARD_TESTS_UNIT_PROFILE_TEST_UTIL_H_
