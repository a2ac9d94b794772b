#include "http_client.h"

#include <cctype>
#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace memward::gateway_test {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

std::string LowerCase(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower;
}

http::request<http::string_body> MakeRequest(std::string_view method, std::string_view target,
                                             std::string_view body, const Headers& headers) {
  http::request<http::string_body> request{http::string_to_verb(method), target, 11};
  request.set(http::field::host, "127.0.0.1");
  if (!body.empty() || method == "POST") {
    request.set(http::field::content_type, "application/json");
    request.body() = std::string(body);
  }
  for (const auto& [name, value] : headers) request.set(name, value);
  request.prepare_payload();
  return request;
}

}  // namespace

HttpReply Fetch(std::uint16_t port, std::string_view method, std::string_view target,
                std::string_view body, const Headers& headers, std::chrono::milliseconds timeout) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.expires_after(timeout);
  stream.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
  auto request = MakeRequest(method, target, body, headers);
  request.keep_alive(false);

  beast::error_code error;
  http::async_write(stream, request, [&](beast::error_code e, std::size_t) { error = e; });
  io.run();
  if (error) throw beast::system_error(error);
  io.restart();

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1u << 30);
  http::async_read(stream, buffer, parser, [&](beast::error_code e, std::size_t) { error = e; });
  io.run();
  if (error == beast::error::timeout) {
    throw std::runtime_error("no complete response from 127.0.0.1:" + std::to_string(port) +
                             std::string(target) + " within " + std::to_string(timeout.count()) +
                             " ms");
  }
  if (error) throw beast::system_error(error);

  HttpReply reply;
  const auto& response = parser.get();
  reply.status = response.result_int();
  for (const auto& field : response) {
    reply.headers[LowerCase(field.name_string())] = std::string(field.value());
  }
  reply.body = response.body();
  return reply;
}

std::vector<std::string> SseData(std::string_view body) {
  std::vector<std::string> data;
  std::size_t position = 0;
  while (position < body.size()) {
    std::size_t end = body.find('\n', position);
    if (end == std::string_view::npos) end = body.size();
    std::string_view line = body.substr(position, end - position);
    if (line.starts_with("data: ")) data.emplace_back(line.substr(6));
    position = end + 1;
  }
  return data;
}

struct StreamReader::State {
  asio::io_context io;
  tcp::socket socket{io};
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  char chunk[64 * 1024];
};

StreamReader::StreamReader(std::uint16_t port, std::string_view target, std::string_view body,
                           const Headers& headers)
    : state_(std::make_unique<State>()) {
  state_->socket.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
  auto request = MakeRequest("POST", target, body, headers);
  http::write(state_->socket, request);
  state_->parser.body_limit(boost::none);
  http::read_header(state_->socket, state_->buffer, state_->parser);
}

StreamReader::~StreamReader() = default;

int StreamReader::status() const { return state_->parser.get().result_int(); }

std::optional<std::string> StreamReader::NextChunk() {
  if (state_->parser.is_done()) return std::nullopt;
  auto& body = state_->parser.get().body();
  body.data = state_->chunk;
  body.size = sizeof(state_->chunk);
  beast::error_code error;
  http::read_some(state_->socket, state_->buffer, state_->parser, error);
  // need_buffer only means that this call filled the caller's buffer.
  if (error && error != http::error::need_buffer) throw beast::system_error(error);
  return std::string(state_->chunk, sizeof(state_->chunk) - body.size);
}

void StreamReader::Abort() {
  beast::error_code ignored;
  // A zero linger time makes close() send RST instead of FIN.
  state_->socket.set_option(asio::socket_base::linger(true, 0), ignored);
  state_->socket.close(ignored);
}

}  // namespace memward::gateway_test
