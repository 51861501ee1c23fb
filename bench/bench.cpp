// offload-bench: the timing loops of bench/run.sh. Each verb measures several variants
// (direct, offload, ssh, ...) interleaved round by round, so that drift on a noisy machine hits
// every variant alike and the ratios of one run stay comparable. Results are JSON on stdout.
//
//   offload-bench commands --runs N [--warmup W] LABEL 'shell command' [LABEL 'command' ...]
//   offload-bench stream --bytes B --streams S --runs N LABEL PORT [LABEL PORT ...]
//   offload-bench rr --conns C --rounds K [--size Z] [--warmup W] LABEL PORT [LABEL PORT ...]
//   offload-bench connects --count N --parallel P [--rounds R] [--size Z] LABEL PORT [...]
//   offload-bench ttfb --runs N [--warmup W] LABEL 'shell command' [LABEL 'command' ...]
//   offload-bench wait sink|echo PORT [--timeout SECONDS]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Variant {
  std::string label;
  std::string target;  // a shell command or a port
};

struct Args {
  std::map<std::string, std::string> options;
  std::vector<Variant> variants;
};

// --name value pairs first, then LABEL TARGET pairs.
Args parse(int argc, char** argv, int first) {
  Args a;
  int i = first;
  for (; i < argc && std::strncmp(argv[i], "--", 2) == 0; i += 2) {
    if (i + 1 >= argc) throw std::runtime_error(std::string("missing value for ") + argv[i]);
    a.options[argv[i] + 2] = argv[i + 1];
  }
  for (; i + 1 < argc; i += 2) a.variants.push_back({argv[i], argv[i + 1]});
  if (i != argc) throw std::runtime_error("variants come in pairs: LABEL TARGET");
  return a;
}

long option(const Args& a, const std::string& name, long fallback) {
  auto it = a.options.find(name);
  if (it == a.options.end()) return fallback;
  std::string v = it->second;
  long scale = 1;
  if (!v.empty() && (v.back() == 'K' || v.back() == 'M' || v.back() == 'G')) {
    scale = v.back() == 'K' ? 1L << 10 : v.back() == 'M' ? 1L << 20 : 1L << 30;
    v.pop_back();
  }
  return std::stol(v) * scale;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // Nearest rank: p50 of an even count is the upper middle, p99 of 100 samples is the 99th.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ---- commands ------------------------------------------------------------------------------

// Runs one shell command with its output discarded; returns the exit code.
int run_shell(const std::string& command) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    if (!::getenv("BENCH_SHOW_ERRORS")) ::dup2(null, 2);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

int commands(const Args& a) {
  long runs = option(a, "runs", 10), warmup = option(a, "warmup", 1);
  std::map<std::string, std::vector<double>> samples;
  for (long round = 0; round < warmup + runs; ++round) {
    for (auto& v : a.variants) {
      auto start = Clock::now();
      int code = run_shell(v.target);
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      if (code != 0) {
        std::cerr << "offload-bench: " << v.label << ": exit " << code << ": " << v.target << "\n";
        return 1;
      }
      if (round >= warmup) samples[v.label].push_back(ms);
    }
  }
  json out = json::object();
  for (auto& v : a.variants) {
    auto& s = samples[v.label];
    out[v.label] = {{"median_ms", median(s)}, {"p90_ms", percentile(s, 90)},
                    {"min_ms", *std::min_element(s.begin(), s.end())}, {"runs", s.size()}};
  }
  std::cout << out.dump() << "\n";
  return 0;
}

// ---- time to first byte -----------------------------------------------------------------

// Starts a shell command in a process group of its own and returns the milliseconds until its
// first stdout byte (-1 if it exited or stayed silent for `timeout_seconds`), then kills the
// group: commands like `docker logs -f` never end by themselves.
double first_byte_ms(const std::string& command, int timeout_seconds) {
  int out[2];
  if (::pipe(out) != 0) return -1;
  auto start = Clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(out[1], 1);
    if (!::getenv("BENCH_SHOW_ERRORS")) ::dup2(null, 2);
    ::close(out[0]);
    ::close(out[1]);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here: the kill below must not race the child's own setpgid
  ::close(out[1]);
  double ms = -1;
  pollfd p{out[0], POLLIN, 0};
  if (::poll(&p, 1, timeout_seconds * 1000) == 1) {
    char c;
    if (::read(out[0], &c, 1) == 1)
      ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }
  ::kill(-pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  ::close(out[0]);
  return ms;
}

int ttfb(const Args& a) {
  long runs = option(a, "runs", 10), warmup = option(a, "warmup", 1);
  int timeout = static_cast<int>(option(a, "timeout", 60));
  std::map<std::string, std::vector<double>> samples;
  for (long round = 0; round < warmup + runs; ++round) {
    for (auto& v : a.variants) {
      double ms = first_byte_ms(v.target, timeout);
      if (ms < 0) {
        std::cerr << "offload-bench: " << v.label << ": no output within " << timeout
                  << " s: " << v.target << "\n";
        return 1;
      }
      if (round >= warmup) samples[v.label].push_back(ms);
    }
  }
  json out = json::object();
  for (auto& v : a.variants) {
    auto& s = samples[v.label];
    out[v.label] = {{"median_ms", median(s)}, {"p90_ms", percentile(s, 90)},
                    {"min_ms", *std::min_element(s.begin(), s.end())}, {"runs", s.size()}};
  }
  std::cout << out.dump() << "\n";
  return 0;
}

// ---- sockets -------------------------------------------------------------------------------

int connect_port(int port, int timeout_seconds = 60) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{timeout_seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t w = ::send(fd, data, size, MSG_NOSIGNAL);
    if (w <= 0) return false;
    data += w;
    size -= static_cast<size_t>(w);
  }
  return true;
}

bool recv_exact(int fd, char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::recv(fd, data, size, 0);
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Sends `bytes` to a sink, half-closes, and checks the sink's count: the clock stops only when
// every byte reached the container, not when it left our socket buffer.
bool sink_stream(int port, uint64_t bytes) {
  int fd = connect_port(port);
  if (fd < 0) return false;
  static const std::string chunk(1 << 18, 'x');
  uint64_t left = bytes;
  bool ok = true;
  while (ok && left > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, chunk.size()));
    ok = send_all(fd, chunk.data(), n);
    left -= n;
  }
  ::shutdown(fd, SHUT_WR);
  unsigned char count[8];
  ok = ok && recv_exact(fd, reinterpret_cast<char*>(count), sizeof count);
  ::close(fd);
  uint64_t got = 0;
  for (unsigned char c : count) got = (got << 8) | c;
  return ok && got == bytes;
}

