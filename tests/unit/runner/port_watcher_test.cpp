// PortWatcher and its parsers, without docker: a fake engine on a unix socket answers
// GET /containers/json from a string the test changes and serves /events as a chunked stream the
// test writes into. Time only moves when the test advances the ManualWaitClock.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "offload/runner/port_watcher.h"

using namespace offload::runner;
using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
namespace fs = std::filesystem;

namespace {

// --- helpers ---

struct Port {
  std::string id, name;
  unsigned container_port;
  std::string protocol, host_ip;
  unsigned host_port;
};

std::vector<Port> plain(const PortSnapshot& snapshot) {
  std::vector<Port> out;
  for (const auto& p : snapshot)
    out.push_back({p.container_id(), p.container_name(), p.container_port(), p.protocol(),
                   p.host_ip(), p.host_port()});
  return out;
}

bool operator==(const Port& a, const Port& b) {
  return std::tie(a.id, a.name, a.container_port, a.protocol, a.host_ip, a.host_port) ==
         std::tie(b.id, b.name, b.container_port, b.protocol, b.host_ip, b.host_port);
}
std::ostream& operator<<(std::ostream& out, const Port& p) {
  return out << p.name << "(" << p.id.substr(0, 6) << ") " << p.container_port << "/" << p.protocol
             << " -> " << p.host_ip << ":" << p.host_port;
}

// Polls `done` until it holds or `limit` passes: for waiting on another thread, never for timing.
template <typename Pred>
bool eventually(Pred done, std::chrono::milliseconds limit = 10s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// One running container as docker 20.10 lists it.
std::string container_json(const std::string& id, const std::string& name,
                           const std::string& ports) {
  return R"({"Id":")" + id + R"(","Names":["/)" + name +
         R"("],"Image":"offload-bb:1","ImageID":"sha256:5e4f","Command":"httpd -f -p 80",)"
         R"("Created":1717000000,"Ports":)" +
         ports +
         R"(,"Labels":{},"State":"running","Status":"Up 2 seconds",)"
         R"("HostConfig":{"NetworkMode":"default"},"NetworkSettings":{"Networks":{"bridge":)"
         R"({"IPAddress":"172.17.0.2","Gateway":"172.17.0.1"}}},"Mounts":[]})";
}

const std::string kWebId = "aaaa1111" + std::string(56, '1');
const std::string kDnsId = "bbbb2222" + std::string(56, '2');
const std::string kRandomId = "cccc3333" + std::string(56, '3');

// -p 18081:80 (v4 and v6 as 20.10 reports them) and an EXPOSEd 443 that is not published.
const std::string kWeb = container_json(
    kWebId, "web",
    R"([{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":18081,"Type":"tcp"},)"
    R"({"IP":"::","PrivatePort":80,"PublicPort":18081,"Type":"tcp"},)"
    R"({"PrivatePort":443,"Type":"tcp"}])");
// -p 127.0.0.1:18082:53/udp
const std::string kDns = container_json(
    kDnsId, "dns", R"([{"IP":"127.0.0.1","PrivatePort":53,"PublicPort":18082,"Type":"udp"}])");
// -P with EXPOSE 8080 9090/udp: random host ports.
const std::string kRandom = container_json(
    kRandomId, "random",
    R"([{"IP":"::","PrivatePort":9090,"PublicPort":49154,"Type":"udp"},)"
    R"({"IP":"0.0.0.0","PrivatePort":8080,"PublicPort":49153,"Type":"tcp"},)"
    R"({"IP":"0.0.0.0","PrivatePort":9090,"PublicPort":49154,"Type":"udp"},)"
    R"({"IP":"::","PrivatePort":8080,"PublicPort":49153,"Type":"tcp"}])");
const std::string kQuiet = container_json("dddd4444" + std::string(56, '4'), "quiet", "[]");

std::string list(std::initializer_list<std::string> containers) {
  std::string out = "[";
  for (const auto& c : containers) out += (out.size() > 1 ? "," : "") + c;
  return out + "]";
}

std::string event(const std::string& action, const std::string& id = kWebId,
                  const std::string& type = "container") {
  return R"({"status":")" + action + R"(","id":")" + id + R"(","from":"offload-bb:1","Type":")" +
         type + R"(","Action":")" + action + R"(","Actor":{"ID":")" + id +
         R"(","Attributes":{"image":"offload-bb:1","name":"web {x}"}},"scope":"local",)"
         R"("time":1717000001,"timeNano":1717000001000000000})" "\n";
}

