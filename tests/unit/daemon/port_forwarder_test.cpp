// PortForwarder without a runner process: the bind-address policy, listener diffing with real
// loopback binds, bind failures, and UDP flow expiry with an injected clock. Tunnels go to an
// in-process gRPC server whose Tunnel handler echoes every frame, the way a container's echo
// service behind the runner would.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>

#include <boost/asio.hpp>

#include <atomic>
#include <condition_variable>
#include <thread>

#include "offload/daemon/port_forwarder.h"
#include "offload/v1/runner.grpc.pb.h"

using namespace offload;
using namespace offload::daemon;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using ::testing::ElementsAre;

namespace {

// ---------------------------------------------------------------------------------------------
// Helpers

class CountingSink final : public ActivitySink {
 public:
  void connection_opened() override {
    std::lock_guard lock(mu_);
    ++opened_;
    cv_.notify_all();
  }
  void connection_closed() override {
    std::lock_guard lock(mu_);
    ++closed_;
    cv_.notify_all();
  }
  int opened() {
    std::lock_guard lock(mu_);
    return opened_;
  }
  int closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }
  // Waits (bounded) until `closed` connections have ended.
  bool wait_closed(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return closed_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int opened_ = 0;
  int closed_ = 0;
};

// The runner's end of every tunnel: echoes each frame; on eof answers eof and ends the call OK.
class EchoRunner final : public v1::Runner::CallbackService {
 public:
  EchoRunner() {
    grpc::ServerBuilder builder;
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
    stub_ = v1::Runner::NewStub(channel_);
    work_.emplace(io_.get_executor());
    thread_ = std::thread([this] { io_.run(); });
  }
  ~EchoRunner() override {
    server_->Shutdown(std::chrono::system_clock::now() + 2s);
    work_.reset();
    io_.stop();
    thread_.join();
  }

  PortForwarder::TunnelOpener opener() {
    return [this](std::uint32_t port, const std::string& protocol) {
      v1::TunnelOpen open;
      open.set_target(v1::TunnelOpen::TARGET_PUBLISHED_PORT);
      open.set_host_port(port);
      open.set_protocol(protocol);
      return tunnel::ClientTunnelStream::open(*stub_, open, [](grpc::ClientContext&) {});
    };
  }

  grpc::ServerBidiReactor<v1::TunnelFrame, v1::TunnelFrame>* Tunnel(
      grpc::CallbackServerContext* ctx) override {
    return tunnel::ServerTunnelStream::create(
        ctx, [this](std::shared_ptr<tunnel::ServerTunnelStream> s, const v1::TunnelOpen& open) {
          {
            std::lock_guard lock(mu_);
            opens_.push_back(open);
          }
          asio::co_spawn(asio::make_strand(io_), echo(std::move(s), open.protocol()),
                         asio::detached);
        });
  }

  int opens(const std::string& protocol) {
    std::lock_guard lock(mu_);
    return static_cast<int>(std::count_if(opens_.begin(), opens_.end(), [&](auto& o) {
      return o.protocol() == protocol;
    }));
  }
  std::vector<v1::TunnelOpen> all_opens() {
    std::lock_guard lock(mu_);
    return opens_;
  }
  bool wait_eofs(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return eofs_ >= n; });
  }
  int eofs() {
    std::lock_guard lock(mu_);
    return eofs_;
  }

 private:
  asio::awaitable<void> echo(std::shared_ptr<tunnel::ServerTunnelStream> s, std::string) {
    constexpr auto token = asio::as_tuple(asio::use_awaitable);
    v1::TunnelFrame frame;
    for (;;) {
      frame.Clear();
      auto [ok] = co_await s->async_read(frame, token);
      if (!ok) {
        s->finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
        co_return;
      }
      if (frame.eof()) {
        {
          std::lock_guard lock(mu_);
          ++eofs_;
          cv_.notify_all();
        }
        co_await s->async_write(frame, token);
        s->finish(grpc::Status::OK);
        co_return;
      }
      auto [wok] = co_await s->async_write(frame, token);
      if (!wok) co_return;
    }
  }

  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Runner::Stub> stub_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<v1::TunnelOpen> opens_;
  int eofs_ = 0;
};

