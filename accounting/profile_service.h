// The heap profile and leak detector service: the leak detector's windows
// on the warden thread, the admin endpoints GET /heap and GET /leaks, and
// the functions behind the C API's profile calls.
//
// Lock order: the service's mutex is taken after the warden's table lock
// and before the sample table's snapshot lock (SnapshotSamples runs under
// it). It is never taken inside malloc; everything under it may allocate.
#ifndef MEMWARD_ACCOUNTING_PROFILE_SERVICE_H_
#define MEMWARD_ACCOUNTING_PROFILE_SERVICE_H_

#include <string>
#include <string_view>

namespace memward::accounting {

enum class HeapFormat { kPprof, kFolded, kJson };

// Registers the leak window task (every leak_window) and the admin
// endpoints, once. Returns false when the warden's task table is full
// (reported on stderr). Does not start the warden thread.
bool StartProfileService();

// Writes a heap profile of the live and cumulative samples to `out`. The
// folded format carries estimated in-use bytes. Returns false with a
// message in `error` when pprof compression fails.
bool WriteHeapProfile(HeapFormat format, std::string* out, std::string* error);

// Closes a leak window now on the calling thread, as the warden does every
// leak_window.
void CloseLeakWindowNow();

// Returns the leak report of the last closed window as JSON.
std::string LeakReportJsonNow();

// Fork handlers: Lock is called before fork, the others after it in the
// parent and in the child.
void LockProfileForFork();
void UnlockProfileAfterFork();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PROFILE_SERVICE_H_