int stream(const Args& a) {
  long runs = option(a, "runs", 3), streams = option(a, "streams", 1);
  uint64_t bytes = static_cast<uint64_t>(option(a, "bytes", 1L << 30));
  uint64_t per_stream = bytes / static_cast<uint64_t>(streams);
  std::map<std::string, std::vector<double>> samples;
  for (long round = 0; round < runs; ++round) {
    for (auto& v : a.variants) {
      int port = std::stoi(v.target);
      std::atomic<int> failed{0};
      auto start = Clock::now();
      std::vector<std::thread> threads;
      for (long s = 0; s < streams; ++s)
        threads.emplace_back([&] {
          if (!sink_stream(port, per_stream)) ++failed;
        });
      for (auto& t : threads) t.join();
      double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      if (failed) {
        std::cerr << "offload-bench: " << v.label << ": " << failed << " streams failed\n";
        return 1;
      }
      samples[v.label].push_back(static_cast<double>(per_stream * streams) / 1e6 / seconds);
    }
  }
  json out = json::object();
  for (auto& v : a.variants) {
    auto& s = samples[v.label];
    out[v.label] = {{"median_mb_s", median(s)}, {"min_mb_s", *std::min_element(s.begin(), s.end())},
                    {"max_mb_s", *std::max_element(s.begin(), s.end())}, {"runs", s.size()},
                    {"streams", streams}, {"bytes", per_stream * streams}};
  }
  std::cout << out.dump() << "\n";
  return 0;
}

// ---- request/response ----------------------------------------------------------------------

int rr(const Args& a) {
  long conns = option(a, "conns", 100), rounds = option(a, "rounds", 100);
  // Untimed round trips per connection before the clock starts (see below).
  long warmup = option(a, "warmup", 1);
  size_t size = static_cast<size_t>(option(a, "size", 64));
  json out = json::object();
  for (auto& v : a.variants) {
    int port = std::stoi(v.target);
    std::vector<std::vector<double>> per(conns);
    std::atomic<int> failed{0}, ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (long c = 0; c < conns; ++c)
      threads.emplace_back([&, c] {
        int fd = connect_port(port);
        if (fd < 0) {
          ++failed;
          ++ready;
          return;
        }
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::string request(size, static_cast<char>('a' + c % 26)), reply(size, '\0');
        // A proxy (ssh -L, offload) connects its own way to the target only after accepting
        // ours: a first round trip before `go` makes the timed rounds measure the path, not its
        // set-up (which, with 50 rounds, was 2 % of the samples and set the p99).
        for (long r = 0; r < warmup; ++r)
          if (!send_all(fd, request.data(), size) || !recv_exact(fd, reply.data(), size)) {
            ++failed;
            ++ready;
            ::close(fd);
            return;
          }
        ++ready;
        while (!go) std::this_thread::yield();
        for (long r = 0; r < rounds; ++r) {
          auto start = Clock::now();
          if (!send_all(fd, request.data(), size) || !recv_exact(fd, reply.data(), size) ||
              reply != request) {
            ++failed;
            break;
          }
          per[c].push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
        }
        ::close(fd);
      });
    // All connections are open and have made their untimed round trips before the first timed
    // one: this measures concurrency, not connection set-up.
    while (ready < conns) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto start = Clock::now();
    go = true;
    for (auto& t : threads) t.join();
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (failed) {
      std::cerr << "offload-bench: " << v.label << ": " << failed << " connections failed\n";
      return 1;
    }
    std::vector<double> all;
    for (auto& p : per) all.insert(all.end(), p.begin(), p.end());
    out[v.label] = {{"p50_us", percentile(all, 50)}, {"p99_us", percentile(all, 99)},
                    {"round_trips", all.size()}, {"conns", conns}, {"warmup_per_conn", warmup},
                    {"round_trips_per_s", static_cast<double>(all.size()) / seconds}};
  }
  std::cout << out.dump() << "\n";
  return 0;
}

