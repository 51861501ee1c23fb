// ServerTunnelStream after its end: the runner's coroutines may still start reads and writes (the
// other direction of a splice cancelled the stream, or the client went away) or finish again.
// gRPC destroys its side of the call right after OnDone, so from finish() on every operation must
// complete with false without reaching gRPC, and the stream must not outlive its users.
//
// A Runner service with only Tunnel, on a unix socket, reached with gRPC's synchronous client.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <boost/asio/use_future.hpp>
#include <chrono>
#include <filesystem>
#include <future>
#include <optional>
#include <thread>

#include "offload/tunnel/grpc_streams.h"
#include "temp_dir.h"

namespace offload::tunnel {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
namespace asio = boost::asio;

class TunnelOnly final : public v1::Runner::CallbackService {
 public:
  grpc::ServerBidiReactor<TunnelFrame, TunnelFrame>* Tunnel(
      grpc::CallbackServerContext* ctx) override {
    return ServerTunnelStream::create(
        ctx, [this](std::shared_ptr<ServerTunnelStream> stream, const v1::TunnelOpen&) {
          opened.set_value(std::move(stream));
        });
  }
  std::promise<std::shared_ptr<ServerTunnelStream>> opened;
};

template <class F>
bool eventually(F condition, std::chrono::milliseconds limit = 10s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// The outcome of an operation, or nullopt when it did not complete within the bound.
std::optional<bool> outcome(std::future<bool> f) {
  if (f.wait_for(10s) != std::future_status::ready) return std::nullopt;
  return f.get();
}

class ServerStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    address_ = "unix:" + (dir_ / "runner.sock").string();
    grpc::ServerBuilder builder;
    builder.AddListeningPort(address_, grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_TRUE(server_);
    stub_ = v1::Runner::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (client_) {
      client_ctx_.TryCancel();
      client_->Finish();
    }
    // Bounded: a call gRPC still waits on would hang Shutdown without it.
    server_->Shutdown(std::chrono::system_clock::now() + 5s);
  }

  // Opens a tunnel; returns the server's end once its open frame arrived.
  std::shared_ptr<ServerTunnelStream> open() {
    client_ = stub_->Tunnel(&client_ctx_);
    TunnelFrame first;
    first.mutable_open()->set_target(v1::TunnelOpen::TARGET_ENGINE_API);
    EXPECT_TRUE(client_->Write(first));
    auto f = service_.opened.get_future();
    if (f.wait_for(10s) != std::future_status::ready) return nullptr;
    return f.get();
  }

  // gRPC called OnDone (and then destroyed its side of the call): the stream let go of itself,
  // only the test holds it.
  static bool done(const std::shared_ptr<ServerTunnelStream>& s) {
    return eventually([&] { return s.use_count() == 1; });
  }

  test::TempDir dir_{"offload-sstream"};
  std::string address_;
  TunnelOnly service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Runner::Stub> stub_;
  grpc::ClientContext client_ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<TunnelFrame, TunnelFrame>> client_;
};

TEST_F(ServerStreamTest, OperationsAfterTheEndCompleteWithFalse) {
  auto stream = open();
  ASSERT_TRUE(stream);
  // One direction of a splice cancels (e.g. its socket failed), gRPC finishes the call...
  stream->cancel("local read failed: connection reset");
  EXPECT_EQ(client_->Finish().error_code(), grpc::StatusCode::ABORTED);
  client_.reset();
  ASSERT_TRUE(done(stream)) << "gRPC did not end the call";
  // ...and the other direction, resumed later on its strand, goes on.
  TunnelFrame frame;
  frame.set_data("late");
  EXPECT_EQ(outcome(stream->async_write(frame, asio::use_future)), std::optional(false));
  TunnelFrame in;
  EXPECT_EQ(outcome(stream->async_read(in, asio::use_future)), std::optional(false));
  stream->finish(grpc::Status::OK);  // a no-op
  stream->cancel("again");           // a no-op
  std::weak_ptr<ServerTunnelStream> weak = stream;
  stream.reset();
  EXPECT_TRUE(weak.expired()) << "the stream outlived its last user";
}

TEST_F(ServerStreamTest, OperationsStartedBetweenFinishAndOnDoneCompleteWithFalse) {
  auto stream = open();
  ASSERT_TRUE(stream);
  TunnelFrame in;
  auto pending_read = stream->async_read(in, asio::use_future);  // in flight at the end
  stream->finish(grpc::Status::OK);
  // Right after finish(), whether or not gRPC is done with the call yet.
  TunnelFrame frame;
  frame.set_data("late");
  EXPECT_EQ(outcome(stream->async_write(frame, asio::use_future)), std::optional(false));
  EXPECT_EQ(outcome(std::move(pending_read)), std::optional(false));
  TunnelFrame again;
  EXPECT_EQ(outcome(stream->async_read(again, asio::use_future)), std::optional(false));
  EXPECT_TRUE(client_->Finish().ok());
  client_.reset();
  EXPECT_TRUE(done(stream));
}

TEST_F(ServerStreamTest, AClientThatCancelsEndsTheServerSideOperations) {
  auto stream = open();
  ASSERT_TRUE(stream);
  TunnelFrame in;
  auto pending_read = stream->async_read(in, asio::use_future);
  client_ctx_.TryCancel();
  EXPECT_EQ(outcome(std::move(pending_read)), std::optional(false));
  // The runner's coroutine was about to write when the client went away.
  TunnelFrame frame;
  frame.set_data("reply");
  EXPECT_EQ(outcome(stream->async_write(frame, asio::use_future)), std::optional(false));
  stream->finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the client went away"));
  ASSERT_TRUE(done(stream));
  EXPECT_EQ(outcome(stream->async_write(frame, asio::use_future)), std::optional(false));
  client_->Finish();
  client_.reset();
}

}  // namespace
}  // namespace offload::tunnel
