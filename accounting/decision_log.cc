// The decision ring and counters, and their JSON.
#include "accounting/decision_log.h"

#include <pthread.h>
#include <time.h>

#include "base/json_writer.h"

namespace memward::accounting {
namespace {

// Guarded by g_lock.
constinit pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
constinit Decision g_ring[kDecisionHistory];
constinit size_t g_next = 0;    // index of the next write
constinit uint64_t g_total = 0; // decisions recorded since start or clear
constinit DecisionCounts g_counts;

int64_t RealtimeMs() {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

}  // namespace

const char* DecisionKindName(DecisionKind kind) {
  switch (kind) {
    case DecisionKind::kLevelChange: return "level_change";
    case DecisionKind::kReclaim: return "reclaim";
    case DecisionKind::kBackoff: return "backoff";
    case DecisionKind::kCpuCapped: return "cpu_capped";
    case DecisionKind::kPurge: return "purge";
    case DecisionKind::kDecay: return "decay";
    case DecisionKind::kRejectSet: return "reject_set";
    case DecisionKind::kReadFailed: return "read_failed";
  }
  return "unknown";
}

void RecordDecision(Decision decision) {
  decision.time_ms = RealtimeMs();
  pthread_mutex_lock(&g_lock);
  g_ring[g_next] = decision;
  g_next = (g_next + 1) % kDecisionHistory;
  g_total++;
  g_counts.by_kind[static_cast<int>(decision.kind)]++;
  if (decision.kind == DecisionKind::kReclaim && decision.value > 0) {
    g_counts.reclaimed_bytes += static_cast<uint64_t>(decision.value);
  }
  if (decision.kind == DecisionKind::kPurge && decision.value > 0) {
    g_counts.purged_bytes += static_cast<uint64_t>(decision.value);
  }
  pthread_mutex_unlock(&g_lock);
}

DecisionCounts ReadDecisionCounts() {
  pthread_mutex_lock(&g_lock);
  DecisionCounts counts = g_counts;
  pthread_mutex_unlock(&g_lock);
  return counts;
}

size_t SnapshotDecisions(Decision* out) {
  pthread_mutex_lock(&g_lock);
  const size_t count = g_total < kDecisionHistory ? g_total : kDecisionHistory;
  const size_t first = (g_next + kDecisionHistory - count) % kDecisionHistory;
  for (size_t i = 0; i < count; i++) out[i] = g_ring[(first + i) % kDecisionHistory];
  pthread_mutex_unlock(&g_lock);
  return count;
}

void ClearDecisionLog() {
  pthread_mutex_lock(&g_lock);
  g_next = 0;
  g_total = 0;
  g_counts = DecisionCounts{};
  pthread_mutex_unlock(&g_lock);
}

void WriteDecisionsJson(std::string* out) {
  // The snapshot is large (kDecisionHistory entries), so it lives on the heap
  // rather than on the warden thread's stack.
  auto* decisions = new Decision[kDecisionHistory];
  const size_t count = SnapshotDecisions(decisions);
  const DecisionCounts counts = ReadDecisionCounts();

  base::JsonWriter json(out);
  json.BeginObject();
  json.Key("counts").BeginObject();
  for (int kind = 0; kind < kNumDecisionKinds; kind++) {
    json.Key(DecisionKindName(static_cast<DecisionKind>(kind))).Uint(counts.by_kind[kind]);
  }
  json.Key("reclaimed_bytes").Uint(counts.reclaimed_bytes);
  json.Key("purged_bytes").Uint(counts.purged_bytes);
  json.Key("shed_under_pressure").Uint(PressureShedCount());
  json.Key("rejected_under_pressure").Uint(PressureRejectCount());
  json.EndObject();

  json.Key("decisions").BeginArray();
  for (size_t i = 0; i < count; i++) {
    const Decision& decision = decisions[i];
    json.BeginObject();
    json.Key("time_ms").Int(decision.time_ms);
    json.Key("kind").String(DecisionKindName(decision.kind));
    json.Key("level").String(PressureLevelName(decision.level));
    if (decision.name[0] != '\0') json.Key("reclaimer").String(decision.name);
    json.Key("requested_bytes").Uint(decision.requested);
    json.Key("value").Int(decision.value);
    json.Key("elapsed_us").Int(decision.elapsed_us);
    json.EndObject();
  }
  json.EndArray();
  json.EndObject();
  delete[] decisions;
}

}  // namespace memward::accounting
