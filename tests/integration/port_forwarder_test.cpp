// Published ports end to end in one process: a client on this machine ⇄ PortForwarder's local
// listener ⇄ RunnerClient ⇄ loopback TLS ⇄ RunnerService ⇄ the "container": real TCP and UDP
// servers on 127.0.0.1, the session engine's published address in TestEngine.
//
// The forwarder and the "container" share this machine, so the forwarded ports are published
// with HostIp 127.0.0.2 (an explicit loopback stays as it is): the forwarder listens on
// 127.0.0.2:H while the container's port is 127.0.0.1:H.
#include <gtest/gtest.h>
#include <poll.h>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include <condition_variable>
#include <random>
#include <set>

#include "offload/common/token.h"
#include "offload/daemon/port_forwarder.h"
#include "offload/daemon/runner_client.h"
#include "test_target.h"

namespace offload::testing {
namespace {

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using asio::ip::tcp;
using asio::ip::udp;
namespace fs = std::filesystem;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

const auto kContainerAddress = asio::ip::make_address("127.0.0.1");
const auto kLocalAddress = asio::ip::make_address("127.0.0.2");
const std::string kHostIp = "127.0.0.2";

class CountingSink final : public daemon::ActivitySink {
 public:
  void connection_opened() override {
    std::lock_guard lock(mu_);
    ++opened_;
  }
  void connection_closed() override {
    std::lock_guard lock(mu_);
    ++closed_;
    cv_.notify_all();
  }
  bool wait_all_closed(int opened_at_least) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 20s,
                        [&] { return opened_ >= opened_at_least && closed_ == opened_; });
  }
  int opened() {
    std::lock_guard lock(mu_);
    return opened_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int opened_ = 0;
  int closed_ = 0;
};

// The container's services on 127.0.0.1, on their own io thread.
class Container {
 public:
  Container()
      : echo_(io_, tcp::endpoint(kContainerAddress, 0)),
        count_(io_, tcp::endpoint(kContainerAddress, 0)),
        udp_(io_, udp::endpoint(kContainerAddress, 0)) {
    asio::co_spawn(io_, accept(echo_, &Container::echo), asio::detached);
    asio::co_spawn(io_, accept(count_, &Container::count_then_reply), asio::detached);
    asio::co_spawn(io_, udp_echo(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Container() {
    io_.stop();
    thread_.join();
  }
  std::uint32_t echo_port() const { return echo_.local_endpoint().port(); }
  std::uint32_t count_port() const { return count_.local_endpoint().port(); }
  std::uint32_t udp_port() const { return udp_.local_endpoint().port(); }
  std::set<udp::endpoint> udp_peers() {
    std::lock_guard lock(mu_);
    return udp_peers_;
  }

 private:
  using Behaviour = asio::awaitable<void> (*)(tcp::socket);
  static asio::awaitable<void> accept(tcp::acceptor& acceptor, Behaviour behaviour) {
    for (;;) {
      auto [ec, s] = co_await acceptor.async_accept(tok);
      if (ec) co_return;
      asio::co_spawn(acceptor.get_executor(), behaviour(std::move(s)), asio::detached);
    }
  }
  // Echoes everything; half-closes after echoing all once the client did.
  static asio::awaitable<void> echo(tcp::socket s) {
    std::vector<char> buf(256 * 1024);
    for (;;) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), tok);
      if (n > 0) {
        auto [wec, wn] = co_await asio::async_write(s, asio::buffer(buf.data(), n), tok);
        if (wec) co_return;
      }
      if (ec == asio::error::eof) {
        s.shutdown(tcp::socket::shutdown_send);
        co_return;
      }
      if (ec) co_return;
    }
  }
  // Answers only after the client's end-of-file (like `cat | wc -c`).
  static asio::awaitable<void> count_then_reply(tcp::socket s) {
    std::size_t total = 0;
    char buf[16384];
    for (;;) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), tok);
      total += n;
      if (ec == asio::error::eof) break;
      if (ec) co_return;
    }
    std::string reply = "received " + std::to_string(total) + " bytes";
    co_await asio::async_write(s, asio::buffer(reply), tok);
    s.shutdown(tcp::socket::shutdown_send);
  }
  asio::awaitable<void> udp_echo() {
    std::vector<char> buf(65536);
    for (;;) {
      udp::endpoint from;
      auto [ec, n] = co_await udp_.async_receive_from(asio::buffer(buf), from, tok);
      if (ec) co_return;
      {
        std::lock_guard lock(mu_);
        udp_peers_.insert(from);
      }
      co_await udp_.async_send_to(asio::buffer(buf.data(), n), from, tok);
    }
  }

  asio::io_context io_;
  tcp::acceptor echo_, count_;
  udp::socket udp_;
  std::mutex mu_;
  std::set<udp::endpoint> udp_peers_;
  std::thread thread_;
};

