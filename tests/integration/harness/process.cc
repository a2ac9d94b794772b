#include "harness/process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

extern char** environ;

namespace memward::integration {
namespace {

std::runtime_error system_error_message(const std::string& what) {
  return std::runtime_error(what + ": " + strerror(errno));
}

// Builds "NAME=value" strings for the child: the test's environment minus
// LD_PRELOAD, the removed and the overridden names, plus the overrides.
std::vector<std::string> child_environment(const ProcessOptions& options) {
  std::set<std::string> replaced(options.unset_env.begin(), options.unset_env.end());
  replaced.insert("LD_PRELOAD");
  for (const auto& [name, value] : options.env) replaced.insert(name);

  std::vector<std::string> result;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    std::string name(text.substr(0, text.find('=')));
    if (replaced.count(name) == 0) result.emplace_back(text);
  }
  for (const auto& [name, value] : options.env) result.push_back(name + "=" + value);
  if (!options.ld_preload.empty()) result.push_back("LD_PRELOAD=" + options.ld_preload);
  return result;
}

std::vector<char*> pointers_to(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (auto& text : strings) pointers.push_back(text.data());
  pointers.push_back(nullptr);
  return pointers;
}

int open_output_file(const std::filesystem::path& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw system_error_message("failed to create " + path.string());
  return fd;
}

// Runs in the forked child: only async-signal-safe calls until exec.
[[noreturn]] void exec_child(const char* working_dir, int stdin_fd, int stdout_fd,
                             int stderr_fd, int error_pipe, pid_t parent, char** argv,
                             char** envp) {
  setpgid(0, 0);
  // The child dies with the test binary even if the test crashes before the
  // destructor runs.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);

  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &default_action, nullptr);
  sigset_t empty_mask;
  sigemptyset(&empty_mask);
  sigprocmask(SIG_SETMASK, &empty_mask, nullptr);

  if (dup2(stdin_fd, STDIN_FILENO) < 0 || dup2(stdout_fd, STDOUT_FILENO) < 0 ||
      dup2(stderr_fd, STDERR_FILENO) < 0) {
    int error = errno;
    (void)!write(error_pipe, &error, sizeof error);
    _exit(127);
  }
  if (working_dir != nullptr && chdir(working_dir) != 0) {
    int error = errno;
    (void)!write(error_pipe, &error, sizeof error);
    _exit(127);
  }
  execvpe(argv[0], argv, envp);
  int error = errno;
  (void)!write(error_pipe, &error, sizeof error);
  _exit(127);
}

std::string join_command(const std::vector<std::string>& argv) {
  std::string text;
  for (const auto& argument : argv) {
    if (!text.empty()) text += ' ';
    text += argument;
  }
  return text;
}

}  // namespace

TempDir::TempDir(std::string_view prefix) {
  const char* base = getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" +
                        std::string(prefix) + ".XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) throw system_error_message("mkdtemp failed for " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

Process::Process(ProcessOptions options) : options_(std::move(options)) {
  if (options_.argv.empty()) throw std::invalid_argument("ProcessOptions::argv is empty");
  if (options_.stdout_path.empty() || options_.stderr_path.empty()) {
    capture_dir_.emplace("memward-it-output");
    if (options_.stdout_path.empty()) options_.stdout_path = *capture_dir_ / "stdout";
    if (options_.stderr_path.empty()) options_.stderr_path = *capture_dir_ / "stderr";
  }

  // Everything the child needs is prepared before fork, because the child
  // may only make async-signal-safe calls.
  std::vector<std::string> argv_strings = options_.argv;
  std::vector<char*> argv = pointers_to(argv_strings);
  std::vector<std::string> env_strings = child_environment(options_);
  std::vector<char*> envp = pointers_to(env_strings);
  const char* working_dir =
      options_.working_dir.empty() ? nullptr : options_.working_dir.c_str();

  int stdin_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (stdin_fd < 0) throw system_error_message("failed to open /dev/null");
  int stdout_fd = open_output_file(options_.stdout_path);
  int stderr_fd = open_output_file(options_.stderr_path);
  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) throw system_error_message("pipe2");

  pid_t parent = getpid();
  pid_t child = fork();
  if (child == 0) {
    exec_child(working_dir, stdin_fd, stdout_fd, stderr_fd, error_pipe[1], parent,
               argv.data(), envp.data());
  }
  int fork_error = errno;
  close(stdin_fd);
  close(stdout_fd);
  close(stderr_fd);
  close(error_pipe[1]);
  if (child < 0) {
    close(error_pipe[0]);
    errno = fork_error;
    throw system_error_message("fork");
  }
  pid_ = child;
  // Set the group here too, so that kill_group() works even if it runs
  // before the child gets to its own setpgid.
  setpgid(child, child);

  // A successful exec closes the pipe, and a failed one writes its errno.
  int exec_error = 0;
  ssize_t got;
  do {
    got = read(error_pipe[0], &exec_error, sizeof exec_error);
  } while (got < 0 && errno == EINTR);
  close(error_pipe[0]);
  if (got == sizeof exec_error) {
    int status = 0;
    waitpid(child, &status, 0);
    wait_status_ = status;
    errno = exec_error;
    throw system_error_message("failed to start " + join_command(options_.argv));
  }
}

