// offload-bench-wan-relay: a TCP relay that behaves like a far-away link, for the "far-away
// runner" scenario of bench/run.sh. This kernel has no netem, and tc would touch the machine's
// network; a relay of our own puts the same link in front of any port, offload's or sshd's.
//
//   offload-bench-wan-relay --listen 127.0.0.1:P --target 127.0.0.1:Q --delay-ms 20
//                           --rate-mbit 200 [--buffer-kib N]
//
// Every accepted connection is forwarded to the target. Each direction is a link of its own:
// bytes are serialised at --rate-mbit (one after the other, as on a wire) and then take
// --delay-ms to arrive, so a round trip costs 2 × delay. A direction holds at most --buffer-kib
// of bytes read but not yet delivered (default rate × RTT × 2: the bytes in flight plus a queue
// as deep again); when that is full it stops reading, and TCP's window pushes back on the sender
// as a full router queue would (without the drops, which a relay cannot make).
//
// The TCP handshake costs one round trip on a real link, before the client may send anything;
// here the kernel completes it locally at once, so the relay makes up for it: the client's bytes
// are read no earlier than 2 × delay after the accept (they arrive 3 × delay after connect(), as
// on the link), and the target's no earlier than 3 × delay (so a server that speaks first, like
// sshd, is heard 4 × delay after connect()).
//
// An EOF is delivered as a half-close (shutdown(SHUT_WR)) after the bytes before it; a reset or
// write error on either side ends both directions. Two threads per connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::nanoseconds;

struct Options {
  sockaddr_in listen{};
  sockaddr_in target{};
  nanoseconds delay{};
  double bytes_per_ns = 0;
  size_t buffer_bytes = 0;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "offload-bench-wan-relay: %s\n"
               "usage: offload-bench-wan-relay --listen HOST:PORT --target HOST:PORT "
               "--delay-ms MS --rate-mbit MBIT [--buffer-kib KIB]\n",
               why.c_str());
  std::exit(2);
}

sockaddr_in parse_address(const std::string& flag, const std::string& text) {
  auto colon = text.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  char* end = nullptr;
  long port = colon == std::string::npos ? -1 : std::strtol(text.c_str() + colon + 1, &end, 10);
  if (colon == std::string::npos || *end != '\0' || port < 0 || port > 65535 ||
      ::inet_pton(AF_INET, text.substr(0, colon).c_str(), &a.sin_addr) != 1)
    usage(flag + " \"" + text + "\" is not IPV4:PORT (e.g. 127.0.0.1:7443)");
  a.sin_port = htons(static_cast<uint16_t>(port));
  return a;
}

double parse_number(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || v < 0) usage(flag + " \"" + text + "\" is not a number ≥ 0");
  return v;
}

Options parse(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; i += 2) {
    std::string name = argv[i];
    if (name != "--listen" && name != "--target" && name != "--delay-ms" && name != "--rate-mbit" &&
        name != "--buffer-kib")
      usage("unknown argument " + name);
    if (i + 1 >= argc) usage("missing value for " + name);
    flags[name] = argv[i + 1];
  }
  for (const char* required : {"--listen", "--target", "--delay-ms", "--rate-mbit"})
    if (!flags.count(required)) usage(std::string(required) + " is required");
  Options o;
  o.listen = parse_address("--listen", flags["--listen"]);
  o.target = parse_address("--target", flags["--target"]);
  double delay_ms = parse_number("--delay-ms", flags["--delay-ms"]);
  double mbit = parse_number("--rate-mbit", flags["--rate-mbit"]);
  if (mbit <= 0) usage("--rate-mbit must be more than 0");
  o.delay = duration_cast<nanoseconds>(std::chrono::duration<double, std::milli>(delay_ms));
  o.bytes_per_ns = mbit * 1e6 / 8 / 1e9;
  double rtt_s = 2 * delay_ms / 1000;
  double fallback = std::max(mbit * 1e6 / 8 * rtt_s * 2, 256.0 * 1024);
  o.buffer_bytes = flags.count("--buffer-kib")
                       ? static_cast<size_t>(parse_number("--buffer-kib", flags["--buffer-kib"]) * 1024)
                       : static_cast<size_t>(fallback);
  if (o.buffer_bytes < 16 * 1024) usage("--buffer-kib must be at least 16");
  return o;
}

// Small socket buffers on the relay's own sockets: otherwise the kernel's autotuned buffers
// (megabytes on loopback) would add a second, unbounded queue in front of the link.
constexpr int kSocketBuffer = 256 * 1024;
// One read is one "packet" on the link: small enough that pacing is smooth.
constexpr size_t kChunk = 16 * 1024;

struct Chunk {
  Clock::time_point due;  // when its last byte arrives at the far end of the link
  std::vector<char> bytes;
  size_t written = 0;
};

