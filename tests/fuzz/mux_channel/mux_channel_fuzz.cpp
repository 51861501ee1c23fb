// The runner's end of a multiplexed data channel (ODC2) after the accept, on arbitrary bytes:
// what anyone holding a session's token can send. The bytes go through nghttp2 into our
// callbacks (stream requests and their header fields with our limits, DATA for streams answered
// and not, flow control, resets), fed in pieces of varying size as reads would bring them.
// Whatever they are, nothing crashes or leaks, and the runner's handler sees each request with
// fields no longer than the limit.
#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "offload/tunnel/mux_channel.h"

namespace mux = offload::tunnel::mux;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  boost::asio::io_context io;
  auto connection = std::make_shared<mux::Connection>(
      io.get_executor(), mux::Connection::Role::server, mux::Settings{},
      [](std::shared_ptr<mux::Stream> stream) {
        const auto& request = stream->request();
        if (request.target.size() > 1024 || request.protocol.size() > 1024 ||
            request.port.size() > 1024)
          std::abort();
        // Both answers: a stream that goes on, and a refusal that ends it.
        stream->respond(request.port.size() % 2 == 0 ? mux::Answer{} : mux::Answer{7, "no"});
      });
  connection->start_unconnected();
  // The client's connection preface always comes first, so the input reaches the frames.
  static const std::string kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  connection->receive(kPreface.data(), kPreface.size());
  // The first byte picks the piece size: frames split across reads, or many in one.
  const std::size_t piece = 1 + data[0] % 64;
  const auto* bytes = reinterpret_cast<const char*>(data + 1);
  std::size_t left = size - 1;
  while (left > 0 && connection->receive(bytes, std::min(piece, left))) {
    bytes += std::min(piece, left);
    left -= std::min(piece, left);
  }
  connection->close();
  io.run();  // the close runs: streams let go of the connection
  return 0;
}
