// The container side of the port-forward benchmarks, linked statically so it runs in the
// busybox image (busybox has no sink that serves many connections and reports what it got).
//
//   offload-bench-peer sink PORT   read each connection to EOF, answer the byte count (8 bytes,
//                                  big endian), close: the client learns every byte arrived
//   offload-bench-peer echo PORT   write back what is read; half-close after EOF
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace {

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t w = ::send(fd, data, size, MSG_NOSIGNAL);
    if (w <= 0) return false;
    data += w;
    size -= static_cast<size_t>(w);
  }
  return true;
}

void sink(int fd) {
  static thread_local char buf[1 << 18];
  uint64_t total = 0;
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    total += static_cast<uint64_t>(n);
  }
  unsigned char count[8];
  for (int i = 0; i < 8; ++i) count[i] = static_cast<unsigned char>(total >> (56 - 8 * i));
  write_all(fd, reinterpret_cast<char*>(count), sizeof count);
  ::close(fd);
}

void echo(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  static thread_local char buf[1 << 16];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    if (!write_all(fd, buf, static_cast<size_t>(n))) break;
  }
  ::shutdown(fd, SHUT_WR);
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "sink") != 0 && std::strcmp(argv[1], "echo") != 0)) {
    std::fprintf(stderr, "usage: offload-bench-peer sink|echo PORT\n");
    return 2;
  }
  bool is_sink = std::strcmp(argv[1], "sink") == 0;
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 512) != 0) {
    std::perror("listen");
    return 1;
  }
  for (;;) {
    int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) continue;
    std::thread(is_sink ? sink : echo, fd).detach();
  }
}