// One direction of a connection: read from `from`, deliver to `to` through the link model.
// Returns when EOF was delivered or the connection broke (then `broken` is set for the other).
void direction(int from, int to, const Options& o, Clock::time_point read_not_before,
               std::atomic<bool>& broken) {
  std::deque<Chunk> queue;
  size_t queued = 0;
  bool eof = false;          // the sender half-closed (or reset): deliver it after the queue
  Clock::time_point eof_due;  // when the FIN arrives, behind the last byte
  Clock::time_point link_free = Clock::now();  // when the wire finishes the bytes before
  std::vector<char> buffer(kChunk);
  auto fail = [&] {
    broken = true;
    ::shutdown(from, SHUT_RDWR);
    ::shutdown(to, SHUT_RDWR);
  };
  for (;;) {
    if (broken) return fail();
    auto now = Clock::now();
    // Deliver what is due.
    while (!queue.empty() && queue.front().due <= now) {
      Chunk& c = queue.front();
      ssize_t w = ::send(to, c.bytes.data() + c.written, c.bytes.size() - c.written,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (w < 0) return fail();
      c.written += static_cast<size_t>(w);
      if (c.written < c.bytes.size()) break;
      queued -= c.bytes.size();
      queue.pop_front();
    }
    if (eof && queue.empty() && eof_due <= now) {
      ::shutdown(to, SHUT_WR);
      return;
    }
    bool blocked_on_write = !queue.empty() && queue.front().due <= now;
    bool may_read = !eof && queued + kChunk <= o.buffer_bytes && now >= read_not_before;

    // Sleep until something can happen: readable input, writable output, or the next due time.
    pollfd fds[2];
    nfds_t n = 0;
    if (may_read) fds[n++] = {from, POLLIN, 0};
    if (blocked_on_write) fds[n++] = {to, POLLOUT, 0};
    Clock::time_point wake = Clock::time_point::max();
    if (!blocked_on_write && !queue.empty()) wake = queue.front().due;
    if (eof && queue.empty()) wake = std::min(wake, eof_due);
    if (!eof && now < read_not_before) wake = std::min(wake, read_not_before);
    timespec ts{};
    timespec* timeout = nullptr;
    if (wake != Clock::time_point::max()) {
      auto left = std::max(nanoseconds(0), duration_cast<nanoseconds>(wake - now));
      ts.tv_sec = static_cast<time_t>(left.count() / 1000000000);
      ts.tv_nsec = static_cast<long>(left.count() % 1000000000);
      timeout = &ts;
    }
    if (n == 0 && timeout == nullptr) {
      // Nothing to wait for can only mean the queue is full and nothing is due, which the
      // wake time above covers; guard against a spin anyway.
      ts = {0, 1000000};
      timeout = &ts;
    }
    if (::ppoll(fds, n, timeout, nullptr) < 0 && errno != EINTR) return fail();
    if (!may_read) continue;
    ssize_t r = ::recv(from, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    now = Clock::now();
    if (r < 0) return fail();  // a reset: end both directions
    // Serialisation: the wire takes these bytes after the ones before, at the link rate.
    auto wire_time = nanoseconds(static_cast<int64_t>(static_cast<double>(r > 0 ? r : 0) /
                                                      o.bytes_per_ns));
    link_free = std::max(link_free, now) + wire_time;
    if (r == 0) {
      eof = true;
      eof_due = link_free + o.delay;
      continue;
    }
    queue.push_back({link_free + o.delay, std::vector<char>(buffer.begin(), buffer.begin() + r)});
    queued += static_cast<size_t>(r);
  }
}

void set_buffers(int fd) {
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketBuffer, sizeof kSocketBuffer);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof kSocketBuffer);
  int one = 1;
  // The relay does its own pacing; Nagle would add delay the link does not have.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void serve_connection(int client, const Options& o) {
  auto accepted = Clock::now();
  set_buffers(client);
  int target = ::socket(AF_INET, SOCK_STREAM, 0);
  set_buffers(target);
  if (::connect(target, reinterpret_cast<const sockaddr*>(&o.target), sizeof o.target) != 0) {
    std::fprintf(stderr, "offload-bench-wan-relay: cannot connect to the target: %s\n",
                 std::strerror(errno));
    ::close(target);
    ::close(client);
    return;
  }
  std::atomic<bool> broken{false};
  std::thread upstream(direction, client, target, std::cref(o), accepted + 2 * o.delay,
                       std::ref(broken));
  direction(target, client, o, accepted + 3 * o.delay, broken);
  upstream.join();
  ::close(target);
  ::close(client);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Set before listen() so that accepted sockets start with the small buffers (a window
  // advertised in the handshake cannot shrink later).
  set_buffers(listener);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&o.listen), sizeof o.listen) != 0 ||
      ::listen(listener, 512) != 0) {
    std::fprintf(stderr, "offload-bench-wan-relay: cannot listen: %s\n", std::strerror(errno));
    return 1;
  }
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &len);
  char host[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &bound.sin_addr, host, sizeof host);
  std::printf("listening on %s:%d, delay %.1f ms each way, %.0f Mbit/s, buffer %zu KiB\n", host,
              ntohs(bound.sin_port), static_cast<double>(o.delay.count()) / 1e6,
              o.bytes_per_ns * 8e3, o.buffer_bytes / 1024);
  std::fflush(stdout);
  for (;;) {
    int client = ::accept(listener, nullptr, nullptr);
    if (client < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::fprintf(stderr, "offload-bench-wan-relay: accept: %s\n", std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    std::thread(serve_connection, client, std::cref(o)).detach();
  }
}
