// The admin server driven by the test's own event loop: endpoints, limits,
// deadlines, connection cap, peer credentials, the TCP metrics port and the
// socket file's life cycle. Built from sources (no memward allocator), so it
// also runs under AddressSanitizer.
#include "accounting/admin_server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

namespace memward::accounting {
namespace {

void HandleEcho(const AdminRequest& request, AdminResponse* response) {
  response->content_type = "text/plain";
  response->body = "echo " + request.method + " " + request.path;
  if (const std::string* value = request.QueryValue("v")) response->body += " v=" + *value;
  response->body += " body=" + request.body;
}

void HandleMetrics(const AdminRequest& request, AdminResponse* response) {
  response->content_type = "text/plain; version=0.0.4";
  response->body = "test_metric 1\n";
}

// A temporary directory removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/memward-admin-test-XXXXXX";
    path_ = mkdtemp(pattern);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

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

int ConnectTcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void SendAll(int fd, const std::string& text) {
  size_t sent = 0;
  while (sent < text.size()) {
    ssize_t n = send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close early on an error response
    sent += static_cast<size_t>(n);
  }
}

// Reads until the server closes the connection or 10 s pass.
std::string ReadAll(int fd) {
  std::string text;
  char buffer[4096];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd entry = {fd, POLLIN, 0};
    if (poll(&entry, 1, 100) <= 0) continue;
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

int StatusOf(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0 || response.size() < 12) return 0;
  return std::stoi(response.substr(9, 3));
}

class AdminServerTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    RegisterAdminEndpoint("GET", "/echo", "test echo", HandleEcho);
    RegisterAdminEndpoint("PUT", "/echo", "test echo", HandleEcho);
    RegisterAdminEndpoint("GET", "/metrics", "test metrics", HandleMetrics);
  }

  void TearDown() override { StopLoop(); }

  AdminServerOptions DefaultOptions() {
    AdminServerOptions options;
    options.socket_path = directory_.path() + "/run/admin.sock";
    options.timeout_ms = 300;
    return options;
  }

  void StartLoop(const AdminServerOptions& options) {
    std::string error;
    ASSERT_TRUE(server_.Open(options, &error)) << error;
    running_ = true;
    loop_ = std::thread([this] {
      while (running_.load()) {
        pollfd entry = {server_.poll_fd(), POLLIN, 0};
        if (poll(&entry, 1, 10) > 0) server_.HandleEvents();
      }
    });
  }

  void StopLoop() {
    running_ = false;
    if (loop_.joinable()) loop_.join();
  }