// --- published_ports_from_containers_json ---

TEST(PublishedPorts, Docker2010ListOfRunningContainers) {
  auto ports = plain(published_ports_from_containers_json(list({kRandom, kWeb, kQuiet, kDns})));
  EXPECT_THAT(ports, ElementsAre(Port{kWebId, "web", 80, "tcp", "0.0.0.0", 18081},
                                 Port{kWebId, "web", 80, "tcp", "::", 18081},
                                 Port{kDnsId, "dns", 53, "udp", "127.0.0.1", 18082},
                                 Port{kRandomId, "random", 8080, "tcp", "0.0.0.0", 49153},
                                 Port{kRandomId, "random", 8080, "tcp", "::", 49153},
                                 Port{kRandomId, "random", 9090, "udp", "0.0.0.0", 49154},
                                 Port{kRandomId, "random", 9090, "udp", "::", 49154}));
}

TEST(PublishedPorts, OrderOfTheEngineAnswerDoesNotMatterAndDuplicatesGo) {
  const auto a = published_ports_from_containers_json(list({kWeb, kDns, kRandom}));
  const auto b = published_ports_from_containers_json(list({kDns, kRandom, kWeb, kWeb}));
  EXPECT_TRUE(same_ports(a, b));
  EXPECT_EQ(a.size(), 7u);
  EXPECT_FALSE(same_ports(a, published_ports_from_containers_json(list({kWeb, kDns}))));
}

TEST(PublishedPorts, NoContainersOrNoPublishedPorts) {
  EXPECT_THAT(published_ports_from_containers_json("[]"), IsEmpty());
  EXPECT_THAT(published_ports_from_containers_json(list({kQuiet})), IsEmpty());
  const std::string null_ports = R"([{"Id":"e1","Names":null,"Ports":null}])";
  EXPECT_THAT(published_ports_from_containers_json(null_ports), IsEmpty());
  // A container without a name still has its ports reported.
  auto ports = published_ports_from_containers_json(
      R"([{"Id":"e1","Ports":[{"IP":"0.0.0.0","PrivatePort":1,"PublicPort":2,"Type":"tcp"}]}])");
  ASSERT_EQ(ports.size(), 1u);
  EXPECT_EQ(ports[0].container_name(), "");
}

// The container's address on its only network is where the engine forwards its ports: the
// runner dials it directly (resolve_port_target).
TEST(PublishedPorts, AContainerOnOneNetworkNamesItsAddress) {
  auto ports = published_ports_from_containers_json(list({kWeb, kDns}));
  ASSERT_EQ(ports.size(), 3u);
  for (const auto& p : ports) EXPECT_EQ(p.container_address(), "172.17.0.2") << p.host_port();
}

TEST(PublishedPorts, NoAddressWhenTheNetworkIsNotUnambiguous) {
  const std::string published =
      R"("Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"}])";
  for (const std::string settings : {
           // Two networks: the engine picks the one it forwards to by rules of its own.
           R"("NetworkSettings":{"Networks":{"a":{"IPAddress":"172.18.0.2"},)"
           R"("b":{"IPAddress":"172.19.0.2"}}})",
           // No network, no address, an address that is none, shapes we do not know.
           R"("NetworkSettings":{"Networks":{}})",
           R"("NetworkSettings":{"Networks":{"bridge":{"IPAddress":""}}})",
           R"("NetworkSettings":{"Networks":{"bridge":{"IPAddress":"0.0.0.0"}}})",
           R"("NetworkSettings":{"Networks":{"bridge":{"IPAddress":"127.0.0.1"}}})",
           R"("NetworkSettings":{"Networks":{"bridge":{"IPAddress":"224.0.0.1"}}})",
           R"("NetworkSettings":{"Networks":{"bridge":{"IPAddress":"255.255.255.255"}}})",
           R"("NetworkSettings":{"Networks":{"bridge":{"IPAddress":"fd00::2"}}})",
           R"("NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.300"}}})",
           R"("NetworkSettings":{"Networks":{"bridge":{"IPAddress":7}}})",
           R"("NetworkSettings":{"Networks":{"bridge":null}})",
           R"("NetworkSettings":{"Networks":[{"IPAddress":"172.17.0.2"}]})",
           R"("NetworkSettings":null)",
           R"("NetworkSettings":"bridge")",
           R"("HostConfig":{"NetworkMode":"host"})",
       }) {
    // The address only saves a hop: an answer without a usable one is not malformed.
    auto ports =
        published_ports_from_containers_json(R"([{"Id":"e1",)" + published + "," + settings + "}]");
    ASSERT_EQ(ports.size(), 1u) << settings;
    EXPECT_EQ(ports[0].container_address(), "") << settings;
  }
}

