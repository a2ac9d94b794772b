#include "trace.h"

#include <cstdio>
#include <fstream>

namespace memward::gateway::replay {
namespace {

constexpr const char* kHeader = "TIMESTAMP,ContextTokens,GeneratedTokens";

// Seconds since 1970-01-01 of a "YYYY-MM-DD hh:mm:ss.fraction" UTC time.
std::optional<double> ParseTimestamp(const std::string& text) {
  int year, month, day, hour, minute;
  double second;
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2d %2d:%2d:%lf%n", &year, &month, &day, &hour, &minute,
                  &second, &consumed) != 6 ||
      consumed != static_cast<int>(text.size())) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second < 0 ||
      second >= 61) {
    return std::nullopt;
  }
  // Days from the civil date (Howard Hinnant's days_from_civil algorithm).
  year -= month <= 2;
  const int era = (year >= 0 ? year : year - 399) / 400;
  const int year_of_era = year - era * 400;
  const int day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const int day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  const long days = era * 146097L + day_of_era - 719468;
  return days * 86400.0 + hour * 3600.0 + minute * 60.0 + second;
}

std::optional<std::uint32_t> ParseCount(const std::string& text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  std::uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<std::uint32_t>(c - '0');
  }
  return value;
}

}  // namespace

std::optional<TraceSlice> LoadTrace(const std::string& path, double start_s, double duration_s,
                                    std::size_t max_rows, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = "cannot open trace file " + path;
    return std::nullopt;
  }
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line != kHeader) {
    error = path + ":1: expected the header '" + std::string(kHeader) + "', found '" + line + "'";
    return std::nullopt;
  }

  TraceSlice slice;
  std::optional<double> file_start;
  std::optional<double> slice_start;
  for (std::size_t line_number = 2; std::getline(in, line); ++line_number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::size_t first_comma = line.find(',');
    std::size_t second_comma =
        first_comma == std::string::npos ? first_comma : line.find(',', first_comma + 1);
    std::optional<double> time;
    std::optional<std::uint32_t> context, generated;
    if (second_comma != std::string::npos) {
      time = ParseTimestamp(line.substr(0, first_comma));
      context = ParseCount(line.substr(first_comma + 1, second_comma - first_comma - 1));
      generated = ParseCount(line.substr(second_comma + 1));
    }
    if (!time || !context || !generated) {
      error = path + ":" + std::to_string(line_number) + ": invalid row '" + line +
              "': expected 'YYYY-MM-DD hh:mm:ss.fraction,CONTEXT_TOKENS,GENERATED_TOKENS'";
      return std::nullopt;
    }
    ++slice.file_rows;
    if (!file_start) file_start = *time;
    double offset = *time - *file_start;
    if (offset < start_s || offset >= start_s + duration_s) continue;
    if (max_rows != 0 && slice.rows.size() >= max_rows) continue;
    if (!slice_start) slice_start = offset;
    slice.rows.push_back({offset - *slice_start, *context, *generated});
  }
  return slice;
}

}  // namespace memward::gateway::replay
