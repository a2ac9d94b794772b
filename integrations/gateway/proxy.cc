#include "proxy.h"

#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>

#include <optional>
#include <string>

#include "request_state.h"

namespace memward::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using Clock = std::chrono::steady_clock;

// Memory a request is expected to need beyond its body, for admission: the
// parsed document, the upstream request and a streamed response's buffers.
// An estimate; the request's measured peak is in the access log.
constexpr std::uint64_t kExpectedRequestOverheadBytes = 64 << 10;

// Writes an error response built inside the request's scope.
// NOTE: built with GCC 12.2, a temporary ApiError written inside the
// co_await expression that calls this was freed while the call still read
// it (the message came out as garbage), so callers pass a named ApiError.
asio::awaitable<void> RespondWithError(Connection& connection, const RequestMemory& memory,
                                  RequestRecord& record, const Services& services,
                                  const ApiError& error, std::string_view what) {
  std::optional<StringResponse> response;
  {
    auto scope = memory.Enter();
    response.emplace(MakeErrorResponse(error, record.keep_alive,
                                       services.config.limits.retry_after_seconds));
  }
  record.status = error.status;
  record.error = what;
  record.response_bytes = response->body().size();
  if (!co_await WriteMessage(connection.client, *response,
                             services.config.limits.client_write_timeout)) {
    record.keep_alive = false;
  }
}

ApiError BodyTooLarge(const Limits& limits) {
  return ApiError{413, "invalid_request_error", "request_too_large",
                  "the request body is larger than the limit of " +
                      std::to_string(limits.max_body_bytes) + " bytes",
                  {}};
}

// The checks made from the headers alone, before the body is read: the API
// key, the declared body size and memward's admission. Returns the error to
// respond with, and sets record.error to its description.
std::optional<ApiError> CheckBeforeBody(Services& services, std::optional<std::size_t> tenant,
                                        boost::optional<std::uint64_t> length,
                                        RequestRecord& record) {
  const Limits& limits = services.config.limits;
  if (!tenant.has_value()) {
    record.error = "missing or unknown API key";
    return ApiError{401, "authentication_error", "invalid_api_key",
                    "a valid API key is required: send \"Authorization: Bearer KEY\"", {}};
  }
  if (length && *length > limits.max_body_bytes) {
    record.error = "request body too large";
    return BodyTooLarge(limits);
  }
  std::uint64_t expected = length.value_or(limits.max_body_bytes) * 4 + kExpectedRequestOverheadBytes;
  AdmissionResult admission = services.hooks.Admit(*tenant, expected);
  if (admission == AdmissionResult::kTenantOverBudget) {
    services.metrics.rejected_over_budget.fetch_add(1, std::memory_order_relaxed);
    record.error = "tenant over its memory budget";
    return ApiError{429, "rate_limit_error", "tenant_over_budget",
                    "the tenant is over its memory budget; retry later", {}};
  }
  if (admission == AdmissionResult::kPressure) {
    services.metrics.rejected_pressure.fetch_add(1, std::memory_order_relaxed);
    record.error = "shed under memory pressure";
    return ApiError{503, "server_error", "memory_pressure",
                    "the gateway is shedding load under memory pressure; retry later", {}};
  }
  return std::nullopt;
}

// Sends a stored response: a JSON body, or a whole event stream.
asio::awaitable<void> RespondFromCache(Connection& connection, const Services& services,
                                      const RequestMemory& memory, RequestRecord& record,
                                      const CachedResponse& cached) {
  using SpanResponse = http::response<http::span_body<const char>>;
  std::optional<SpanResponse> response;
  {
    auto scope = memory.Enter();
    response.emplace(http::status::ok, 11);
    response->set(http::field::server, "memward-gateway");
    response->set(http::field::content_type, cached.content_type);
    response->set("x-memward-cache", "hit");
    response->body() = {cached.body.data(), cached.body.size()};
    response->keep_alive(record.keep_alive);
    response->prepare_payload();
  }
  record.status = 200;
  record.response_bytes = cached.body.size();
  if (!co_await WriteMessage(connection.client, *response,
                             services.config.limits.client_write_timeout)) {
    record.status = 499;
    record.error = "client closed the connection during the response";
    record.keep_alive = false;
  }
}