// A port nothing listens on right now (the kernel's pick for port 0).
std::uint32_t free_port() {
  asio::io_context io;
  tcp::acceptor probe(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  udp::socket probe_udp(io);
  auto port = probe.local_endpoint().port();
  // The same number must be free for UDP too, since tests use both.
  boost::system::error_code ec;
  probe_udp.open(udp::v4());
  probe_udp.bind(udp::endpoint(asio::ip::address_v4::loopback(), port), ec);
  if (ec) return free_port();
  return port;
}

bool ipv6_loopback_available() {
  asio::io_context io;
  tcp::acceptor probe(io);
  boost::system::error_code ec;
  probe.open(tcp::v6(), ec);
  if (!ec) probe.bind(tcp::endpoint(asio::ip::address_v6::loopback(), 0), ec);
  return !ec;
}

v1::PublishedPort published(std::uint32_t host_port, const std::string& protocol = "tcp",
                            const std::string& host_ip = "0.0.0.0",
                            const std::string& name = "web", std::uint32_t container_port = 80) {
  v1::PublishedPort p;
  p.set_container_id("c0ffee" + name);
  p.set_container_name(name);
  p.set_container_port(container_port);
  p.set_protocol(protocol);
  p.set_host_ip(host_ip);
  p.set_host_port(host_port);
  return p;
}

bool readable(int fd, std::chrono::milliseconds limit = 10s) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(limit.count())) == 1;
}

// A synchronous connect: the kernel completes it against a listening socket's backlog, so no
// io thread needs to run.
boost::system::error_code try_connect(const asio::ip::address& address, std::uint32_t port) {
  asio::io_context io;
  tcp::socket s(io);
  boost::system::error_code ec;
  s.connect(tcp::endpoint(address, static_cast<unsigned short>(port)), ec);
  return ec;
}
boost::system::error_code try_connect(std::uint32_t port) {
  return try_connect(asio::ip::address_v4::loopback(), port);
}

// Sends `payload`, half-closes, reads until end-of-file.
std::string tcp_round_trip(std::uint32_t port, const std::string& payload) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::address_v4::loopback(), static_cast<unsigned short>(port)));
  // A peer that already closed makes these fail; the read below then sees the end.
  boost::system::error_code ignored;
  asio::write(s, asio::buffer(payload), ignored);
  s.shutdown(tcp::socket::shutdown_send, ignored);
  std::string out;
  char buf[4096];
  for (;;) {
    if (!readable(s.native_handle())) return out + "<timeout>";
    boost::system::error_code ec;
    auto n = s.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) return out;
  }
}

class UdpClient {
 public:
  explicit UdpClient(std::uint32_t port)
      : socket_(io_, udp::endpoint(asio::ip::address_v4::loopback(), 0)),
        target_(asio::ip::address_v4::loopback(), static_cast<unsigned short>(port)) {}
  // One datagram out, one back (or "<timeout>").
  std::string ask(const std::string& payload) {
    socket_.send_to(asio::buffer(payload), target_);
    if (!readable(socket_.native_handle())) return "<timeout>";
    char buf[65536];
    udp::endpoint from;
    auto n = socket_.receive_from(asio::buffer(buf), from);
    return std::string(buf, n);
  }

 private:
  asio::io_context io_;
  udp::socket socket_;
  udp::endpoint target_;
};

// The forwarder's io on two threads, as in offloadd.
class IoThreads {
 public:
  IoThreads() : work_(io.get_executor()) {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io.run(); });
  }
  ~IoThreads() {
    work_.reset();
    io.stop();
    for (auto& t : threads_) t.join();
  }
  asio::io_context io;

 private:
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
};

// The flow expiry's time, moved by the test.
struct ManualTime {
  std::atomic<std::chrono::steady_clock::duration::rep> ticks{0};
  void advance(std::chrono::steady_clock::duration d) { ticks += d.count(); }
  UdpFlowSettings settings(std::chrono::seconds idle = 60s) {
    UdpFlowSettings s;
    s.idle_timeout = idle;
    s.clock.now = [this] {
      return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(ticks));
    };
    s.clock.max_real_wait = 1ms;
    return s;
  }
};

const v1::ForwardedPort* find_port(const std::vector<v1::ForwardedPort>& ports,
                                   const std::string& local_address, const std::string& protocol) {
  for (const auto& p : ports)
    if (p.local_address() == local_address && p.protocol() == protocol) return &p;
  return nullptr;
}

