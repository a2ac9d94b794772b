// The admin server in a running process, linked and preloaded. Every
// endpoint responds, and its numbers agree with jemalloc's and the C API's.
// Malformed and slow clients leave the host serving with its memory
// unchanged, and many clients work while the host allocates. A forked child
// serves its own socket, and curl and memwardctl read the same numbers.
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "process_test_support.h"

extern char** environ;

namespace memward_test {
namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * kKiB;
// The default of the sample_interval setting.
constexpr int64_t kDefaultSampleInterval = 512 * kKiB;

std::string SocketPathOf(pid_t pid) { return "/tmp/memward/" + std::to_string(pid) + ".sock"; }

int ConnectUnix(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    int error = errno;
    close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

void SendAll(int fd, const std::string& text) {
  size_t sent = 0;
  while (sent < text.size()) {
    ssize_t n = send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
}

std::string ReadAll(int fd, int timeout_ms = 15000) {
  std::string text;
  char buffer[8192];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd entry = {fd, POLLIN, 0};
    if (poll(&entry, 1, 100) <= 0) continue;
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

struct Reply {
  int status = 0;
  std::string body;
};

Reply Exchange(const std::string& path, const std::string& raw) {
  Reply reply;
  int fd = ConnectUnix(path);
  if (fd < 0) return reply;
  SendAll(fd, raw);
  std::string text = ReadAll(fd);
  close(fd);
  if (text.rfind("HTTP/1.1 ", 0) == 0 && text.size() >= 12) {
    reply.status = std::stoi(text.substr(9, 3));
  }
  size_t end = text.find("\r\n\r\n");
  if (end != std::string::npos) reply.body = text.substr(end + 4);
  return reply;
}

Reply Call(const std::string& method, const std::string& target, const std::string& body = "",
           const std::string& path = SocketPathOf(getpid())) {
  std::string raw = method + " " + target + " HTTP/1.1\r\nHost: test\r\n";
  if (method != "GET") raw += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return Exchange(path, raw + "\r\n" + body);
}

// Returns the integer after "key": at or after `from` in a JSON text, or -1.
int64_t JsonNumber(const std::string& json, const std::string& key, size_t from = 0) {
  size_t at = json.find("\"" + key + "\":", from);
  if (at == std::string::npos) return -1;
  return std::strtoll(json.c_str() + at + key.size() + 3, nullptr, 10);
}

// Returns the value of the sample `name{labels}` in Prometheus text, or -1.
int64_t MetricValue(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::strtoll(text.c_str() + at + series.size() + 2, nullptr, 10);
}

// Waits until the socket at `path` responds to GET /stats, for up to 5 s.
bool WaitForServer(const std::string& path) {
  for (int i = 0; i < 500; i++) {
    if (Call("GET", "/stats", "", path).status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

memward_tenant_id RegisterTenant(const std::string& name) {
  memward_tenant_options options;
  memward_tenant_options_init(&options);
  memward_tenant_id id = 0;
  int status = memward_tenant_register(name.c_str(), &options, &id);
  if (status == MEMWARD_ERROR_EXISTS) status = memward_tenant_find(name.c_str(), &id);
  EXPECT_EQ(status, MEMWARD_OK) << name;
  return id;
}

// Allocates `bytes` in `tenant`'s scope and returns the block (kept live).
void* AllocateAs(memward_tenant_id tenant, size_t bytes) {
  memward_scope saved;
  EXPECT_EQ(memward_scope_enter(tenant, &saved), MEMWARD_OK);
  void* block = malloc(bytes);
  memset(block, 1, bytes);
  memward_thread_flush();
  EXPECT_EQ(memward_scope_exit(&saved), MEMWARD_OK);
  return block;
}

class AdminTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(AssertMemwardIsAllocator());
    ASSERT_TRUE(WaitForServer(SocketPathOf(getpid())))
        << "no admin server at " << SocketPathOf(getpid());
  }
};

TEST_F(AdminTest, EveryEndpointResponds) {
  RegisterTenant("endpoints");
  for (const char* target : {"/", "/stats", "/tenants", "/tenants/endpoints", "/tenants/process",
                             "/requests", "/requests?limit=5", "/config", "/metrics"}) {
    Reply reply = Call("GET", target);
    EXPECT_EQ(reply.status, 200) << target << ": " << reply.body;
    EXPECT_FALSE(reply.body.empty()) << target;
  }
  EXPECT_EQ(Call("POST", "/purge").status, 200);
  EXPECT_EQ(Call("PUT", "/config", "dirty_decay=10s").status, 200);
  EXPECT_EQ(Call("GET", "/tenants/no-such-tenant").status, 404);
  EXPECT_EQ(Call("GET", "/requests?limit=0").status, 400);
  EXPECT_EQ(Call("DELETE", "/stats").status, 405);
  Reply index = Call("GET", "/");
  for (const char* path : {"\"/stats\"", "\"/tenants/*\"", "\"/metrics\"", "\"/purge\""}) {
    EXPECT_NE(index.body.find(path), std::string::npos) << path;
  }
}

// Nothing in this process starts the pressure ladder (pressure_monitor is
// off and no reclaimer is registered), and reading the numbers must not
// start it either: a Prometheus scrape would turn on cgroup watching.
TEST_F(AdminTest, StatsLeavePressureLadderOff) {
  Reply stats = Call("GET", "/stats");
  ASSERT_EQ(stats.status, 200);
  Reply metrics = Call("GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(stats.body.find("\"level\":\"off\""), std::string::npos) << stats.body;
  EXPECT_EQ(MetricValue(metrics.body, "memward_pressure_level"), -1);
  EXPECT_EQ(Call("GET", "/pressure").status, 404);
  EXPECT_NE(Call("GET", "/stats").body.find("\"level\":\"off\""), std::string::npos);
}

TEST_F(AdminTest, StatsAgreeWithJemalloc) {
  std::vector<void*> blocks;
  for (int i = 0; i < 32; i++) {
    blocks.push_back(malloc(kMiB));
    memset(blocks.back(), 2, kMiB);
  }
  size_t before = 0, after = 0;
  ASSERT_TRUE(RefreshStats());
  ASSERT_TRUE(ReadSizeValue("stats.allocated", &before));
  Reply stats = Call("GET", "/stats");
  ASSERT_TRUE(RefreshStats());
  ASSERT_TRUE(ReadSizeValue("stats.allocated", &after));
  ASSERT_EQ(stats.status, 200);
  int64_t reported = JsonNumber(stats.body, "allocated_bytes");
  // The server allocates its reply between the two readings; a few hundred
  // KiB covers that and the thread caches, against 32 MiB held here.
  const int64_t slack = 512 * kKiB;
  EXPECT_GE(reported, static_cast<int64_t>(std::min(before, after)) - slack);
  EXPECT_LE(reported, static_cast<int64_t>(std::max(before, after)) + slack);
  EXPECT_GE(reported, static_cast<int64_t>(32 * kMiB));
  EXPECT_EQ(JsonNumber(stats.body, "pid"), getpid());
  // The sampler's section: the process samples at the default interval, and
  // 32 MiB allocated above took about 64 samples.
  memward_sampler_stats sampler;
  ASSERT_EQ(memward_sampler_stats_get(&sampler), MEMWARD_OK);
  const size_t sampler_at = stats.body.find("\"sampler\":");
  ASSERT_NE(sampler_at, std::string::npos) << stats.body;
  EXPECT_EQ(JsonNumber(stats.body, "interval_bytes", sampler_at), sampler.interval_bytes);
  EXPECT_GT(JsonNumber(stats.body, "samples_taken", sampler_at), 0) << stats.body;
  EXPECT_LE(JsonNumber(stats.body, "samples_taken", sampler_at),
            static_cast<int64_t>(sampler.samples_taken));
  EXPECT_GE(JsonNumber(stats.body, "table_bytes", sampler_at), 1) << stats.body;
  EXPECT_GE(JsonNumber(stats.body, "truncated_stacks", sampler_at), 0) << stats.body;
  // The samples above walked this test's stack with the cached unwinder,
  // which filled at least one rule and counted it as a miss.
  EXPECT_GE(JsonNumber(stats.body, "rule_home_entries", sampler_at), 256) << stats.body;
  EXPECT_GE(JsonNumber(stats.body, "rule_entries", sampler_at), 1) << stats.body;
  EXPECT_GE(JsonNumber(stats.body, "rule_misses", sampler_at), 1) << stats.body;
  EXPECT_EQ(JsonNumber(stats.body, "rules_not_inserted", sampler_at), 0) << stats.body;

  // A tenant's numbers are the C API's, exactly.
  memward_tenant_id tenant = RegisterTenant("agree");
  void* held = AllocateAs(tenant, 8 * kMiB);
  memward_tenant_stats expected;
  ASSERT_EQ(memward_tenant_stats_get(tenant, &expected), MEMWARD_OK);
  Reply one = Call("GET", "/tenants/agree");
  EXPECT_EQ(JsonNumber(one.body, "live_bytes"), expected.live_bytes) << one.body;
  EXPECT_EQ(JsonNumber(one.body, "allocations"), static_cast<int64_t>(expected.allocations));
  std::string metrics = Call("GET", "/metrics").body;
  EXPECT_EQ(MetricValue(metrics, "memward_tenant_live_bytes{tenant=\"agree\"}"),
            expected.live_bytes);
  EXPECT_GE(expected.live_bytes, static_cast<int64_t>(8 * kMiB));

  // The process's untagged allocations are not counted one by one: only its
  // live bytes are reported.
  Reply process = Call("GET", "/tenants/process");
  EXPECT_NE(process.body.find("\"peak_bytes\":null"), std::string::npos) << process.body;
  EXPECT_NE(process.body.find("\"allocations\":null"), std::string::npos) << process.body;
  EXPECT_GT(JsonNumber(process.body, "live_bytes"), 0) << process.body;
  EXPECT_EQ(metrics.find("memward_tenant_peak_bytes{tenant=\"process\"}"), std::string::npos);
  EXPECT_NE(metrics.find("memward_tenant_live_bytes{tenant=\"process\"}"), std::string::npos);
  EXPECT_GE(MetricValue(metrics, "memward_sampler_samples_total"),
            JsonNumber(stats.body, "samples_taken", sampler_at));
  EXPECT_EQ(MetricValue(metrics, "memward_sampler_interval_bytes"), sampler.interval_bytes);
  free(held);
  for (void* block : blocks) free(block);
}

TEST_F(AdminTest, RequestsShowOpenAndLargestRecent) {
  memward_tenant_id tenant = RegisterTenant("requests-tenant");
  memward_request request;
  ASSERT_EQ(memward_request_begin(tenant, &request), MEMWARD_OK);
  void* block = malloc(3 * kMiB);
  memset(block, 3, 3 * kMiB);
  memward_thread_flush();
  Reply open = Call("GET", "/requests");
  EXPECT_EQ(open.status, 200);
  size_t entry = open.body.find("\"tenant\":\"requests-tenant\"");
  ASSERT_NE(entry, std::string::npos) << open.body;
  EXPECT_GE(JsonNumber(open.body, "live_bytes", entry), static_cast<int64_t>(3 * kMiB));
  free(block);
  memward_request_summary summary;
  ASSERT_EQ(memward_request_end(&request, &summary), MEMWARD_OK);
  Reply ended = Call("GET", "/requests?limit=1");
  size_t largest = ended.body.find("\"largest_recent\"");
  ASSERT_NE(largest, std::string::npos);
  EXPECT_EQ(JsonNumber(ended.body, "peak_bytes", largest),
            static_cast<int64_t>(summary.peak_bytes))
      << ended.body;
}

TEST_F(AdminTest, MetricsCapTenantLabels) {
  std::vector<void*> blocks;
  for (int i = 0; i < 60; i++) {
    memward_tenant_id tenant = RegisterTenant("cap-" + std::to_string(i));
    blocks.push_back(AllocateAs(tenant, (i + 1) * 4 * kKiB));
  }

  std::string metrics = Call("GET", "/metrics").body;
  std::set<std::string> labels;
  std::istringstream lines(metrics);
  std::string line;
  int64_t labelled_sum = 0;
  const std::string prefix = "memward_tenant_live_bytes{tenant=\"";
  while (std::getline(lines, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::string label = line.substr(prefix.size(), line.find('"', prefix.size()) - prefix.size());
    labels.insert(label);
    if (label != "process" && label != "memward") {
      labelled_sum += std::strtoll(line.c_str() + line.rfind(' ') + 1, nullptr, 10);
    }
  }

  // metrics_max_tenants is 50 by default: 50 user tenants, the process,
  // memward and "other".
  EXPECT_EQ(labels.size(), 53u);
  EXPECT_EQ(labels.count("other"), 1u);
  EXPECT_EQ(labels.count("cap-59"), 1u) << "the tenant with the most live bytes keeps its label";
  EXPECT_EQ(labels.count("cap-0"), 0u) << "a small tenant is summed under other";
  // The labelled and "other" series add up to every user tenant's bytes.
  std::vector<memward_tenant_stats> all(4096);
  size_t count = 0;
  ASSERT_EQ(memward_tenant_stats_list(all.data(), all.size(), &count), MEMWARD_OK);
  int64_t user_sum = 0;
  for (size_t i = 2; i < count; i++) user_sum += all[i].live_bytes;
  EXPECT_EQ(labelled_sum, user_sum);
  for (void* block : blocks) free(block);
}

TEST_F(AdminTest, MetricsTextThroughCApi) {
  size_t length = 0;
  char small[16];
  EXPECT_EQ(memward_metrics_text(small, sizeof(small), &length), MEMWARD_ERROR_FULL);
  EXPECT_GT(length, sizeof(small));
  EXPECT_EQ(memward_metrics_text(nullptr, 0, &length), MEMWARD_ERROR_FULL);
  EXPECT_EQ(memward_metrics_text(small, sizeof(small), nullptr), MEMWARD_ERROR_INVALID);

  std::vector<char> buffer(length + 64 * kKiB);
  size_t written = 0;
  ASSERT_EQ(memward_metrics_text(buffer.data(), buffer.size(), &written), MEMWARD_OK);
  std::string text(buffer.data(), written);
  EXPECT_EQ(strlen(buffer.data()), written);
  EXPECT_EQ(text.rfind("# HELP memward_heap_allocated_bytes ", 0), 0u) << text.substr(0, 80);
  EXPECT_NE(text.find("\nmemward_tenant_live_bytes{tenant=\"process\"} "), std::string::npos);
}

TEST_F(AdminTest, PutConfigChangesDecay) {
  Reply changed = Call("PUT", "/config", "dirty_decay=2s, muzzy_decay=1s");
  EXPECT_EQ(changed.status, 200) << changed.body;
  ssize_t decay = 0;
  size_t length = sizeof(decay);
  ASSERT_EQ(Mallctl()("arenas.dirty_decay_ms", &decay, &length, nullptr, 0), 0);
  EXPECT_EQ(decay, 2000);
  ASSERT_EQ(Mallctl()("arena.0.dirty_decay_ms", &decay, &length, nullptr, 0), 0);
  EXPECT_EQ(decay, 2000);
  ASSERT_EQ(Mallctl()("arena.0.muzzy_decay_ms", &decay, &length, nullptr, 0), 0);
  EXPECT_EQ(decay, 1000);
  EXPECT_NE(Call("GET", "/config").body.find("\"name\":\"dirty_decay\",\"value\":\"2s\""),
            std::string::npos);

  Reply refused = Call("PUT", "/config", "narenas=2");
  EXPECT_EQ(refused.status, 409);
  EXPECT_NE(refused.body.find("narenas"), std::string::npos) << refused.body;
  EXPECT_EQ(Call("PUT", "/config", "dirty_decay=soon").status, 400);
  EXPECT_EQ(Call("PUT", "/config", "no_such_setting=1").status, 400);
  // A rejected pair leaves the valid one before it unapplied.
  EXPECT_EQ(Call("PUT", "/config", "dirty_decay=3s,narenas=2").status, 409);
  ASSERT_EQ(Mallctl()("arenas.dirty_decay_ms", &decay, &length, nullptr, 0), 0);
  EXPECT_EQ(decay, 2000);
  // A setting named twice is rejected before either value is applied.
  Reply repeated = Call("PUT", "/config", "dirty_decay=3s,dirty_decay=4s");
  EXPECT_EQ(repeated.status, 400);
  EXPECT_NE(repeated.body.find("dirty_decay appears more than once"), std::string::npos)
      << repeated.body;
  ASSERT_EQ(Mallctl()("arenas.dirty_decay_ms", &decay, &length, nullptr, 0), 0);
  EXPECT_EQ(decay, 2000);
  EXPECT_EQ(Call("PUT", "/config", "dirty_decay=10s,muzzy_decay=0").status, 200);
}

// Returns the dirty decay of the arena that contains `block`, in milliseconds.
ssize_t DirtyDecayOfArenaWith(void* block) {
  unsigned arena = 0;
  size_t length = sizeof(arena);
  EXPECT_EQ(Mallctl()("arenas.lookup", &arena, &length, &block, sizeof(block)), 0);
  std::string name = "arena." + std::to_string(arena) + ".dirty_decay_ms";
  ssize_t decay = -2;
  length = sizeof(decay);
  EXPECT_EQ(Mallctl()(name.c_str(), &decay, &length, nullptr, 0), 0) << name;
  return decay;
}

// A tenant's arena follows the shorter of dirty_decay and scope_dirty_decay,
// and the automatic arena 0 follows dirty_decay alone. Sampling is off while
// the block is allocated: a sampled block lives in the sampler's arena, which
// keeps dirty_decay.
TEST_F(AdminTest, PutConfigChangesScopeDecay) {
  ASSERT_EQ(memward_sample_interval_set(0), MEMWARD_OK);
  void* block = AllocateAs(RegisterTenant("scope-decay"), 64 * kKiB);
  ASSERT_EQ(memward_sample_interval_set(kDefaultSampleInterval), MEMWARD_OK);
  ssize_t automatic = 0;
  size_t length = sizeof(automatic);

  ASSERT_EQ(Call("PUT", "/config", "scope_dirty_decay=5s").status, 200);
  EXPECT_EQ(DirtyDecayOfArenaWith(block), 5000);
  ASSERT_EQ(Mallctl()("arena.0.dirty_decay_ms", &automatic, &length, nullptr, 0), 0);
  EXPECT_EQ(automatic, 10000);

  ASSERT_EQ(Call("PUT", "/config", "dirty_decay=2s").status, 200);
  EXPECT_EQ(DirtyDecayOfArenaWith(block), 2000);
  ASSERT_EQ(Call("PUT", "/config", "scope_dirty_decay=never").status, 200);
  EXPECT_EQ(DirtyDecayOfArenaWith(block), 2000);

  ASSERT_EQ(Call("PUT", "/config", "dirty_decay=10s,scope_dirty_decay=0").status, 200);
  EXPECT_EQ(DirtyDecayOfArenaWith(block), 0);
  ASSERT_EQ(Mallctl()("arena.0.dirty_decay_ms", &automatic, &length, nullptr, 0), 0);
  EXPECT_EQ(automatic, 10000);
  free(block);
}

// Reads jemalloc's allocated bytes after flushing this thread's caches.
int64_t SettledAllocated() {
  memward_thread_flush();
  size_t allocated = 0;
  EXPECT_TRUE(RefreshStats());
  EXPECT_TRUE(ReadSizeValue("stats.allocated", &allocated));
  return static_cast<int64_t>(allocated);
}

// Sends each malformed request of a corpus (bad request lines, huge
// headers, bodies without length, binary garbage) five times, each on its
// own connection, and expects a 4xx for every one. The corpus is freed on
// return, so callers can compare memory afterwards.
void SendMalformedCorpus(const std::string& path) {
  const std::vector<std::string> corpus = {
      std::string(1 * kMiB, '\x00'),
      std::string(200 * kKiB, '\xff'),
      "GET / HTTP/1.1\r\nA: " + std::string(256 * kKiB, 'h') + "\r\n\r\n",
      "GET /" + std::string(256 * kKiB, 'u') + " HTTP/1.1\r\n\r\n",
      "POST /purge HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n" + std::string(64 * kKiB, 'b'),
      "POST /purge HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "POST /purge HTTP/1.1\r\n\r\nbody without a length",
      "GET /stats HTTP/9.9\r\n\r\n",
      "\r\n\r\n\r\n",
      "GET /%zz HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\n" + [] {
        std::string many;
        for (int i = 0; i < 500; i++) many += "X-" + std::to_string(i) + ": v\r\n";
        return many;
      }() + "\r\n",
  };
  for (int round = 0; round < 5; round++) {
    for (const std::string& raw : corpus) {
      Reply reply = Exchange(path, raw);
      EXPECT_GE(reply.status, 400) << testing::PrintToString(raw.substr(0, 40));
      EXPECT_LT(reply.status, 500) << testing::PrintToString(raw.substr(0, 40));
    }
  }
}

TEST_F(AdminTest, MalformedCorpusLeavesHostServing) {
  const std::string path = SocketPathOf(getpid());
  // Warm the server's and this thread's caches before the baseline.
  for (int i = 0; i < 20; i++) Call("GET", "/stats");
  const int64_t baseline = SettledAllocated();

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> host_rounds{0};
  std::thread host([&] {
    while (!stop.load()) {
      void* blocks[64];
      for (int i = 0; i < 64; i++) blocks[i] = malloc(64 + i * 100);
      for (int i = 0; i < 64; i++) free(blocks[i]);
      host_rounds++;
    }
    memward_thread_flush();
  });

  SendMalformedCorpus(path);

  // Slowloris: connections that send a byte at a time and never finish get
  // 408 after admin_timeout (5 s by default), and the server keeps serving
  // meanwhile.
  std::vector<int> slow;
  for (int i = 0; i < 8; i++) {
    int fd = ConnectUnix(path);
    ASSERT_GE(fd, 0);
    SendAll(fd, "GET /stats HTTP/1.1\r\nX-Slow: ");
    slow.push_back(fd);
  }
  const uint64_t rounds_before = host_rounds.load();
  for (int i = 0; i < 10; i++) {
    for (int fd : slow) SendAll(fd, "a");
    EXPECT_EQ(Call("GET", "/stats").status, 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GT(host_rounds.load(), rounds_before) << "the host thread stalled";
  for (int fd : slow) {
    std::string text = ReadAll(fd, 15000);
    EXPECT_EQ(text.rfind("HTTP/1.1 408", 0), 0u) << text.substr(0, 60);
    close(fd);
  }
  stop = true;
  host.join();

  EXPECT_EQ(Call("GET", "/stats").status, 200);
  // The corpus sent over 8 MiB; the server's buffers must all be freed.
  const int64_t growth = SettledAllocated() - baseline;
  EXPECT_LT(growth, static_cast<int64_t>(512 * kKiB)) << "jemalloc's allocated bytes grew";
}

TEST_F(AdminTest, ManyClientsWhileHostAllocates) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> allocators;
  for (int t = 0; t < 2; t++) {
    allocators.emplace_back([&] {
      while (!stop.load()) {
        void* block = malloc(4096);
        *static_cast<volatile char*>(block) = 1;
        free(block);
      }
    });
  }
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; c++) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < 25; i++) {
        Reply reply = Call("GET", (c + i) % 2 == 0 ? "/stats" : "/metrics");
        (reply.status == 200 ? ok : failed)++;
      }
    });
  }
  for (std::thread& client : clients) client.join();
  stop = true;
  for (std::thread& allocator : allocators) allocator.join();
  // admin_max_connections is 32 and 8 clients never exceed it.
  EXPECT_EQ(ok.load(), 200);
  EXPECT_EQ(failed.load(), 0);
}

// Forks while two threads allocate and a client keeps the parent's server
// busy, so the fork can land while the warden thread is inside a request.
TEST_F(AdminTest, ForkedChildServesItsOwnSocket) {
  const pid_t parent = getpid();
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; t++) {
    threads.emplace_back([&] {
      while (!stop.load()) free(malloc(256));
    });
  }
  std::atomic<int> busy_failures{0};
  threads.emplace_back([&] {
    while (!stop.load()) {
      if (Call("GET", "/metrics").status != 200) busy_failures++;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));

  pid_t child = fork();
  if (child == 0) {
    ArmChildAlarm();
    const std::string own = SocketPathOf(getpid());
    bool served = WaitForServer(own);
    Reply stats = Call("GET", "/stats", "", own);
    bool own_pid = JsonNumber(stats.body, "pid") == getpid();
    exit(served && own_pid ? 0 : 3);  // exit, not _exit: the exit handler removes the socket
  }
  ChildOutcome outcome = WaitForChild(child, kChildDeadline);
  stop = true;
  for (std::thread& thread : threads) thread.join();
  EXPECT_TRUE(outcome.ExitedWithZero()) << outcome.Describe();
  EXPECT_EQ(busy_failures.load(), 0);
  struct stat info;
  EXPECT_NE(stat(SocketPathOf(child).c_str(), &info), 0) << "the child's socket was not removed";
  Reply stats = Call("GET", "/stats");
  EXPECT_EQ(stats.status, 200);
  EXPECT_EQ(JsonNumber(stats.body, "pid"), parent);
}

// A daemon closes every inherited descriptor after fork, memward's too, and
// opens files of its own that may take their numbers. The child's warden
// makes new descriptors, and the child still gets its own socket.
TEST_F(AdminTest, ForkedChildThatClosesEveryDescriptorServes) {
  pid_t child = fork();
  if (child == 0) {
    ArmChildAlarm();
    for (int fd = 3; fd < 1024; fd++) close(fd);
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) _exit(4);
    const std::string own = SocketPathOf(getpid());
    bool served = WaitForServer(own);
    Reply stats = Call("GET", "/stats", "", own);
    bool own_pid = JsonNumber(stats.body, "pid") == getpid();
    exit(served && own_pid ? 0 : 3);
  }
  ChildOutcome outcome = WaitForChild(child, kChildDeadline);
  EXPECT_TRUE(outcome.ExitedWithZero()) << outcome.Describe();
}

