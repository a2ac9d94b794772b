// memward-mock-upstream: an OpenAI-compatible model server for tests and
// benchmarks of the gateway. See README.md in this folder for the routes and
// the per-request controls.
#include <signal.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <absl/flags/usage_config.h>
#include <absl/strings/match.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "server.h"

ABSL_FLAG(std::string, address, "127.0.0.1", "IP address to listen on");
ABSL_FLAG(int, port, 0, "TCP port to listen on; 0 lets the kernel pick a free one");
ABSL_FLAG(std::string, port_file, "",
          "file that receives the listening port once the socket is bound (written atomically)");
ABSL_FLAG(int, threads, 1, "threads running the event loop (1 to 64)");
ABSL_FLAG(double, tokens_per_second, 50,
          "pace of generated tokens per request; 0 sends them without waiting");
ABSL_FLAG(int, first_token_delay_ms, 100,
          "milliseconds before the first token (the model's prefill time), 0 to 600000");
ABSL_FLAG(std::string, models, "mock-chat,mock-code",
          "comma-separated model ids listed by GET /v1/models (other models are served too)");
ABSL_FLAG(std::int64_t, max_body_bytes, 8 << 20,
          "largest request body in bytes; larger ones get 413 (1 to 1073741824)");

namespace {

using memward::gateway::mock::Server;
using memward::gateway::mock::ServerOptions;

[[noreturn]] void ExitWithUsageError(const std::string& message) {
  std::cerr << "memward-mock-upstream: " << message << "\nRun with --help for the options.\n";
  std::exit(2);
}

ServerOptions OptionsFromFlags() {
  ServerOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  int port = absl::GetFlag(FLAGS_port);
  if (port < 0 || port > 65535) ExitWithUsageError("--port must be from 0 to 65535");
  options.port = static_cast<std::uint16_t>(port);
  options.tokens_per_second = absl::GetFlag(FLAGS_tokens_per_second);
  if (!std::isfinite(options.tokens_per_second) || options.tokens_per_second < 0) {
    ExitWithUsageError("--tokens_per_second must be a number >= 0");
  }
  int delay = absl::GetFlag(FLAGS_first_token_delay_ms);
  if (delay < 0 || delay > 600000) {
    ExitWithUsageError("--first_token_delay_ms must be from 0 to 600000");
  }
  options.first_token_delay = std::chrono::milliseconds(delay);
  options.models = absl::GetFlag(FLAGS_models);
  std::int64_t max_body = absl::GetFlag(FLAGS_max_body_bytes);
  if (max_body < 1 || max_body > (std::int64_t{1} << 30)) {
    ExitWithUsageError("--max_body_bytes must be from 1 to 1073741824");
  }
  options.max_body_bytes = static_cast<std::size_t>(max_body);
  return options;
}

// Writes the port to a temporary file and renames it, so a reader never sees
// a partial number.
void WritePortFile(const std::filesystem::path& path, std::uint16_t port) {
  std::filesystem::path temporary = path;
  temporary += ".tmp";
  {
    std::ofstream out(temporary);
    out << port << '\n';
    if (!out.flush()) throw std::runtime_error("cannot write " + temporary.string());
  }
  std::filesystem::rename(temporary, path);
}

}  // namespace

int main(int argc, char** argv) {
  // --help lists the flags of this file; abseil's default looks for a file
  // named after the program.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "mock_upstream/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "An OpenAI-compatible mock model server for memward's gateway tests and benchmarks.\n"
      "Usage: memward-mock-upstream [--port=N] [--tokens_per_second=X] ...");
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) ExitWithUsageError(std::string("unexpected argument '") +
                                                positional[1] + "'");
  ServerOptions options = OptionsFromFlags();
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads < 1 || threads > 64) ExitWithUsageError("--threads must be from 1 to 64");

  boost::asio::io_context io(threads);
  try {
    Server server(io, options);
    server.Start();
    // The handlers are installed before the port file is written, so a
    // SIGTERM that a test sends once the file exists stops the server cleanly.
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& error, int signal_number) {
      if (error) return;
      std::cout << "memward-mock-upstream: stopping on signal " << signal_number << std::endl;
      server.Stop();
      io.stop();
    });
    if (std::string port_file = absl::GetFlag(FLAGS_port_file); !port_file.empty()) {
      WritePortFile(port_file, server.port());
    }
    std::cout << "memward-mock-upstream: listening on http://" << options.address << ':'
              << server.port() << " (" << options.tokens_per_second << " tokens/s, first token after "
              << options.first_token_delay.count() << " ms)" << std::endl;

    std::vector<std::thread> workers;
    for (int i = 1; i < threads; ++i) workers.emplace_back([&io] { io.run(); });
    io.run();
    for (std::thread& worker : workers) worker.join();
  } catch (const std::exception& error) {
    std::cerr << "memward-mock-upstream: failed to serve on " << options.address << ':'
              << options.port << ": " << error.what() << '\n';
    return 1;
  }
  return 0;
}
