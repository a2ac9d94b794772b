// The table of memward's settings and the parser for MEMWARD_CONF.
//
// Every setting has one row in kSettingSpecs: name, kind, default, range, unit
// and help. The parser, the error messages, `memward-settings --markdown` (the
// README's table) and the C API all read that row, so they cannot disagree.
//
// MEMWARD_CONF contains `key=value` pairs separated by commas. Sizes take an
// optional k, m or g suffix (KiB, MiB, GiB); times take ms or s, or the word
// `never` where the setting allows it. An unknown key or an invalid value is
// reported and that key keeps its default; `strict=true` makes it fatal.
#ifndef MEMWARD_BASE_SETTINGS_H_
#define MEMWARD_BASE_SETTINGS_H_

#include <stddef.h>
#include <stdint.h>

namespace memward::base {

enum class SettingKind { kBool, kCount, kSize, kTime, kText };

enum class SettingId : int {
  kStrict,
  kNarenas,
  kDirtyDecay,
  kMuzzyDecay,
  kScopeDirtyDecay,
  kOversizeThreshold,
  kDirtyMaxBytes,
  kTcacheWarmup,
  kBackgroundThread,
  kStatsAtExit,
  kDedicatedArenas,
  kRequestArenas,
  kCgroupRoot,
  kSampleInterval,
  kSampleFramePointers,
  kSampleUnwinder,
  kSampleMaxEntries,
  kSampleMaxBytes,
  kSampleUnwinderMaxBytes,
  kSampleTablesFromFile,
  kPressureSoft,
  kPressureHigh,
  kPressureCritical,
  kPressureHysteresis,
  kPressureInterval,
  kPressureWakeBytes,
  kPressureForecast,
  kPressureLead,
  kPressureDirtyDecay,
  kReclaimCpuShare,
  kPressureMonitor,
  kAdminSocket,
  kAdminGroup,
  kAdminTcpPort,
  kAdminTcpAny,
  kMetricsMaxTenants,
  kAdminTimeout,
  kAdminMaxConnections,
  kLeakWindow,
  kLeakWindows,
  kLeakSiteDepth,
  kNumSettings,
};

inline constexpr int kNumSettings = static_cast<int>(SettingId::kNumSettings);

// One row of the settings table. Times are stored in milliseconds and sizes
// in bytes; -1 stands for `never` in a time that allows it. A text setting
// (a path, a name) keeps its value in Settings' own buffer. Its row's
// default_text is the default, and its number is the text's length.
struct SettingSpec {
  SettingId id;
  const char* name;
  SettingKind kind;
  int64_t default_value;
  int64_t min_value;
  int64_t max_value;
  bool allows_never;
  const char* help;
  const char* default_text = nullptr;
  // True when PUT /config may change the setting in a running process.
  bool runtime = false;
  // For a text setting with a fixed set of values: those values, separated
  // by '|' and compared without regard to case. nullptr accepts any text.
  const char* choices = nullptr;
  // True when an empty value is valid (a text setting that it turns off).
  bool allows_empty = false;
};

inline constexpr int64_t kKiB = 1024;
inline constexpr int64_t kMiB = 1024 * kKiB;
inline constexpr int64_t kGiB = 1024 * kMiB;
inline constexpr int64_t kHourMs = 3600 * 1000;
// The maximum length of a text setting's value, in bytes. MEMWARD_CONF separates
// pairs with commas, so a text value cannot contain one.
inline constexpr size_t kMaxSettingText = 255;

// The settings table. The reasons for the defaults are written where alloc/
// uses them.
inline constexpr SettingSpec kSettingSpecs[kNumSettings] = {
    {SettingId::kStrict, "strict", SettingKind::kBool, 0, 0, 1, false,
     "Make an unknown key or invalid value in MEMWARD_CONF fatal instead of a warning."},
    {SettingId::kNarenas, "narenas", SettingKind::kCount, 0, 0, 1024, false,
     "Number of automatic jemalloc arenas for untagged memory; 0 means one per CPU the "
     "process may run on (jemalloc's own default is 4 per CPU)."},
    {SettingId::kDirtyDecay, "dirty_decay", SettingKind::kTime, 1000, 0, kHourMs, true,
     "How long freed pages stay dirty before they are purged back to the kernel; the arenas "
     "memward creates use scope_dirty_decay when that is shorter.",
     nullptr, true},
    {SettingId::kMuzzyDecay, "muzzy_decay", SettingKind::kTime, 0, 0, kHourMs, true,
     "How long lazily purged (MADV_FREE) pages stay before a forced purge.", nullptr, true},
    {SettingId::kScopeDirtyDecay, "scope_dirty_decay", SettingKind::kTime, 0, 0, kHourMs, true,
     "How long freed pages stay dirty in the arenas memward creates for tenants and "
     "requests, when that is shorter than dirty_decay; 0 purges them at once, so new blocks "
     "do not reuse them resident; never makes them follow dirty_decay.",
     nullptr, true},
    {SettingId::kOversizeThreshold, "oversize_threshold", SettingKind::kSize, 0, 0, 64 * kGiB,
     false,
     "Allocations at least this large go to jemalloc's dedicated huge arena, which "
     "purges at once; 0 turns that arena off."},
    {SettingId::kDirtyMaxBytes, "dirty_max_bytes", SettingKind::kSize, 32 * kMiB, 0, 64 * kGiB,
     false,
     "Max bytes of dirty pages kept in all arenas, checked after each quarter of this many "
     "bytes allocated in blocks of 1 MiB or more; past it every arena is purged at once. "
     "0 leaves dirty pages to decay alone."},
    {SettingId::kTcacheWarmup, "tcache_warmup", SettingKind::kSize, 256 * kKiB, 0, kGiB, false,
     "Bytes a thread started in a burst (16 thread starts within 10 ms) allocates before "
     "it gets a jemalloc thread cache; until then its calls lock the arena's bins, so "
     "short-lived threads hold no cached batches. Other threads get their cache at their "
     "first call; 0 gives it to every thread at once. Read at start-up."},
    {SettingId::kBackgroundThread, "background_thread", SettingKind::kBool, 0, 0, 1, false,
     "Let jemalloc run its background purging threads (started after start-up)."},
    {SettingId::kStatsAtExit, "stats_at_exit", SettingKind::kBool, 0, 0, 1, false,
     "Print jemalloc's statistics at exit to the stderr the process started with (a "
     "copy of descriptor 2 taken at start-up, number 200 or above)."},
    {SettingId::kDedicatedArenas, "dedicated_arenas", SettingKind::kCount, 16, 0, 512, false,
     "Most tenants that get an arena of their own (each costs about 120 KiB resident); "
     "the rest share one arena."},
    {SettingId::kRequestArenas, "request_arenas", SettingKind::kCount, 64, 0, 1024, false,
     "Most arenas in the request pool, so the most requests open at once with "
     "their own arena; later requests are counted in their tenant's arena."},
    {SettingId::kCgroupRoot, "cgroup_root", SettingKind::kText, 0, 0, 0, false,
     "The directory the cgroup monitor reads proc/self/cgroup, proc/self/mountinfo and "
     "the cgroup mounts under; tests point it at a prepared tree.",
     "/"},
    {SettingId::kSampleInterval, "sample_interval", SettingKind::kSize, 512 * kKiB, 0, kGiB,
     false,
     "Mean number of allocated bytes between two sampled allocations (with their stacks); "
     "0 turns sampling off."},
    {SettingId::kSampleFramePointers, "sample_frame_pointers", SettingKind::kBool, 0, 0, 1, false,
     "Capture sampled stacks by following frame pointers instead of with libunwind; only "
     "for hosts built with -fno-omit-frame-pointer. Overrides sample_unwinder."},
    {SettingId::kSampleUnwinder, "sample_unwinder", SettingKind::kText, 0, 0, 0, false,
     "How sampled stacks are captured: `cached` (memward's unwinder, which caches the "
     "DWARF frame rule of each return address and hands stacks with other rules to "
     "libunwind, loaded outside malloc when a stack first needs it), `libunwind` "
     "(unw_backtrace, loaded at start-up) or `frame_pointers`. Read at start-up.",
     "cached", false, "cached|libunwind|frame_pointers"},
    {SettingId::kSampleMaxEntries, "sample_max_entries", SettingKind::kCount, 10000, 16,
     1 << 20, false,
     "Max live samples and max distinct sampled call sites kept; later samples are dropped "
     "and counted. Read at start-up."},
    {SettingId::kSampleMaxBytes, "sample_max_bytes", SettingKind::kSize, 8 * kMiB, 64 * kKiB,
     kGiB, false,
     "Max bytes of memward's arena for the sample tables (about 700 bytes per entry); "
     "lowers sample_max_entries to fit. Read at start-up."},
    {SettingId::kSampleUnwinderMaxBytes, "sample_unwinder_max_bytes", SettingKind::kSize,
     16 * kMiB, 0, kGiB, false,
     "Max bytes the unwinders may map for their caches: the cached unwinder's frame rule "
     "tables (253 KiB mapped for up to 8,192 return addresses and resident as they fill, if "
     "that is at most half of the bound, else libunwind captures every stack) and libunwind's "
     "caches (256 KiB or more "
     "per thread that falls back to it); threads past it unwind without a cache, at about "
     "35 us per sample instead of under 1 us. Read at start-up."},
    {SettingId::kSampleTablesFromFile, "sample_tables_from_file", SettingKind::kBool, 0, 0, 1,
     false,
     "Have the cached unwinder read a library's unwind tables (.eh_frame_hdr, .eh_frame) "
     "with open and pread on a frame rule cache miss, instead of through the library's "
     "mapping, whose pages would stay in the process's RSS. About 10 us per miss instead "
     "of 0.2 us. A seccomp filter must then allow open, pread64 and close. Read at "
     "start-up."},
    {SettingId::kPressureSoft, "pressure_soft", SettingKind::kCount, 80, 1, 100, false,
     "Working set, in percent of the memory limit, at which the pressure level becomes "
     "soft: reclaimers are asked for memory and dirty pages are purged. The thresholds "
     "must ascend: pressure_hysteresis < pressure_soft < pressure_high < "
     "pressure_critical."},
    {SettingId::kPressureHigh, "pressure_high", SettingKind::kCount, 90, 1, 100, false,
     "Working set, in percent of the memory limit, at which the level becomes high: "
     "admission sheds new work of tenants over their share."},
    {SettingId::kPressureCritical, "pressure_critical", SettingKind::kCount, 95, 1, 100, false,
     "Working set, in percent of the memory limit, at which the level becomes critical: "
     "admission rejects new work of the tenants furthest over their share."},
    {SettingId::kPressureHysteresis, "pressure_hysteresis", SettingKind::kCount, 5, 0, 50,
     false,
     "Percentage points the working set must fall below a level's threshold before "
     "the level is left."},
    {SettingId::kPressureInterval, "pressure_interval", SettingKind::kTime, 250, 10, 60 * 1000,
     false, "How often the warden reads the cgroup's memory usage and pressure."},
    {SettingId::kPressureWakeBytes, "pressure_wake_bytes", SettingKind::kSize, 32 * kMiB, 0,
     64 * kGiB, false,
     "Most heap growth (new mappings, tenant allocations) since the warden last looked "
     "before the allocator wakes it; the warden lowers it near the next level's "
     "threshold; 0 turns the wake-up off."},
    {SettingId::kPressureForecast, "pressure_forecast", SettingKind::kBool, 1, 0, 1, false,
     "Measure how fast the working set grows and read the cgroup's usage again shortly "
     "before it is projected to reach the next threshold (at most every 2 ms)."},
    {SettingId::kPressureLead, "pressure_lead", SettingKind::kTime, 100, 0, 10 * 1000, false,
     "With pressure_forecast, ask the reclaimers for memory once the working set is "
     "projected to reach the soft threshold within this time, at most half the hysteresis "
     "early; 0 waits for the crossing."},
    {SettingId::kPressureDirtyDecay, "pressure_dirty_decay", SettingKind::kTime, 250, 0,
     kHourMs, false,
     "Dirty page decay while the level is soft (high and critical use 0); the "
     "dirty_decay setting is restored when the level falls to normal."},
    {SettingId::kReclaimCpuShare, "reclaim_cpu_share", SettingKind::kCount, 20, 1, 100, false,
     "Maximum percent of one CPU's time the warden spends in reclaimers; reclaim "
     "waits when its time over the last second passes this share."},
    {SettingId::kPressureMonitor, "pressure_monitor", SettingKind::kBool, 0, 0, 1, false,
     "Start the warden when the library loads and watch the memory cgroup; otherwise "
     "it starts at the first reclaimer registration or pressure query."},
    {SettingId::kAdminSocket, "admin_socket", SettingKind::kText, 0, 0, 0, false,
     "The admin server's Unix socket; %p is replaced by the process id and %u by the "
     "effective user id, and off or an empty value turns the server off. A missing "
     "directory is created with mode 0700. Where the default's directory belongs to "
     "another user, a process not run by root uses /tmp/memward-%u/%p.sock instead.",
     "/tmp/memward/%p.sock", /*runtime=*/false, /*choices=*/nullptr, /*allows_empty=*/true},
    {SettingId::kAdminGroup, "admin_group", SettingKind::kCount, 0, 0, 4294967294, false,
     "A group id whose members may also use the admin socket; 0 allows only the process's "
     "own user and root."},
    {SettingId::kAdminTcpPort, "admin_tcp_port", SettingKind::kCount, 0, 0, 65535, false,
     "A TCP port that serves only GET /metrics, for Prometheus; 0 turns it off."},
    {SettingId::kAdminTcpAny, "admin_tcp_any", SettingKind::kBool, 0, 0, 1, false,
     "Bind the metrics port on every interface instead of 127.0.0.1 only."},
    {SettingId::kMetricsMaxTenants, "metrics_max_tenants", SettingKind::kCount, 50, 0, 4096,
     false,
     "Maximum number of tenants with their own label in /metrics, by live bytes; the rest "
     "are summed under tenant=\"other\"."},
    {SettingId::kAdminTimeout, "admin_timeout", SettingKind::kTime, 5 * 1000, 10, 60 * 1000,
     false,
     "How long an admin connection may take to send its request and read the response; "
     "a slower one gets 408 and is closed."},
    {SettingId::kAdminMaxConnections, "admin_max_connections", SettingKind::kCount, 32, 1, 1024,
     false, "Maximum number of admin connections open at once; later ones get 503."},
    {SettingId::kLeakWindow, "leak_window", SettingKind::kTime, 10 * 1000, 100, kHourMs, false,
     "How often the leak detector records each call site's estimated live bytes."},
    {SettingId::kLeakWindows, "leak_windows", SettingKind::kCount, 6, 2, 360, false,
     "Number of recent leak windows a site's growth is judged over; a suspect grew in "
     "at least three quarters of them."},
    {SettingId::kLeakSiteDepth, "leak_site_depth", SettingKind::kCount, 0, 0, 64, false,
     "Innermost frames outside memward, libc and libstdc++ that make a leak site; 0 "
     "makes the whole stack the site."},
};

// Returns the row for `name` (of length `length`), or nullptr.
const SettingSpec* FindSetting(const char* name, size_t length);

// The values of every setting, initialised to the defaults. The constructor
// is constexpr so that a global Settings is initialised before any code runs:
// malloc can be called before the constructors of memward's own library.
class Settings {
 public:
  constexpr Settings() : values_{}, texts_{} {
    for (const SettingSpec& spec : kSettingSpecs) {
      if (spec.kind == SettingKind::kText) {
        SetText(spec.id, spec.default_text, TextLength(spec.default_text));
      } else {
        Set(spec.id, spec.default_value);
      }
    }
  }
  int64_t Get(SettingId id) const { return values_[static_cast<int>(id)]; }
  bool GetBool(SettingId id) const { return Get(id) != 0; }
  constexpr void Set(SettingId id, int64_t value) { values_[static_cast<int>(id)] = value; }