TEST_F(AdminTest, OtherUserCannotConnect) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch to another user";
  const std::string path = SocketPathOf(getpid());
  pid_t child = fork();
  if (child == 0) {
    ArmChildAlarm();
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    int fd = ConnectUnix(path);
    _exit(fd < 0 && errno == EACCES ? 0 : 1);
  }
  ChildOutcome outcome = WaitForChild(child, kChildDeadline);
  EXPECT_TRUE(outcome.ExitedWithZero()) << outcome.Describe();
}

// Runs `command` with /bin/sh and returns its standard output.
// Runs `command` through the shell and returns its standard output. When
// the command did not exit with status 0, a last line states how it ended, so
// that a failed expectation on the output shows why the output is missing.
std::string RunCommand(const std::string& command) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return "[popen failed: " + std::string(strerror(errno)) + "]";
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  if (ferror(pipe)) output += "\n[reading the output failed: " + std::string(strerror(errno)) + "]";
  int status = pclose(pipe);
  if (status == -1) {
    output += "\n[pclose failed: " + std::string(strerror(errno)) + "]";
  } else if (WIFSIGNALED(status)) {
    output += "\n[killed by signal " + std::to_string(WTERMSIG(status)) + "]";
  } else if (WEXITSTATUS(status) != 0) {
    output += "\n[exit status " + std::to_string(WEXITSTATUS(status)) + "]";
  }
  return output;
}