// Everything after admission: reads and checks the body, responds from the
// cache or forwards upstream. Every allocation made inside the request's
// scopes lives in this frame or the cache, so the frame's end frees all
// that the request may not keep.
asio::awaitable<void> RunCompletion(Worker& worker, const std::shared_ptr<Connection>& connection,
                                    ClientRequestParser& parser, beast::flat_buffer& buffer,
                                    CompletionKind kind, std::size_t tenant_index,
                                    const RequestMemory& memory, RequestRecord& record) {
  Services& services = worker.services;
  const Limits& limits = services.config.limits;

  {
    auto scope = memory.Enter();
    if (auto length = parser.content_length(); length) {
      parser.get().body().reserve(std::size_t(*length));
    }
  }
  connection->client.expires_after(limits.client_read_timeout);
  auto [read_error, read_bytes] = co_await http::async_read(connection->client, buffer, parser,
                                                            kNoThrow);
  std::string body = std::move(parser.get().body());
  record.request_bytes = body.size();
  services.metrics.request_body_bytes.fetch_add(body.size(), std::memory_order_relaxed);
  if (read_error == http::error::body_limit) {
    record.keep_alive = false;
    const ApiError error = BodyTooLarge(limits);
    co_await RespondWithError(*connection, memory, record, services, error, "request body too large");
    co_return;
  }
  if (read_error == beast::error::timeout) {
    record.keep_alive = false;
    const ApiError error{408, "invalid_request_error", "request_timeout",
                         "the request body did not arrive within " +
                             std::to_string(limits.client_read_timeout.count()) + " ms",
                         {}};
    co_await RespondWithError(*connection, memory, record, services, error, "request body timed out");
    co_return;
  }
  if (read_error) {
    record.keep_alive = false;
    record.error = "client closed the connection while sending the body";
    co_return;
  }
  record.keep_alive = parser.get().keep_alive() && !services.draining.load();

  CompletionRequest request;
  std::optional<ApiError> invalid;
  std::optional<Exchange> exchange;
  {
    auto scope = memory.Enter();
    auto parsed = ParseCompletion(body, kind, services.hooks.settings().request_memory_resource,
                                  request);
    ModelRoute* route = nullptr;
    if (ApiError* error = std::get_if<ApiError>(&parsed); error != nullptr) {
      invalid = std::move(*error);
    } else if (route = services.upstreams.FindModel(request.model); route == nullptr) {
      invalid = ApiError{404, "invalid_request_error", "model_not_found",
                         "the model \"" + std::string(request.model) + "\" does not exist",
                         "model"};
    } else {
      record.model = route->config->name;
      record.stream = request.stream;
      exchange.emplace(Exchange{worker, connection, memory, record, *route, request.stream, {}, {}});
      if (services.cache.enabled()) {
        exchange->cache_key = CacheKey(record.tenant, record.path, request.document);
      }
      exchange->upstream_body = UpstreamBody(request, body, route->config->upstream_model);
    }
    // The document and the body are not needed past this point.
    // The document goes before the resource that contains it.
    request.document = nullptr;
    request.model = {};
    request.resource.reset();
    std::string().swap(body);
  }
  if (invalid.has_value()) {
    co_await RespondWithError(*connection, memory, record, services, *invalid, "invalid request");
    co_return;
  }
  if (record.stream) services.metrics.streamed_requests.fetch_add(1, std::memory_order_relaxed);

  if (!exchange->cache_key.empty()) {
    std::shared_ptr<const CachedResponse> cached = services.cache.Lookup(exchange->cache_key);
    record.cache = cached ? "hit" : "miss";
    if (cached) {
      co_await RespondFromCache(*connection, services, memory, record, *cached);
      co_return;
    }
  }
  co_await ForwardUpstream(*exchange, record.path);
}

