// Debian's redis-server links libjemalloc.so.2 and calls malloc, mallctl,
// nallocx, malloc_usable_size and malloc_stats_print. With memward preloaded,
// every one of those calls must bind to memward, so that redis's memory
// figures and jemalloc statistics describe one heap: memward's.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "harness/net.h"
#include "harness/process.h"
#include "harness/procfs.h"

namespace memward::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kRedisServer = "/usr/bin/redis-server";
constexpr const char* kRedisCli = "/usr/bin/redis-cli";
constexpr const char* kRedisBenchmark = "/usr/bin/redis-benchmark";

std::string redis_config(const TempDir& dir, std::uint16_t port) {
  std::ostringstream config;
  config << "port " << port << "\n"
         << "bind 127.0.0.1\n"
         << "daemonize no\n"
         << "save \"\"\n"
         << "appendonly no\n"
         << "dir " << dir.path().string() << "\n"
         << "logfile " << (dir / "redis.log").string() << "\n"
         << "pidfile " << (dir / "redis.pid").string() << "\n"
         // DEBUG POPULATE fills the heap by a known amount.
         << "enable-debug-command local\n"
         // This is the default, and it makes redis enable jemalloc's
         // background thread through mallctl("background_thread").
         << "jemalloc-bg-thread yes\n";
  return config.str();
}

class RedisClient {
 public:
  explicit RedisClient(std::uint16_t port) : port_(port) {}

  // Runs one command through redis-cli and returns its raw output.
  RunResult run(const std::vector<std::string>& command) const {
    ProcessOptions options;
    options.argv = {kRedisCli, "-h", "127.0.0.1", "-p", std::to_string(port_)};
    options.argv.insert(options.argv.end(), command.begin(), command.end());
    return run_program(std::move(options), seconds(30));
  }

  // INFO memory as field name to value.
  std::map<std::string, std::string> info_memory() const { return info("memory"); }

  // One section of INFO as field name to value.
  std::map<std::string, std::string> info(const std::string& section) const {
    RunResult result = run({"INFO", section});
    std::map<std::string, std::string> fields;
    std::istringstream lines(result.stdout_text);
    std::string line;
    while (std::getline(lines, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::size_t colon = line.find(':');
      if (colon != std::string::npos) fields[line.substr(0, colon)] = line.substr(colon + 1);
    }
    return fields;
  }

 private:
  std::uint16_t port_;
};

long long field_value(const std::map<std::string, std::string>& fields, const std::string& name) {
  auto found = fields.find(name);
  return found == fields.end() ? -1 : std::stoll(found->second);
}

// Redis refreshes its allocator_* fields from mallctl in its periodic cron
// (10 times a second by default), so a change shows up in INFO a little
// after it happens. Polls until `condition` is true and returns the last fields.
template <typename Condition>
std::map<std::string, std::string> wait_for_info(const RedisClient& client, Condition condition,
                                                 milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::map<std::string, std::string> fields = client.info_memory();
  while (!condition(fields) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(100));
    fields = client.info_memory();
  }
  return fields;
}

std::string describe_fields(const std::map<std::string, std::string>& fields) {
  std::string text;
  for (const char* name : {"used_memory", "allocator_allocated", "allocator_active",
                           "allocator_resident", "used_memory_rss"}) {
    auto found = fields.find(name);
    text += std::string(name) + "=" + (found == fields.end() ? "missing" : found->second) + " ";
  }
  return text;
}

// File name (symbolic links resolved) of the library that each symbol of
// redis-server was bound to, from the dynamic loader's LD_DEBUG=bindings
// output:
// "binding file /usr/bin/redis-server [0] to /path/lib.so [0]: normal symbol `malloc'".
std::map<std::string, std::string> redis_symbol_bindings(const std::filesystem::path& debug_dir) {
  static const std::regex binding(
      R"(binding file /usr/bin/redis-server \[0\] to (\S+) \[0\]: normal symbol `([^']+)')");
  std::map<std::string, std::string> bindings;
  for (const auto& entry : std::filesystem::directory_iterator(debug_dir)) {
    const std::string log = read_text_file(entry.path());
    for (auto match = std::sregex_iterator(log.begin(), log.end(), binding);
         match != std::sregex_iterator(); ++match) {
      std::error_code ignored;
      bindings[(*match)[2]] =
          std::filesystem::weakly_canonical((*match)[1].str(), ignored).filename().string();
    }
  }
  return bindings;
}

