#include "test_target.h"

#include "offload/common/token.h"

namespace offload::testing {

TestTarget::TestTarget(std::filesystem::path socket_path)
    : path_(std::move(socket_path)), acceptor_(io_) {
  std::filesystem::remove(path_);
  acceptor_.open();
  acceptor_.bind(stream_protocol::endpoint(path_.string()));
  acceptor_.listen();
  behaviour_ = echo_behaviour;
  asio::co_spawn(io_, accept_loop(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

TestTarget::~TestTarget() {
  io_.stop();
  thread_.join();
  std::filesystem::remove(path_);
}

void TestTarget::set_behaviour(ConnectionBehaviour b) {
  std::lock_guard lock(mu_);
  behaviour_ = std::move(b);
}

asio::awaitable<void> TestTarget::accept_loop() {
  for (;;) {
    auto [ec, s] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    ++accepted_;
    ConnectionBehaviour b;
    {
      std::lock_guard lock(mu_);
      b = behaviour_;
    }
    asio::co_spawn(io_, b(std::move(s)), asio::detached);
  }
}

asio::awaitable<void> echo_behaviour(stream_protocol::socket s) {
  std::vector<char> buf(256 * 1024);
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    if (n > 0) {
      auto [wec, wn] = co_await asio::async_write(s, asio::buffer(buf.data(), n),
                                                  asio::as_tuple(asio::use_awaitable));
      if (wec) co_return;
    }
    if (ec == asio::error::eof) {
      s.shutdown(stream_protocol::socket::shutdown_send);
      co_return;
    }
    if (ec) co_return;
  }
}

InProcessRunner::InProcessRunner(const std::filesystem::path& dir,
                                 std::function<void(runner::RunnerOptions&)> configure,
                                 std::optional<runner::DataChannelSettings> data_channel)
    : identity(tls::load_or_create_identity(dir / "tls")),
      token(random_hex(32)),
      target_(dir / "engine.sock"),
      backend_(target_.path()) {
  runner::RunnerOptions options;
  options.account_tokens["test"] = token;
  if (configure) configure(options);
  service_ = std::make_unique<runner::RunnerService>(io_, backend_, options);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", tls::server_credentials(identity), &port_);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port_ <= 0) throw std::runtime_error("cannot start the in-process runner");
  if (data_channel) {
    data_channel_ = std::make_unique<runner::DataChannelServer>(
        io_, tls::asio_server_context(identity), *service_,
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), *data_channel);
    service_->set_data_channel_port(data_channel_->port());
  }
  work_.emplace(io_.get_executor());
  for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
}

InProcessRunner::~InProcessRunner() {
  if (data_channel_) data_channel_->stop();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  work_.reset();
  io_.stop();
  for (auto& t : threads_) t.join();
  data_channel_.reset();
  service_.reset();
}

}  // namespace offload::testing