TEST_F(AdminTest, CurlAndMemwardctlAgree) {
  memward_tenant_id tenant = RegisterTenant("cli-tenant");
  void* held = AllocateAs(tenant, 5 * kMiB);
  memward_tenant_stats expected;
  ASSERT_EQ(memward_tenant_stats_get(tenant, &expected), MEMWARD_OK);
  const std::string path = SocketPathOf(getpid());
  std::string curl =
      RunCommand("curl -s --max-time 10 --unix-socket " + path + " http://memward/tenants/cli-tenant");
  std::string ctl = RunCommand(std::string("/usr/bin/python3 ") + MEMWARD_CTL_PATH +
                               " --json -p " + std::to_string(getpid()) + " tenants cli-tenant");
  EXPECT_EQ(JsonNumber(curl, "live_bytes"), expected.live_bytes) << curl;
  EXPECT_EQ(JsonNumber(ctl, "live_bytes"), expected.live_bytes) << ctl;
  std::string table = RunCommand(std::string("/usr/bin/python3 ") + MEMWARD_CTL_PATH + " -p " +
                                 std::to_string(getpid()) + " tenants");
  EXPECT_NE(table.find("cli-tenant"), std::string::npos) << table;
  // Unset limits read "none", not "0 B".
  EXPECT_NE(table.find("none"), std::string::npos) << table;
  std::string ps = RunCommand(std::string("/usr/bin/python3 ") + MEMWARD_CTL_PATH + " --json ps");
  EXPECT_NE(ps.find("\"pid\": " + std::to_string(getpid())), std::string::npos) << ps;
  std::string top = RunCommand(std::string("/usr/bin/python3 ") + MEMWARD_CTL_PATH + " -p " +
                               std::to_string(getpid()) + " top -n 2 -d 0.1");
  EXPECT_NE(top.find("cli-tenant"), std::string::npos) << top;
  free(held);
}