v1::PublishedPort published(std::uint32_t port, const std::string& protocol,
                            const std::string& host_ip = kHostIp) {
  v1::PublishedPort p;
  p.set_container_id("0123456789ab");
  p.set_container_name("web");
  p.set_container_port(80);
  p.set_protocol(protocol);
  p.set_host_ip(host_ip);
  p.set_host_port(port);
  return p;
}

bool readable(int fd, std::chrono::milliseconds limit = 20s) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(limit.count())) == 1;
}

std::string read_to_end(tcp::socket& s) {
  std::string out;
  char buf[65536];
  for (;;) {
    if (!readable(s.native_handle())) return out + "<timeout>";
    boost::system::error_code ec;
    auto n = s.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) return out;
  }
}

class PortForwarderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("offload-ports-" + random_hex(4));
    fs::create_directories(dir_);
    runner_ = std::make_unique<InProcessRunner>(dir_);
    client_ = std::make_shared<daemon::RunnerClient>(
        daemon::RunnerEndpoint{runner_->address(), runner_->identity.fingerprint, runner_->token});
    client_->hello(5s);
    auto created = client_->create_session("test", 10s);
    client_->attach(created.session_id(), created.session_token());
    engine_ = runner_->backend().last;
    ASSERT_NE(engine_, nullptr);
    work_.emplace(io_.get_executor());
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
    forwarder_ = std::make_unique<daemon::PortForwarder>(io_, daemon::PortPolicy{}, sink_);
  }

  void TearDown() override {
    if (forwarder_) {
      forwarder_->clear();
      EXPECT_TRUE(sink_.wait_all_closed(0)) << "a forwarded connection never ended";
    }
    forwarder_.reset();
    work_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
    client_.reset();
    runner_.reset();
    fs::remove_all(dir_);
  }

  // The engine publishes `ports` (so the runner allows them) and the forwarder follows.
  // TCP connections go through the runner's data channel, as in offloadd.
  void publish(const std::vector<v1::PublishedPort>& ports) {
    engine_->set_ports(ports);
    auto client = client_;
    forwarder_->apply(ports, [client](std::uint32_t port, const std::string& protocol) {
      return client->open_port_tunnel(port, protocol);
    }, data_channel());
  }

  // `times` connections to the echo container, each echoing "hello" and closing.
  void echo_hello(int times) {
    for (int i = 0; i < times; ++i) {
      auto s = connect(container_.echo_port());
      asio::write(s, asio::buffer(std::string("hello")));
      s.shutdown(tcp::socket::shutdown_send);
      EXPECT_EQ(read_to_end(s), "hello");
    }
  }

  daemon::PortForwarder::DataChannel data_channel() {
    auto client = client_;
    return {[client](unsigned max_version) { return client->data_channel(max_version); },
            [this](const std::string& why) {
              std::lock_guard lock(failures_mu_);
              data_channel_failures_.push_back(why);
            }};
  }

  std::vector<std::string> data_channel_failures() {
    std::lock_guard lock(failures_mu_);
    return data_channel_failures_;
  }

  tcp::socket connect(std::uint32_t port) {
    tcp::socket s(test_io_);
    s.connect(tcp::endpoint(kLocalAddress, static_cast<unsigned short>(port)));
    return s;
  }

  fs::path dir_;
  std::unique_ptr<InProcessRunner> runner_;
  std::shared_ptr<daemon::RunnerClient> client_;
  TestEngine* engine_ = nullptr;
  Container container_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  CountingSink sink_;
  std::unique_ptr<daemon::PortForwarder> forwarder_;
  asio::io_context test_io_;  // the test's own blocking sockets
  std::mutex failures_mu_;
  std::vector<std::string> data_channel_failures_;
};

