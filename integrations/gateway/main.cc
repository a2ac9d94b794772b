// memward-gateway: the reference OpenAI-compatible LLM gateway.
//   memward-gateway --config FILE [--listen HOST:PORT]
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>

#include <boost/system/system_error.hpp>

#include "config.h"
#include "server.h"

namespace {

constexpr char kUsage[] =
    "usage: memward-gateway --config FILE [--listen HOST:PORT]\n"
    "  --config FILE       the JSON config (see integrations/gateway/README.md)\n"
    "  --listen HOST:PORT  the address to listen on, overriding the config's \"listen\";\n"
    "                      port 0 lets the kernel pick one\n";

// Exit statuses: 2 for a usage or config error, 1 for a failure at run time.
constexpr int kExitRuntimeError = 1;
constexpr int kExitUsage = 2;

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string listen;
  for (int i = 1; i < argc; ++i) {
    std::string_view argument = argv[i];
    if ((argument == "--config" || argument == "--listen") && i + 1 < argc) {
      (argument == "--config" ? config_path : listen) = argv[++i];
    } else if (argument.starts_with("--config=")) {
      config_path = argument.substr(9);
    } else if (argument.starts_with("--listen=")) {
      listen = argument.substr(9);
    } else if (argument == "--help" || argument == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "memward-gateway: unknown or incomplete argument \"%s\"\n%s", argv[i],
                   kUsage);
      return kExitUsage;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "memward-gateway: --config FILE is required\n%s", kUsage);
    return kExitUsage;
  }

  memward::gateway::Config config;
  try {
    config = memward::gateway::LoadConfig(config_path);
    if (!listen.empty()) config.listen = memward::gateway::ParseListenAddress(listen, "--listen");
  } catch (const memward::gateway::ConfigError& error) {
    std::fprintf(stderr, "memward-gateway: invalid config: %s\n", error.what());
    return kExitUsage;
  }

  memward::gateway::SetStopSignalsBlocked(true);

  try {
    memward::gateway::Server server(config);
    auto bound = server.Bind();
    std::fprintf(stderr,
                 "memward-gateway: listening on %s:%u with %d thread(s); memward: %s; hooks: "
                 "scopes=%d request_memory_resource=%d admission=%d cache_reclaimer=%d "
                 "cache_unused_after_ms=%lld idle_purge=%d\n",
                 bound.address().to_string().c_str(), unsigned(bound.port()), config.threads,
                 memward_library_kind(), config.hooks.scopes,
                 config.hooks.request_memory_resource, config.hooks.admission,
                 config.hooks.cache_reclaimer,
                 static_cast<long long>(config.hooks.cache_unused_after.count()),
                 config.hooks.idle_purge);
    server.Run();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "memward-gateway: %s\n", error.what());
    return kExitRuntimeError;
  }
  return 0;
}
