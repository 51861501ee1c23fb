// Providers turn an account into a runner the daemon can talk to (design §6).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "offload/common/paths.h"
#include "offload/config/config.h"
#include "offload/daemon/runner_client.h"

namespace offload::daemon {

// A provider could not produce a runner; the message is for the user as is.
struct ProvisionError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ProvisionedRunner {
  RunnerEndpoint endpoint;
  pid_t runner_pid = -1;  // the local runner's process; -1 when the provider started none
};

class Provider {
 public:
  virtual ~Provider() = default;
  virtual std::string type() const = 0;
  virtual std::string description() const = 0;
  // Blocking. Throws ProvisionError.
  virtual ProvisionedRunner provision(std::chrono::milliseconds timeout) = 0;
  // After the session is gone: stop whatever provision() started. Never throws.
  virtual void release(const ProvisionedRunner& runner) = 0;
};

// The embedded default: an offload-runner on this machine, on a loopback port, with a fresh
// account token. Needs root and dockerd, as any runner host does.
class LocalProvider final : public Provider {
 public:
  LocalProvider(StatePaths paths, LocalAccountSettings settings);
  std::string type() const override { return "local"; }
  std::string description() const override {
    return "Embedded runner on this machine (needs root and dockerd)";
  }
  ProvisionedRunner provision(std::chrono::milliseconds timeout) override;
  void release(const ProvisionedRunner& runner) override;

  // Why this machine cannot host the local runner, or "" when it can.
  static std::string check_host();

 private:
  StatePaths paths_;
  LocalAccountSettings settings_;
};

}  // namespace offload::daemon