  // Waits up to 2 s until the loop has accepted `count` connections.
  void WaitForOpenConnections(int count) {
    for (int i = 0; i < 200 && server_.open_connections() < count; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  std::string Request(const std::string& text) {
    int fd = ConnectUnix(server_.socket_path());
    EXPECT_GE(fd, 0) << strerror(errno);
    SendAll(fd, text);
    std::string response = ReadAll(fd);
    close(fd);
    return response;
  }

  TempDir directory_;
  AdminServer server_;
  std::atomic<bool> running_{false};
  std::thread loop_;
};

TEST_F(AdminServerTest, ServesRegisteredEndpoint) {
  ASSERT_NO_FATAL_FAILURE(StartLoop(DefaultOptions()));
  std::string response = Request("GET /echo?v=a%20b HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(StatusOf(response), 200) << response;
  EXPECT_NE(response.find("Content-Length: 26\r\n"), std::string::npos) << response;
  EXPECT_NE(response.find("\r\n\r\necho GET /echo v=a b body="), std::string::npos) << response;
  response = Request("PUT /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_NE(response.find("body=hello"), std::string::npos) << response;
}

TEST_F(AdminServerTest, UnknownPathAndMethod) {
  ASSERT_NO_FATAL_FAILURE(StartLoop(DefaultOptions()));
  EXPECT_EQ(StatusOf(Request("GET /missing HTTP/1.1\r\n\r\n")), 404);
  EXPECT_EQ(StatusOf(Request("DELETE /echo HTTP/1.1\r\n\r\n")), 405);
}

TEST_F(AdminServerTest, SocketAndDirectoryModes) {
  ASSERT_NO_FATAL_FAILURE(StartLoop(DefaultOptions()));
  struct stat info;
  ASSERT_EQ(stat(server_.socket_path().c_str(), &info), 0);
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((directory_.path() + "/run").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700u);
}

TEST_F(AdminServerTest, SlowRequestGets408) {
  ASSERT_NO_FATAL_FAILURE(StartLoop(DefaultOptions()));
  int fd = ConnectUnix(server_.socket_path());
  ASSERT_GE(fd, 0);
  SendAll(fd, "GET /echo HTTP/1.1\r\nX-Slow: ");  // and never the rest
  std::string response = ReadAll(fd);
  close(fd);
  EXPECT_EQ(StatusOf(response), 408) << response;
  int idle = ConnectUnix(server_.socket_path());
  EXPECT_EQ(StatusOf(ReadAll(idle)), 408);
  close(idle);
}

TEST_F(AdminServerTest, OversizedRequestsGetTheirStatus) {
  ASSERT_NO_FATAL_FAILURE(StartLoop(DefaultOptions()));
  const HttpLimits limits;
  EXPECT_EQ(StatusOf(Request("GET / HTTP/1.1\r\nA: " +
                             std::string(limits.max_header_bytes * 4, 'x') + "\r\n\r\n")),
            431);
  EXPECT_EQ(StatusOf(Request("GET /" + std::string(limits.max_request_line * 4, 'x') +
                             " HTTP/1.1\r\n\r\n")),
            414);
  EXPECT_EQ(StatusOf(Request("PUT /echo HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n" +
                             std::string(200000, 'x'))),
            413);
  EXPECT_EQ(StatusOf(Request(std::string(100000, '\xff'))), 400);
  // The server still serves after the errors.
  EXPECT_EQ(StatusOf(Request("GET /echo HTTP/1.1\r\n\r\n")), 200);
}

TEST_F(AdminServerTest, ConnectionsOverCapGet503) {
  AdminServerOptions options = DefaultOptions();
  options.max_connections = 2;
  options.timeout_ms = 5000;
  ASSERT_NO_FATAL_FAILURE(StartLoop(options));
  int first = ConnectUnix(server_.socket_path());
  int second = ConnectUnix(server_.socket_path());
  // Give the loop time to accept both before the third arrives.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::string third = Request("GET /echo HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf(third), 503) << third;
  close(first);
  close(second);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(StatusOf(Request("GET /echo HTTP/1.1\r\n\r\n")), 200);
}

// A client over the cap sends its request after the server has written
// its 503. The server keeps the connection for the linger time, so the send
// succeeds and the client reads the 503 instead of failing with EPIPE.
TEST_F(AdminServerTest, OverCapClientSendsThenReads503) {
  AdminServerOptions options = DefaultOptions();
  options.max_connections = 1;
  options.timeout_ms = 5000;
  ASSERT_NO_FATAL_FAILURE(StartLoop(options));
  int first = ConnectUnix(server_.socket_path());
  ASSERT_GE(first, 0);
  WaitForOpenConnections(1);
  int late = ConnectUnix(server_.socket_path());
  ASSERT_GE(late, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));

  const std::string request = "GET /echo HTTP/1.1\r\n\r\n";
  ssize_t sent = send(late, request.data(), request.size(), MSG_NOSIGNAL);
  EXPECT_EQ(sent, static_cast<ssize_t>(request.size())) << strerror(errno);
  EXPECT_EQ(StatusOf(ReadAll(late)), 503);
  close(late);
  close(first);
}

TEST_F(AdminServerTest, TcpPortServesOnlyMetrics) {
  AdminServerOptions options = DefaultOptions();
  options.tcp_port = -1;
  ASSERT_NO_FATAL_FAILURE(StartLoop(options));
  ASSERT_GT(server_.tcp_port(), 0);
  for (const char* path : {"/metrics", "/echo"}) {
    int fd = ConnectTcp(server_.tcp_port());
    ASSERT_GE(fd, 0);
    SendAll(fd, std::string("GET ") + path + " HTTP/1.1\r\n\r\n");
    std::string response = ReadAll(fd);
    close(fd);
    EXPECT_EQ(StatusOf(response), std::string(path) == "/metrics" ? 200 : 404) << response;
  }
}

TEST_F(AdminServerTest, StaleSocketIsReplaced) {
  AdminServerOptions options = DefaultOptions();
  options.socket_path = directory_.path() + "/stale.sock";
  // A socket file whose process is gone: bound, then closed without unlink.
  int stale = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  snprintf(address.sun_path, sizeof(address.sun_path), "%s", options.socket_path.c_str());
  ASSERT_EQ(bind(stale, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  close(stale);
  ASSERT_NO_FATAL_FAILURE(StartLoop(options));
  EXPECT_EQ(StatusOf(Request("GET /echo HTTP/1.1\r\n\r\n")), 200);
}

TEST_F(AdminServerTest, LiveSocketIsNotStolen) {
  AdminServerOptions options = DefaultOptions();
  options.socket_path = directory_.path() + "/live.sock";
  int live = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  snprintf(address.sun_path, sizeof(address.sun_path), "%s", options.socket_path.c_str());
  ASSERT_EQ(bind(live, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(live, 4), 0);
  AdminServer other;
  std::string error;
  EXPECT_FALSE(other.Open(options, &error));
  EXPECT_NE(error.find("another process serves"), std::string::npos) << error;
  struct stat info;
  EXPECT_EQ(stat(options.socket_path.c_str(), &info), 0);
  close(live);
}

TEST_F(AdminServerTest, RegularFileIsNotReplaced) {
  AdminServerOptions options = DefaultOptions();
  options.socket_path = directory_.path() + "/file.sock";
  FILE* file = fopen(options.socket_path.c_str(), "w");
  ASSERT_NE(file, nullptr);
  fclose(file);
  AdminServer other;
  std::string error;
  EXPECT_FALSE(other.Open(options, &error));
  EXPECT_NE(error.find("is not a socket"), std::string::npos) << error;
}

TEST_F(AdminServerTest, CloseRemovesOnlyItsOwnFile) {
  AdminServerOptions options = DefaultOptions();
  AdminServer first;
  std::string error;
  ASSERT_TRUE(first.Open(options, &error)) << error;
  // Another server takes the path over (as after the first one's process
  // was presumed gone); closing the first must leave the new file.
  ASSERT_EQ(unlink(options.socket_path.c_str()), 0);
  AdminServer second;
  ASSERT_TRUE(second.Open(options, &error)) << error;
  first.Close(/*unlink_socket=*/true);
  struct stat info;
  EXPECT_EQ(stat(options.socket_path.c_str(), &info), 0);
  second.Close(/*unlink_socket=*/true);
  EXPECT_NE(stat(options.socket_path.c_str(), &info), 0);
}

int OpenDescriptorCount() {
  int count = 0;
  for (int fd = 0; fd < 1024; fd++) {
    if (fcntl(fd, F_GETFD) >= 0) count++;
  }
  return count;
}

// A child forked while the server's loop runs closes exactly what the
// server had open: the listener, the epoll set, the timer and both
// connections. Its exit status is how many of them it closed.
TEST_F(AdminServerTest, ForkedChildClosesInheritedDescriptors) {
  AdminServerOptions options = DefaultOptions();
  options.timeout_ms = 10000;
  ASSERT_NO_FATAL_FAILURE(StartLoop(options));
  int first = ConnectUnix(server_.socket_path());
  int second = ConnectUnix(server_.socket_path());
  ASSERT_GE(first, 0);
  ASSERT_GE(second, 0);
  SendAll(first, "GET /echo HTTP/1.1\r\n");  // incomplete: the server keeps it open
  WaitForOpenConnections(2);

  // What the fork handler does around fork in a running process.
  LockAdminConnectionsForFork();
  pid_t child = fork();
  if (child == 0) {
    UnlockAdminConnectionsAfterFork();
    const int before = OpenDescriptorCount();
    server_.CloseInForkedChild();
    _exit(before - OpenDescriptorCount());
  }
  UnlockAdminConnectionsAfterFork();
  ASSERT_GT(child, 0) << strerror(errno);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died with status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 5) << "listener, epoll set, timer and 2 connections";

  // The parent's server still serves both connections.
  SendAll(first, "\r\n");
  EXPECT_EQ(StatusOf(ReadAll(first)), 200);
  SendAll(second, "GET /echo HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf(ReadAll(second)), 200);
  close(first);
  close(second);
}

// A child with copies of the server's descriptors (as one between
// fork and exec does) keeps a closed connection's socket open. The server
// must still stop watching it: the sanitized build reports the use of the
// freed connection otherwise.
TEST_F(AdminServerTest, ClosedConnectionCopiedByChildIsNotWatched) {
  ASSERT_NO_FATAL_FAILURE(StartLoop(DefaultOptions()));
  int client = ConnectUnix(server_.socket_path());
  ASSERT_GE(client, 0);
  WaitForOpenConnections(1);
  int release[2];
  ASSERT_EQ(pipe(release), 0);
  pid_t child = fork();
  if (child == 0) {
    char byte;
    close(client);  // so that the parent's close ends the client's side
    close(release[1]);
    [[maybe_unused]] ssize_t got = read(release[0], &byte, 1);
    _exit(0);
  }
  ASSERT_GT(child, 0) << strerror(errno);
  close(release[0]);

  SendAll(client, "GET /echo HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf(ReadAll(client)), 200);
  close(client);  // the socket stays readable (end of file) for the child's copy
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(StatusOf(Request("GET /echo HTTP/1.1\r\n\r\n")), 200);

  close(release[1]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
}

// Forks a child that becomes uid/gid 65534 (nobody/nogroup on Debian) and
// requests /echo. Returns the HTTP status, or 1000 + errno when connect
// fails.
int StatusAsNobody(const std::string& path) {
  pid_t child = fork();
  if (child == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(255);
    int fd = ConnectUnix(path);
    if (fd < 0) _exit(errno == EACCES ? 251 : 252);
    SendAll(fd, "GET /echo HTTP/1.1\r\n\r\n");
    int status = StatusOf(ReadAll(fd));
    if (status == 403) _exit(243);
    if (status == 200) _exit(200);
    _exit(254);
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status)) return -1;
  switch (WEXITSTATUS(status)) {
    case 251: return 1000 + EACCES;
    case 243: return 403;
    case 200: return 200;
  }
  return -WEXITSTATUS(status);
}

TEST_F(AdminServerTest, OtherUserIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch to another user";
  ASSERT_NO_FATAL_FAILURE(StartLoop(DefaultOptions()));
  // The directory (0700) and the socket (0600) keep other users out...
  EXPECT_EQ(StatusAsNobody(server_.socket_path()), 1000 + EACCES);
  // ...and where file modes let them in, the peer credential check does.
  ASSERT_EQ(chmod(directory_.path().c_str(), 0755), 0);
  ASSERT_EQ(chmod((directory_.path() + "/run").c_str(), 0755), 0);
  ASSERT_EQ(chmod(server_.socket_path().c_str(), 0666), 0);
  EXPECT_EQ(StatusAsNobody(server_.socket_path()), 403);
  StopLoop();
  EXPECT_EQ(server_.counters().rejected_peers, 1u);
}

TEST_F(AdminServerTest, AllowedGroupIsServed) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch to another user";
  AdminServerOptions options = DefaultOptions();
  options.allowed_group = 65534;
  ASSERT_NO_FATAL_FAILURE(StartLoop(options));
  ASSERT_EQ(chmod(directory_.path().c_str(), 0755), 0);
  ASSERT_EQ(chmod((directory_.path() + "/run").c_str(), 0755), 0);
  ASSERT_EQ(chmod(server_.socket_path().c_str(), 0666), 0);
  EXPECT_EQ(StatusAsNobody(server_.socket_path()), 200);
}

TEST(ExpandSocketPathTest, ReplacesPidAndUid) {
  EXPECT_EQ(ExpandSocketPath("/tmp/m/%p.sock", 42, 1000), "/tmp/m/42.sock");
  EXPECT_EQ(ExpandSocketPath("/tmp/m-%u/%p.sock", 42, 1000), "/tmp/m-1000/42.sock");
  EXPECT_EQ(ExpandSocketPath("/a%%p/%p", 7, 0), "/a%p/7");
  EXPECT_EQ(ExpandSocketPath("/a%%u/%u", 7, 0), "/a%u/0");
  EXPECT_EQ(ExpandSocketPath("/plain", 7, 0), "/plain");
}

}  // namespace
}  // namespace memward::accounting