// Binds a socket file at `path` and closes it: a stale socket.
void MakeStaleSocket(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0) << path;
  close(fd);
}

// Sets the times of `path` an hour back: memward and memwardctl keep a
// socket file younger than 10 s, which may be a starting server's.
void DateHourBack(const std::string& path) {
  const timespec hour_ago[2] = {{time(nullptr) - 3600, 0}, {time(nullptr) - 3600, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), hour_ago, 0), 0) << path;
}

TEST_F(AdminTest, MemwardctlExplainsErrors) {
  const std::string ctl = std::string("/usr/bin/python3 ") + MEMWARD_CTL_PATH;
  std::string missing = RunCommand(ctl + " -p 999999999 stats 2>&1");
  EXPECT_NE(missing.find("no such process"), std::string::npos) << missing;
  char directory[] = "/tmp/memwardctl-test-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  const std::string stale = std::string(directory) + "/1.sock";
  MakeStaleSocket(stale);
  DateHourBack(stale);
  // A socket bound just now that refuses connections, as a server's
  // between its bind and its listen.
  const std::string young = std::string(directory) + "/2.sock";
  MakeStaleSocket(young);
  std::string output = RunCommand(ctl + " --socket " + stale + " stats 2>&1");
  EXPECT_NE(output.find("stale socket"), std::string::npos) << output;
  EXPECT_NE(output.find("memwardctl --dir " + std::string(directory) + " clean"),
            std::string::npos)
      << output;
  std::string ps = RunCommand(ctl + " --dir " + directory + " ps 2>&1");
  EXPECT_NE(ps.find("2 stale sockets hidden"), std::string::npos) << ps;
  std::string ps_all = RunCommand(ctl + " --dir " + directory + " ps --all");
  EXPECT_NE(ps_all.find("stale"), std::string::npos) << ps_all;
  std::string clean = RunCommand(ctl + " --dir " + directory + " clean 2>&1");
  EXPECT_NE(clean.find("removed 1 stale socket from"), std::string::npos) << clean;
  EXPECT_NE(clean.find("kept 1 socket created less than 10 s ago"), std::string::npos) << clean;
  struct stat info;
  EXPECT_NE(stat(stale.c_str(), &info), 0) << "clean left the stale socket";
  EXPECT_EQ(stat(young.c_str(), &info), 0) << "clean removed a socket bound just now";
  unlink(stale.c_str());
  unlink(young.c_str());
  rmdir(directory);
}

