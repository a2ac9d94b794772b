// nginx (master and two workers) serving static files with memward
// preloaded, loaded by wrk, checked byte for byte, reloaded with SIGHUP
// (which forks new workers) and stopped with SIGQUIT.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <random>
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

constexpr const char* kNginx = "/usr/sbin/nginx";
constexpr int kWorkerCount = 2;

struct ServedFile {
  std::string name;
  std::string content;
  // Whether the test also requests the file with Accept-Encoding: gzip,
  // which nginx applies to text/plain.
  bool compressible;
};

std::string random_bytes(std::size_t size, std::uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::string bytes(size, '\0');
  for (std::size_t offset = 0; offset < size; offset += 8) {
    std::uint64_t value = generator();
    for (std::size_t i = 0; i < 8 && offset + i < size; ++i) {
      bytes[offset + i] = static_cast<char>(value >> (8 * i));
    }
  }
  return bytes;
}

std::string text_of_size(std::size_t size) {
  std::string text;
  for (int line = 0; text.size() < size; ++line) {
    text += "line " + std::to_string(line) + ": memward serves this text through nginx gzip\n";
  }
  text.resize(size);
  return text;
}

// Empty, tiny, page-sized and several-MiB files, some of sizes that are not
// a multiple of any buffer size.
std::vector<ServedFile> make_served_files() {
  return {
      {"empty.bin", "", false},
      {"one.bin", random_bytes(1, 1), false},
      {"small.bin", random_bytes(100, 2), false},
      {"page.bin", random_bytes(4095, 3), false},
      {"64k.bin", random_bytes(64 * 1024, 4), false},
      {"1m.bin", random_bytes((1 << 20) + 7, 5), false},
      {"3m.bin", random_bytes((3 << 20) + 13, 6), false},
      {"8m.bin", random_bytes(8 << 20, 7), false},
      {"text-200k.txt", text_of_size(200 * 1024 + 3), true},
      {"text-2m.txt", text_of_size((2 << 20) - 5), true},
  };
}

// The "user" directive matters only when the master runs as root. It keeps
// the workers in the test's identity, so they can read the private temp dir.
std::string user_directive() {
  if (geteuid() != 0) return "";
  passwd* user = getpwuid(geteuid());
  group* user_group = getgrgid(getegid());
  if (user == nullptr || user_group == nullptr) return "";
  return std::string("user ") + user->pw_name + " " + user_group->gr_name + ";\n";
}

std::string nginx_config(const TempDir& dir, std::uint16_t port) {
  const std::string root = dir.path().string();
  std::ostringstream config;
  config << "daemon off;\n"
         << "master_process on;\n"
         << "worker_processes " << kWorkerCount << ";\n"
         << user_directive() << "pid " << root << "/nginx.pid;\n"
         << "error_log " << root << "/error.log notice;\n"
         << "events { worker_connections 256; }\n"
         << "http {\n"
         << "  access_log " << root << "/access.log;\n"
         << "  client_body_temp_path " << root << "/temp/body;\n"
         << "  proxy_temp_path " << root << "/temp/proxy;\n"
         << "  fastcgi_temp_path " << root << "/temp/fastcgi;\n"
         << "  uwsgi_temp_path " << root << "/temp/uwsgi;\n"
         << "  scgi_temp_path " << root << "/temp/scgi;\n"
         << "  types { text/plain txt; application/octet-stream bin; }\n"
         << "  default_type application/octet-stream;\n"
         // Reading through nginx's own buffers, not sendfile, makes every
         // response pass through heap memory.
         << "  sendfile off;\n"
         << "  output_buffers 2 64k;\n"
         << "  gzip on;\n"
         << "  gzip_types text/plain;\n"
         << "  gzip_min_length 1;\n"
         << "  keepalive_requests 100000;\n"
         << "  server {\n"
         << "    listen 127.0.0.1:" << port << ";\n"
         << "    root " << root << "/html;\n"
         << "  }\n"
         << "}\n";
  return config.str();
}

// Requests go round the files, and every other round requests gzip.
std::string wrk_script(const std::vector<ServedFile>& files) {
  std::string script = "local paths = {";
  for (const auto& file : files) script += "\"/" + file.name + "\", ";
  script +=
      "}\n"
      "local counter = 0\n"
      "request = function()\n"
      "  counter = counter + 1\n"
      "  local path = paths[(counter % #paths) + 1]\n"
      "  if math.floor(counter / #paths) % 2 == 1 then\n"
      "    return wrk.format(\"GET\", path, {[\"Accept-Encoding\"] = \"gzip\"})\n"
      "  end\n"
      "  return wrk.format(\"GET\", path)\n"
      "end\n";
  return script;
}