  // The value of a text setting, NUL-terminated.
  const char* GetText(SettingId id) const { return texts_[static_cast<int>(id)]; }
  // Stores `length` bytes of `text` (at most kMaxSettingText) for a text setting.
  constexpr void SetText(SettingId id, const char* text, size_t length) {
    char* slot = texts_[static_cast<int>(id)];
    if (length > kMaxSettingText) length = kMaxSettingText;
    for (size_t i = 0; i < length; i++) slot[i] = text[i];
    slot[length] = '\0';
    values_[static_cast<int>(id)] = static_cast<int64_t>(length);
  }

 private:
  static constexpr size_t TextLength(const char* text) {
    size_t length = 0;
    while (text != nullptr && text[length] != '\0') length++;
    return length;
  }

  int64_t values_[kNumSettings];
  char texts_[kNumSettings][kMaxSettingText + 1];
};

// The reason a `key=value` pair was not applied.
enum class SettingError { kUnknownKey, kMissingValue, kInvalidValue, kOutOfRange };

// One rejected pair. `key` and `value` point into the parsed text and are not
// NUL-terminated; `spec` is nullptr for an unknown key.
struct SettingProblem {
  SettingError error;
  const char* key;
  size_t key_length;
  const char* value;
  size_t value_length;
  const SettingSpec* spec;
  int64_t kept_value;  // the value in effect, which the pair leaves unchanged
  const char* kept_text = nullptr;  // the same for a text setting
};

using SettingProblemHandler = void (*)(const SettingProblem& problem, void* context);

// Parses `text` into `settings`, calling `handler` for each rejected pair; a
// rejected pair leaves its setting unchanged. Returns the number of problems.
// Never allocates, so it can run inside malloc's bootstrap.
int ParseSettings(const char* text, Settings* settings, SettingProblemHandler handler,
                  void* context);

// Parses one value for `spec` into `out`. On failure returns false and sets
// `error` to kMissingValue, kInvalidValue or kOutOfRange.
bool ParseSettingValue(const SettingSpec& spec, const char* value, size_t length,
                       int64_t* out, SettingError* error);

// Writes the value in the form MEMWARD_CONF accepts ("10s", "512k", "true").
size_t FormatSettingValue(const SettingSpec& spec, int64_t value, char* buffer,
                          size_t capacity);

// Describes the accepted form of a setting, for error messages and docs.
const char* DescribeSettingKind(const SettingSpec& spec);

// Formats the message for a rejected pair, naming the key, the value, the
// accepted form and the default that is kept.
size_t FormatSettingProblem(const SettingProblem& problem, char* buffer, size_t capacity);

// Returns whether pressure thresholds have the order the pressure ladder
// needs: 0 < soft < high < critical <= 100 and 0 <= hysteresis < soft.
constexpr bool PressureThresholdsAscend(int64_t soft, int64_t high, int64_t critical,
                                        int64_t hysteresis) {
  return soft > 0 && soft < high && high < critical && critical <= 100 && hysteresis >= 0 &&
         hysteresis < soft;
}

// Checks the rule between settings that no single range expresses: the
// pressure thresholds must ascend. Returns true when they do; otherwise
// writes a message with the four values and the defaults used instead.
bool CheckPressureThresholds(const Settings& settings, char* buffer, size_t capacity);

// Applies CheckPressureThresholds to parsed settings: when the thresholds do
// not ascend, writes its message and puts the four defaults back, as a
// rejected pair keeps its default. Returns the number of problems, 0 or 1.
int ResetUnorderedPressureThresholds(Settings* settings, char* buffer, size_t capacity);

}  // namespace memward::base

#endif  // MEMWARD_BASE_SETTINGS_H_
