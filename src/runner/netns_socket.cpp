#include "offload/runner/netns_socket.h"

#include <fcntl.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace offload::runner {
namespace {

std::error_code last_error() { return {errno, std::generic_category()}; }

// The namespace this thread belongs in, opened on its first dial into another one (threads of
// the runner never change namespace otherwise, so that is the runner's own).
class HomeNamespace {
 public:
  HomeNamespace() : fd_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) error_ = last_error();
  }
  ~HomeNamespace() {
    if (fd_ >= 0) ::close(fd_);
  }
  HomeNamespace(const HomeNamespace&) = delete;
  HomeNamespace& operator=(const HomeNamespace&) = delete;
  int fd() const { return fd_; }
  // Why it could not be opened (kept: errno is long gone by the next dial).
  std::error_code error() const { return error_; }

 private:
  int fd_;
  std::error_code error_;
};

}  // namespace

int socket_in_network_namespace(const std::string& netns_path, int domain, int type,
                                std::error_code& ec) {
  // Why not a helper thread: starting and joining one per dial cost ~50 µs of the loop's time
  // (docs/benchmarks.md, "New connections"); two setns() calls cost ~8.
  thread_local HomeNamespace home;
  if (home.fd() < 0) {
    ec = home.error();
    return -1;
  }
  const int target = ::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    ec = last_error();
    return -1;
  }
  if (::setns(target, CLONE_NEWNET) != 0) {
    ec = last_error();
    ::close(target);
    return -1;
  }
  ::close(target);
  const int fd = ::socket(domain, type | SOCK_CLOEXEC, 0);
  if (fd < 0) ec = last_error();
  if (::setns(home.fd(), CLONE_NEWNET) != 0) {
    // Cannot happen short of the kernel refusing memory; carrying on would make every later
    // socket of this thread (any session's, the runner's own) in the wrong namespace.
    const int error = errno;
    spdlog::critical(
        "cannot return to the runner's network namespace after dialling into {}: {}; stopping",
        netns_path, std::strerror(error));
    std::abort();
  }
  return fd;
}

}  // namespace offload::runner