// Runs redis-benchmark with `arguments` and checks that it finished and
// reported a request rate for every test.
void run_benchmark(std::uint16_t port, const std::vector<std::string>& arguments,
                   std::size_t test_count) {
  ProcessOptions options;
  options.argv = {kRedisBenchmark, "-h", "127.0.0.1", "-p", std::to_string(port), "-q"};
  options.argv.insert(options.argv.end(), arguments.begin(), arguments.end());
  RunResult result = run_program(std::move(options), seconds(40));
  ASSERT_TRUE(result.exited_with(0)) << result.description;

  static const std::regex rate(R"(([A-Z_0-9]+)[^:\r\n]*: ([0-9.]+) requests per second)");
  std::size_t rates = 0;
  for (auto match = std::sregex_iterator(result.stdout_text.begin(), result.stdout_text.end(), rate);
       match != std::sregex_iterator(); ++match) {
    EXPECT_GT(std::stod((*match)[2]), 0.0) << (*match)[0];
    ++rates;
  }
  EXPECT_GE(rates, test_count) << result.description;
  EXPECT_EQ(result.stdout_text.find("ERR"), std::string::npos) << result.description;
  EXPECT_EQ(result.stderr_text.find("rror"), std::string::npos) << result.description;
}

TEST(Redis, BenchmarkAndStatsShareOneHeap) {
  TempDir dir("memward-redis");
  const std::uint16_t port = find_free_port();
  write_text_file(dir / "redis.conf", redis_config(dir, port));
  std::filesystem::create_directories(dir / "ld-debug");

  ProcessOptions options;
  options.argv = {kRedisServer, (dir / "redis.conf").string()};
  options.ld_preload = preload_path();
  // redis-server is linked with -z now, so the loader binds every symbol at
  // start-up and logs each binding.
  options.env = {{"LD_DEBUG", "bindings"},
                 {"LD_DEBUG_OUTPUT", (dir / "ld-debug" / "redis").string()}};
  Process redis(options);
  const std::string log_path = (dir / "redis.log").string();
  auto explain = [&] {
    return redis.describe() + "--- redis.log ---\n" + tail_of(read_text_file(log_path), 6000);
  };

  ASSERT_TRUE(wait_for_tcp_port(port, redis, seconds(15)))
      << "redis-server did not accept connections on 127.0.0.1:" << port << "\n" << explain();
  ASSERT_FALSE(mapped_paths(redis.pid(), preload_library_name()).empty())
      << preload_library_name() << " is not mapped into redis-server\n" << explain();

  const std::map<std::string, std::string> bindings = redis_symbol_bindings(dir / "ld-debug");
  for (const char* symbol : {"malloc", "calloc", "realloc", "free", "malloc_usable_size",
                             "mallctl", "nallocx", "malloc_stats_print"}) {
    auto found = bindings.find(symbol);
    ASSERT_NE(found, bindings.end()) << "no binding of " << symbol << " in the loader's output";
    EXPECT_EQ(found->second, preload_library_name())
        << "redis-server's " << symbol << " is bound to " << found->second;
  }

  // Small values over pipelined connections, then large values.
  run_benchmark(port,
                {"-n", "20000", "-c", "8", "-P", "8", "-r", "10000", "-d", "64", "-t",
                 "set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange_100,mset"},
                13);
  if (HasFatalFailure()) return;
  run_benchmark(port, {"-n", "4000", "-c", "4", "-r", "1000", "-d", "65536", "-t", "set,get,lpush"},
                3);
  if (HasFatalFailure()) return;
  run_benchmark(port, {"-n", "300", "-c", "2", "-r", "40", "-d", "1048576", "-t", "set,get"}, 2);
  if (HasFatalFailure()) return;

  RedisClient client(port);
  RunResult dbsize = client.run({"DBSIZE"});
  ASSERT_TRUE(dbsize.exited_with(0)) << dbsize.description;
  EXPECT_GT(std::atoll(dbsize.stdout_text.c_str()), 0) << dbsize.description;

  // jemalloc's allocated bytes include everything redis counts in
  // used_memory (and more: libc's and OpenSSL's allocations, thread caches).
  // If mallctl read another heap than the one malloc allocates from, it
  // would count less.
  auto allocator_covers_redis = [](const std::map<std::string, std::string>& fields) {
    long long used = field_value(fields, "used_memory");
    return used > 0 && field_value(fields, "allocator_allocated") >= used;
  };
  std::map<std::string, std::string> before = wait_for_info(client, allocator_covers_redis, seconds(5));
  EXPECT_EQ(before["mem_allocator"], "jemalloc-5.3.0");
  EXPECT_GT(field_value(before, "used_memory"), 0) << describe_fields(before);
  EXPECT_GE(field_value(before, "allocator_allocated"), field_value(before, "used_memory"))
      << "jemalloc's statistics count less than redis allocated\n" << describe_fields(before);
  EXPECT_GE(field_value(before, "allocator_active"), field_value(before, "allocator_allocated"))
      << describe_fields(before);
  EXPECT_GE(field_value(before, "allocator_resident"), field_value(before, "allocator_active"))
      << describe_fields(before);

  // About 130 MB more: 200,000 keys with 512-byte values. Both redis's count
  // and jemalloc's must grow by it.
  RunResult populate = client.run({"DEBUG", "POPULATE", "200000", "memward", "512"});
  ASSERT_TRUE(populate.exited_with(0)) << populate.description;
  ASSERT_EQ(populate.stdout_text, "OK\n") << populate.description;
  constexpr long long kMinimumGrowth = 100'000'000;
  auto grew = [&](const std::map<std::string, std::string>& fields) {
    long long used_growth = field_value(fields, "used_memory") - field_value(before, "used_memory");
    long long allocated_growth =
        field_value(fields, "allocator_allocated") - field_value(before, "allocator_allocated");
    return used_growth >= kMinimumGrowth && allocated_growth >= used_growth * 9 / 10;
  };
  std::map<std::string, std::string> populated = wait_for_info(client, grew, seconds(10));
  const long long used_growth =
      field_value(populated, "used_memory") - field_value(before, "used_memory");
  EXPECT_GE(used_growth, kMinimumGrowth) << describe_fields(populated);
  EXPECT_GE(field_value(populated, "allocator_allocated") -
                field_value(before, "allocator_allocated"),
            used_growth * 9 / 10)
      << "jemalloc's allocated bytes did not grow with redis's data\nbefore: "
      << describe_fields(before) << "\nafter:  " << describe_fields(populated);

  RunResult usage = client.run({"MEMORY", "USAGE", "memward:1"});
  EXPECT_GT(std::atoll(usage.stdout_text.c_str()), 512) << usage.description;

  RunResult stats = client.run({"MEMORY", "STATS"});
  ASSERT_TRUE(stats.exited_with(0)) << stats.description;
  EXPECT_NE(stats.stdout_text.find("allocator.allocated"), std::string::npos) << stats.description;
  EXPECT_NE(stats.stdout_text.find("peak.allocated"), std::string::npos) << stats.description;

  // MEMORY MALLOC-STATS is jemalloc's malloc_stats_print.
  RunResult malloc_stats = client.run({"MEMORY", "MALLOC-STATS"});
  ASSERT_TRUE(malloc_stats.exited_with(0)) << malloc_stats.description;
  EXPECT_NE(malloc_stats.stdout_text.find("___ Begin jemalloc statistics ___"), std::string::npos)
      << tail_of(malloc_stats.stdout_text, 3000);
  EXPECT_NE(malloc_stats.stdout_text.find("--- End jemalloc statistics ---"), std::string::npos)
      << tail_of(malloc_stats.stdout_text, 3000);
  EXPECT_NE(malloc_stats.stdout_text.find("Version: \"5.3.0"), std::string::npos)
      << tail_of(malloc_stats.stdout_text, 3000);

  RunResult doctor = client.run({"MEMORY", "DOCTOR"});
  ASSERT_TRUE(doctor.exited_with(0)) << doctor.description;
  EXPECT_FALSE(doctor.stdout_text.empty());

  // FLUSHALL frees the data at once, because lazyfree-lazy-user-flush is off
  // by default. MEMORY PURGE makes jemalloc return the free pages.
  RunResult flush = client.run({"FLUSHALL"});
  ASSERT_EQ(flush.stdout_text, "OK\n") << flush.description;
  RunResult purge = client.run({"MEMORY", "PURGE"});
  ASSERT_EQ(purge.stdout_text, "OK\n") << purge.description;
  auto released = [&](const std::map<std::string, std::string>& fields) {
    return field_value(populated, "allocator_allocated") -
                   field_value(fields, "allocator_allocated") >=
               used_growth * 9 / 10 &&
           field_value(populated, "allocator_resident") - field_value(fields, "allocator_resident") >=
               used_growth / 2;
  };
  std::map<std::string, std::string> purged = wait_for_info(client, released, seconds(10));
  EXPECT_TRUE(released(purged)) << "FLUSHALL and MEMORY PURGE did not give the memory back\n"
                                << "populated: " << describe_fields(populated)
                                << "\npurged:    " << describe_fields(purged);

  // SHUTDOWN NOSAVE closes the connection, so only the server's exit status
  // is checked, not redis-cli's.
  client.run({"SHUTDOWN", "NOSAVE"});
  std::optional<int> status = redis.wait_for_exit(seconds(15));
  ASSERT_TRUE(status.has_value()) << "redis-server did not exit after SHUTDOWN\n" << explain();
  EXPECT_EQ(describe_wait_status(*status), "exited with code 0") << explain();

  const std::string log = read_text_file(log_path);
  EXPECT_NE(log.find("ready to exit, bye bye"), std::string::npos) << explain();
  for (const char* failure : {"crashed by signal", "Guru Meditation", "ASSERTION FAILED"}) {
    EXPECT_EQ(log.find(failure), std::string::npos) << explain();
  }
  EXPECT_EQ(memward_messages(redis.stderr_text()), std::vector<std::string>{});
}

