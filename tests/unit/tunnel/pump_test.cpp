// tunnel::splice and its two pumps between a socket pair and an in-memory FrameStream pair, on
// one io_context driven by the test: bytes in order both ways, half-close per direction, each
// kind of failure and how it tears the connection down, and back-pressure both ways.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "offload/tunnel/pump.h"
#include "support/io_test_helpers.h"
#include "support/memory_frame_stream.h"

namespace offload::tunnel {
namespace {

using asio::local::stream_protocol;
using offload::testing::Fnv1a;
using offload::testing::frame_of;
using offload::testing::random_bytes;
using offload::testing::read_socket;
using offload::testing::receive_frames;
using offload::testing::Received;
using offload::testing::run_until;
using offload::testing::send_frames;
using offload::testing::settle;
using offload::testing::write_socket;
using tunnel::testing::MemoryFrameStream;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

// For the hook tests: a filter that forwards whole lines only: a read of whole lines
// goes out as it is, a partial line is held until its end arrives, and end-of-file flushes it.
struct LineFilter {
  struct State {
    std::string partial;
    TunnelFrame out;
    int as_read = 0;  // reads sent as they are
  };
  State* state;
  Outgoing operator()(const TunnelFrame& read) {
    auto& s = *state;
    const std::string& data = read.data();
    if (s.partial.empty() && (data.empty() || data.back() == '\n')) {
      ++s.as_read;
      return Outgoing::as_read();
    }
    s.out.Clear();
    s.partial += data;
    const auto end = read.eof() ? s.partial.size() : s.partial.rfind('\n') + 1;  // npos + 1 = 0
    s.out.set_data(s.partial.substr(0, end));
    s.partial.erase(0, end);
    return Outgoing::instead(s.out);
  }
};
static_assert(UpstreamFilter<LineFilter>);

// `local` is spliced to `near`; the test plays the client on `app` (the other end of the socket
// pair) and the runner on `far` (the other end of the stream).
class PumpTest : public ::testing::Test {
 protected:
  explicit PumpTest(std::size_t capacity = 2) {
    asio::local::connect_pair(local, app);
    std::tie(near, far) = MemoryFrameStream::make_pair(io.get_executor(), capacity);
  }

  ~PumpTest() override {
    // Whatever a test left running ends with the call, or else (a test that failed) with the
    // socket: nothing may still wait when the streams and the io_context go.
    boost::system::error_code ignored;
    app.close(ignored);
    far->cancel("test over");
    auto ended = [&] { return !spliced || result.has_value(); };
    if (!run_until(io, ended, std::chrono::seconds(5))) {
      local.close(ignored);
      run_until(io, ended, std::chrono::seconds(5));
    }
  }

  void start_splice() {
    spliced = true;
    asio::co_spawn(io, splice(local, *near), [this](std::exception_ptr e, SpliceResult r) {
      if (e) std::rethrow_exception(e);
      result = r;
    });
  }

  void spawn(asio::awaitable<void> task) { offload::testing::spawn(io, std::move(task)); }

  bool wait_for_splice() {
    return run_until(io, [&] { return result.has_value(); });
  }