// Starts `program` with the preload library and `conf` as MEMWARD_CONF;
// its stderr goes to `stderr_path`. Returns its pid.
pid_t SpawnPreloaded(const char* program, const char* argument, const std::string& conf,
                     const std::string& stderr_path) {
  std::vector<std::string> environment = {std::string("LD_PRELOAD=") + MEMWARD_PRELOAD_LIBRARY,
                                          "MEMWARD_CONF=" + conf, "PATH=/usr/bin:/bin"};
  std::vector<char*> envp;
  for (std::string& entry : environment) envp.push_back(entry.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  char* argv[] = {const_cast<char*>(program), const_cast<char*>(argument), nullptr};
  pid_t pid = -1;
  posix_spawn(&pid, program, &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

TEST_F(AdminTest, StaleSocketReplacedAndLiveOneKept) {
  char directory[] = "/tmp/memward-stale-test-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  const std::string stale = std::string(directory) + "/stale.sock";
  const std::string live = std::string(directory) + "/live.sock";
  for (const std::string& path : {stale, live}) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    if (path == live) {
      ASSERT_EQ(listen(fd, 4), 0);  // kept open: a live server
    } else {
      close(fd);  // a dead one's leftover
    }
  }

  const std::string errors = std::string(directory) + "/stderr";
  pid_t replacer = SpawnPreloaded("/bin/sleep", "20", "admin_socket=" + stale, errors + ".1");
  pid_t intruder = SpawnPreloaded("/bin/sleep", "20", "admin_socket=" + live, errors + ".2");
  ASSERT_GT(replacer, 0);
  ASSERT_GT(intruder, 0);
  EXPECT_TRUE(WaitForServer(stale));
  EXPECT_EQ(JsonNumber(Call("GET", "/stats", "", stale).body, "pid"), replacer);

  std::string message;
  for (int i = 0; i < 200 && message.find("another process") == std::string::npos; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream file(errors + ".2");
    message.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  }
  EXPECT_NE(message.find("another process serves " + live), std::string::npos) << message;
  struct stat info;
  EXPECT_EQ(stat(live.c_str(), &info), 0) << "the live socket was removed";
  for (pid_t pid : {replacer, intruder}) {
    kill(pid, SIGTERM);
    WaitForChild(pid, kChildDeadline);
  }
  std::system((std::string("rm -rf ") + directory).c_str());
}

// nginx's master runs as root and its workers as another user, who cannot
// bind in the root-owned 0700 default directory. Such a process serves its
// socket from /tmp/memward-<uid> instead, without a warning, and memwardctl
// run by root finds it there.
TEST_F(AdminTest, OtherUserServesPerUserSocket) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to start a process as another user";
  struct stat directory_info;
  ASSERT_EQ(stat("/tmp/memward", &directory_info), 0) << "this test's own server made it";
  ASSERT_EQ(directory_info.st_uid, 0u);

  // uid 65534 may not reach the build directory (a checkout in a 0700
  // temporary directory), so it loads a copy of the library from here.
  char directory[] = "/tmp/memward-user-test-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  ASSERT_EQ(chmod(directory, 0755), 0);
  const std::string library = std::string(directory) + "/libmemward_preload.so";
  const std::string copy = std::string("cp ") + MEMWARD_PRELOAD_LIBRARY + " " + library +
                           " && chmod 0644 " + library;
  ASSERT_EQ(std::system(copy.c_str()), 0) << copy;
  const std::string errors = std::string(directory) + "/stderr";
  std::string preload = "LD_PRELOAD=" + library;
  char* envp[] = {preload.data(), const_cast<char*>("PATH=/usr/bin:/bin"), nullptr};
  fflush(nullptr);
  const pid_t child = fork();
  ASSERT_GE(child, 0) << "fork failed";
  if (child == 0) {
    const int fd = open(errors.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, 2) < 0) _exit(2);
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
    char* argv[] = {const_cast<char*>("/bin/sleep"), const_cast<char*>("20"), nullptr};
    execve(argv[0], argv, envp);
    _exit(4);
  }

  const std::string path = "/tmp/memward-65534/" + std::to_string(child) + ".sock";
  EXPECT_TRUE(WaitForServer(path)) << "no socket at " << path;
  EXPECT_EQ(JsonNumber(Call("GET", "/stats", "", path).body, "pid"), child);
  struct stat socket_info;
  ASSERT_EQ(stat(path.c_str(), &socket_info), 0);
  EXPECT_EQ(socket_info.st_uid, 65534u);
  const std::string ps = RunCommand(std::string("/usr/bin/python3 ") + MEMWARD_CTL_PATH +
                                    " --json ps");
  EXPECT_NE(ps.find("\"socket\": \"" + path + "\""), std::string::npos) << ps;
  const std::string stats = RunCommand(std::string("/usr/bin/python3 ") + MEMWARD_CTL_PATH +
                                       " --json -p " + std::to_string(child) + " stats");
  EXPECT_EQ(JsonNumber(stats, "pid"), child) << stats;

  kill(child, SIGTERM);
  WaitForChild(child, kChildDeadline);
  unlink(path.c_str());  // a process killed by a signal leaves its socket
  std::ifstream file(errors);
  const std::string message((std::istreambuf_iterator<char>(file)),
                            std::istreambuf_iterator<char>());
  EXPECT_EQ(message.find("not started"), std::string::npos) << message;
  std::system((std::string("rm -rf ") + directory).c_str());
}