std::string loopback(std::uint32_t port) { return "127.0.0.1:" + std::to_string(port); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Bind-address policy

TEST(LocalBindAddress, PolicyTable) {
  struct Row {
    const char* host_ip;
    bool all;
    const char* expected;
  };
  const Row rows[] = {
      {"0.0.0.0", false, "127.0.0.1"},    {"", false, "127.0.0.1"},
      {"::", false, "::1"},               {"127.0.0.1", false, "127.0.0.1"},
      {"127.0.0.5", false, "127.0.0.5"},  {"::1", false, "::1"},
      {"192.168.1.20", false, "127.0.0.1"}, {"10.0.0.7", true, "127.0.0.1"},
      {"2001:db8::5", false, "::1"},      {"fe80::1", true, "::1"},
      {"0.0.0.0", true, "0.0.0.0"},       {"", true, "0.0.0.0"},
      {"::", true, "::"},                 {"127.0.0.1", true, "127.0.0.1"},
      {"::ffff:0.0.0.0", false, "127.0.0.1"}, {"::ffff:127.0.0.1", true, "127.0.0.1"},
      {"not an address", false, "127.0.0.1"}, {"not an address", true, "0.0.0.0"},
  };
  for (const auto& r : rows) {
    EXPECT_EQ(local_bind_address(r.host_ip, PortPolicy{r.all}).to_string(), r.expected)
        << "HostIp \"" << r.host_ip << "\", bind_all_interfaces " << r.all;
  }
}

TEST(LocalBindAddress, Formats) {
  EXPECT_EQ(format_local_address(asio::ip::make_address("127.0.0.1"), 8081), "127.0.0.1:8081");
  EXPECT_EQ(format_local_address(asio::ip::make_address("::1"), 8081), "[::1]:8081");
  EXPECT_EQ(format_local_address(asio::ip::make_address("::"), 53), "[::]:53");
}

// ---------------------------------------------------------------------------------------------
// Snapshot → listener set

TEST(PlanListeners, DualStackEntriesGetOneListenerPerFamily) {
  auto plan = plan_listeners({published(8081, "tcp", "0.0.0.0"), published(8081, "tcp", "::")},
                             PortPolicy{});
  ASSERT_EQ(plan.listeners.size(), 2u);
  auto it = plan.listeners.begin();
  EXPECT_EQ(it->first.address.to_string(), "127.0.0.1");
  EXPECT_EQ((++it)->first.address.to_string(), "::1");
  EXPECT_TRUE(plan.unforwardable.empty());
}

TEST(PlanListeners, EntriesOnTheSameLocalAddressCollapse) {
  // Two interfaces of the remote host: both are loopback here. The first names the listener.
  auto plan = plan_listeners({published(8081, "tcp", "192.168.1.5", "a"),
                              published(8081, "tcp", "10.1.1.1", "b"),
                              published(8081, "tcp", "127.0.0.1", "c")},
                             PortPolicy{});
  ASSERT_EQ(plan.listeners.size(), 1u);
  EXPECT_EQ(plan.listeners.begin()->first.address.to_string(), "127.0.0.1");
  EXPECT_EQ(plan.listeners.begin()->second.container_name(), "a");
}

TEST(PlanListeners, TcpAndUdpOnOnePortAreSeparate) {
  auto plan = plan_listeners({published(53, "tcp"), published(53, "udp")}, PortPolicy{});
  ASSERT_EQ(plan.listeners.size(), 2u);
  EXPECT_EQ(plan.listeners.begin()->first.protocol, "tcp");
  EXPECT_EQ(std::next(plan.listeners.begin())->first.protocol, "udp");
}

TEST(PlanListeners, BindAllInterfaces) {
  auto plan = plan_listeners({published(8081, "tcp", "0.0.0.0"), published(8081, "tcp", "::"),
                              published(8082, "tcp", "127.0.0.1")},
                             PortPolicy{true});
  std::vector<std::string> addresses;
  for (const auto& [key, entry] : plan.listeners)
    addresses.push_back(format_local_address(key.address, key.port));
  EXPECT_THAT(addresses, ElementsAre("0.0.0.0:8081", "[::]:8081", "127.0.0.1:8082"));
}

TEST(PlanListeners, UnforwardableEntriesAreReportedNotDropped) {
  auto plan = plan_listeners(
      {published(9000, "sctp"), published(0, "tcp"), published(8080, "tcp")}, PortPolicy{});
  EXPECT_EQ(plan.listeners.size(), 1u);
  ASSERT_EQ(plan.unforwardable.size(), 2u);
  EXPECT_EQ(plan.unforwardable[0].second, "sctp ports are not forwarded (only tcp and udp)");
  EXPECT_EQ(plan.unforwardable[1].second, "the engine reported no valid host port (0)");
}

TEST(BindErrorMessage, SaysWhatToDo) {
  ListenerKey v4{"tcp", asio::ip::make_address("127.0.0.1"), 8081};
  ListenerKey low{"tcp", asio::ip::make_address("127.0.0.1"), 80};
  ListenerKey v6{"udp", asio::ip::make_address("::1"), 8081};
  EXPECT_EQ(bind_error_message(v4, asio::error::address_in_use),
            "127.0.0.1:8081 already in use by another program");
  EXPECT_EQ(bind_error_message(low, asio::error::access_denied),
            "127.0.0.1:80 needs root (port below 1024)");
  EXPECT_EQ(bind_error_message(v6, asio::error::address_family_not_supported),
            "[::1]:8081 cannot be bound: IPv6 is not available on this machine");
  EXPECT_EQ(bind_error_message(
                v6, boost::system::errc::make_error_code(boost::system::errc::address_not_available)),
            "[::1]:8081 cannot be bound: IPv6 is not available on this machine");
}

// ---------------------------------------------------------------------------------------------
// Listeners against real loopback sockets. The io runs on this thread (poll()), so the test
// decides when posted closes happen.

class ListenerDiffing : public ::testing::Test {
 protected:
  void settle() {
    io.restart();
    io.poll();
  }
  asio::io_context io;
  CountingSink sink;
  PortForwarder::TunnelOpener no_runner = [](std::uint32_t, const std::string&) {
    return std::shared_ptr<tunnel::ClientTunnelStream>();
  };
};

TEST_F(ListenerDiffing, SnapshotAThenB) {
  PortForwarder forwarder(io, PortPolicy{}, sink);
  auto p1 = free_port(), p2 = free_port(), p3 = free_port();
  forwarder.apply({published(p1, "tcp"), published(p2, "tcp"), published(p2, "udp", "0.0.0.0")},
                  no_runner);
  settle();
  EXPECT_FALSE(try_connect(p1));
  EXPECT_FALSE(try_connect(p2));
  EXPECT_EQ(try_connect(p3), asio::error::connection_refused);
  auto ports = forwarder.ports();
  ASSERT_EQ(ports.size(), 3u);
  for (const auto& p : ports) EXPECT_TRUE(p.listening()) << p.local_address() << " " << p.error();

  // B: p1 gone, p2/tcp stays, p2/udp gone, p3 new.
  forwarder.apply({published(p2, "tcp"), published(p3, "tcp", "127.0.0.1", "api", 8080)},
                  no_runner);
  settle();
  EXPECT_EQ(try_connect(p1), asio::error::connection_refused);
  EXPECT_FALSE(try_connect(p2));
  EXPECT_FALSE(try_connect(p3));
  ports = forwarder.ports();
  ASSERT_EQ(ports.size(), 2u);
  const auto* fp3 = find_port(ports, loopback(p3), "tcp");
  ASSERT_NE(fp3, nullptr);
  EXPECT_TRUE(fp3->listening());
  EXPECT_EQ(fp3->container_name(), "api");
  EXPECT_EQ(fp3->container_port(), 8080u);
  EXPECT_EQ(fp3->host_port(), p3);
  EXPECT_EQ(find_port(ports, loopback(p2), "udp"), nullptr);
  // The UDP port is free again: something else can take it.
  udp::socket other(io);
  other.open(udp::v4());
  boost::system::error_code ec;
  other.bind(udp::endpoint(asio::ip::address_v4::loopback(), static_cast<unsigned short>(p2)), ec);
  EXPECT_FALSE(ec) << ec.message();

  forwarder.clear();
  settle();
  EXPECT_EQ(try_connect(p2), asio::error::connection_refused);
  EXPECT_EQ(try_connect(p3), asio::error::connection_refused);
  EXPECT_TRUE(forwarder.ports().empty());
}

TEST_F(ListenerDiffing, PortThatGoesAndComesBackAtOnceKeepsItsListener) {
  // A container restart: the port leaves the snapshot and returns before the close has run.
  PortForwarder forwarder(io, PortPolicy{}, sink);
  auto p = free_port();
  forwarder.apply({published(p, "tcp"), published(p, "udp")}, no_runner);
  forwarder.apply({}, no_runner);
  forwarder.apply({published(p, "tcp"), published(p, "udp")}, no_runner);
  settle();
  for (const auto& fp : forwarder.ports()) {
    EXPECT_TRUE(fp.listening()) << fp.local_address() << "/" << fp.protocol() << ": " << fp.error();
    EXPECT_EQ(fp.error(), "");
  }
  EXPECT_FALSE(try_connect(p));
}

TEST_F(ListenerDiffing, PortClosedThenReaddedRebinds) {
  PortForwarder forwarder(io, PortPolicy{}, sink);
  auto p = free_port();
  forwarder.apply({published(p, "tcp")}, no_runner);
  forwarder.apply({}, no_runner);
  settle();
  EXPECT_EQ(try_connect(p), asio::error::connection_refused);
  forwarder.apply({published(p, "tcp")}, no_runner);
  settle();
  EXPECT_FALSE(try_connect(p));
  ASSERT_EQ(forwarder.ports().size(), 1u);
  EXPECT_TRUE(forwarder.ports()[0].listening());
}

TEST_F(ListenerDiffing, BusyPortIsReportedOthersStillListen) {
  PortForwarder forwarder(io, PortPolicy{}, sink);
  auto busy = free_port(), fine = free_port();
  auto squatter = std::make_unique<tcp::acceptor>(
      io, tcp::endpoint(asio::ip::address_v4::loopback(), static_cast<unsigned short>(busy)));
  forwarder.apply({published(busy, "tcp", "0.0.0.0", "web"), published(fine, "tcp")}, no_runner);
  settle();
  auto ports = forwarder.ports();
  ASSERT_EQ(ports.size(), 2u);
  const auto* b = find_port(ports, loopback(busy), "tcp");
  ASSERT_NE(b, nullptr);
  EXPECT_FALSE(b->listening());
  EXPECT_EQ(b->error(), loopback(busy) + " already in use by another program");
  EXPECT_EQ(b->container_name(), "web");
  const auto* f = find_port(ports, loopback(fine), "tcp");
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->listening());
  EXPECT_EQ(f->error(), "");
  EXPECT_FALSE(try_connect(fine));

  // The other program goes away: the next reconcile takes the port.
  squatter.reset();
  forwarder.reconcile();
  settle();
  ports = forwarder.ports();
  b = find_port(ports, loopback(busy), "tcp");
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->listening());
  EXPECT_EQ(b->error(), "");
}

