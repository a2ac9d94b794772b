// The pprof and folded exporters on sample records made by the test, with
// frames that are real return addresses in this binary, read back by
// `go tool pprof`.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "accounting/gzip.h"
#include "accounting/heap_snapshot.h"
#include "accounting/profile_folded.h"
#include "accounting/profile_json.h"
#include "accounting/profile_diff.h"
#include "accounting/profile_pprof.h"
#include "accounting/profile_reader.h"
#include "accounting/protobuf_writer.h"
#include "accounting/symbolizer.h"
#include "profile_test_util.h"

namespace memward_profile_test {

using memward::testing::CaptureStack;

// The call sites the test's samples come from. Each is kept out of line and
// does work after its call, so that its frame stays on the stack.
[[gnu::noinline]] std::vector<uintptr_t> AllocateWidgets() {
  std::vector<uintptr_t> frames = CaptureStack();
  asm volatile("" ::: "memory");
  return frames;
}

[[gnu::noinline]] std::vector<uintptr_t> HandleRequest() {
  std::vector<uintptr_t> frames = AllocateWidgets();
  asm volatile("" ::: "memory");
  return frames;
}

[[gnu::noinline]] std::vector<uintptr_t> FillCache() {
  std::vector<uintptr_t> frames = CaptureStack();
  asm volatile("" ::: "memory");
  return frames;
}

}  // namespace memward_profile_test

namespace memward {
namespace {

using accounting::HeapSnapshot;
using accounting::SampleRecord;
using accounting::Symbolizer;
using testing::MakeRecord;
using testing::MakeSite;

constexpr uint32_t kWidgetSite = 1;
constexpr uint32_t kCacheSite = 2;
constexpr uint32_t kTenantAcme = 7;

// Returns ten live samples of 64 bytes at the widget site, each standing for
// 1,000 bytes, half of them in request 3:9 of tenant "acme". Five samples of
// 512 bytes at the cache site stand for 2,000 bytes each. The cumulative
// totals are 40,000 bytes at the widget site and 10,000 at the cache site.
// The widget and cache stacks, captured once so that every snapshot of the
// test has the same ones.
const std::vector<uintptr_t>& WidgetStack() {
  static const std::vector<uintptr_t> stack = memward_profile_test::HandleRequest();
  return stack;
}

const std::vector<uintptr_t>& CacheStack() {
  static const std::vector<uintptr_t> stack = memward_profile_test::FillCache();
  return stack;
}

HeapSnapshot MakeSnapshot() {
  HeapSnapshot snapshot;
  const std::vector<uintptr_t>& widgets = WidgetStack();
  const std::vector<uintptr_t>& cache = CacheStack();
  for (int i = 0; i < 10; i++) {
    SampleRecord record = MakeRecord(i, kWidgetSite, widgets, 64, 1000);
    if (i < 5) {
      record.tenant = kTenantAcme;
      record.request_slot = 3;
      record.request_generation = 9;
      record.escaped = true;
    }
    snapshot.live.push_back(record);
  }
  for (int i = 0; i < 5; i++) {
    snapshot.live.push_back(MakeRecord(100 + i, kCacheSite, cache, 512, 2000));
  }
  snapshot.sites.push_back(MakeSite(kWidgetSite, widgets, 40, 40000, 625));
  snapshot.sites.push_back(MakeSite(kCacheSite, cache, 5, 10000, 19.53125));
  snapshot.interval_bytes = 512 * 1024;
  snapshot.wall_time_ns = 1700000000LL * 1000000000LL;
  snapshot.tenant_names[kTenantAcme] = "acme";
  snapshot.tenant_names[0] = "process";
  return snapshot;
}

class PprofExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(scratch_.path().empty());
    Symbolizer symbolizer;
    std::string gzipped;
    ASSERT_TRUE(accounting::WritePprof(MakeSnapshot(), &symbolizer, {}, &gzipped));
    profile_ = scratch_.path() + "/heap.pb.gz";
    testing::WriteFile(profile_, gzipped);
  }

  std::string Pprof(const std::string& args) {
    int status = 0;
    std::string output = testing::RunPprof(scratch_.path(), args, profile_, &status);
    EXPECT_EQ(status, 0) << output;
    return output;
  }