// BGSAVE forks a child that writes the data set while the parent keeps
// its threads (jemalloc's background thread, redis's bio threads). The
// child must not deadlock on an allocator lock held at fork time, and the
// RDB file it writes must load back whole.
TEST(Redis, BackgroundSaveForksChild) {
  TempDir dir("memward-redis-fork");
  const std::uint16_t port = find_free_port();
  write_text_file(dir / "redis.conf", redis_config(dir, port));
  ProcessOptions options;
  options.argv = {kRedisServer, (dir / "redis.conf").string()};
  options.ld_preload = preload_path();
  Process redis(options);
  const std::string log_path = (dir / "redis.log").string();
  auto explain = [&] {
    return redis.describe() + "--- redis.log ---\n" + tail_of(read_text_file(log_path), 6000);
  };
  ASSERT_TRUE(wait_for_tcp_port(port, redis, seconds(15)))
      << "redis-server did not accept connections on 127.0.0.1:" << port << "\n" << explain();
  ASSERT_FALSE(mapped_paths(redis.pid(), preload_library_name()).empty())
      << preload_library_name() << " is not mapped into redis-server\n" << explain();

  RedisClient client(port);
  RunResult populate = client.run({"DEBUG", "POPULATE", "100000", "memward", "256"});
  ASSERT_EQ(populate.stdout_text, "OK\n") << populate.description;

  // Three saves in a row, each in a new child.
  for (int save = 0; save < 3; ++save) {
    SCOPED_TRACE("BGSAVE " + std::to_string(save + 1));
    RunResult bgsave = client.run({"BGSAVE"});
    ASSERT_EQ(bgsave.stdout_text, "Background saving started\n") << bgsave.description;
    auto deadline = std::chrono::steady_clock::now() + seconds(20);
    std::map<std::string, std::string> persistence = client.info("persistence");
    while (persistence["rdb_bgsave_in_progress"] != "0" &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(50));
      persistence = client.info("persistence");
    }
    ASSERT_EQ(persistence["rdb_bgsave_in_progress"], "0")
        << "the BGSAVE child did not finish within 20 s\n" << explain();
    EXPECT_EQ(persistence["rdb_last_bgsave_status"], "ok") << explain();
  }
  // DEBUG POPULATE's values are padded with zeros, which the RDB format
  // compresses, so only a lower bound of a few bytes a key holds.
  ASSERT_GT(std::filesystem::file_size(dir / "dump.rdb"), 1'000'000u);

  // DEBUG RELOAD saves, empties the data set and loads the RDB file back.
  RunResult reload = client.run({"DEBUG", "RELOAD"});
  ASSERT_EQ(reload.stdout_text, "OK\n") << reload.description << explain();
  RunResult dbsize = client.run({"DBSIZE"});
  EXPECT_EQ(dbsize.stdout_text, "100000\n") << dbsize.description;
  RunResult value = client.run({"STRLEN", "memward:99999"});
  EXPECT_EQ(value.stdout_text, "256\n") << value.description;

  client.run({"SHUTDOWN", "NOSAVE"});
  std::optional<int> status = redis.wait_for_exit(seconds(15));
  ASSERT_TRUE(status.has_value()) << "redis-server did not exit after SHUTDOWN\n" << explain();
  EXPECT_EQ(describe_wait_status(*status), "exited with code 0") << explain();

  const std::string log = read_text_file(log_path);
  EXPECT_NE(log.find("Background saving terminated with success"), std::string::npos)
      << explain();
  for (const char* failure : {"crashed by signal", "Guru Meditation", "ASSERTION FAILED"}) {
    EXPECT_EQ(log.find(failure), std::string::npos) << explain();
  }
  EXPECT_EQ(memward_messages(redis.stderr_text()), std::vector<std::string>{});
}

}  // namespace
}  // namespace memward::integration
