#include "accounting/profile_pprof.h"

#include <math.h>

#include <map>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "accounting/gzip.h"
#include "accounting/protobuf_writer.h"

namespace memward::accounting {
namespace {

// Field numbers of profile.proto.
namespace field {
constexpr int kSampleType = 1, kSample = 2, kMapping = 3, kLocation = 4, kFunction = 5,
              kStringTable = 6, kTimeNanos = 9, kPeriodType = 11, kPeriod = 12,
              kDefaultSampleType = 14;
constexpr int kValueTypeType = 1, kValueTypeUnit = 2;
constexpr int kSampleLocationId = 1, kSampleValue = 2, kSampleLabel = 3;
constexpr int kLabelKey = 1, kLabelStr = 2;
constexpr int kMappingId = 1, kMappingStart = 2, kMappingLimit = 3, kMappingOffset = 4,
              kMappingFilename = 5, kMappingBuildId = 6, kMappingHasFunctions = 7,
              kMappingHasFilenames = 8, kMappingHasLineNumbers = 9;
constexpr int kLocationId = 1, kLocationMappingId = 2, kLocationAddress = 3, kLocationLine = 4;
constexpr int kLineFunctionId = 1, kLineLine = 2;
constexpr int kFunctionId = 1, kFunctionName = 2, kFunctionSystemName = 3,
              kFunctionFilename = 4;
}  // namespace field

enum ValueIndex { kAllocObjects, kAllocSpace, kInuseObjects, kInuseSpace, kNumValues };

// The key that live samples are grouped by: site, tenant, request slot,
// request generation and escaped.
using LiveKey = std::tuple<uint32_t, uint32_t, uint32_t, uint32_t, bool>;

struct LiveGroup {
  const SampleRecord* record = nullptr;  // the first sample of the group
  double values[kNumValues] = {};
};

class PprofBuilder {
 public:
  PprofBuilder(Symbolizer* symbolizer, const PprofOptions& options)
      : symbolizer_(symbolizer), options_(options) {
    Intern("");  // string_table[0] must be the empty string
  }

  std::string Build(const HeapSnapshot& snapshot);

 private:
  int64_t Intern(const std::string& text);
  uint64_t LocationId(uintptr_t return_address);
  uint64_t FunctionId(const SymbolizedFrame& frame);
  std::vector<uint64_t> Stack(const uintptr_t* frames, uint32_t depth);
  void AddSample(const std::vector<uint64_t>& stack, const double (&values)[kNumValues],
                 const std::vector<std::pair<std::string, std::string>>& labels);
  void WriteValueType(int field_number, const char* type, const char* unit);
  void WriteTables();