// A process killed by a signal, or one that ends with _exit, leaves its
// socket file. The next memward process to start removes such files from
// the default directory, but only when no process has the pid, the file is
// 10 s old or more and the socket refuses connections.
TEST_F(AdminTest, StartRemovesSocketsOfEndedProcesses) {
  const std::string directory = "/tmp/memward";
  // Pids above the kernel's largest (4,194,304), one set per test process,
  // so that a run never touches files that an earlier run left.
  const int first = 90000000 + (getpid() % 1000000) * 4;
  const std::string stale = directory + "/" + std::to_string(first) + ".sock";
  const std::string regular = directory + "/" + std::to_string(first + 1) + ".sock";
  const std::string listening = directory + "/" + std::to_string(first + 2) + ".sock";
  MakeStaleSocket(stale);
  DateHourBack(stale);
  const std::string fresh = directory + "/" + std::to_string(first + 3) + ".sock";
  MakeStaleSocket(fresh);
  std::ofstream(regular) << "not a socket\n";
  const int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  snprintf(address.sun_path, sizeof(address.sun_path), "%s", listening.c_str());
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  // A live process without memward, whose pid names a socket that refuses.
  char* sleep_argv[] = {const_cast<char*>("/bin/sleep"), const_cast<char*>("30"), nullptr};
  char* no_environment[] = {nullptr};
  fflush(nullptr);
  const pid_t sleeper = fork();
  ASSERT_GE(sleeper, 0);
  if (sleeper == 0) {
    execve(sleep_argv[0], sleep_argv, no_environment);
    _exit(127);
  }
  const std::string of_live_pid = directory + "/" + std::to_string(sleeper) + ".sock";
  MakeStaleSocket(of_live_pid);
  DateHourBack(of_live_pid);
  DateHourBack(listening);

  RunCommand(std::string("env MEMWARD_CONF= LD_PRELOAD=") + MEMWARD_PRELOAD_LIBRARY +
             " /bin/true");
  struct stat info;
  EXPECT_NE(stat(stale.c_str(), &info), 0) << "the socket of an ended process stayed";
  EXPECT_EQ(stat(regular.c_str(), &info), 0) << "a file that is not a socket was removed";
  EXPECT_EQ(stat(listening.c_str(), &info), 0) << "a socket that accepts was removed";
  EXPECT_EQ(stat(of_live_pid.c_str(), &info), 0) << "the socket of a live pid was removed";
  EXPECT_EQ(stat(fresh.c_str(), &info), 0) << "a socket bound less than 10 s ago was removed";

  kill(sleeper, SIGKILL);
  waitpid(sleeper, nullptr, 0);
  close(listener);
  for (const std::string& path : {stale, fresh, regular, listening, of_live_pid}) {
    unlink(path.c_str());
  }
}