TEST(PublishedPorts, AContainerBackWithAnotherAddressChangesThePorts) {
  std::string moved = kWeb;
  moved.replace(moved.find("172.17.0.2"), 10, "172.17.0.9");
  const auto before = published_ports_from_containers_json(list({kWeb}));
  const auto after = published_ports_from_containers_json(list({moved}));
  EXPECT_FALSE(same_ports(before, after)) << "tunnels would dial the old address";
  EXPECT_EQ(after[0].container_address(), "172.17.0.9");
}

TEST(PublishedPorts, MalformedAnswersThrow) {
  for (const char* bad : {"", "{", "{}", R"({"message":"server error"})", "[1]",
                          R"([{"Id":"x","Ports":{}}])", R"([{"Id":"x","Ports":[7]}])",
                          R"([{"Id":"x","Ports":[{"PublicPort":70000}]}])",
                          R"([{"Id":"x","Ports":[{"PublicPort":-1}]}])",
                          R"([{"Ports":[{"PublicPort":80}]}])"}) {
    EXPECT_THROW(published_ports_from_containers_json(bad), std::runtime_error) << bad;
  }
}

// --- EngineEventSplitter ---

const std::vector<std::string> kStreamEvents = {
    event("start"),
    // Braces, brackets and escaped quotes inside strings must not count.
    R"({"Type":"container","Action":"exec_start: sh -c \"echo }]{[\\\"\"","Actor":{"ID":"x",)"
    R"("Attributes":{"a":"\\","b":"{"}},"list":[{"n":[1,2]},{}]})",
    event("die"),
};

std::string stream_text() {
  std::string text;
  for (const auto& e : kStreamEvents) text += e + "\r\n \t";
  return text;
}

std::vector<std::string> trimmed(std::vector<std::string> events) {
  for (auto& e : events)
    while (!e.empty() && e.back() == '\n') e.pop_back();
  return events;
}

TEST(EngineEventSplitter, WholeStreamAtOnce) {
  EngineEventSplitter splitter;
  std::vector<std::string> events;
  EXPECT_FALSE(splitter.feed(stream_text(), events));
  EXPECT_EQ(events, trimmed(kStreamEvents));
  EXPECT_TRUE(splitter.between_events());
}

TEST(EngineEventSplitter, ByteByByte) {
  EngineEventSplitter splitter;
  std::vector<std::string> events;
  const std::string text = stream_text();
  for (std::size_t i = 0; i < text.size(); ++i) {
    ASSERT_FALSE(splitter.feed(text.substr(i, 1), events));
    if (text[i] == '{') {
      EXPECT_FALSE(splitter.between_events());
    }
  }
  EXPECT_TRUE(splitter.between_events());
  EXPECT_EQ(events, trimmed(kStreamEvents));
}

TEST(EngineEventSplitter, RandomSplits) {
  std::mt19937 random(20240601);
  const std::string text = stream_text() + stream_text();
  auto expected = trimmed(kStreamEvents);
  const auto once = expected;
  expected.insert(expected.end(), once.begin(), once.end());
  for (int round = 0; round < 300; ++round) {
    EngineEventSplitter splitter;
    std::vector<std::string> events;
    std::size_t at = 0;
    while (at < text.size()) {
      const std::size_t n = std::uniform_int_distribution<std::size_t>(0, 40)(random);
      ASSERT_FALSE(splitter.feed(std::string_view(text).substr(at, n), events));
      at += n;
    }
    ASSERT_EQ(events, expected) << "round " << round;
  }
}

TEST(EngineEventSplitter, GarbageBetweenEventsFailsUntilReset) {
  EngineEventSplitter splitter;
  std::vector<std::string> events;
  EXPECT_EQ(splitter.feed(event("start") + "oops" + event("die"), events),
            std::make_error_code(std::errc::bad_message));
  EXPECT_EQ(events.size(), 1u);  // what came before the garbage still counts
  EXPECT_EQ(splitter.feed(event("die"), events), std::make_error_code(std::errc::bad_message));
  EXPECT_EQ(events.size(), 1u);
  splitter.reset();
  EXPECT_FALSE(splitter.feed(event("die"), events));
  EXPECT_EQ(events.size(), 2u);
  EXPECT_EQ(splitter.feed("]", events), std::make_error_code(std::errc::bad_message));
  splitter.reset();
  EXPECT_EQ(splitter.feed(R"({"a":[1,2}])", events), std::make_error_code(std::errc::bad_message));
  EXPECT_EQ(events.size(), 2u);
}

TEST(EngineEventSplitter, OversizedEventFails) {
  EngineEventSplitter splitter(64);
  std::vector<std::string> events;
  EXPECT_FALSE(splitter.feed(R"({"a":")" + std::string(50, 'x') + R"("})", events));
  EXPECT_EQ(events.size(), 1u);
  EXPECT_EQ(splitter.feed(R"({"a":")" + std::string(60, 'x'), events),
            std::make_error_code(std::errc::message_size));
}

// --- event_may_change_ports ---

TEST(EventMayChangePorts, ContainerLifecycleActionsOnly) {
  for (const char* action :
       {"start", "restart", "die", "stop", "kill", "destroy", "pause", "unpause", "rename"})
    EXPECT_TRUE(event_may_change_ports(event(action))) << action;
  for (const char* action : {"create", "attach", "exec_create: sh", "exec_start: sh",
                             "exec_die", "health_status: healthy", "top", "resize", "commit"})
    EXPECT_FALSE(event_may_change_ports(event(action))) << action;
  EXPECT_FALSE(event_may_change_ports(event("start", "n1", "network")));
  EXPECT_TRUE(event_may_change_ports(R"({"status":"die","id":"x"})"));  // pre-1.22 shape
  EXPECT_TRUE(event_may_change_ports(R"({"Action":"start"})"));
  EXPECT_TRUE(event_may_change_ports("{not json}"));
  EXPECT_FALSE(event_may_change_ports("{}"));
}

TEST(EventMayChangePorts, AContainerJoiningOrLeavingANetworkChangesItsAddress) {
  // `docker network connect/disconnect` on a running container is a network event only; the
  // container's address in the ports (the runner's direct dial) depends on its networks.
  EXPECT_TRUE(event_may_change_ports(event("connect", "n1", "network")));
  EXPECT_TRUE(event_may_change_ports(event("disconnect", "n1", "network")));
  for (const char* action : {"create", "destroy", "remove", "prune", "update"})
    EXPECT_FALSE(event_may_change_ports(event(action, "n1", "network"))) << action;
  for (const char* type : {"image", "volume", "daemon", "plugin"})
    EXPECT_FALSE(event_may_change_ports(event("connect", "x", type))) << type;
}

// --- ManualWaitClock ---

TEST(ManualWaitClock, AdvanceWakesAWaiterWhoseDeadlinePasses) {
  ManualWaitClock clock;
  const auto t0 = clock.now();
  std::mutex mutex;
  std::condition_variable cv;
  std::atomic<bool> woke{false};
  std::thread waiter([&] {
    std::unique_lock lock(mutex);
    while (clock.now() < t0 + 5s) clock.wait_until(lock, cv, t0 + 5s);
    woke = true;
  });
  ASSERT_TRUE(eventually([&] { return clock.deadlines().size() == 1; }));
  EXPECT_EQ(clock.deadlines()[0], t0 + 5s);
  clock.advance(4s);
  EXPECT_FALSE(woke);
  EXPECT_EQ(clock.deadlines().size(), 1u);
  clock.advance(1s);
  waiter.join();
  EXPECT_TRUE(woke);
  EXPECT_THAT(clock.deadlines(), IsEmpty());
  // A deadline already reached returns at once.
  std::unique_lock lock(mutex);
  clock.wait_until(lock, cv, t0);
}

// --- PortWatcher against a fake engine ---

class FakeEngine {
 public:
  explicit FakeEngine(fs::path socket) : socket_(std::move(socket)) {
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_.c_str());
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 16) != 0)
      throw std::runtime_error("fake engine cannot listen on " + socket_.string());
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeEngine() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
    std::lock_guard lock(mutex_);
    for (int fd : streams_) ::close(fd);
    for (int fd : hung_) ::close(fd);
    fs::remove(socket_);
  }

  void set_containers(std::string json, int status = 200) {
    std::lock_guard lock(mutex_);
    containers_ = std::move(json);
    list_status_ = status;
  }
  void set_events_status(int status) {
    std::lock_guard lock(mutex_);
    events_status_ = status;
  }
  // Accept connections and never answer them.
  void hang(bool on) {
    std::lock_guard lock(mutex_);
    hang_ = on;
  }
  // One HTTP chunk to every open event stream.
  void push_chunk(const std::string& data) {
    std::ostringstream chunk;
    chunk << std::hex << data.size() << "\r\n" << data << "\r\n";
    std::lock_guard lock(mutex_);
    for (int fd : streams_) write_all(fd, chunk.str());
  }
  void push_event(const std::string& json) { push_chunk(json); }
  void drop_streams() {
    std::lock_guard lock(mutex_);
    for (int fd : streams_) {
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
    }
    streams_.clear();
  }
  int list_requests() const {
    std::lock_guard lock(mutex_);
    return list_requests_;
  }
  int hung_connections() const {
    std::lock_guard lock(mutex_);
    return static_cast<int>(hung_.size());
  }
  std::string last_events_target() const {
    std::lock_guard lock(mutex_);
    return events_target_;
  }

 private:
  static void write_all(int fd, const std::string& data) {
    std::size_t at = 0;
    while (at < data.size()) {
      ssize_t n = ::send(fd, data.data() + at, data.size() - at, MSG_NOSIGNAL);
      if (n <= 0) return;
      at += static_cast<std::size_t>(n);
    }
  }

  void serve() {
    for (;;) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;  // shut down
      handle(fd);
    }
  }

  void handle(int fd) {
    {
      std::lock_guard lock(mutex_);
      if (hang_) {
        hung_.push_back(fd);
        return;
      }
    }
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && ::read(fd, &c, 1) == 1) head += c;
    std::istringstream line(head);
    std::string method, target;
    line >> method >> target;
    std::lock_guard lock(mutex_);
    if (target == "/containers/json") {
      ++list_requests_;
      write_all(fd, "HTTP/1.1 " + std::to_string(list_status_) +
                        " X\r\nContent-Type: application/json\r\nContent-Length: " +
                        std::to_string(containers_.size()) + "\r\nConnection: close\r\n\r\n" +
                        containers_);
      ::close(fd);
    } else if (target.starts_with("/events")) {
      events_target_ = target;
      if (events_status_ != 200) {
        write_all(fd, "HTTP/1.1 " + std::to_string(events_status_) +
                          " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        ::close(fd);
        return;
      }
      write_all(fd,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
      streams_.push_back(fd);
    } else {
      write_all(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      ::close(fd);
    }
  }

  fs::path socket_;
  int listen_fd_ = -1;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::string containers_ = "[]";
  int list_status_ = 200, events_status_ = 200;
  bool hang_ = false;
  int list_requests_ = 0;
  std::string events_target_;
  std::vector<int> streams_, hung_;
};

class Recorder {
 public:
  PortWatcher::Callback callback() {
    return [this](const PortSnapshot& snapshot) {
      std::lock_guard lock(mutex_);
      calls_.push_back(plain(snapshot));
    };
  }
  std::size_t count() const {
    std::lock_guard lock(mutex_);
    return calls_.size();
  }
  std::vector<std::vector<Port>> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  bool wait_for(std::size_t n) {
    return eventually([&] { return count() >= n; });
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::vector<Port>> calls_;
};

class PortWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pwt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ / "docker.sock";
  }
  void TearDown() override {
    watcher_.reset();
    engine_.reset();
    fs::remove_all(dir_);
  }

  FakeEngine& engine() {
    if (!engine_) engine_ = std::make_unique<FakeEngine>(socket_);
    return *engine_;
  }
  PortWatcher& watch(std::chrono::milliseconds reconcile = 5s,
                     std::chrono::milliseconds settle = 1h) {
    watcher_ = std::make_unique<PortWatcher>(socket_, recorder_.callback(), clock_, reconcile,
                                             settle);
    return *watcher_;
  }
  bool parked_at(std::chrono::milliseconds from_now) {
    return eventually([&] {
      const auto want = clock_.now() + from_now;
      for (auto d : clock_.deadlines())
        if (d == want) return true;
      return false;
    });
  }
  // Waits until the watcher follows the stream and has listed after subscribing, so what the
  // test does next is seen only through events, reconciles and reconnects.
  void settle_after_subscribe() {
    ASSERT_TRUE(eventually([&] { return watcher_->stats().following; }));
    const auto before = watcher_->stats().events;
    engine().push_event(event("start"));
    ASSERT_TRUE(eventually([&] { return watcher_->stats().events_applied > before; }));
  }

  ManualWaitClock clock_;
  fs::path dir_, socket_;
  Recorder recorder_;
  std::unique_ptr<FakeEngine> engine_;
  std::unique_ptr<PortWatcher> watcher_;
};