TEST_F(ListenerDiffing, UnforwardableEntriesShowInPorts) {
  PortForwarder forwarder(io, PortPolicy{}, sink);
  auto p = free_port();
  forwarder.apply({published(p, "sctp")}, no_runner);
  auto ports = forwarder.ports();
  ASSERT_EQ(ports.size(), 1u);
  EXPECT_FALSE(ports[0].listening());
  EXPECT_EQ(ports[0].protocol(), "sctp");
  EXPECT_EQ(ports[0].error(), "sctp ports are not forwarded (only tcp and udp)");
}

TEST_F(ListenerDiffing, Ipv6Loopback) {
  if (!ipv6_loopback_available()) GTEST_SKIP() << "no IPv6 loopback on this machine";
  PortForwarder forwarder(io, PortPolicy{}, sink);
  auto p = free_port();
  forwarder.apply({published(p, "tcp", "0.0.0.0"), published(p, "tcp", "::")}, no_runner);
  settle();
  auto ports = forwarder.ports();
  ASSERT_EQ(ports.size(), 2u);
  const auto* v6 = find_port(ports, "[::1]:" + std::to_string(p), "tcp");
  ASSERT_NE(v6, nullptr);
  EXPECT_TRUE(v6->listening()) << v6->error();
  EXPECT_FALSE(try_connect(asio::ip::address_v6::loopback(), p));
  EXPECT_FALSE(try_connect(p));
}