void RecordMetrics(Metrics& metrics, const RequestRecord& record, const RequestMemory& memory,
                   const memward_request_summary& summary) {
  metrics.CountResponse(record.status);
  metrics.response_body_bytes.fetch_add(record.response_bytes, std::memory_order_relaxed);
  if (record.status == 499) metrics.client_disconnects.fetch_add(1, std::memory_order_relaxed);
  if (!memory.measured()) return;
  metrics.measured_requests.fetch_add(1, std::memory_order_relaxed);
  metrics.request_peak_bytes_total.fetch_add(summary.peak_bytes, std::memory_order_relaxed);
  if (record.cache_filled) {
    metrics.escaped_bytes_cache_fill.fetch_add(summary.escaped_bytes, std::memory_order_relaxed);
  } else {
    metrics.escaped_bytes_other.fetch_add(summary.escaped_bytes, std::memory_order_relaxed);
    if (summary.escaped_bytes != 0) {
      metrics.requests_with_escapes_other.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void WriteAccessLog(AccessLog& log, const RequestRecord& record, const RequestMemory& memory,
                    const memward_request_summary& summary, Clock::time_point start) {
  AccessRecord line;
  line.tenant = record.tenant;
  line.model = record.model;
  line.method = "POST";
  line.path = record.path;
  line.status = record.status;
  line.stream = record.stream;
  line.cache = record.cache;
  line.upstream = record.upstream;
  line.request_bytes = record.request_bytes;
  line.response_bytes = record.response_bytes;
  line.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  line.memward_request = memory.measured();
  line.peak_bytes = memory.measured() ? summary.peak_bytes : 0;
  line.escaped_bytes = memory.measured() ? summary.escaped_bytes : 0;
  line.error = record.error;
  log.Write(line);
}

}  // namespace

std::optional<std::size_t> FindTenant(const Services& services, std::string_view authorization) {
  constexpr std::string_view kScheme = "Bearer ";
  if (authorization.size() <= kScheme.size()) return std::nullopt;
  // The scheme is case-insensitive (RFC 9110, section 11.1).
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) !=
        std::tolower(static_cast<unsigned char>(kScheme[i]))) {
      return std::nullopt;
    }
  }
  std::string key(authorization.substr(kScheme.size()));
  auto found = services.tenant_by_api_key.find(key);
  if (found == services.tenant_by_api_key.end()) return std::nullopt;
  return found->second;
}

asio::awaitable<bool> HandleCompletion(Worker& worker, const std::shared_ptr<Connection>& connection,
                                       ClientRequestParser& parser, beast::flat_buffer& buffer,
                                       CompletionKind kind, std::string_view path,
                                       Clock::time_point start) {
  Services& services = worker.services;
  const Config& config = services.config;
  RequestRecord record;
  record.path = path == "/v1/completions" ? "/v1/completions" : "/v1/chat/completions";
  // Responses sent before the body is read close the connection, because the
  // unread body would be taken for the next request.
  record.keep_alive = false;
  RequestMemory no_memory;

  std::optional<std::size_t> tenant =
      FindTenant(services, parser.get()[http::field::authorization]);
  if (tenant.has_value()) record.tenant = config.tenants[*tenant].name;
  std::optional<ApiError> early = CheckBeforeBody(services, tenant, parser.content_length(), record);
  if (early.has_value()) {
    co_await RespondWithError(*connection, no_memory, record, services, *early, record.error);
    services.activity_epoch.fetch_add(1, std::memory_order_relaxed);
    RecordMetrics(services.metrics, record, no_memory, memward_request_summary{});
    WriteAccessLog(services.access_log, record, no_memory, memward_request_summary{}, start);
    co_return false;
  }

  services.metrics.open_requests.fetch_add(1, std::memory_order_relaxed);
  RequestMemory memory(services.hooks, *tenant);
  // A tenant registered with enforce_hard_limit makes allocations past its
  // hard limit throw std::bad_alloc inside the request's scopes.
  bool out_of_memory = false;
  try {
    co_await RunCompletion(worker, connection, parser, buffer, kind, *tenant, memory, record);
  } catch (const std::bad_alloc&) {
    out_of_memory = true;
  }
  if (out_of_memory) {
    record.error = "allocation failed: the tenant reached its enforced hard limit";
    record.keep_alive = false;
    if (record.status == 0) {
      // Built outside the request's scopes, so it is charged to the process.
      const ApiError error{500, "server_error", "tenant_memory_exhausted",
                           "the tenant's memory limit was reached while serving the request", {}};
      co_await RespondWithError(*connection, no_memory, record, services, error, record.error);
    }
  }
  const memward_request_summary& summary = memory.End();
  services.metrics.open_requests.fetch_sub(1, std::memory_order_relaxed);
  services.activity_epoch.fetch_add(1, std::memory_order_relaxed);
  RecordMetrics(services.metrics, record, memory, summary);
  WriteAccessLog(services.access_log, record, memory, summary, start);
  co_return record.keep_alive;
}

}  // namespace memward::gateway