  asio::io_context io;
  stream_protocol::socket local{io}, app{io};
  std::unique_ptr<MemoryFrameStream> near, far;
  bool spliced = false;
  std::optional<SpliceResult> result;
  // What the coroutines record lives here, not in a test's body: it must outlive every
  // coroutine, also those of a test that failed half-way (the destructor runs them to the end).
  Received at_far, at_app;
  bool written = false, sent = false;
  std::optional<PumpEnd> pump_end;  // a test running one pump alone
  LineFilter::State line;
  std::vector<std::string> writer_saw;
};

TEST_F(PumpTest, BytesCrossBothWaysInOrderAndTheSpliceEndsCleanly) {
  start_splice();
  spawn(receive_frames(*far, at_far));
  spawn(read_socket(app, at_app));

  const std::string request = "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n";
  spawn(write_socket(app, request, /*half_close=*/true, written));
  ASSERT_TRUE(run_until(io, [&] { return at_far.done(); }));
  EXPECT_TRUE(at_far.eof);
  EXPECT_EQ(at_far.data, request);
  EXPECT_FALSE(result) << "the response direction is still open";

  spawn(send_frames(*far, {frame_of("HTTP/1.1 200 OK\r\n"), frame_of(""), frame_of("\r\nOK"),
                           frame_of("", /*eof=*/true)},
                    sent));
  ASSERT_TRUE(wait_for_splice());
  EXPECT_TRUE(result->clean()) << to_string(result->up) << ", " << to_string(result->down);
  ASSERT_TRUE(run_until(io, [&] { return at_app.done(); }));
  EXPECT_TRUE(at_app.eof);
  EXPECT_EQ(at_app.data, "HTTP/1.1 200 OK\r\n\r\nOK");
  EXPECT_EQ(near->bytes_out(), request.size());
  EXPECT_EQ(near->bytes_in(), at_app.data.size());
  EXPECT_EQ(near->cancels(), 0);
  EXPECT_TRUE(local.is_open()) << "a clean splice leaves the socket to its owner";
}

TEST_F(PumpTest, MegabytesArriveWholeBothWaysInChunksThatGrow) {
  start_splice();
  constexpr std::size_t kSize = 8 * 1024 * 1024 + 12345;
  const std::string up = random_bytes(kSize, 1), down = random_bytes(kSize, 2);
  Fnv1a up_hash, down_hash;
  up_hash.add(up);
  down_hash.add(down);

  at_far.keep = at_app.keep = false;  // only hashed
  spawn(receive_frames(*far, at_far));
  spawn(read_socket(app, at_app));
  spawn(write_socket(app, up, /*half_close=*/true, written));
  // Frames of every size the runner may send, empty ones included.
  std::vector<TunnelFrame> frames;
  const std::size_t sizes[] = {1, 0, 100, 64 * 1024, kChunkSize, 300 * 1024, 7};
  for (std::size_t at = 0, i = 0; at < down.size(); ++i) {
    const std::size_t n = std::min(sizes[i % std::size(sizes)], down.size() - at);
    frames.push_back(frame_of(std::string_view(down).substr(at, n)));
    at += n;
  }
  frames.push_back(frame_of("", /*eof=*/true));
  spawn(send_frames(*far, std::move(frames), sent));

  ASSERT_TRUE(wait_for_splice());
  ASSERT_TRUE(run_until(io, [&] { return at_app.done() && at_far.done(); }));
  EXPECT_TRUE(result->clean());
  EXPECT_TRUE(at_far.eof);
  EXPECT_TRUE(at_app.eof);
  EXPECT_EQ(at_far.bytes, up.size());
  EXPECT_EQ(at_far.hash.value(), up_hash.value());
  EXPECT_EQ(at_app.bytes, down.size());
  EXPECT_EQ(at_app.hash.value(), down_hash.value());
  EXPECT_EQ(near->bytes_out(), up.size());
  EXPECT_EQ(near->bytes_in(), down.size());

  // The ChunkSizer: small first, then growing with the bulk transfer, never over kChunkSize
  // (a unix socket's buffer, ~200 KiB, keeps single reads below it here).
  ASSERT_FALSE(at_far.frame_sizes.empty());
  EXPECT_LE(at_far.frame_sizes.front(), kFirstChunkSize);
  const auto largest = *std::max_element(at_far.frame_sizes.begin(), at_far.frame_sizes.end());
  EXPECT_GE(largest, 4 * kFirstChunkSize);
  EXPECT_LE(largest, kChunkSize);
  EXPECT_EQ(at_far.frame_sizes.back(), 0u) << "the eof frame carries no data";
}

TEST_F(PumpTest, TheStreamsEofShutsTheSocketsSendingSideOnly) {
  start_splice();
  spawn(receive_frames(*far, at_far));
  spawn(read_socket(app, at_app));
  spawn(send_frames(*far, {frame_of("bye"), frame_of("", /*eof=*/true)}, sent));
  ASSERT_TRUE(run_until(io, [&] { return at_app.done(); }));
  EXPECT_TRUE(at_app.eof);
  EXPECT_EQ(at_app.data, "bye");
  EXPECT_FALSE(result);

  // The client still talks, and it all arrives.
  spawn(write_socket(app, "still talking", /*half_close=*/false, written));
  ASSERT_TRUE(run_until(io, [&] { return at_far.data == "still talking"; }));
  EXPECT_FALSE(at_far.done());
  app.shutdown(stream_protocol::socket::shutdown_send);
  ASSERT_TRUE(wait_for_splice());
  EXPECT_TRUE(result->clean());
  EXPECT_TRUE(at_far.eof);
}

TEST_F(PumpTest, ASocketReadErrorCancelsTheStream) {
  start_splice();
  spawn(receive_frames(*far, at_far));
  spawn(send_frames(*far, {frame_of("never read")}, sent));
  ASSERT_TRUE(run_until(io, [&] { return app.available() == 10; }));
  // Closed with unread data: the spliced end's next read fails with a reset, not eof.
  app.close();
  ASSERT_TRUE(wait_for_splice());
  EXPECT_EQ(result->up, PumpEnd::local_error);
  EXPECT_EQ(result->down, PumpEnd::stream_error);
  ASSERT_TRUE(near->cancel_reason());
  EXPECT_TRUE(near->cancel_reason()->starts_with("local read failed: ")) << *near->cancel_reason();
  ASSERT_TRUE(run_until(io, [&] { return at_far.done(); }));
  EXPECT_TRUE(at_far.failed) << "the runner sees the stream fail, not end";
  EXPECT_FALSE(local.is_open());
}

TEST_F(PumpTest, ASocketWriteErrorCancelsTheStreamAndEndsBothDirections) {
  start_splice();
  spawn(receive_frames(*far, at_far));
  app.shutdown(stream_protocol::socket::shutdown_receive);  // writes to it now fail
  spawn(send_frames(*far, {frame_of("nobody listens")}, sent));
  ASSERT_TRUE(wait_for_splice());
  EXPECT_EQ(result->down, PumpEnd::local_error);
  // The client was idle: its read is woken by the close and ends the other direction.
  EXPECT_EQ(result->up, PumpEnd::local_error);
  ASSERT_TRUE(near->cancel_reason());
  EXPECT_TRUE(near->cancel_reason()->starts_with("local write failed: "))
      << *near->cancel_reason();
  ASSERT_TRUE(run_until(io, [&] { return at_far.done(); }));
  EXPECT_TRUE(at_far.failed);
  EXPECT_FALSE(local.is_open());
}

// Each way the stream can fail under an idle or a talking client; the splice must end, close
// the socket (the client sees end-of-file) and report a stream error for the direction it hit.
TEST_F(PumpTest, CancelledFromTheRunnerSideWhileTheClientIsIdle) {
  start_splice();
  spawn(read_socket(app, at_app));
  ASSERT_TRUE(settle(io));
  far->cancel("runner gone");
  ASSERT_TRUE(wait_for_splice());
  EXPECT_EQ(result->down, PumpEnd::stream_error);
  EXPECT_EQ(result->up, PumpEnd::local_error);  // its parked read was woken by the close
  EXPECT_FALSE(local.is_open());
  ASSERT_TRUE(run_until(io, [&] { return at_app.done(); }));
  EXPECT_TRUE(at_app.eof);
}

TEST_F(PumpTest, PeerFinishedWithoutEofEndsTheSplice) {
  start_splice();
  spawn(read_socket(app, at_app));
  spawn(send_frames(*far, {frame_of("partial")}, sent));
  ASSERT_TRUE(run_until(io, [&] { return sent; }));
  far->finish();
  ASSERT_TRUE(wait_for_splice());
  EXPECT_EQ(result->down, PumpEnd::stream_error);
  EXPECT_FALSE(local.is_open());
  ASSERT_TRUE(run_until(io, [&] { return at_app.done(); }));
  EXPECT_EQ(at_app.data, "partial") << "frames sent before the end are still delivered";
}

TEST_F(PumpTest, AFailedStreamReadClosesTheSocket) {
  near->fail_reads_after(2);
  start_splice();
  spawn(read_socket(app, at_app));
  spawn(receive_frames(*far, at_far));
  spawn(send_frames(*far, {frame_of("a"), frame_of("b"), frame_of("c")}, sent));
  ASSERT_TRUE(wait_for_splice());
  EXPECT_EQ(result->down, PumpEnd::stream_error);
  EXPECT_NE(result->up, PumpEnd::eof);
  EXPECT_EQ(near->break_reason(), "injected read failure");
  ASSERT_TRUE(run_until(io, [&] { return at_app.done() && at_far.done(); }));
  EXPECT_EQ(at_app.data, "ab");
  EXPECT_TRUE(at_app.eof);
  EXPECT_TRUE(at_far.failed);
}

TEST_F(PumpTest, AFailedStreamWriteEndsTheSpliceWithoutWaitingForTheClient) {
  near->fail_nth_write(2);
  start_splice();
  spawn(read_socket(app, at_app));
  spawn(receive_frames(*far, at_far));
  spawn(write_socket(app, "one", false, written));
  ASSERT_TRUE(run_until(io, [&] { return at_far.data == "one"; }));
  written = false;
  spawn(write_socket(app, "two", false, written));  // then the client stays silent
  ASSERT_TRUE(wait_for_splice());
  EXPECT_EQ(result->up, PumpEnd::stream_error);
  EXPECT_EQ(result->down, PumpEnd::stream_error);
  EXPECT_FALSE(local.is_open());
  ASSERT_TRUE(run_until(io, [&] { return at_app.done() && at_far.done(); }));
  EXPECT_TRUE(at_app.eof);
  EXPECT_TRUE(at_far.failed);
  EXPECT_EQ(at_far.data, "one");
}

// A runner that does not read stalls the client's writes: what is in flight between the
// socket and the stream is a few frames, however much the client has to send.
TEST_F(PumpTest, ASlowStreamReaderStallsTheClient) {
  start_splice();
  constexpr std::size_t kSize = 32 * 1024 * 1024;
  const std::string up = random_bytes(kSize, 3);
  spawn(write_socket(app, up, /*half_close=*/true, written));
  ASSERT_TRUE(run_until(io, [&] { return near->write_waiting(); }));
  ASSERT_TRUE(settle(io));
  EXPECT_FALSE(written);
  EXPECT_TRUE(near->write_waiting());
  EXPECT_EQ(near->queued(), 2u);  // the capacity
  // Two frames queued and one waiting for room; the next read waits for that write.
  EXPECT_LE(near->bytes_out(), 3 * kChunkSize);

  at_far.keep = false;
  spawn(receive_frames(*far, at_far));
  ASSERT_TRUE(run_until(io, [&] { return at_far.done(); }));
  EXPECT_TRUE(written);
  Fnv1a expected;
  expected.add(up);
  EXPECT_EQ(at_far.bytes, kSize);
  EXPECT_EQ(at_far.hash.value(), expected.value());
}

// A client that does not read stalls the runner's writes the same way.
TEST_F(PumpTest, ASlowClientStallsTheStream) {
  start_splice();
  constexpr std::size_t kSize = 32 * 1024 * 1024;
  const std::string down = random_bytes(kSize, 4);
  std::vector<TunnelFrame> frames;
  for (std::size_t at = 0; at < kSize; at += kChunkSize)
    frames.push_back(frame_of(std::string_view(down).substr(at, kChunkSize)));
  frames.push_back(frame_of("", /*eof=*/true));
  spawn(send_frames(*far, std::move(frames), sent));
  ASSERT_TRUE(run_until(io, [&] { return far->write_waiting(); }));
  ASSERT_TRUE(settle(io));
  EXPECT_FALSE(sent);
  EXPECT_TRUE(far->write_waiting());
  // The socket's buffer, the pump's two frames and the stream's: far from all of it.
  EXPECT_LT(near->bytes_in(), 4u * 1024 * 1024);
  EXPECT_LT(far->frames_written(), 16u);

  at_app.keep = false;
  spawn(read_socket(app, at_app));
  ASSERT_TRUE(run_until(io, [&] { return at_app.done(); }));
  EXPECT_TRUE(sent);
  EXPECT_TRUE(at_app.eof);
  Fnv1a expected;
  expected.add(down);
  EXPECT_EQ(at_app.bytes, kSize);
  EXPECT_EQ(at_app.hash.value(), expected.value());
}

TEST_F(PumpTest, ACallCancelledWhileTheClientNeitherReadsNorWritesEndsTheSplice) {
  // The client neither reads (its socket buffer fills, the pump's write to it blocks) nor
  // writes (the other pump waits on its socket). Cancelling the call must end both directions:
  // nothing may wait forever on a client that will never read or write again.
  start_splice();
  constexpr std::size_t kSize = 16 * 1024 * 1024;
  std::vector<TunnelFrame> frames;
  const std::string down = random_bytes(kSize, 7);
  for (std::size_t at = 0; at < kSize; at += kChunkSize)
    frames.push_back(frame_of(std::string_view(down).substr(at, kChunkSize)));
  spawn(send_frames(*far, std::move(frames), sent));
  ASSERT_TRUE(run_until(io, [&] { return far->write_waiting(); }));
  ASSERT_TRUE(settle(io));
  ASSERT_FALSE(result.has_value());
  far->cancel("the client gave up");
  EXPECT_TRUE(wait_for_splice()) << "the splice still waits on a peer that never reads";
  if (result) {
    EXPECT_FALSE(result->clean());
  }
}

TEST_F(PumpTest, AFilterSendsReadsAsTheyAreOrHoldsThemOrSendsItsOwnFrame) {
  spliced = true;
  asio::co_spawn(io, pump_socket_to_stream(local, *near, LineFilter{&line}),
                 [&](std::exception_ptr e, PumpEnd end) {
                   if (e) std::rethrow_exception(e);
                   pump_end = end;
                   result = SpliceResult{end, PumpEnd::eof};
                 });
  spawn(receive_frames(*far, at_far));

  auto client_writes = [&](std::string bytes) {
    written = false;
    spawn(write_socket(app, std::move(bytes), false, written));
    return run_until(io, [&] { return written; }) && settle(io);
  };
  ASSERT_TRUE(client_writes("one\ntwo\n"));
  EXPECT_EQ(at_far.frame_sizes.size(), 1u);
  EXPECT_EQ(line.as_read, 1);
  ASSERT_TRUE(client_writes("thr"));
  EXPECT_EQ(at_far.frame_sizes.size(), 1u) << "a held read sends nothing";
  ASSERT_TRUE(client_writes("ee\nfo"));
  EXPECT_EQ(at_far.data, "one\ntwo\nthree\n");
  ASSERT_TRUE(client_writes("ur"));
  app.shutdown(stream_protocol::socket::shutdown_send);
  ASSERT_TRUE(run_until(io, [&] { return at_far.done(); }));
  EXPECT_TRUE(at_far.eof);
  EXPECT_EQ(at_far.data, "one\ntwo\nthree\nfour") << "end-of-file flushes what was held";
  EXPECT_EQ(at_far.frame_sizes.back(), 4u) << "the filter's frame carries the eof";
  ASSERT_TRUE(run_until(io, [&] { return pump_end.has_value(); }));
  EXPECT_EQ(*pump_end, PumpEnd::eof);
  EXPECT_EQ(near->bytes_out(), at_far.data.size()) << "what went out is counted, not what was read";
}

TEST_F(PumpTest, AnAwaitableFilterMaySendFramesOfItsOwnAndEndTheDirection) {
  spliced = true;
  auto filter = [&](const TunnelFrame& read) -> asio::awaitable<Outgoing> {
    if (read.data() == "quit") {
      near->cancel("the filter gave up");
      co_return Outgoing::end(PumpEnd::local_error);
    }
    // A frame of its own first, then the read.
    TunnelFrame before = frame_of("<" + std::to_string(read.data().size()) + ">");
    if (!co_await send_frame(local, *near, before)) co_return Outgoing::end(PumpEnd::stream_error);
    co_return Outgoing::as_read();
  };
  asio::co_spawn(io, pump_socket_to_stream(local, *near, filter),
                 [&](std::exception_ptr e, PumpEnd end) {
                   if (e) std::rethrow_exception(e);
                   pump_end = end;
                   result = SpliceResult{end, PumpEnd::eof};
                 });
  spawn(receive_frames(*far, at_far));
  spawn(write_socket(app, "abc", false, written));
  ASSERT_TRUE(run_until(io, [&] { return at_far.data == "<3>abc"; }));
  spawn(write_socket(app, "quit", false, written));
  ASSERT_TRUE(run_until(io, [&] { return pump_end.has_value(); }));
  EXPECT_EQ(*pump_end, PumpEnd::local_error);
  EXPECT_EQ(near->cancel_reason(), "the filter gave up");
}

TEST_F(PumpTest, AWriterGetsEveryFrameWithDataAndItsFailureCancelsTheStream) {
  spliced = true;
  auto writer = [&](std::string_view data) -> asio::awaitable<std::error_code> {
    writer_saw.emplace_back(data);
    if (data == "fail") co_return std::make_error_code(std::errc::io_error);
    std::string framed = "[" + std::string(data) + "]";
    auto [ec, n] = co_await asio::async_write(local, asio::buffer(framed), tok);
    co_return std::error_code(ec);
  };
  static_assert(DownstreamWriter<decltype(writer)>);
  asio::co_spawn(io, pump_stream_to_socket(*near, local, writer),
                 [&](std::exception_ptr e, PumpEnd end) {
                   if (e) std::rethrow_exception(e);
                   pump_end = end;
                   result = SpliceResult{PumpEnd::eof, end};
                 });
  spawn(read_socket(app, at_app));
  spawn(send_frames(*far, {frame_of("a"), frame_of(""), frame_of("bc"), frame_of("fail")}, sent));
  ASSERT_TRUE(run_until(io, [&] { return pump_end.has_value(); }));
  EXPECT_EQ(*pump_end, PumpEnd::local_error);
  EXPECT_EQ(writer_saw, (std::vector<std::string>{"a", "bc", "fail"}));
  ASSERT_TRUE(near->cancel_reason());
  EXPECT_TRUE(near->cancel_reason()->starts_with("local write failed: "));
  ASSERT_TRUE(run_until(io, [&] { return at_app.data == "[a][bc]"; }));
}

}  // namespace
}  // namespace offload::tunnel

