#include "offload/cli/interrupt.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include <grpcpp/client_context.h>

#include "offload/cli/cli.h"

namespace offload::cli {

Interrupt::Interrupt() : when_idle([] { std::_Exit(kExitInterrupted); }) {}

void Interrupt::request() {
  requested_.store(true);
  std::lock_guard lock(mutex_);
  if (in_flight_) in_flight_->TryCancel();
  else if (when_idle) when_idle();
}

Interrupt::Guard::Guard(Interrupt& interrupt, grpc::ClientContext& context)
    : interrupt_(interrupt) {
  std::lock_guard lock(interrupt.mutex_);
  if (interrupt.requested_.load()) throw CliError("", kExitInterrupted);
  interrupt.in_flight_ = &context;
}

Interrupt::Guard::~Guard() {
  std::lock_guard lock(interrupt_.mutex_);
  interrupt_.in_flight_ = nullptr;
}

PluginSocketWatcher::PluginSocketWatcher(const std::string& address, Interrupt& interrupt)
    : interrupt_(interrupt) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  socklen_t len;
  if (!address.empty() && address[0] == '@') {
    // Abstract namespace: a leading NUL, then the name, and the length says where it ends.
    const std::string name = address.substr(1);
    if (name.size() + 1 > sizeof(addr.sun_path)) return;
    std::memcpy(addr.sun_path + 1, name.data(), name.size());
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  } else {
    if (address.empty() || address.size() + 1 > sizeof(addr.sun_path)) return;
    std::memcpy(addr.sun_path, address.c_str(), address.size() + 1);
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size() + 1);
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 ||
      ::pipe2(wake_, O_CLOEXEC) != 0) {
    ::close(fd);
    return;
  }
  fd_ = fd;
  thread_ = std::thread([this] { watch(); });
}

PluginSocketWatcher::~PluginSocketWatcher() {
  if (thread_.joinable()) {
    char byte = 0;
    while (::write(wake_[1], &byte, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
  }
  for (int fd : {fd_, wake_[0], wake_[1]})
    if (fd >= 0) ::close(fd);
}

void PluginSocketWatcher::watch() {
  pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    char buf[256];
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n > 0) continue;  // the CLI sends nothing we act on; only its going away matters
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    interrupt_.request();  // EOF, or a reset: either way the CLI let go of us
    return;
  }
}

}  // namespace offload::cli