  testing::ScratchDir scratch_;
  std::string profile_;
};

// Returns the line of `text` that contains `needle`, or "".
std::string LineWith(const std::string& text, const std::string& needle) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return "";
}

TEST(ProtobufWriter, EncodesVarintsAndFields) {
  std::string out;
  accounting::ProtobufWriter writer(&out);
  writer.Varint(1, 300);
  EXPECT_EQ(out, std::string("\x08\xac\x02", 3));
  out.clear();
  writer.Varint(2, static_cast<uint64_t>(-1));
  EXPECT_EQ(out.size(), 11u);  // key, then ten bytes for a negative int64
  out.clear();
  writer.Bytes(6, "ab");
  EXPECT_EQ(out, std::string("\x32\x02" "ab", 4));
  out.clear();
  writer.PackedVarints(1, {1, 150});
  EXPECT_EQ(out, std::string("\x0a\x03\x01\x96\x01", 5));
}

TEST(Gzip, RoundTrips) {
  std::string data;
  for (int i = 0; i < 10000; i++) data += std::to_string(i * 7919 % 1000);
  std::string compressed;
  ASSERT_TRUE(accounting::GzipCompress(data, &compressed));
  EXPECT_LT(compressed.size(), data.size());
  EXPECT_EQ(static_cast<unsigned char>(compressed[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(compressed[1]), 0x8b);
  std::string restored;
  ASSERT_TRUE(accounting::GzipDecompress(compressed, &restored));
  EXPECT_EQ(restored, data);
  EXPECT_FALSE(accounting::GzipDecompress("not gzip", &restored));
}

TEST(Symbolizer, NamesTestFunctionWithLine) {
  Symbolizer symbolizer;
  ASSERT_TRUE(symbolizer.uses_libdw()) << "libdw.so.1 could not be loaded";
  std::vector<uintptr_t> frames = memward_profile_test::HandleRequest();
  ASSERT_GE(frames.size(), 3u);
  // frames[0] is in CaptureStack, frames[1] in AllocateWidgets.
  const accounting::SymbolizedFrame& frame = symbolizer.Lookup(frames[1]);
  EXPECT_EQ(frame.function, "memward_profile_test::AllocateWidgets()");
  EXPECT_EQ(frame.system_name, "_ZN20memward_profile_test15AllocateWidgetsEv");
  EXPECT_NE(frame.file.find("profile_export_test.cc"), std::string::npos) << frame.file;
  EXPECT_GT(frame.line, 0);
  EXPECT_EQ(frame.address, frames[1] - 1);
  ASSERT_GE(frame.mapping, 0);
  EXPECT_EQ(symbolizer.mappings()[frame.mapping].path,
            symbolizer.mappings()[0].path);  // the program comes first
}

TEST(Symbolizer, MappingsHaveFileOffsetsAndBuildIds) {
  std::vector<accounting::ExecutableMapping> mappings = accounting::ListExecutableMappings();
  ASSERT_FALSE(mappings.empty());
  EXPECT_NE(mappings[0].path.find("profile_export_test"), std::string::npos);
  EXPECT_EQ(mappings[0].build_id.size(), 40u);  // SHA-1, GNU ld's default
  bool found_libc = false;
  for (const auto& mapping : mappings) {
    EXPECT_LT(mapping.start, mapping.limit);
    // Executable segments start at a file offset in the same page position
    // as their address, as the ELF loader requires.
    EXPECT_EQ(mapping.start % 4096, mapping.file_offset % 4096) << mapping.path;
    if (mapping.path.find("libc.so") != std::string::npos) found_libc = true;
  }
  EXPECT_TRUE(found_libc);
}

TEST_F(PprofExportTest, TopShowsFunctionsAndInuseBytes) {
  std::string top = Pprof("-top -sample_index=inuse_space -unit=B");
  std::string widgets = LineWith(top, "memward_profile_test::AllocateWidgets()");
  std::string cache = LineWith(top, "memward_profile_test::FillCache()");
  EXPECT_NE(widgets.find("10000B"), std::string::npos) << top;
  EXPECT_NE(cache.find("10000B"), std::string::npos) << top;
  EXPECT_NE(top.find("Showing nodes accounting for 20000B"), std::string::npos) << top;
}

TEST_F(PprofExportTest, TopShowsAllocTotals) {
  std::string top = Pprof("-top -sample_index=alloc_space -unit=B");
  std::string widgets = LineWith(top, "memward_profile_test::AllocateWidgets()");
  EXPECT_NE(widgets.find("40000B"), std::string::npos) << top;
  std::string objects = Pprof("-top -sample_index=alloc_objects");
  EXPECT_NE(LineWith(objects, "AllocateWidgets").find("625"), std::string::npos) << objects;
}

TEST_F(PprofExportTest, TracesShowCallersInOrder) {
  std::string traces = Pprof("-traces -sample_index=inuse_space");
  size_t widgets = traces.find("memward_profile_test::AllocateWidgets()");
  size_t request = traces.find("memward_profile_test::HandleRequest()", widgets);
  ASSERT_NE(widgets, std::string::npos) << traces;
  EXPECT_NE(request, std::string::npos) << traces;
  EXPECT_NE(traces.find("tenant:  acme"), std::string::npos) << traces;
  EXPECT_NE(traces.find("request:  3:9"), std::string::npos) << traces;
  EXPECT_NE(traces.find("escaped:  true"), std::string::npos) << traces;
}

TEST_F(PprofExportTest, RawShowsSampleTypesAndMappings) {
  std::string raw = Pprof("-raw");
  EXPECT_NE(raw.find("alloc_objects/count alloc_space/bytes inuse_objects/count "
                     "inuse_space/bytes[dflt]"),
            std::string::npos)
      << raw;
  EXPECT_NE(raw.find("PeriodType: space bytes"), std::string::npos) << raw;
  EXPECT_NE(raw.find("Period: 524288"), std::string::npos) << raw;
  EXPECT_NE(raw.find("profile_export_test"), std::string::npos) << raw;
  // The five escaped widget samples of acme: 5 x 15.625 objects, 5,000 bytes.
  EXPECT_NE(raw.find("0          0         78       5000"), std::string::npos) << raw;
}

TEST_F(PprofExportTest, TagsListTenants) {
  std::string tags = Pprof("-tags -sample_index=inuse_space -unit=B");
  EXPECT_NE(LineWith(tags, "acme").find("5000.0B"), std::string::npos) << tags;
  EXPECT_NE(LineWith(tags, "process").find("15000.0B"), std::string::npos) << tags;
}

TEST(FoldedExport, OneWellFormedLinePerStack) {
  Symbolizer symbolizer;
  std::string folded = accounting::WriteFolded(MakeSnapshot(), &symbolizer,
                                               accounting::FoldedValue::kInuseSpace, 0);
  std::regex line_form(R"(^[^;\n]+(;[^;\n]+)* [0-9]+$)");
  std::istringstream lines(folded);
  std::string line;
  std::vector<std::string> all;
  while (std::getline(lines, line)) {
    EXPECT_TRUE(std::regex_match(line, line_form)) << line;
    all.push_back(line);
  }
  ASSERT_EQ(all.size(), 2u) << folded;
  std::string widgets = LineWith(folded, "AllocateWidgets");
  EXPECT_NE(widgets.find("memward_profile_test::HandleRequest();"
                         "memward_profile_test::AllocateWidgets();"),
            std::string::npos)
      << widgets;
  EXPECT_EQ(widgets.substr(widgets.rfind(' ') + 1), "10000");
  EXPECT_EQ(folded.back(), '\n');
}

TEST(FoldedExport, AllocValuesComeFromSiteTotals) {
  Symbolizer symbolizer;
  std::string folded = accounting::WriteFolded(MakeSnapshot(), &symbolizer,
                                               accounting::FoldedValue::kAllocObjects, 0);
  std::string cache = LineWith(folded, "FillCache");
  EXPECT_EQ(cache.substr(cache.rfind(' ') + 1), "20");
  EXPECT_EQ(accounting::ParseFoldedValue("alloc_space"), accounting::FoldedValue::kAllocSpace);
  EXPECT_FALSE(accounting::ParseFoldedValue("bytes").has_value());
}

TEST(FoldedExport, UnknownFramesShowAddresses) {
  // Frames outside every mapping are shown by the looked-up address, the
  // return address minus one.
  HeapSnapshot snapshot;
  snapshot.live.push_back(MakeRecord(1, 1, {0x10, 0x20}, 8, 100));
  Symbolizer symbolizer;
  std::string folded =
      accounting::WriteFolded(snapshot, &symbolizer, accounting::FoldedValue::kInuseSpace, 0);
  EXPECT_EQ(folded, "0x1f;0xf 100\n");
}

TEST(HeapJsonExport, SitesLargestFirstWithStacks) {
  Symbolizer symbolizer;
  std::string json = accounting::WriteHeapJson(MakeSnapshot(), &symbolizer, 0);
  size_t widgets = json.find("memward_profile_test::AllocateWidgets()");
  size_t cache = json.find("memward_profile_test::FillCache()");
  ASSERT_NE(widgets, std::string::npos) << json;
  ASSERT_NE(cache, std::string::npos) << json;
  // Both hold 10,000 bytes in use; the widget site's 40,000 cumulative bytes
  // follow its in-use values.
  EXPECT_NE(json.find(R"("inuse_bytes":20000)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("alloc_bytes":40000)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("live_samples":15)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("file":")"), std::string::npos) << json;
  EXPECT_EQ(json.back(), '\n');
}

// Returns the snapshot with ten more widget samples, standing for 10,000
// more bytes in use.
HeapSnapshot MakeGrownSnapshot() {
  HeapSnapshot snapshot = MakeSnapshot();
  for (int i = 0; i < 10; i++) {
    snapshot.live.push_back(MakeRecord(200 + i, kWidgetSite, WidgetStack(), 64, 1000));
  }
  return snapshot;
}

int64_t SumValues(const accounting::DecodedProfile& profile, const char* type) {
  int index = profile.SampleIndex(type);
  int64_t total = 0;
  for (const auto& sample : profile.samples) total += sample.values[static_cast<size_t>(index)];
  return total;
}

TEST(ProfileReader, RoundTripsOwnProfile) {
  Symbolizer symbolizer;
  std::string gzipped;
  ASSERT_TRUE(accounting::WritePprof(MakeSnapshot(), &symbolizer, {}, &gzipped));
  accounting::DecodedProfile profile;
  std::string error;
  ASSERT_TRUE(accounting::DecodeProfile(gzipped, &profile, &error)) << error;
  ASSERT_EQ(profile.sample_types.size(), 4u);
  EXPECT_EQ(profile.sample_types[3], std::make_pair(std::string("inuse_space"),
                                                    std::string("bytes")));
  EXPECT_EQ(profile.default_sample_type, "inuse_space");
  EXPECT_EQ(profile.period, 512 * 1024);
  EXPECT_EQ(SumValues(profile, "inuse_space"), 20000);
  EXPECT_EQ(SumValues(profile, "alloc_space"), 50000);
  bool found_label = false;
  bool found_stack = false;
  for (const auto& sample : profile.samples) {
    for (const auto& label : sample.labels) {
      if (label == std::make_pair(std::string("tenant"), std::string("acme"))) {
        found_label = true;
      }
    }
    std::vector<std::string> names = profile.StackNames(sample);
    if (names.size() >= 3 && names[1] == "memward_profile_test::AllocateWidgets()" &&
        names[2] == "memward_profile_test::HandleRequest()") {
      found_stack = true;
    }
  }
  EXPECT_TRUE(found_label);
  EXPECT_TRUE(found_stack);
}

TEST(ProfileReader, RejectsTruncatedInput) {
  Symbolizer symbolizer;
  std::string raw = accounting::EncodePprof(MakeSnapshot(), &symbolizer, {});
  int rejected = 0;
  // Every prefix either decodes (it ends between two fields) or is rejected
  // with a message; none reads past its end.
  for (size_t length = 1; length < raw.size(); length += 7) {
    accounting::DecodedProfile profile;
    std::string error;
    if (!accounting::DecodeProfile(std::string_view(raw).substr(0, length), &profile, &error)) {
      EXPECT_FALSE(error.empty());
      rejected++;
    }
  }
  EXPECT_GT(rejected, 0);
  accounting::DecodedProfile profile;
  std::string error;
  EXPECT_FALSE(accounting::DecodeProfile(std::string("\x1f\x8b\x08garbage", 10), &profile,
                                         &error));
  EXPECT_EQ(error, "invalid gzip data");
}

TEST(ProfileDiff, TopNamesGrownFunction) {
  Symbolizer symbolizer;
  accounting::DecodedProfile before, after;
  std::string error;
  ASSERT_TRUE(accounting::DecodeProfile(accounting::EncodePprof(MakeSnapshot(), &symbolizer, {}),
                                        &before, &error));
  ASSERT_TRUE(accounting::DecodeProfile(
      accounting::EncodePprof(MakeGrownSnapshot(), &symbolizer, {}), &after, &error));
  std::vector<accounting::StackDelta> deltas;
  ASSERT_TRUE(accounting::DiffProfiles(before, after, "inuse_space", &deltas, &error)) << error;
  std::string top = accounting::FormatDiffTop(deltas, 10);
  std::istringstream lines(top);
  std::string header, first, second;
  std::getline(lines, header);
  std::getline(lines, first);
  // Both sites' innermost function is CaptureStack: 20,000 bytes before.
  EXPECT_NE(first.find("+10000        20000        30000  memward::testing::CaptureStack()"),
            std::string::npos)
      << top;
  EXPECT_FALSE(std::getline(lines, second)) << top;  // nothing else changed

  std::string folded = accounting::FormatDiffFolded(deltas);
  std::string widgets = LineWith(folded, "AllocateWidgets");
  EXPECT_EQ(widgets.substr(widgets.size() - 12), " 10000 20000") << folded;
  std::string cache = LineWith(folded, "FillCache");
  EXPECT_EQ(cache.substr(cache.size() - 12), " 10000 10000") << folded;
  EXPECT_FALSE(accounting::DiffProfiles(before, after, "cpu", &deltas, &error));
  EXPECT_NE(error.find("'cpu' not found"), std::string::npos) << error;
}

// Runs memward-profile with `args` and returns its output; sets `status`.
std::string RunTool(const std::string& args, int* status) {
  std::string command = "'" MEMWARD_PROFILE_TOOL_PATH "' " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  char buffer[4096];
  size_t read;
  while ((read = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, read);
  *status = WEXITSTATUS(pclose(pipe));
  return output;
}

TEST(ProfileTool, DiffsTwoFiles) {
  testing::ScratchDir scratch;
  Symbolizer symbolizer;
  std::string before, after;
  ASSERT_TRUE(accounting::WritePprof(MakeSnapshot(), &symbolizer, {}, &before));
  ASSERT_TRUE(accounting::WritePprof(MakeGrownSnapshot(), &symbolizer, {}, &after));
  testing::WriteFile(scratch.path() + "/a.pb.gz", before);
  testing::WriteFile(scratch.path() + "/b.pb.gz", after);
  int status = 0;
  std::string files = scratch.path() + "/a.pb.gz " + scratch.path() + "/b.pb.gz";
  std::string top = RunTool("diff " + files, &status);
  EXPECT_EQ(status, 0) << top;
  EXPECT_NE(top.find("+10000"), std::string::npos) << top;
  std::string folded = RunTool("diff --format=folded --sample_index=alloc_space " + files,
                               &status);
  EXPECT_EQ(status, 0) << folded;
  EXPECT_NE(LineWith(folded, "AllocateWidgets").find(" 40000 40000"), std::string::npos)
      << folded;
  std::string missing = RunTool("diff " + scratch.path() + "/none " + files, &status);
  EXPECT_EQ(status, 2) << missing;  // three files: usage
  missing = RunTool("diff " + scratch.path() + "/none " + scratch.path() + "/a.pb.gz", &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(missing.find("cannot open"), std::string::npos) << missing;
}

}  // namespace
}  // namespace memward