  Symbolizer* symbolizer_;
  PprofOptions options_;
  std::string samples_;  // encoded Sample fields, in order
  std::string body_;
  std::vector<std::string> strings_;
  std::unordered_map<std::string, int64_t> string_ids_;
  std::map<uintptr_t, uint64_t> location_ids_;
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> function_ids_;
  std::string locations_, functions_;
};

int64_t PprofBuilder::Intern(const std::string& text) {
  auto [entry, inserted] = string_ids_.try_emplace(text, static_cast<int64_t>(strings_.size()));
  if (inserted) strings_.push_back(text);
  return entry->second;
}

uint64_t PprofBuilder::FunctionId(const SymbolizedFrame& frame) {
  std::string name = frame.DisplayName(symbolizer_->mappings());
  auto key = std::make_tuple(name, frame.system_name, frame.file);
  auto [entry, inserted] = function_ids_.try_emplace(key, function_ids_.size() + 1);
  if (!inserted) return entry->second;
  std::string function;
  ProtobufWriter writer(&function);
  writer.Varint(field::kFunctionId, entry->second);
  writer.VarintIfNonZero(field::kFunctionName, Intern(name));
  std::string system_name = frame.system_name.empty() ? name : frame.system_name;
  writer.VarintIfNonZero(field::kFunctionSystemName, Intern(system_name));
  writer.VarintIfNonZero(field::kFunctionFilename, Intern(frame.file));
  ProtobufWriter(&functions_).Bytes(field::kFunction, function);
  return entry->second;
}

uint64_t PprofBuilder::LocationId(uintptr_t return_address) {
  auto [entry, inserted] = location_ids_.try_emplace(return_address, location_ids_.size() + 1);
  if (!inserted) return entry->second;
  const SymbolizedFrame& frame = symbolizer_->Lookup(return_address);
  std::string line;
  ProtobufWriter line_writer(&line);
  line_writer.Varint(field::kLineFunctionId, FunctionId(frame));
  line_writer.VarintIfNonZero(field::kLineLine, static_cast<uint64_t>(frame.line));
  std::string location;
  ProtobufWriter writer(&location);
  writer.Varint(field::kLocationId, entry->second);
  if (frame.mapping >= 0) writer.Varint(field::kLocationMappingId, frame.mapping + 1);
  writer.Varint(field::kLocationAddress, frame.address);
  writer.Bytes(field::kLocationLine, line);
  ProtobufWriter(&locations_).Bytes(field::kLocation, location);
  return entry->second;
}

std::vector<uint64_t> PprofBuilder::Stack(const uintptr_t* frames, uint32_t depth) {
  uint32_t first = CountTrimmedFrames(frames, depth, options_.trim_address, *symbolizer_);
  std::vector<uint64_t> stack;
  for (uint32_t i = first; i < depth && frames[i] != 0; i++) {
    stack.push_back(LocationId(frames[i]));
  }
  return stack;
}

void PprofBuilder::AddSample(const std::vector<uint64_t>& stack,
                             const double (&values)[kNumValues],
                             const std::vector<std::pair<std::string, std::string>>& labels) {
  std::string sample;
  ProtobufWriter writer(&sample);
  writer.PackedVarints(field::kSampleLocationId, stack);
  std::vector<uint64_t> rounded;
  for (double value : values) rounded.push_back(static_cast<uint64_t>(llround(value)));
  writer.PackedVarints(field::kSampleValue, rounded);
  for (const auto& [key, text] : labels) {
    std::string label;
    ProtobufWriter label_writer(&label);
    label_writer.Varint(field::kLabelKey, Intern(key));
    label_writer.Varint(field::kLabelStr, Intern(text));
    writer.Bytes(field::kSampleLabel, label);
  }
  ProtobufWriter(&samples_).Bytes(field::kSample, sample);
}

void PprofBuilder::WriteValueType(int field_number, const char* type, const char* unit) {
  std::string value_type;
  ProtobufWriter writer(&value_type);
  writer.Varint(field::kValueTypeType, Intern(type));
  writer.Varint(field::kValueTypeUnit, Intern(unit));
  ProtobufWriter(&body_).Bytes(field_number, value_type);
}

std::string PprofBuilder::Build(const HeapSnapshot& snapshot) {
  WriteValueType(field::kSampleType, "alloc_objects", "count");
  WriteValueType(field::kSampleType, "alloc_space", "bytes");
  WriteValueType(field::kSampleType, "inuse_objects", "count");
  WriteValueType(field::kSampleType, "inuse_space", "bytes");

  // Live samples, grouped so that each labelled stack is one pprof sample.
  std::map<LiveKey, LiveGroup> live;
  for (const SampleRecord& record : snapshot.live) {
    LiveKey key{record.site, record.tenant, record.request_slot, record.request_generation,
                record.escaped};
    LiveGroup& group = live[key];
    if (group.record == nullptr) group.record = &record;
    group.values[kInuseObjects] += record.weight_objects;
    group.values[kInuseSpace] += record.weight_bytes;
  }
  for (const auto& [key, group] : live) {
    const SampleRecord& record = *group.record;
    std::vector<std::pair<std::string, std::string>> labels;
    labels.emplace_back("tenant", snapshot.TenantName(record.tenant));
    if (record.request_slot != 0) {
      labels.emplace_back("request",
                          FormatRequest(record.request_slot, record.request_generation));
    }
    if (record.escaped) labels.emplace_back("escaped", "true");
    AddSample(Stack(record.frames, record.depth), group.values, labels);
  }

  for (const SiteTotals& site : snapshot.sites) {
    double values[kNumValues] = {};
    values[kAllocObjects] = site.alloc_weight_objects;
    values[kAllocSpace] = site.alloc_weight_bytes;
    AddSample(Stack(site.frames, site.depth), values, {});
  }

  body_ += samples_;
  WriteTables();
  ProtobufWriter writer(&body_);
  writer.VarintIfNonZero(field::kTimeNanos, static_cast<uint64_t>(snapshot.wall_time_ns));
  WriteValueType(field::kPeriodType, "space", "bytes");
  writer.VarintIfNonZero(field::kPeriod, static_cast<uint64_t>(snapshot.interval_bytes));
  writer.Varint(field::kDefaultSampleType, Intern("inuse_space"));
  // The string table goes last: every other part has interned its strings.
  for (const std::string& text : strings_) writer.Bytes(field::kStringTable, text);
  return std::move(body_);
}

void PprofBuilder::WriteTables() {
  const std::vector<ExecutableMapping>& mappings = symbolizer_->mappings();
  for (size_t i = 0; i < mappings.size(); i++) {
    std::string mapping;
    ProtobufWriter writer(&mapping);
    writer.Varint(field::kMappingId, i + 1);
    writer.Varint(field::kMappingStart, mappings[i].start);
    writer.Varint(field::kMappingLimit, mappings[i].limit);
    writer.VarintIfNonZero(field::kMappingOffset, mappings[i].file_offset);
    writer.VarintIfNonZero(field::kMappingFilename, Intern(mappings[i].path));
    writer.VarintIfNonZero(field::kMappingBuildId, Intern(mappings[i].build_id));
    writer.Varint(field::kMappingHasFunctions, 1);
    writer.Varint(field::kMappingHasFilenames, symbolizer_->uses_libdw() ? 1 : 0);
    writer.Varint(field::kMappingHasLineNumbers, symbolizer_->uses_libdw() ? 1 : 0);
    ProtobufWriter(&body_).Bytes(field::kMapping, mapping);
  }
  body_ += locations_;
  body_ += functions_;
}

}  // namespace

std::string EncodePprof(const HeapSnapshot& snapshot, Symbolizer* symbolizer,
                        const PprofOptions& options) {
  return PprofBuilder(symbolizer, options).Build(snapshot);
}

bool WritePprof(const HeapSnapshot& snapshot, Symbolizer* symbolizer,
                const PprofOptions& options, std::string* out) {
  return GzipCompress(EncodePprof(snapshot, symbolizer, options), out);
}

}  // namespace memward::accounting