// Lines of nginx's error log that show a failure: alert, emerg and crit
// messages, and workers that died on a signal.
std::vector<std::string> error_log_failures(const std::string& log) {
  std::vector<std::string> failures;
  std::istringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find("[alert]") != std::string::npos || line.find("[emerg]") != std::string::npos ||
        line.find("[crit]") != std::string::npos ||
        line.find("exited on signal") != std::string::npos) {
      failures.push_back(line);
    }
  }
  return failures;
}

// Status codes of the access log in nginx's default "combined" format:
// `addr - - [time] "GET /path HTTP/1.1" 200 1234 "-" "agent"`.
std::vector<int> access_log_statuses(const std::string& log) {
  static const std::regex entry(R"re(^\S+ \S+ \S+ \[[^\]]*\] "[^"]*" (\d{3}) )re");
  std::vector<int> statuses;
  std::istringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    std::smatch match;
    statuses.push_back(std::regex_search(line, match, entry) ? std::stoi(match[1]) : -1);
  }
  return statuses;
}

struct WrkSummary {
  long requests = -1;
  // wrk prints these lines only when a count is not zero.
  std::string non_success_line;
  std::string socket_errors_line;
};

WrkSummary parse_wrk_output(const std::string& output) {
  WrkSummary summary;
  std::smatch match;
  static const std::regex requests(R"((\d+) requests in )");
  if (std::regex_search(output, match, requests)) summary.requests = std::stol(match[1]);
  static const std::regex non_success(R"(Non-2xx or 3xx responses: *\d+)");
  if (std::regex_search(output, match, non_success)) summary.non_success_line = match[0];
  static const std::regex socket_errors(R"(Socket errors:[^\n]*)");
  if (std::regex_search(output, match, socket_errors)) summary.socket_errors_line = match[0];
  return summary;
}

// The worker pids of a running master, once all have been forked.
std::vector<pid_t> wait_for_workers(pid_t master, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<pid_t> workers = child_pids(master);
  while (workers.size() < kWorkerCount && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
    workers = child_pids(master);
  }
  std::sort(workers.begin(), workers.end());
  return workers;
}

// Polls until the master's children are `kWorkerCount` processes, none of
// them in `old_workers`, and returns them.
std::vector<pid_t> wait_for_new_workers(pid_t master, const std::vector<pid_t>& old_workers,
                                        milliseconds timeout) {
  auto is_new_set = [&](const std::vector<pid_t>& children) {
    if (children.size() != kWorkerCount) return false;
    for (pid_t child : children) {
      if (std::find(old_workers.begin(), old_workers.end(), child) != old_workers.end()) {
        return false;
      }
    }
    return true;
  };
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<pid_t> children = child_pids(master);
  while (!is_new_set(children) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
    children = child_pids(master);
  }
  return is_new_set(children) ? children : std::vector<pid_t>{};
}

// Fetches every file `rounds` times and compares the bodies byte for byte,
// and the text files through gzip too.
void check_every_file(std::uint16_t port, const std::vector<ServedFile>& files, int rounds) {
  for (int round = 0; round < rounds; ++round) {
    for (const auto& file : files) {
      SCOPED_TRACE("GET /" + file.name + " round " + std::to_string(round));
      HttpResponse plain = http_get(port, "/" + file.name);
      ASSERT_EQ(plain.status, 200);
      ASSERT_EQ(plain.body.size(), file.content.size());
      ASSERT_TRUE(plain.body == file.content) << "the body differs from the file";
      if (!file.compressible) continue;

      HttpResponse compressed = http_get(port, "/" + file.name, {"Accept-Encoding: gzip"});
      ASSERT_EQ(compressed.status, 200);
      ASSERT_EQ(compressed.headers["content-encoding"], "gzip");
      std::string inflated = gunzip(compressed.body);
      ASSERT_EQ(inflated.size(), file.content.size());
      ASSERT_TRUE(inflated == file.content) << "the decompressed body differs from the file";
    }
  }
}

