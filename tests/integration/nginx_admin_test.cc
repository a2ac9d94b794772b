// The admin API of a preloaded nginx (master and two workers): every
// endpoint responds on the master's socket, each forked worker serves its
// own, the numbers agree with each other and with the kernel's, the TCP
// port serves /metrics only, and memwardctl reads the same process.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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

struct Reply {
  int status = 0;
  std::string body;
};

// Sends one request over a Unix socket and reads the reply until the
// server closes the connection (10 s at most).
Reply UnixRequest(const std::string& path, const std::string& method, const std::string& target,
                  const std::string& body = "") {
  Reply reply;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return reply;
  }
  std::string raw = method + " " + target + " HTTP/1.1\r\nHost: nginx-test\r\n";
  if (method != "GET") raw += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  raw += "\r\n" + body;
  send(fd, raw.data(), raw.size(), MSG_NOSIGNAL);
  std::string text;
  char buffer[8192];
  auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd entry = {fd, POLLIN, 0};
    if (poll(&entry, 1, 100) <= 0) continue;
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  if (text.rfind("HTTP/1.1 ", 0) == 0 && text.size() >= 12) {
    reply.status = std::stoi(text.substr(9, 3));
  }
  size_t end = text.find("\r\n\r\n");
  if (end != std::string::npos) reply.body = text.substr(end + 4);
  return reply;
}

int64_t JsonNumber(const std::string& json, const std::string& key) {
  size_t at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::strtoll(json.c_str() + at + key.size() + 3, nullptr, 10);
}

int64_t MetricValue(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::strtoll(text.c_str() + at + series.size() + 2, nullptr, 10);
}

// Returns VmRSS of `pid` in bytes, or -1.
int64_t ResidentBytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoll(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return -1;
}

bool WaitForSocket(const std::string& path, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (UnixRequest(path, "GET", "/stats").status == 200) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return false;
}

// The worker pids of an nginx master: its children.
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  std::ifstream file("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) +
                     "/children");
  pid_t pid;
  while (file >> pid) children.push_back(pid);
  return children;
}

std::string NginxConfig(const TempDir& dir, uint16_t port) {
  const std::string root = dir.path().string();
  std::ostringstream config;
  config << "daemon off;\nmaster_process on;\nworker_processes 2;\n";
  // As root, the workers keep the test's identity so they can use the
  // private temp dir, and create their own admin sockets in it.
  if (geteuid() == 0) config << "user root root;\n";
  config << "pid " << root << "/nginx.pid;\n"
         << "error_log " << root << "/error.log notice;\n"
         << "events { worker_connections 64; }\n"
         << "http {\n"
         << "  access_log off;\n"
         << "  client_body_temp_path " << root << "/temp;\n"
         << "  server { listen 127.0.0.1:" << port << "; root " << root << "/html; }\n"
         << "}\n";
  return config.str();
}

