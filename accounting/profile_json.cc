#include "accounting/profile_json.h"

#include <stdio.h>

#include <algorithm>
#include <map>
#include <vector>

#include "base/json_writer.h"

namespace memward::accounting {
namespace {

struct SiteValues {
  const uintptr_t* frames = nullptr;
  uint32_t depth = 0;
  double inuse_bytes = 0;
  double inuse_objects = 0;
  uint64_t live_samples = 0;
  double alloc_bytes = 0;
  double alloc_objects = 0;
  uint64_t samples = 0;
};

}  // namespace

void WriteStackJson(const uintptr_t* frames, uint32_t depth, Symbolizer* symbolizer,
                    base::JsonWriter* json) {
  json->BeginArray();
  for (uint32_t i = 0; i < depth && frames[i] != 0; i++) {
    const SymbolizedFrame& frame = symbolizer->Lookup(frames[i]);
    json->BeginObject();
    char address[32];
    snprintf(address, sizeof(address), "0x%lx", static_cast<unsigned long>(frame.address));
    json->Key("address").String(address);
    json->Key("function").String(frame.DisplayName(symbolizer->mappings()));
    if (!frame.file.empty()) {
      json->Key("file").String(frame.file);
      json->Key("line").Int(frame.line);
    }
    json->EndObject();
  }
  json->EndArray();
}

std::string WriteHeapJson(const HeapSnapshot& snapshot, Symbolizer* symbolizer,
                          uintptr_t trim_address) {
  std::map<uint32_t, SiteValues> sites;
  for (const SiteTotals& totals : snapshot.sites) {
    SiteValues& site = sites[totals.site];
    site.frames = totals.frames;
    site.depth = totals.depth;
    site.alloc_bytes = totals.alloc_weight_bytes;
    site.alloc_objects = totals.alloc_weight_objects;
    site.samples = totals.samples;
  }
  for (const SampleRecord& record : snapshot.live) {
    SiteValues& site = sites[record.site];
    if (site.frames == nullptr) {
      site.frames = record.frames;
      site.depth = record.depth;
    }
    site.inuse_bytes += record.weight_bytes;
    site.inuse_objects += record.weight_objects;
    site.live_samples++;
  }
  std::vector<const SiteValues*> sorted;
  double inuse_total = 0;
  for (const auto& [id, site] : sites) {
    sorted.push_back(&site);
    inuse_total += site.inuse_bytes;
  }
  std::sort(sorted.begin(), sorted.end(), [](const SiteValues* a, const SiteValues* b) {
    return a->inuse_bytes > b->inuse_bytes;
  });

  std::string out;
  base::JsonWriter json(&out);
  json.BeginObject();
  json.Key("interval_bytes").Int(snapshot.interval_bytes);
  json.Key("inuse_bytes").Double(inuse_total);
  json.Key("live_samples").Uint(snapshot.live.size());
  json.Key("symbolizer").String(symbolizer->backend());
  json.Key("sites").BeginArray();
  for (const SiteValues* site : sorted) {
    json.BeginObject();
    json.Key("inuse_bytes").Double(site->inuse_bytes);
    json.Key("inuse_objects").Double(site->inuse_objects);
    json.Key("live_samples").Uint(site->live_samples);
    json.Key("alloc_bytes").Double(site->alloc_bytes);
    json.Key("alloc_objects").Double(site->alloc_objects);
    json.Key("samples").Uint(site->samples);
    uint32_t first = CountTrimmedFrames(site->frames, site->depth, trim_address, *symbolizer);
    json.Key("stack");
    WriteStackJson(site->frames + first, site->depth - first, symbolizer, &json);
    json.EndObject();
  }
  json.EndArray();
  json.EndObject();
  out.push_back('\n');
  return out;
}

}  // namespace memward::accounting
