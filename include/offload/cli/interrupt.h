// Ctrl-C for a docker CLI plugin. The docker CLI owns the terminal: on Ctrl-C it closes the
// connection it offered in DOCKER_CLI_PLUGIN_SOCKET, and the plugin must cancel and exit.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace grpc {
class ClientContext;
}

namespace offload::cli {

// Where an interrupt goes: the RPC in flight is cancelled (the command then exits 130 on its
// own), and with no RPC in flight `when_idle` runs (by default the process ends with 130).
class Interrupt {
 public:
  Interrupt();
  bool requested() const { return requested_.load(); }
  void request();

  // While it lives, an interrupt cancels `context` instead of running `when_idle`.
  class Guard {
   public:
    Guard(Interrupt& interrupt, grpc::ClientContext& context);
    ~Guard();
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    Interrupt& interrupt_;
  };

  std::function<void()> when_idle;

 private:
  std::atomic<bool> requested_{false};
  std::mutex mutex_;
  grpc::ClientContext* in_flight_ = nullptr;
};

// Connects to the docker CLI's plugin socket and calls `interrupt.request()` when it reaches EOF.
// The address is the env value: "@name" is a Linux abstract socket, anything else a path.
class PluginSocketWatcher {
 public:
  PluginSocketWatcher(const std::string& address, Interrupt& interrupt);
  ~PluginSocketWatcher();
  PluginSocketWatcher(const PluginSocketWatcher&) = delete;
  PluginSocketWatcher& operator=(const PluginSocketWatcher&) = delete;

  // False when the socket could not be reached: Ctrl-C then only works through SIGINT.
  bool connected() const { return fd_ >= 0; }

 private:
  void watch();

  Interrupt& interrupt_;
  int fd_ = -1;
  int wake_[2] = {-1, -1};  // closes the watch loop on destruction
  std::thread thread_;
};

}  // namespace offload::cli
