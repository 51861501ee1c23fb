// Driving one io_context from a unit test without sleeping: everything runs on the test's
// thread, so the state the handlers change needs no lock, and every wait has a bound. And the
// client and runner sides of a spliced connection, as coroutines that record what they got.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "offload/tunnel/frame_stream.h"

namespace offload::testing {

namespace asio = boost::asio;
using asio::local::stream_protocol;
inline constexpr auto kTestToken = asio::as_tuple(asio::use_awaitable);

// Runs handlers until `done()` holds or `bound` has passed; returns done().
template <class Done>
bool run_until(boost::asio::io_context& io, Done done,
               std::chrono::steady_clock::duration bound = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (io.stopped()) io.restart();
    // Nothing ran: the bound has passed, or no work is left at all and nothing will change.
    if (io.run_one_until(deadline) == 0) return done();
  }
  return true;
}

// Runs every handler that is ready, and those they make ready, until none is: after this,
// nothing happens without new input (a socket write, a completion from the test). The clock-free
// way to check that something did NOT happen. False if it never settles (a busy loop).
inline bool settle(boost::asio::io_context& io, int max_rounds = 100000) {
  for (int i = 0; i < max_rounds; ++i) {
    if (io.stopped()) io.restart();
    if (io.poll() == 0) return true;
  }
  return false;
}

// Starts `task` on `io`; an exception in it fails the test run loudly rather than vanishing.
inline void spawn(asio::io_context& io, asio::awaitable<void> task) {
  asio::co_spawn(io, std::move(task), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
}

// FNV-1a, 64 bit: enough to tell that megabytes arrived whole and in order.
class Fnv1a {
 public:
  void add(std::string_view bytes) {
    for (unsigned char c : bytes) {
      hash_ ^= c;
      hash_ *= 0x100000001b3ull;
    }
  }
  std::uint64_t value() const { return hash_; }

 private:
  std::uint64_t hash_ = 0xcbf29ce484222325ull;
};

// ---------------------------------------------------------------------------------------------
// The two sides of a spliced connection, played by coroutines: the client on a socket, the
// runner on a FrameStream.

inline std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

inline tunnel::TunnelFrame frame_of(std::string_view data, bool eof = false) {
  tunnel::TunnelFrame f;
  f.set_data(std::string(data));
  f.set_eof(eof);
  return f;
}

// What one side received, filled in by a coroutine.
struct Received {
  std::string data;
  Fnv1a hash;
  std::size_t bytes = 0;
  std::vector<std::size_t> frame_sizes;
  bool keep = true;     // keep the bytes (not only their hash)
  bool eof = false;     // an eof frame, or end-of-file on a socket
  bool failed = false;  // the stream read failed, or the socket read an error
  boost::system::error_code error;
  bool done() const { return eof || failed; }
  void add(std::string_view bytes_read) {
    hash.add(bytes_read);
    bytes += bytes_read.size();
    if (keep) data.append(bytes_read);
  }
};

// The runner's side: reads frames until an eof frame or the end of the stream.
inline asio::awaitable<void> receive_frames(tunnel::FrameStream& stream, Received& r) {
  for (;;) {
    tunnel::TunnelFrame f;
    auto [ok] = co_await stream.async_read(f, kTestToken);
    if (!ok) {
      r.failed = true;
      co_return;
    }
    r.frame_sizes.push_back(f.data().size());
    r.add(f.data());
    if (f.eof()) {
      r.eof = true;
      co_return;
    }
  }
}

inline asio::awaitable<void> send_frames(tunnel::FrameStream& stream,
                                         std::vector<tunnel::TunnelFrame> frames, bool& done) {
  for (const auto& f : frames) {
    auto [ok] = co_await stream.async_write(f, kTestToken);
    if (!ok) co_return;
  }
  done = true;
}

// The client's side: reads the socket until end-of-file or an error.
inline asio::awaitable<void> read_socket(stream_protocol::socket& s, Received& r) {
  std::string buffer(64 * 1024, '\0');
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buffer), kTestToken);
    r.add(std::string_view(buffer).substr(0, n));
    if (ec == asio::error::eof) {
      r.eof = true;
      co_return;
    }
    if (ec) {
      r.failed = true;
      r.error = ec;
      co_return;
    }
  }
}

inline asio::awaitable<void> write_socket(stream_protocol::socket& s, std::string data,
                                          bool half_close, bool& done) {
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(data), kTestToken);
  if (ec) co_return;
  if (half_close) s.shutdown(stream_protocol::socket::shutdown_send);
  done = true;
}

}  // namespace offload::testing