// ---------------------------------------------------------------------------------------------
// Through tunnels (an in-process echoing runner), io on two threads

TEST(PortForwarderTunnels, TcpRoundTripCountsActivity) {
  EchoRunner runner;
  CountingSink sink;
  IoThreads io;
  auto p = free_port();
  {
    PortForwarder forwarder(io.io, PortPolicy{}, sink);
    forwarder.apply({published(p, "tcp")}, runner.opener());
    EXPECT_EQ(tcp_round_trip(p, "hello through the tunnel"), "hello through the tunnel");
    EXPECT_TRUE(sink.wait_closed(1));
    EXPECT_EQ(sink.opened(), 1);
    ASSERT_EQ(runner.all_opens().size(), 1u);
    EXPECT_EQ(runner.all_opens()[0].target(), v1::TunnelOpen::TARGET_PUBLISHED_PORT);
    EXPECT_EQ(runner.all_opens()[0].host_port(), p);
    EXPECT_EQ(runner.all_opens()[0].protocol(), "tcp");
    forwarder.clear();
  }
}

TEST(PortForwarderTunnels, WithoutARunnerConnectionsAreClosed) {
  CountingSink sink;
  IoThreads io;
  auto p = free_port();
  PortForwarder forwarder(io.io, PortPolicy{}, sink);
  forwarder.apply({published(p, "tcp")}, [](std::uint32_t, const std::string&) {
    return std::shared_ptr<tunnel::ClientTunnelStream>();
  });
  EXPECT_EQ(tcp_round_trip(p, "hello"), "");
  EXPECT_EQ(sink.opened(), 0);
}