TEST_F(PortForwarderTest, TcpRoundTrip) {
  publish({published(container_.echo_port(), "tcp")});
  auto ports = forwarder_->ports();
  ASSERT_EQ(ports.size(), 1u);
  EXPECT_TRUE(ports[0].listening()) << ports[0].error();
  EXPECT_EQ(ports[0].local_address(), "127.0.0.2:" + std::to_string(container_.echo_port()));

  auto s = connect(container_.echo_port());
  asio::write(s, asio::buffer(std::string("GET / HTTP/1.0\r\n\r\n")));
  s.shutdown(tcp::socket::shutdown_send);
  EXPECT_EQ(read_to_end(s), "GET / HTTP/1.0\r\n\r\n");
  EXPECT_TRUE(sink_.wait_all_closed(1));
}

TEST_F(PortForwarderTest, HalfCloseStillGetsTheReply) {
  publish({published(container_.count_port(), "tcp")});
  auto s = connect(container_.count_port());
  std::string payload(300000, 'x');
  asio::write(s, asio::buffer(payload));
  // Only after our end-of-file does the container answer; the other direction must stay open.
  s.shutdown(tcp::socket::shutdown_send);
  EXPECT_EQ(read_to_end(s), "received 300000 bytes");
}

TEST_F(PortForwarderTest, FiftyConcurrentConnectionsOfOneMebibyteEach) {
  publish({published(container_.echo_port(), "tcp")});
  constexpr int kConnections = 50;
  constexpr std::size_t kSize = 1 << 20;
  asio::io_context clients;
  std::atomic<int> verified{0};
  auto one = [&](int index) -> asio::awaitable<void> {
    std::mt19937 rng(index);
    std::string data(kSize, '\0');
    for (auto& c : data) c = static_cast<char>(rng());
    tcp::socket s(clients);
    auto [cec] = co_await s.async_connect(
        tcp::endpoint(kLocalAddress, static_cast<unsigned short>(container_.echo_port())), tok);
    if (cec) co_return;
    auto send = [&]() -> asio::awaitable<void> {
      co_await asio::async_write(s, asio::buffer(data), tok);
      s.shutdown(tcp::socket::shutdown_send);
    };
    std::string back;
    auto receive = [&]() -> asio::awaitable<void> {
      std::vector<char> buf(65536);
      for (;;) {
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), tok);
        back.append(buf.data(), n);
        if (ec) co_return;
      }
    };
    co_await (send() && receive());
    if (back == data) ++verified;
  };
  for (int i = 0; i < kConnections; ++i) asio::co_spawn(clients, one(i), asio::detached);
  clients.run_for(120s);
  EXPECT_EQ(verified.load(), kConnections);
  EXPECT_TRUE(sink_.wait_all_closed(kConnections));
}

TEST_F(PortForwarderTest, UdpEchoRoundTrip) {
  publish({published(container_.udp_port(), "udp")});
  udp::socket s(test_io_, udp::endpoint(kLocalAddress, 0));
  udp::endpoint target(kLocalAddress, static_cast<unsigned short>(container_.udp_port()));
  char buf[65536];
  for (const std::string& msg : std::vector<std::string>{"ping", "a somewhat longer datagram",
                                                          std::string(60000, 'u')}) {
    s.send_to(asio::buffer(msg), target);
    ASSERT_TRUE(readable(s.native_handle())) << "no answer to a " << msg.size() << " B datagram";
    udp::endpoint from;
    auto n = s.receive_from(asio::buffer(buf), from);
    EXPECT_EQ(std::string(buf, n), msg);
    EXPECT_EQ(from, target);  // answered from the address the client asked
  }
  // One flow for all three datagrams.
  EXPECT_EQ(container_.udp_peers().size(), 1u);
  EXPECT_EQ(sink_.opened(), 1);
}

