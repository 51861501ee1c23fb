// A static echo server that goes into the test image (busybox-static has no UDP nc and no
// forking TCP server): `echo-server tcp PORT` echoes each connection until its end-of-file,
// then half-closes; `echo-server udp PORT` answers each datagram with the same bytes.
// `echo-server unix PATH` is a client instead: it sends its stdin to the unix socket PATH,
// half-closes, and copies the answer to stdout (busybox's nc and wget speak no unix sockets; the
// docker.sock tests send raw HTTP requests with it). Exit status 3: cannot connect.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

int bound_socket(int type, int port) {
  int fd = ::socket(AF_INET6, type, 0);
  int off = 0, on = 1;
  ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);  // IPv4 too
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(static_cast<uint16_t>(port));
  addr.sin6_addr = in6addr_any;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::perror("bind");
    std::exit(1);
  }
  return fd;
}

void echo_connection(int fd) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::write(fd, buf + off, static_cast<size_t>(n - off));
      if (w <= 0) {
        ::close(fd);
        return;
      }
      off += w;
    }
  }
  ::shutdown(fd, SHUT_WR);
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: echo-server tcp|udp PORT | echo-server unix PATH\n");
    return 2;
  }
  std::string mode = argv[1];
  if (mode == "unix") {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, argv[2], sizeof addr.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      std::perror("connect");
      return 3;
    }
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(0, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = ::write(fd, buf + off, static_cast<size_t>(n - off));
        if (w <= 0) return 1;
        off += w;
      }
    }
    ::shutdown(fd, SHUT_WR);
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      if (::write(1, buf, static_cast<size_t>(n)) != n) return 1;
    }
    return 0;
  }
  int port = std::atoi(argv[2]);
  if (mode == "tcp") {
    int fd = bound_socket(SOCK_STREAM, port);
    ::listen(fd, 256);
    for (;;) {
      int c = ::accept(fd, nullptr, nullptr);
      if (c >= 0) std::thread(echo_connection, c).detach();
    }
  }
  int fd = bound_socket(SOCK_DGRAM, port);
  char buf[65536];
  for (;;) {
    sockaddr_in6 from{};
    socklen_t len = sizeof from;
    ssize_t n = ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n >= 0) ::sendto(fd, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
  }
}