TEST(PortForwarderTunnels, UdpFlowExpiresWhenIdle) {
  EchoRunner runner;
  CountingSink sink;
  ManualTime time;
  IoThreads io;
  auto p = free_port();
  PortForwarder forwarder(io.io, PortPolicy{}, sink, time.settings(60s));
  forwarder.apply({published(p, "udp", "0.0.0.0", "dns", 53)}, runner.opener());
  UdpClient client(p);

  EXPECT_EQ(client.ask("one"), "one");
  EXPECT_EQ(runner.opens("udp"), 1);
  EXPECT_EQ(sink.opened(), 1);
  auto fp = forwarder.ports();
  ASSERT_EQ(fp.size(), 1u);
  EXPECT_EQ(fp[0].open_connections(), 1);

  // Activity keeps the flow: each step stays under the idle timeout since the last datagram.
  time.advance(59s);
  EXPECT_EQ(client.ask("two"), "two");
  time.advance(59s);
  EXPECT_EQ(client.ask("three"), "three");
  EXPECT_EQ(runner.opens("udp"), 1);
  EXPECT_EQ(runner.eofs(), 0);
  EXPECT_EQ(sink.closed(), 0);

  // Idle past the timeout: the flow sends eof, the call ends, activity says closed.
  time.advance(61s);
  EXPECT_TRUE(runner.wait_eofs(1));
  EXPECT_TRUE(sink.wait_closed(1));
  EXPECT_EQ(forwarder.ports()[0].open_connections(), 0);

  // The same client again: a new flow, a new tunnel.
  EXPECT_EQ(client.ask("four"), "four");
  EXPECT_EQ(runner.opens("udp"), 2);
  EXPECT_EQ(sink.opened(), 2);

  // Closing the listener ends the flow too.
  forwarder.clear();
  EXPECT_TRUE(runner.wait_eofs(2));
  EXPECT_TRUE(sink.wait_closed(2));
}

TEST(PortForwarderTunnels, TwoUdpClientsHaveTheirOwnFlows) {
  EchoRunner runner;
  CountingSink sink;
  ManualTime time;
  IoThreads io;
  auto p = free_port();
  PortForwarder forwarder(io.io, PortPolicy{}, sink, time.settings());
  forwarder.apply({published(p, "udp")}, runner.opener());
  UdpClient a(p), b(p);
  EXPECT_EQ(a.ask("from a"), "from a");
  EXPECT_EQ(b.ask("from b"), "from b");
  EXPECT_EQ(a.ask("a again"), "a again");
  EXPECT_EQ(runner.opens("udp"), 2);
  EXPECT_EQ(forwarder.ports()[0].open_connections(), 2);

  // Removing the port ends both flows with eof.
  forwarder.apply({}, runner.opener());
  EXPECT_TRUE(runner.wait_eofs(2));
  EXPECT_TRUE(sink.wait_closed(2));
}
