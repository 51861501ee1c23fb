// A minimal blocking HTTP/1.1 client for a Docker Engine API unix socket. Used for readiness
// polling and small control-path queries (/_ping, /version, /containers/json); never for
// streaming endpoints.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <system_error>

namespace offload::engine {

struct HttpReply {
  int status = 0;
  std::string body;
};

// GET `target` (e.g. "/_ping") over the unix socket at `socket`. The whole exchange (connect,
// write, read) must finish within `timeout`, else errc::timed_out. Transport and parse failures
// come back as the error code; any HTTP status (including 4xx/5xx) is a success.
std::error_code unix_http_get(const std::filesystem::path& socket, const std::string& target,
                              HttpReply& reply,
                              std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace offload::engine