TEST(Nginx, ServesFilesUnderLoad) {
  TempDir dir("memward-nginx");
  std::filesystem::create_directories(dir / "html");
  std::filesystem::create_directories(dir / "temp");
  const std::vector<ServedFile> files = make_served_files();
  for (const auto& file : files) write_text_file(dir / "html" / file.name, file.content);

  const std::uint16_t port = find_free_port();
  write_text_file(dir / "nginx.conf", nginx_config(dir, port));
  ProcessOptions options;
  // -e sets the log used before the configuration is read, instead of the
  // system one.
  options.argv = {kNginx,
                  "-p",
                  dir.path().string(),
                  "-c",
                  (dir / "nginx.conf").string(),
                  "-e",
                  (dir / "error.log").string()};
  options.ld_preload = preload_path();
  Process nginx(options);
  const std::string error_log_path = (dir / "error.log").string();
  auto explain = [&] {
    return nginx.describe() + "--- error.log ---\n" +
           tail_of(read_text_file(error_log_path), 6000);
  };

  ASSERT_TRUE(wait_for_tcp_port(port, nginx, seconds(15)))
      << "nginx did not accept connections on 127.0.0.1:" << port << "\n" << explain();
  ASSERT_FALSE(mapped_paths(nginx.pid(), preload_library_name()).empty())
      << preload_library_name() << " is not mapped into the nginx master\n" << explain();
  const std::vector<pid_t> workers = wait_for_workers(nginx.pid(), seconds(10));
  ASSERT_EQ(workers.size(), static_cast<std::size_t>(kWorkerCount)) << explain();
  for (pid_t worker : workers) {
    EXPECT_FALSE(mapped_paths(worker, preload_library_name()).empty())
        << preload_library_name() << " is not mapped into worker " << worker;
  }

  // Load: wrk with 2 threads and 8 connections for 3 seconds.
  write_text_file(dir / "requests.lua", wrk_script(files));
  ProcessOptions wrk_options;
  wrk_options.argv = {"wrk",      "-t2", "-c8",
                      "-d3s",     "--timeout", "10s",
                      "-s",       (dir / "requests.lua").string(),
                      "http://127.0.0.1:" + std::to_string(port) + "/"};
  RunResult wrk = run_program(wrk_options, seconds(30));
  ASSERT_TRUE(wrk.exited_with(0)) << wrk.description << explain();
  WrkSummary summary = parse_wrk_output(wrk.stdout_text);
  std::cout << wrk.stdout_text;
  EXPECT_GT(summary.requests, 0) << wrk.stdout_text;
  EXPECT_EQ(summary.non_success_line, "") << wrk.stdout_text;
  EXPECT_EQ(summary.socket_errors_line, "") << wrk.stdout_text;

  check_every_file(port, files, 3);
  if (HasFatalFailure()) return;

  // A worker that crashed would have been replaced by a new pid.
  EXPECT_EQ(wait_for_workers(nginx.pid(), seconds(1)), workers) << explain();
  for (pid_t worker : workers) {
    EXPECT_FALSE(mapped_paths(worker, preload_library_name()).empty())
        << preload_library_name() << " is not mapped into worker " << worker << " after the load";
  }

  // SIGHUP reloads the configuration: the master forks new workers, and the
  // old ones exit once they are idle.
  nginx.send_signal(SIGHUP);
  const std::vector<pid_t> new_workers = wait_for_new_workers(nginx.pid(), workers, seconds(15));
  ASSERT_EQ(new_workers.size(), static_cast<std::size_t>(kWorkerCount))
      << "nginx did not replace its workers after SIGHUP\n" << explain();
  for (pid_t worker : new_workers) {
    EXPECT_FALSE(mapped_paths(worker, preload_library_name()).empty())
        << preload_library_name() << " is not mapped into worker " << worker
        << " started by the reload";
  }
  check_every_file(port, files, 1);
  if (HasFatalFailure()) return;

  // SIGQUIT starts a graceful shutdown: the master exits 0 after its workers.
  nginx.send_signal(SIGQUIT);
  std::optional<int> status = nginx.wait_for_exit(seconds(20));
  ASSERT_TRUE(status.has_value()) << "nginx did not exit within 20 s of SIGQUIT\n" << explain();
  EXPECT_EQ(describe_wait_status(*status), "exited with code 0") << explain();

  const std::string error_log = read_text_file(error_log_path);
  EXPECT_EQ(error_log_failures(error_log), std::vector<std::string>{})
      << "--- error.log ---\n" << tail_of(error_log, 6000);
  EXPECT_NE(error_log.find("exiting"), std::string::npos)
      << "the error log does not show the graceful exit\n" << tail_of(error_log, 6000);
  // nginx points its stderr at the error log once the configuration is read.
  EXPECT_EQ(memward_messages(nginx.stderr_text() + error_log), std::vector<std::string>{});

  const std::vector<int> statuses = access_log_statuses(read_text_file(dir / "access.log"));
  EXPECT_GE(static_cast<long>(statuses.size()), summary.requests);
  for (std::size_t line = 0; line < statuses.size(); ++line) {
    ASSERT_EQ(statuses[line], 200) << "access.log line " << line + 1;
  }
}

}  // namespace
}  // namespace memward::integration