// ---- new connections -----------------------------------------------------------------------

// What a client that opens a connection per request sees (HTTP/1.0, health checks, a CLI run
// in a loop): connect, one request/response, close. The time is from connect() to the reply,
// so it includes the proxy's own dial to the container, which rr's warm-up leaves out. `count`
// connections per variant, `parallel` at a time, in `rounds` interleaved slices.
int connects(const Args& a) {
  long count = option(a, "count", 2000), parallel = option(a, "parallel", 4);
  long rounds = std::max(1L, option(a, "rounds", 5));
  size_t size = static_cast<size_t>(option(a, "size", 64));
  std::map<std::string, std::vector<double>> samples;
  std::map<std::string, double> busy_seconds;
  for (long round = 0; round < rounds; ++round) {
    for (auto& v : a.variants) {
      const int port = std::stoi(v.target);
      const long slice = count / rounds + (round < count % rounds ? 1 : 0);
      std::atomic<long> next{0};
      std::atomic<int> failed{0};
      std::vector<std::vector<double>> per(parallel);
      std::vector<std::thread> threads;
      auto start = Clock::now();
      for (long t = 0; t < parallel; ++t)
        threads.emplace_back([&, t] {
          std::string request(size, 'c'), reply(size, '\0');
          while (next.fetch_add(1) < slice) {
            auto begin = Clock::now();
            int fd = connect_port(port, 10);
            bool ok = fd >= 0 && send_all(fd, request.data(), size) &&
                      recv_exact(fd, reply.data(), size) && reply == request;
            if (fd >= 0) ::close(fd);
            if (!ok) {
              ++failed;
              return;
            }
            per[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - begin).count());
          }
        });
      for (auto& t : threads) t.join();
      busy_seconds[v.label] += std::chrono::duration<double>(Clock::now() - start).count();
      if (failed) {
        std::cerr << "offload-bench: " << v.label << ": " << failed << " connections failed\n";
        return 1;
      }
      for (auto& p : per) samples[v.label].insert(samples[v.label].end(), p.begin(), p.end());
    }
  }
  json out = json::object();
  for (auto& v : a.variants) {
    auto& all = samples[v.label];
    out[v.label] = {{"p50_us", percentile(all, 50)}, {"p99_us", percentile(all, 99)},
                    {"connections", all.size()}, {"parallel", parallel},
                    {"connections_per_s", static_cast<double>(all.size()) / busy_seconds[v.label]}};
  }
  std::cout << out.dump() << "\n";
  return 0;
}

// ---- wait ----------------------------------------------------------------------------------

// A forwarded port accepts before the container listens (the far end is dialled per
// connection), so readiness is a full exchange with the peer, not a successful connect.
int wait_ready(const std::string& kind, int port, int timeout_seconds) {
  auto until = Clock::now() + std::chrono::seconds(timeout_seconds);
  while (Clock::now() < until) {
    bool ok = false;
    if (kind == "sink") {
      ok = sink_stream(port, 1);
    } else {
      int fd = connect_port(port, 2);
      char c = 0;
      ok = fd >= 0 && send_all(fd, "?", 1) && recv_exact(fd, &c, 1) && c == '?';
      if (fd >= 0) ::close(fd);
    }
    if (ok) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::cerr << "offload-bench: port " << port << " did not answer as " << kind << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string verb = argc > 1 ? argv[1] : "";
  try {
    if (verb == "commands") return commands(parse(argc, argv, 2));
    if (verb == "stream") return stream(parse(argc, argv, 2));
    if (verb == "rr") return rr(parse(argc, argv, 2));
    if (verb == "connects") return connects(parse(argc, argv, 2));
    if (verb == "ttfb") return ttfb(parse(argc, argv, 2));
    if (verb == "wait" && argc >= 4) {
      int timeout = argc >= 6 && std::string(argv[4]) == "--timeout" ? std::stoi(argv[5]) : 60;
      return wait_ready(argv[2], std::stoi(argv[3]), timeout);
    }
  } catch (const std::exception& e) {
    std::cerr << "offload-bench: " << e.what() << "\n";
    return 2;
  }
  std::cerr << "usage: offload-bench commands|stream|rr|connects|ttfb|wait ... (see bench/run.sh)\n";
  return 2;
}