TEST(NginxAdminTest, PreloadedNginxServesEveryEndpoint) {
  TempDir dir("memward-nginx-admin");
  std::filesystem::create_directories(dir / "html");
  std::filesystem::create_directories(dir / "temp");
  write_text_file(dir / "html" / "index.html", std::string(100000, 'x'));
  const uint16_t port = find_free_port();
  const uint16_t metrics_port = find_free_port();
  write_text_file(dir / "nginx.conf", NginxConfig(dir, port));

  ProcessOptions options;
  options.argv = {"/usr/sbin/nginx", "-p", dir.path().string(), "-c",
                  (dir / "nginx.conf").string(), "-e", (dir / "error.log").string()};
  options.ld_preload = preload_path();
  options.env = {{"MEMWARD_CONF", "admin_socket=" + dir.path().string() + "/admin-%p.sock," +
                                      "admin_tcp_port=" + std::to_string(metrics_port)}};
  Process nginx(options);
  ASSERT_TRUE(wait_for_tcp_port(port, nginx, seconds(15))) << nginx.describe();
  const std::string master = (dir / ("admin-" + std::to_string(nginx.pid()) + ".sock")).string();
  ASSERT_TRUE(WaitForSocket(master, seconds(10))) << nginx.describe();

  // nginx serves its own traffic with the admin server running.
  EXPECT_EQ(http_get(port, "/index.html").status, 200);

  for (const char* target : {"/", "/stats", "/tenants", "/tenants/process", "/tenants/memward",
                             "/requests", "/config", "/metrics"}) {
    Reply reply = UnixRequest(master, "GET", target);
    EXPECT_EQ(reply.status, 200) << target << ": " << reply.body;
  }
  EXPECT_EQ(UnixRequest(master, "POST", "/purge").status, 200);
  EXPECT_EQ(UnixRequest(master, "PUT", "/config", "dirty_decay=5s").status, 200);
  EXPECT_EQ(UnixRequest(master, "PUT", "/config", "narenas=1").status, 409);

  // /stats, /metrics and the kernel agree on the master's memory.
  Reply stats = UnixRequest(master, "GET", "/stats");
  std::string metrics = UnixRequest(master, "GET", "/metrics").body;
  EXPECT_EQ(JsonNumber(stats.body, "pid"), nginx.pid());
  const int64_t allocated = JsonNumber(stats.body, "allocated_bytes");
  const int64_t active = JsonNumber(stats.body, "active_bytes");
  const int64_t resident = JsonNumber(stats.body, "resident_bytes");
  EXPECT_GT(allocated, 0);
  EXPECT_LE(allocated, active);
  // jemalloc's resident figure is an upper bound (it counts pages it has
  // mapped for data as resident), so it is compared with active, not VmRSS.
  EXPECT_GE(resident, active);
  EXPECT_GT(ResidentBytes(nginx.pid()), allocated);
  // The master is idle, so its heap moves only by the server's own replies.
  const int64_t from_metrics = MetricValue(metrics, "memward_heap_allocated_bytes");
  EXPECT_LT(std::llabs(from_metrics - allocated), 256 * 1024) << from_metrics << " vs " << allocated;
  EXPECT_EQ(MetricValue(metrics, "memward_tenant_live_bytes{tenant=\"process\"}") > 0, true);

  // Each worker, forked by the master, serves its own socket.
  std::vector<pid_t> workers = ChildrenOf(nginx.pid());
  ASSERT_EQ(workers.size(), 2u) << nginx.describe();
  for (pid_t worker : workers) {
    const std::string path = (dir / ("admin-" + std::to_string(worker) + ".sock")).string();
    ASSERT_TRUE(WaitForSocket(path, seconds(10))) << "worker " << worker;
    EXPECT_EQ(JsonNumber(UnixRequest(path, "GET", "/stats").body, "pid"), worker);
  }

  // The TCP port serves /metrics only. Each process of nginx requests the
  // same port, so only one of them (the master, first) listens on it.
  HttpResponse scraped = http_get(metrics_port, "/metrics");
  EXPECT_EQ(scraped.status, 200);
  EXPECT_NE(scraped.body.find("memward_heap_resident_bytes "), std::string::npos);
  EXPECT_EQ(http_get(metrics_port, "/stats").status, 404);

  // memwardctl reads the same process.
  ProcessOptions ctl_options;
  ctl_options.argv = {"/usr/bin/python3", MEMWARD_CTL_PATH, "--json", "--socket", master, "stats"};
  RunResult ctl = run_program(std::move(ctl_options), seconds(20));
  EXPECT_TRUE(ctl.exited_with(0)) << ctl.description;
  EXPECT_EQ(JsonNumber(ctl.stdout_text, "pid"), nginx.pid()) << ctl.stdout_text;

  nginx.send_signal(SIGQUIT);
  ASSERT_TRUE(nginx.wait_for_exit(seconds(15)).has_value()) << nginx.describe();
  EXPECT_FALSE(std::filesystem::exists(master)) << "the master's socket was not removed at exit";
}

}  // namespace
}  // namespace memward::integration