TEST_F(PortForwarderTest, TwoUdpClientsGetTheirOwnFlows) {
  publish({published(container_.udp_port(), "udp")});
  udp::socket a(test_io_, udp::endpoint(kLocalAddress, 0));
  udp::socket b(test_io_, udp::endpoint(kLocalAddress, 0));
  udp::endpoint target(kLocalAddress, static_cast<unsigned short>(container_.udp_port()));
  auto ask = [&](udp::socket& s, const std::string& msg) {
    s.send_to(asio::buffer(msg), target);
    if (!readable(s.native_handle())) return std::string("<timeout>");
    char buf[1024];
    udp::endpoint from;
    auto n = s.receive_from(asio::buffer(buf), from);
    return std::string(buf, n);
  };
  EXPECT_EQ(ask(a, "from a"), "from a");
  EXPECT_EQ(ask(b, "from b"), "from b");
  EXPECT_EQ(ask(a, "a again"), "a again");
  EXPECT_EQ(ask(b, "b again"), "b again");
  // Each client is its own flow: the container sees two peers (one runner socket per flow).
  EXPECT_EQ(container_.udp_peers().size(), 2u);
  EXPECT_EQ(sink_.opened(), 2);
  auto ports = forwarder_->ports();
  ASSERT_EQ(ports.size(), 1u);
  EXPECT_EQ(ports[0].open_connections(), 2);
}

