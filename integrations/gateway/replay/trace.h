// The Azure LLM inference traces of 2023 (data/azure-llm-inference-2023/):
// loading the CSV and cutting a slice of it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace memward::gateway::replay {

// The traces' publishers ask that anything that ships or reports on them
// keeps this attribution (Creative Commons Attribution 4.0).
inline constexpr const char* kTraceAttribution =
    "Trace: Azure LLM inference trace 2023 (Azure/AzurePublicDataset), licensed under CC BY 4.0.\n"
    "Pratyush Patel, Esha Choukse, Chaojie Zhang, Aashaka Shah, Íñigo Goiri, Saeed Maleki,\n"
    "Ricardo Bianchini, \"Splitwise: Efficient generative LLM inference using phase splitting\",\n"
    "ISCA 2024.";

// One row of a trace.
struct TraceRow {
  // Seconds since the first row of the file.
  double arrival_s = 0;
  std::uint32_t context_tokens = 0;
  std::uint32_t generated_tokens = 0;
};

struct TraceSlice {
  // Rows whose arrival is in [start_s, start_s + duration_s) of the file,
  // with arrival_s rebased so the first row of the slice arrives at 0.
  std::vector<TraceRow> rows;
  // Rows in the whole file.
  std::size_t file_rows = 0;
};

// Reads a trace with the header "TIMESTAMP,ContextTokens,GeneratedTokens"
// and timestamps such as "2023-11-16 18:15:46.6805900". Keeps the rows in
// [start_s, start_s + duration_s) of the file, at most `max_rows` of them
// (0: no limit). Returns nullopt and sets `error` (with the line number) on
// a missing file or a malformed row.
std::optional<TraceSlice> LoadTrace(const std::string& path, double start_s, double duration_s,
                                    std::size_t max_rows, std::string& error);

}  // namespace memward::gateway::replay
