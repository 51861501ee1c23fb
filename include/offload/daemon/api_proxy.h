// One Docker API client connection spliced to its tunnel stream, with the few requests that
// bind-mount synchronisation must see:
//  - `POST /containers/create` is held until its whole body is read (at most
//    kMaxCreateBodyBytes, beyond that it goes through unchanged) and handed to
//    BindSync::prepare_create; the engine then gets the rewritten body, the original bytes, or
//    nothing at all when the synchroniser refuses (the client gets its JSON error instead);
//  - `POST /containers/{id}/start` waits for BindSync::flush while mounts are synchronised;
//  - the response to `POST /containers/{id}/wait` goes out head first, but its body (the exit
//    status, sent when the container exits) only after a flush, so that `docker run` returns
//    once the container's output files are local.
//  - the answers to container inspect and list, events and disk usage show bind sources: the
//    runner paths of their replicas become the user's paths again (path_restore.h), in bodies
//    of at most kMaxRewrittenBodyBytes or chunk by chunk.
// The connection runs on tunnel::splice itself, with the proxy as its upstream filter and
// downstream writer: both directions double-buffered, every other read forwarded whole (request
// heads only parsed), and after an Upgrade both directions are raw.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "offload/daemon/bind_sync.h"
#include "offload/tunnel/frame_stream.h"
#include "offload/tunnel/pump.h"

namespace offload::daemon {

// Create bodies up to this size are held for the synchroniser; Docker's own are a few KiB.
inline constexpr std::size_t kMaxCreateBodyBytes = 16 * 1024 * 1024;
// Answers with a Content-Length up to this size are held to show local bind sources; beyond, they
// go through unchanged (a list of thousands of containers is a few MiB).
inline constexpr std::size_t kMaxRewrittenBodyBytes = 16 * 1024 * 1024;

class ApiProxy {
 public:
  // `bind_sync` may be null (then only request heads are watched); it must outlive run().
  // `id` only names the connection in the log.
  ApiProxy(boost::asio::local::stream_protocol::socket& client, tunnel::FrameStream& stream,
           BindSync* bind_sync, std::uint64_t id);
  ~ApiProxy();
  ApiProxy(const ApiProxy&) = delete;
  ApiProxy& operator=(const ApiProxy&) = delete;

  // Runs both directions until each has ended (tunnel::splice: its half-close and teardown).
  // Must run on the client socket's strand. Call once.
  boost::asio::awaitable<tunnel::SpliceResult> run();

  // Request heads seen so far (also those answered by the proxy itself).
  std::uint64_t requests() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `raw_head` (a complete request head, as received) with every Content-Length,
// Transfer-Encoding and Trailer field dropped and `Content-Length: body_size` added last
// (http::head_with_content_length, which the runner's gate uses too).
std::string head_with_content_length(std::string_view raw_head, std::size_t body_size);

}  // namespace offload::daemon