TEST_F(PortForwarderTest, RemovedPortClosesItsListener) {
  const auto port = container_.echo_port();
  publish({published(port, "tcp")});
  {
    auto s = connect(port);
    asio::write(s, asio::buffer(std::string("hi")));
    s.shutdown(tcp::socket::shutdown_send);
    EXPECT_EQ(read_to_end(s), "hi");
  }
  publish({});
  EXPECT_TRUE(forwarder_->ports().empty());
  // The close runs on the listener's strand: wait (bounded) until it has.
  boost::system::error_code ec;
  for (int i = 0; i < 2000; ++i) {
    tcp::socket s(test_io_);
    s.connect(tcp::endpoint(kLocalAddress, static_cast<unsigned short>(port)), ec);
    // A connection caught in the backlog while the listener closes is reset: try again.
    if (ec == asio::error::connection_refused) break;
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(ec, asio::error::connection_refused);
}

TEST_F(PortForwarderTest, PortTheRunnerDoesNotPublishIsRefusedThere) {
  // The forwarder listens, but the engine does not publish the port: the runner refuses the
  // tunnel and the local connection ends without data.
  engine_->set_ports({});
  auto client = client_;
  forwarder_->apply({published(container_.echo_port(), "tcp")},
                    [client](std::uint32_t port, const std::string& protocol) {
                      return client->open_port_tunnel(port, protocol);
                    });
  auto s = connect(container_.echo_port());
  boost::system::error_code ignored;
  asio::write(s, asio::buffer(std::string("hello")), ignored);
  s.shutdown(tcp::socket::shutdown_send, ignored);
  EXPECT_EQ(read_to_end(s), "");
}

// The same through the data channel: the runner's refusal ends the connection; it is not a
// failure of the channel, so nothing falls back to gRPC (which would be refused the same way).
TEST_F(PortForwarderTest, PortTheRunnerDoesNotPublishIsRefusedOnTheDataChannelToo) {
  engine_->set_ports({});
  auto client = client_;
  const auto opened_before = runner_->data_channel()->channels_refused();
  forwarder_->apply({published(container_.echo_port(), "tcp")},
                    [client](std::uint32_t port, const std::string& protocol) {
                      return client->open_port_tunnel(port, protocol);
                    },
                    data_channel());
  auto s = connect(container_.echo_port());
  boost::system::error_code ignored;
  asio::write(s, asio::buffer(std::string("hello")), ignored);
  s.shutdown(tcp::socket::shutdown_send, ignored);
  EXPECT_EQ(read_to_end(s), "");
  EXPECT_EQ(runner_->data_channel()->channels_refused(), opened_before + 1);
  EXPECT_TRUE(data_channel_failures().empty());
}

TEST_F(PortForwarderTest, TcpConnectionsTravelTheDataChannel) {
  publish({published(container_.echo_port(), "tcp")});
  echo_hello(3);
  EXPECT_EQ(runner_->data_channel()->channels_opened(), 3u);
  EXPECT_TRUE(data_channel_failures().empty());
  EXPECT_EQ(client_->data_channel()->version(), 2u) << "the runner speaks ODC2: multiplexed";
  EXPECT_EQ(runner_->data_channel()->warm_channels_used(), 0u) << "ODC1's warm channels in use";
}

// ports.multiplexDataChannel false: a TLS connection per forwarded connection (ODC1), with its
// warm channels, although the runner speaks ODC2.
TEST_F(PortForwarderTest, WithMultiplexingSwitchedOffConnectionsUseOneChannelEach) {
  forwarder_->clear();
  forwarder_ = std::make_unique<daemon::PortForwarder>(
      io_, daemon::PortPolicy{.multiplex_data_channel = false}, sink_);
  publish({published(container_.echo_port(), "tcp")});
  echo_hello(3);
  EXPECT_EQ(runner_->data_channel()->channels_opened(), 3u);
  EXPECT_EQ(client_->data_channel(1)->version(), 1u);
  EXPECT_EQ(client_->data_channel(1)->multiplexed_connections(), 0u);
}

// ports.dataChannel false: the forwarder ignores the data channel it is given.
TEST_F(PortForwarderTest, WithTheDataChannelSwitchedOffConnectionsUseGrpc) {
  forwarder_->clear();
  forwarder_ = std::make_unique<daemon::PortForwarder>(
      io_, daemon::PortPolicy{.bind_all_interfaces = false, .data_channel = false}, sink_);
  publish({published(container_.echo_port(), "tcp")});
  auto s = connect(container_.echo_port());
  asio::write(s, asio::buffer(std::string("hello")));
  s.shutdown(tcp::socket::shutdown_send);
  EXPECT_EQ(read_to_end(s), "hello");
  EXPECT_EQ(runner_->data_channel()->channels_opened(), 0u);
}

// A data port that cannot be reached (a firewall, a runner that restarted on another port):
// connections still work, through gRPC, and the failure is reported once, not per connection.
TEST_F(PortForwarderTest, AnUnreachableDataChannelFallsBackToGrpc) {
  unsigned short dead_port;
  {
    tcp::acceptor probe(test_io_, {kLocalAddress, 0});
    dead_port = probe.local_endpoint().port();
  }  // closed: connecting there is refused
  auto dead = std::make_shared<tunnel::data_channel::Dialer>(
      "127.0.0.1", dead_port, tls::asio_pinned_client_context(runner_->identity.fingerprint),
      client_->session_id(), client_->session_token(), 5s, 2);
  std::atomic<int> asked{0};
  engine_->set_ports({published(container_.echo_port(), "tcp")});
  auto client = client_;
  forwarder_->apply({published(container_.echo_port(), "tcp")},
                    [client](std::uint32_t port, const std::string& protocol) {
                      return client->open_port_tunnel(port, protocol);
                    },
                    {[dead, &asked](unsigned) {
                       ++asked;
                       return dead;
                     },
                     [this](const std::string& why) {
                       std::lock_guard lock(failures_mu_);
                       data_channel_failures_.push_back(why);
                     }});
  auto s = connect(container_.echo_port());
  asio::write(s, asio::buffer(std::string("hello")));
  s.shutdown(tcp::socket::shutdown_send);
  EXPECT_EQ(read_to_end(s), "hello");
  EXPECT_EQ(asked.load(), 1);
  ASSERT_EQ(data_channel_failures().size(), 1u);
  EXPECT_NE(data_channel_failures()[0].find("refused"), std::string::npos)
      << data_channel_failures()[0];
  EXPECT_EQ(runner_->data_channel()->channels_opened(), 0u);
}

}  // namespace
}  // namespace offload::testing
