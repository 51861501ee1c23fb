#include "offload/engine/unix_http.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

using namespace offload::engine;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// A one-shot HTTP server on a unix socket: reads a request head, records it, answers `reply`
// (or nothing at all when `reply` is empty, to exercise the timeout).
class FakeEngine {
 public:
  explicit FakeEngine(std::string reply) : reply_(std::move(reply)) {
    dir_ = fs::temp_directory_path() / ("uh-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(counter_++));
    fs::create_directories(dir_);
    socket_ = dir_ / "s.sock";
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_.c_str(), sizeof addr.sun_path - 1);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_, 1) != 0)
      throw std::runtime_error("fake engine: cannot listen");
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeEngine() {
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    if (thread_.joinable()) thread_.join();
    if (client_ >= 0) ::close(client_);
    fs::remove_all(dir_);
  }
  const fs::path& socket() const { return socket_; }
  std::string request_head() {
    thread_.join();
    return head_;
  }

 private:
  void serve() {
    client_ = ::accept(listener_, nullptr, nullptr);
    if (client_ < 0) return;
    char buf[4096];
    while (head_.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::read(client_, buf, sizeof buf);
      if (n <= 0) return;
      head_.append(buf, static_cast<std::size_t>(n));
    }
    if (reply_.empty()) return;  // keep the connection open and silent
    (void)!::write(client_, reply_.data(), reply_.size());
    ::close(client_);
    client_ = -1;
  }

  static inline int counter_ = 0;
  std::string reply_;
  fs::path dir_, socket_;
  int listener_ = -1, client_ = -1;
  std::thread thread_;
  std::string head_;
};

}  // namespace

TEST(UnixHttpGet, ReturnsStatusAndBody) {
  FakeEngine engine("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.41\r\n\r\nOK");
  HttpReply reply;
  auto ec = unix_http_get(engine.socket(), "/_ping", reply, 5s);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "OK");
  auto head = engine.request_head();
  EXPECT_EQ(head.rfind("GET /_ping HTTP/1.1\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("Host: docker\r\n"), std::string::npos) << head;
}

TEST(UnixHttpGet, AnErrorStatusIsStillAReply) {
  FakeEngine engine(
      "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n");
  HttpReply reply;
  ASSERT_FALSE(unix_http_get(engine.socket(), "/nope", reply, 5s));
  EXPECT_EQ(reply.status, 404);
  EXPECT_EQ(reply.body, "{\"a\": 1}");
}

TEST(UnixHttpGet, FailsWhenNobodyListens) {
  HttpReply reply;
  auto ec = unix_http_get("/nonexistent-dir-offload/docker.sock", "/_ping", reply, 5s);
  EXPECT_TRUE(ec);
  EXPECT_EQ(reply.status, 0);
}

TEST(UnixHttpGet, FailsOnAGarbledReply) {
  FakeEngine engine("SSH-2.0-OpenSSH\r\n\r\n");
  HttpReply reply;
  EXPECT_TRUE(unix_http_get(engine.socket(), "/_ping", reply, 5s));
}

TEST(UnixHttpGet, GivesUpAfterTheTimeout) {
  FakeEngine engine("");
  HttpReply reply;
  auto ec = unix_http_get(engine.socket(), "/_ping", reply, 200ms);
  EXPECT_EQ(ec, std::make_error_code(std::errc::timed_out));
}

TEST(UnixHttpGet, RejectsASocketPathLongerThanSunPath) {
  HttpReply reply;
  auto ec = unix_http_get("/tmp/" + std::string(200, 'x'), "/_ping", reply, 1s);
  EXPECT_EQ(ec, std::make_error_code(std::errc::filename_too_long));
}