// A new server that binds a stale socket's path while memwardctl clean
// checks it keeps its socket, even when it gets the old inode number.
TEST_F(AdminTest, MemwardctlCleanKeepsReboundSocket) {
  char directory[] = "/tmp/memwardctl-race-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  const std::string output = RunCommand(std::string("/usr/bin/python3 ") +
                                        MEMWARD_CLEAN_RACE_SCRIPT + " " + MEMWARD_CTL_PATH +
                                        " " + directory + " 2>&1");
  EXPECT_NE(output.find("live_socket_kept=yes"), std::string::npos) << output;
  EXPECT_EQ(output.find("outcome=removed"), std::string::npos) << output;
  rmdir(directory);
}

// Any user can create /tmp/memward-<uid> for another uid, or make it a
// symbolic link. memwardctl run by root must neither list sockets from such
// a directory nor remove files through it.
TEST_F(AdminTest, MemwardctlSkipsForeignDirectories) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create directories of other users";
  char target[] = "/tmp/memwardctl-target-XXXXXX";
  ASSERT_NE(mkdtemp(target), nullptr);
  // Each test process takes uids of its own, so that a run never removes
  // directories that another run made.
  const unsigned uid = 3000000000u + static_cast<unsigned>(getpid() % 500000) * 2;
  const std::string link = "/tmp/memward-" + std::to_string(uid);
  const std::string foreign = "/tmp/memward-" + std::to_string(uid + 1);
  unlink(link.c_str());
  std::system(("rm -rf " + foreign).c_str());
  ASSERT_EQ(symlink(target, link.c_str()), 0);
  ASSERT_EQ(mkdir(foreign.c_str(), 0700), 0);
  ASSERT_EQ(chown(foreign.c_str(), uid, uid), 0);
  const std::string through_link = std::string(target) + "/424242.sock";
  const std::string in_foreign = foreign + "/434343.sock";
  MakeStaleSocket(through_link);
  MakeStaleSocket(in_foreign);
  DateHourBack(through_link);
  DateHourBack(in_foreign);

  const std::string ctl = std::string("/usr/bin/python3 ") + MEMWARD_CTL_PATH;
  const std::string ps = RunCommand(ctl + " --json ps --all");
  EXPECT_EQ(ps.find("424242"), std::string::npos) << ps;
  EXPECT_EQ(ps.find("434343"), std::string::npos) << ps;
  RunCommand(ctl + " clean");
  struct stat info;
  EXPECT_EQ(stat(through_link.c_str(), &info), 0) << "clean removed a file through a link";
  EXPECT_EQ(stat(in_foreign.c_str(), &info), 0) << "clean removed a file of another owner";

  unlink(link.c_str());
  std::system(("rm -rf " + foreign + " " + target).c_str());
}

}  // namespace
}  // namespace memward_test
