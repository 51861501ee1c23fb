#include "offload/engine/unix_http.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace offload::engine {
namespace asio = boost::asio;
namespace http = boost::beast::http;
using stream_protocol = asio::local::stream_protocol;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

asio::awaitable<std::error_code> exchange(stream_protocol::socket& socket,
                                          stream_protocol::endpoint endpoint,
                                          const http::request<http::empty_body>& request,
                                          http::response<http::string_body>& response) {
  auto [connect_ec] = co_await socket.async_connect(endpoint, kAwait);
  if (connect_ec) co_return connect_ec;
  auto [write_ec, written] = co_await http::async_write(socket, request, kAwait);
  if (write_ec) co_return write_ec;
  boost::beast::flat_buffer buffer;
  auto [read_ec, read] = co_await http::async_read(socket, buffer, response, kAwait);
  co_return read_ec;
}

}  // namespace

std::error_code unix_http_get(const std::filesystem::path& socket_path, const std::string& target,
                              HttpReply& reply, std::chrono::milliseconds timeout) {
  stream_protocol::endpoint endpoint;
  try {
    endpoint = stream_protocol::endpoint(socket_path.string());
  } catch (const boost::system::system_error&) {
    return std::make_error_code(std::errc::filename_too_long);  // longer than sun_path
  }
  http::request<http::empty_body> request{http::verb::get, target, 11};
  request.set(http::field::host, "docker");
  request.set(http::field::user_agent, "offload-runner");
  http::response<http::string_body> response;

  asio::io_context io;
  stream_protocol::socket socket(io);
  std::optional<std::error_code> outcome;
  asio::co_spawn(io, exchange(socket, endpoint, request, response),
                 [&](std::exception_ptr failure, std::error_code ec) {
                   outcome = failure ? std::make_error_code(std::errc::io_error) : ec;
                 });
  io.run_for(timeout);
  if (!outcome) return std::make_error_code(std::errc::timed_out);
  if (*outcome) return *outcome;
  reply.status = static_cast<int>(response.result_int());
  reply.body = std::move(response.body());
  return {};
}

}  // namespace offload::engine