const auto kWebPorts = std::vector<Port>{{kWebId, "web", 80, "tcp", "0.0.0.0", 18081},
                                         {kWebId, "web", 80, "tcp", "::", 18081}};
const auto kDnsPorts = std::vector<Port>{{kDnsId, "dns", 53, "udp", "127.0.0.1", 18082}};

std::vector<Port> operator+(std::vector<Port> a, const std::vector<Port>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST_F(PortWatcherTest, ReportsTheFirstSnapshotThenChangesOnEvents) {
  engine().set_containers(list({kWeb, kQuiet}));
  auto& watcher = watch();
  ASSERT_TRUE(recorder_.wait_for(1));
  EXPECT_THAT(recorder_.calls()[0], ::testing::ContainerEq(kWebPorts));
  settle_after_subscribe();
  EXPECT_THAT(engine().last_events_target(), HasSubstr("filters=%7B%22type%22%3A%5B%22container"));

  engine().set_containers(list({kWeb, kDns}));
  engine().push_event(event("start", kDnsId));
  ASSERT_TRUE(recorder_.wait_for(2));
  EXPECT_THAT(recorder_.calls()[1], ::testing::ContainerEq(kWebPorts + kDnsPorts));
  EXPECT_THAT(plain(watcher.current()), ::testing::ContainerEq(kWebPorts + kDnsPorts));

  engine().set_containers(list({kDns}));
  engine().push_event(event("die"));
  ASSERT_TRUE(recorder_.wait_for(3));
  EXPECT_THAT(recorder_.calls()[2], ::testing::ContainerEq(kDnsPorts));
  EXPECT_EQ(recorder_.count(), 3u);
}

TEST_F(PortWatcherTest, AnEmptyEngineIsReportedOnceAndNothingWhenUnchanged) {
  engine();
  auto& watcher = watch();
  ASSERT_TRUE(eventually([&] { return watcher.stats().following; }));
  ASSERT_TRUE(recorder_.wait_for(1));
  EXPECT_THAT(recorder_.calls()[0], IsEmpty());
  for (const char* action : {"start", "stop", "restart"}) {
    const auto before = watcher.stats().events;
    engine().push_event(event(action));
    ASSERT_TRUE(eventually([&] { return watcher.stats().events_applied > before; }));
  }
  EXPECT_EQ(recorder_.count(), 1u);
  EXPECT_GE(watcher.stats().listings, 4u);
}

TEST_F(PortWatcherTest, EventsSplitAcrossChunksAndSeveralInOneChunk) {
  engine().set_containers(list({kWeb}));
  auto& watcher = watch();
  ASSERT_TRUE(recorder_.wait_for(1));
  settle_after_subscribe();
  const auto before = watcher.stats().events;
  engine().set_containers(list({kWeb, kDns}));
  const std::string e = event("start", kDnsId);
  const auto cut = e.find("offload-bb");  // inside a string
  engine().push_chunk(e.substr(0, cut));
  engine().push_chunk(e.substr(cut) + event("exec_start: sh") + event("pause", kDnsId));
  ASSERT_TRUE(recorder_.wait_for(2));
  EXPECT_THAT(recorder_.calls()[1], ::testing::ContainerEq(kWebPorts + kDnsPorts));
  ASSERT_TRUE(eventually([&] { return watcher.stats().events_applied >= before + 2; }));
  EXPECT_EQ(watcher.stats().events, before + 2);  // exec_start asked for nothing
}

TEST_F(PortWatcherTest, RelistsAfterTheStreamDropsAndReconnects) {
  engine().set_containers(list({kWeb}));
  auto& watcher = watch();
  ASSERT_TRUE(recorder_.wait_for(1));
  settle_after_subscribe();

  engine().drop_streams();
  ASSERT_TRUE(parked_at(PortWatcher::kFirstBackoff));
  EXPECT_FALSE(watcher.stats().following);
  // Changed while nobody was listening: no event will ever tell.
  engine().set_containers(list({kWeb, kDns}));
  EXPECT_EQ(recorder_.count(), 1u);
  clock_.advance(PortWatcher::kFirstBackoff);
  ASSERT_TRUE(recorder_.wait_for(2));
  EXPECT_THAT(recorder_.calls()[1], ::testing::ContainerEq(kWebPorts + kDnsPorts));
  EXPECT_TRUE(eventually([&] { return watcher.stats().stream_connects == 2; }));
  EXPECT_TRUE(watcher.stats().following);
}

TEST_F(PortWatcherTest, ReconnectBackoffDoublesUpToFiveSecondsAndResets) {
  engine().set_containers(list({kWeb}));
  auto& watcher = watch(1h);
  ASSERT_TRUE(recorder_.wait_for(1));
  settle_after_subscribe();

  engine().set_events_status(500);  // an engine that is shutting down
  engine().drop_streams();
  for (auto wait : {100ms, 200ms, 400ms, 800ms, 1600ms, 3200ms, 5000ms, 5000ms}) {
    ASSERT_TRUE(parked_at(wait)) << wait.count();
    clock_.advance(wait);
  }
  ASSERT_TRUE(parked_at(5000ms));
  engine().set_events_status(200);
  engine().set_containers(list({kDns}));
  clock_.advance(5000ms);
  ASSERT_TRUE(recorder_.wait_for(2));
  EXPECT_THAT(recorder_.calls()[1], ::testing::ContainerEq(kDnsPorts));
  ASSERT_TRUE(eventually([&] { return watcher.stats().following; }));
  // A stream that worked starts the backoff from the beginning again.
  engine().drop_streams();
  EXPECT_TRUE(parked_at(PortWatcher::kFirstBackoff));
}

TEST_F(PortWatcherTest, ReconcilePicksUpAChangeThatNoEventAnnounced) {
  engine().set_containers(list({kWeb}));
  auto& watcher = watch(5s);
  ASSERT_TRUE(recorder_.wait_for(1));
  settle_after_subscribe();
  engine().set_containers(list({}));
  ASSERT_TRUE(parked_at(5s));
  clock_.advance(4999ms);
  EXPECT_EQ(recorder_.count(), 1u);
  const auto listings = watcher.stats().listings;
  clock_.advance(1ms);
  ASSERT_TRUE(recorder_.wait_for(2));
  EXPECT_THAT(recorder_.calls()[1], IsEmpty());
  EXPECT_EQ(watcher.stats().listings, listings + 1);
  // And again every interval.
  engine().set_containers(list({kDns}));
  ASSERT_TRUE(parked_at(5s));
  clock_.advance(5s);
  ASSERT_TRUE(recorder_.wait_for(3));
  EXPECT_THAT(recorder_.calls()[2], ::testing::ContainerEq(kDnsPorts));
}

TEST_F(PortWatcherTest, ListsOnceMoreAfterTheSettleDelay) {
  engine().set_containers(list({kWeb}));
  auto& watcher = watch(1h, 250ms);
  ASSERT_TRUE(recorder_.wait_for(1));
  settle_after_subscribe();
  // dockerd 20.10 sends `die` before its list stops showing the container.
  const auto before = watcher.stats().events;
  engine().push_event(event("die"));
  ASSERT_TRUE(eventually([&] { return watcher.stats().events_applied > before; }));
  EXPECT_EQ(recorder_.count(), 1u);
  engine().set_containers(list({}));
  ASSERT_TRUE(parked_at(250ms));
  clock_.advance(250ms);
  ASSERT_TRUE(recorder_.wait_for(2));
  EXPECT_THAT(recorder_.calls()[1], IsEmpty());
  // A second follow-up at 4× the delay, for an engine slower to catch up.
  engine().set_containers(list({kDns}));
  ASSERT_TRUE(parked_at(750ms));
  clock_.advance(749ms);
  EXPECT_EQ(recorder_.count(), 2u);
  clock_.advance(1ms);
  ASSERT_TRUE(recorder_.wait_for(3));
  EXPECT_THAT(recorder_.calls()[2], ::testing::ContainerEq(kDnsPorts));
  // Then nothing until the next event or the reconcile.
  ASSERT_TRUE(parked_at(1h));
  EXPECT_EQ(clock_.deadlines().size(), 1u);
}

TEST_F(PortWatcherTest, AFailedListingKeepsTheLastSnapshot) {
  engine().set_containers(list({kWeb}));
  auto& watcher = watch();
  ASSERT_TRUE(recorder_.wait_for(1));
  settle_after_subscribe();
  for (auto [body, status] : std::vector<std::pair<std::string, int>>{
           {R"({"message":"boom"})", 500}, {"[{\"Id\":", 200}, {R"({"not":"a list"})", 200}}) {
    engine().set_containers(body, status);
    const auto failed = watcher.stats().failed_listings;
    engine().push_event(event("die"));
    ASSERT_TRUE(eventually([&] { return watcher.stats().failed_listings > failed; })) << body;
    EXPECT_THAT(plain(watcher.current()), ::testing::ContainerEq(kWebPorts));
  }
  EXPECT_EQ(recorder_.count(), 1u);
  engine().set_containers(list({kDns}));
  engine().push_event(event("start", kDnsId));
  ASSERT_TRUE(recorder_.wait_for(2));
  EXPECT_THAT(recorder_.calls()[1], ::testing::ContainerEq(kDnsPorts));
}

TEST_F(PortWatcherTest, GarbageOnTheEventStreamReconnects) {
  engine().set_containers(list({kWeb}));
  auto& watcher = watch();
  ASSERT_TRUE(recorder_.wait_for(1));
  settle_after_subscribe();
  engine().push_chunk("this is not json\n");
  ASSERT_TRUE(parked_at(PortWatcher::kFirstBackoff));
  engine().drop_streams();  // the fake does not notice the client went away
  clock_.advance(PortWatcher::kFirstBackoff);
  EXPECT_TRUE(eventually([&] { return watcher.stats().stream_connects == 2; }));
}

TEST_F(PortWatcherTest, AnEngineThatComesUpLaterIsFollowed) {
  auto& watcher = watch();
  ASSERT_TRUE(parked_at(PortWatcher::kFirstBackoff));  // nothing listens yet
  ASSERT_TRUE(eventually([&] { return watcher.stats().failed_listings >= 1; }));
  EXPECT_EQ(recorder_.count(), 0u);  // "could not list" is not "nothing published"
  engine().set_containers(list({kDns}));
  clock_.advance(PortWatcher::kFirstBackoff);
  ASSERT_TRUE(recorder_.wait_for(1));
  EXPECT_THAT(recorder_.calls()[0], ::testing::ContainerEq(kDnsPorts));
}

TEST_F(PortWatcherTest, StopsPromptlyWhileFollowingAndWhileAListingHangs) {
  engine().set_containers(list({kWeb}));
  watch();
  ASSERT_TRUE(recorder_.wait_for(1));
  ASSERT_TRUE(eventually([&] { return watcher_->stats().following; }));
  auto t0 = std::chrono::steady_clock::now();
  watcher_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);

  // An engine that accepts and never answers: both exchanges are stuck in flight.
  engine().hang(true);
  watch();
  ASSERT_TRUE(eventually([&] { return engine().hung_connections() >= 2; }));
  t0 = std::chrono::steady_clock::now();
  watcher_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(recorder_.count(), 1u);
}

TEST_F(PortWatcherTest, StopsPromptlyDuringBackoff) {
  watch();
  ASSERT_TRUE(parked_at(PortWatcher::kFirstBackoff));
  const auto t0 = std::chrono::steady_clock::now();
  watcher_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST(PortWatcherConfig, SocketPathLongerThanSunPathIsRejected) {
  ManualWaitClock clock;
  EXPECT_THROW(PortWatcher(fs::path("/tmp") / std::string(200, 'x'), [](const auto&) {}, clock),
               std::invalid_argument);
}

}  // namespace