namespace {

// How long a child may take to exit after SIGTERM before it is killed.
constexpr std::chrono::milliseconds kStopGrace{2000};

// Removes the admin socket that memward opened for `pid` by default, if the
// process left it behind. A process killed by a signal runs no exit
// handler, so its file would stay in the directory that all memward
// processes on this machine share.
void RemoveLeftoverAdminSocket(pid_t pid) {
  const std::string name = "/" + std::to_string(pid) + ".sock";
  unlink(("/tmp/memward" + name).c_str());
  unlink(("/tmp/memward-" + std::to_string(geteuid()) + name).c_str());
}

}  // namespace

// SIGTERM first, so that programs which exit through exit() on it (the
// gateway, nginx and its workers, redis-server) remove their own sockets.
Process::~Process() {
  if (pid_ > 0 && running()) {
    kill(-pid_, SIGTERM);
    wait_for_exit(kStopGrace);
  }
  kill_group();
  if (pid_ > 0) RemoveLeftoverAdminSocket(pid_);
}

bool Process::running() {
  if (wait_status_.has_value()) return false;
  int status = 0;
  pid_t reaped = waitpid(pid_, &status, WNOHANG);
  if (reaped == pid_) {
    wait_status_ = status;
    return false;
  }
  return true;
}

std::optional<int> Process::wait_for_exit(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return wait_status_;
}

void Process::send_signal(int signal_number) {
  if (running()) kill(pid_, signal_number);
}

void Process::kill_group() {
  if (pid_ <= 0) return;
  // The group may outlive its leader (nginx workers, forked helpers).
  kill(-pid_, SIGKILL);
  if (!wait_status_.has_value()) {
    int status = 0;
    if (waitpid(pid_, &status, 0) == pid_) wait_status_ = status;
  }
}

std::string Process::stdout_text() const { return read_text_file(options_.stdout_path); }

std::string Process::stderr_text() const { return read_text_file(options_.stderr_path); }

std::string Process::describe() const {
  std::ostringstream text;
  text << "command: " << join_command(options_.argv) << "\n";
  text << "LD_PRELOAD: " << (options_.ld_preload.empty() ? "(none)" : options_.ld_preload)
       << "\n";
  text << "pid " << pid_ << ": "
       << (wait_status_.has_value() ? describe_wait_status(*wait_status_) : "still running")
       << "\n";
  text << "--- stderr ---\n" << tail_of(stderr_text(), 6000) << "\n";
  text << "--- stdout ---\n" << tail_of(stdout_text(), 3000) << "\n";
  return text.str();
}

bool RunResult::exited_with(int code) const {
  return wait_status.has_value() && WIFEXITED(*wait_status) && WEXITSTATUS(*wait_status) == code;
}

RunResult run_program(ProcessOptions options, std::chrono::milliseconds timeout) {
  Process process(std::move(options));
  RunResult result;
  result.wait_status = process.wait_for_exit(timeout);
  process.kill_group();
  result.stdout_text = process.stdout_text();
  result.stderr_text = process.stderr_text();
  result.description = process.describe();
  if (!result.wait_status.has_value()) {
    result.description = "timed out after " + std::to_string(timeout.count()) +
                         " ms and was killed\n" + result.description;
  }
  return result;
}

std::string describe_wait_status(int wait_status) {
  if (WIFEXITED(wait_status)) return "exited with code " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    int signal_number = WTERMSIG(wait_status);
    std::string text = "killed by signal " + std::to_string(signal_number) + " (" +
                       strsignal(signal_number) + ")";
    if (WCOREDUMP(wait_status)) text += ", core dumped";
    return text;
  }
  return "wait status " + std::to_string(wait_status);
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

void write_text_file(const std::filesystem::path& path, std::string_view text) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(text.data(), static_cast<std::streamsize>(text.size()));
  if (!file) throw std::runtime_error("failed to write " + path.string());
}

std::vector<std::string> memward_messages(std::string_view text) {
  std::vector<std::string> messages;
  std::istringstream lines{std::string(text)};
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find("memward: ") != std::string::npos) messages.push_back(line);
  }
  return messages;
}

std::string tail_of(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  return "[... first " + std::to_string(text.size() - max_bytes) + " bytes cut ...]\n" +
         std::string(text.substr(text.size() - max_bytes));
}

}  // namespace memward::integration
