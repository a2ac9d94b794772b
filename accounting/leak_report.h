// The leak report as JSON: GET /leaks and memward_leak_report_write.
//
// Each suspect, fastest growing first, has its growth rate in bytes per
// second, its estimated live bytes and objects, the windows in which it
// grew and its live bytes per window. It also has the symbolized stack, the
// age distribution of its live samples, and its live bytes by tenant and by
// request, with the bytes still live after their request ended (escaped). A list of every site with escaped live samples follows,
// whether or not it is a suspect. Field meanings are in docs/admin-api.md.
#ifndef MEMWARD_ACCOUNTING_LEAK_REPORT_H_
#define MEMWARD_ACCOUNTING_LEAK_REPORT_H_

#include <stddef.h>
#include <stdint.h>

#include <string>

#include "accounting/leak_detector.h"
#include "accounting/symbolizer.h"

namespace memward::accounting {

struct LeakReportOptions {
  int64_t window_ms = 0;      // the leak_window setting, reported as is
  size_t max_requests = 10;   // requests listed per suspect, most bytes first
  size_t max_escaped_sites = 20;
};

// Returns the report on the detector's last window as a JSON object
// followed by a newline.
std::string LeakReportJson(const LeakDetector& detector, Symbolizer* symbolizer,
                           const LeakReportOptions& options);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_LEAK_REPORT_H_
