#include "preload.h"

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "offload/dockerctx/context_store.h"

namespace offload::cli {
namespace asio = boost::asio;
namespace http = boost::beast::http;
using unix_socket = asio::local::stream_protocol::socket;

namespace {

constexpr std::string_view kUnix = "unix://";
constexpr std::size_t kChunk = 256 * 1024;

std::string socket_path(const std::string& host, const std::string& what) {
  if (host.rfind(kUnix, 0) != 0)
    throw CliError(what + " is " + host + ": --preload copies only from an engine on a unix "
                   "socket; run `docker save IMAGE | docker load` yourself, or set DOCKER_HOST "
                   "to unix:///PATH for the engine that has the images");
  return host.substr(kUnix.size());
}

void connect(unix_socket& socket, const std::string& path, const std::string& what) {
  boost::system::error_code ec;
  socket.connect(asio::local::stream_protocol::endpoint(path), ec);
  if (ec) throw CliError("cannot reach " + what + " at " + path + ": " + ec.message());
}

// Percent-encoding for a query value (image references hold ':' '/' '@').
std::string query_escape(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// dockerd's errors are {"message": "..."}.
std::string message_of(const std::string& body) {
  auto doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_object() && doc.contains("message") && doc["message"].is_string())
    return doc["message"].get<std::string>();
  return body;
}

}  // namespace

std::string preload_source(const Environment& env, const std::string& previous_context) {
  if (env.docker_host) {
    socket_path(*env.docker_host, "DOCKER_HOST");
    return *env.docker_host;
  }
  std::string context = previous_context.empty() ? "default" : previous_context;
  if (context == "docker-offload")
    throw CliError("--preload needs the engine you used before the offload session, but the "
                   "docker-offload context was already current; set DOCKER_HOST to that engine");
  if (context == "default") return "unix:///var/run/docker.sock";
  auto host = ContextStore(env.docker_config).context_host(context);
  if (!host) throw CliError("--preload: the docker context \"" + context + "\" has no docker endpoint");
  socket_path(*host, "the docker context \"" + context + "\"");
  return *host;
}

std::string copy_images(const std::vector<std::string>& images, const std::string& from_host,
                        const std::string& to_host,
                        const std::function<void(std::uint64_t)>& progress) {
  asio::io_context io;
  unix_socket from(io), to(io);
  connect(from, socket_path(from_host, "the local engine"), "the local engine");
  connect(to, socket_path(to_host, "the session"), "the session's docker endpoint");
  try {
    std::string target = "/images/get?";
    for (std::size_t i = 0; i < images.size(); ++i)
      target += (i ? "&" : "") + std::string("names=") + query_escape(images[i]);
    http::request<http::empty_body> get{http::verb::get, target, 11};
    get.set(http::field::host, "docker");
    http::write(from, get);

    boost::beast::flat_buffer from_buffer;
    http::response_parser<http::buffer_body> saved;
    saved.body_limit(boost::none);
    http::read_header(from, from_buffer, saved);
    if (saved.get().result_int() != 200) {
      http::response_parser<http::string_body> error(std::move(saved));
      boost::system::error_code ec;
      http::read(from, from_buffer, error, ec);
      throw CliError("the local engine (" + from_host + ") cannot save " +
                     (images.size() == 1 ? images[0] : "the images") + ": " +
                     message_of(error.get().body()));
    }

    http::request<http::empty_body> load{http::verb::post, "/images/load?quiet=1", 11};
    load.set(http::field::host, "docker");
    load.set(http::field::content_type, "application/x-tar");
    load.set(http::field::transfer_encoding, "chunked");
    http::request_serializer<http::empty_body> head(load);
    http::write_header(to, head);

    std::vector<char> chunk(kChunk);
    std::uint64_t copied = 0;
    while (!saved.is_done()) {
      saved.get().body().data = chunk.data();
      saved.get().body().size = chunk.size();
      boost::system::error_code ec;
      http::read(from, from_buffer, saved, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) throw CliError("reading the images from the local engine: " + ec.message());
      const std::size_t n = chunk.size() - saved.get().body().size;
      if (n == 0) continue;
      asio::write(to, http::make_chunk(asio::buffer(chunk.data(), n)));
      copied += n;
      progress(copied);
    }
    asio::write(to, http::make_chunk_last());

    boost::beast::flat_buffer to_buffer;
    http::response<http::string_body> loaded;
    http::read(to, to_buffer, loaded);
    if (loaded.result_int() != 200)
      throw CliError("the session did not load the images: " + message_of(loaded.body()));
    // {"stream":"Loaded image: x\n"} lines; an error mid-way is {"errorDetail":...}.
    std::string said;
    std::size_t start = 0;
    const std::string& body = loaded.body();
    while (start < body.size()) {
      auto end = body.find('\n', start);
      if (end == std::string::npos) end = body.size();
      auto doc = nlohmann::json::parse(body.substr(start, end - start), nullptr, false);
      start = end + 1;
      if (!doc.is_object()) continue;
      if (doc.contains("error"))
        throw CliError("the session did not load the images: " + doc.value("error", ""));
      said += doc.value("stream", "");
    }
    return said;
  } catch (const boost::system::system_error& e) {
    throw CliError(std::string("copying the images into the session failed: ") + e.what());
  }
}

}  // namespace offload::cli