namespace offload::tunnel {
namespace {

// The plain splice runs on the transport's threads (DirectSplice): once its directions are
// flowing, frames cross between the stream and the socket without a single handler on the
// socket's executor, which is what removes the per-frame thread hand-off. Here the socket's
// io_context runs only to start the splice; all the bytes then cross while only the
// transport's runs (the coroutine pumps would wait for the socket's to resume them).
TEST(DirectSpliceTest, FlowingFramesNeedNoHandlerOnTheSocketsExecutor) {
  asio::io_context sockets, transport;
  stream_protocol::socket local(sockets), app(sockets);
  asio::local::connect_pair(local, app);
  auto [near, far] = MemoryFrameStream::make_pair(transport.get_executor(), 2);

  // Upstream bytes are waiting before the splice starts: its first recv() finds them.
  constexpr std::size_t kUp = 48 * 1024;
  const std::string up = random_bytes(kUp, 11);
  ASSERT_EQ(asio::write(app, asio::buffer(up)), kUp);

  std::optional<SpliceResult> result;
  asio::co_spawn(sockets, splice(local, *near), [&](std::exception_ptr e, SpliceResult r) {
    if (e) std::rethrow_exception(e);
    result = r;
  });
  ASSERT_GT(sockets.poll(), 0u);  // the coroutine starts the splice and suspends

  Received at_far;
  bool sent = false;
  std::vector<TunnelFrame> frames;
  const std::string down = random_bytes(64 * 1024, 12);
  for (std::size_t at = 0; at < down.size(); at += 4096)
    frames.push_back(frame_of(std::string_view(down).substr(at, 4096)));
  offload::testing::spawn(transport, receive_frames(*far, at_far));
  offload::testing::spawn(transport, send_frames(*far, std::move(frames), sent));
  for (int i = 0; i < 1000 && !(sent && at_far.bytes == kUp); ++i) transport.poll();
  EXPECT_TRUE(sent);
  EXPECT_EQ(at_far.bytes, kUp);
  EXPECT_TRUE(at_far.data == up);
  // The frames from the stream were written to the socket on the transport's thread.
  EXPECT_EQ(app.available(), down.size());
  std::string got(down.size(), '\0');
  asio::read(app, asio::buffer(got));
  EXPECT_TRUE(got == down);

  // Both ends half-close; the splice ends cleanly and hands its result to the coroutine.
  app.shutdown(stream_protocol::socket::shutdown_send);
  offload::testing::spawn(transport, send_frames(*far, {frame_of("", /*eof=*/true)}, sent));
  for (int i = 0; i < 1000 && !result; ++i) {
    transport.poll();
    sockets.poll();
  }
  ASSERT_TRUE(result);
  EXPECT_TRUE(result->clean()) << to_string(result->up) << ", " << to_string(result->down);
  EXPECT_TRUE(at_far.eof);
}

}  // namespace
}  // namespace offload::tunnel
