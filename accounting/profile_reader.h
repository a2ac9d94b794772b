// A reader for pprof's profile.proto: the subset that memward's own
// profiles use (sample types, samples with labels, locations with their
// lines, functions and the string table). Used by the
// memward-profile tool and the tests; it is not part of the libraries.
#ifndef MEMWARD_ACCOUNTING_PROFILE_READER_H_
#define MEMWARD_ACCOUNTING_PROFILE_READER_H_

#include <stdint.h>

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace memward::accounting {

struct DecodedSample {
  std::vector<uint64_t> location_ids;  // innermost first
  std::vector<int64_t> values;         // one per sample type
  std::vector<std::pair<std::string, std::string>> labels;  // string labels only
};

struct DecodedProfile {
  std::vector<std::pair<std::string, std::string>> sample_types;  // (type, unit)
  std::vector<DecodedSample> samples;
  // Function names per location id, innermost (inlined) first.
  std::map<uint64_t, std::vector<std::string>> location_functions;
  std::map<uint64_t, uintptr_t> location_addresses;
  int64_t period = 0;
  std::string default_sample_type;

  // Returns the index of sample type `type`, or -1.
  int SampleIndex(std::string_view type) const;
  // Returns the function names of a sample's stack, innermost first; a
  // location without a function is shown by its address.
  std::vector<std::string> StackNames(const DecodedSample& sample) const;
};

// Decodes `data`, gunzipping it first when it starts with the gzip magic.
// Returns false with a message in `error` for malformed input.
bool DecodeProfile(std::string_view data, DecodedProfile* profile, std::string* error);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PROFILE_READER_H_
