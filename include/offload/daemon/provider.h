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
  // Where the runner is, when that is known before provisioning (remote accounts): host:port.
  virtual std::string address() const { return {}; }
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

// A runner someone started elsewhere (`offload-runner serve`): nothing to provision but the
// account's token, read from its file at every start so a rotated token needs no restart.
class RemoteProvider final : public Provider {
 public:
  // `offload_dir` ($DOCKER_CONFIG/offload) anchors a relative token file.
  RemoteProvider(RemoteAccountSettings settings, const std::filesystem::path& offload_dir);
  std::string type() const override { return "remote"; }
  std::string description() const override { return "Runner at " + settings_.address; }
  std::string address() const override { return settings_.address; }
  // Reads the token; throws ProvisionError naming the file (never the token).
  ProvisionedRunner provision(std::chrono::milliseconds timeout) override;
  void release(const ProvisionedRunner&) override {}

  const std::filesystem::path& token_file() const { return token_file_; }
  const std::string& fingerprint() const { return settings_.fingerprint; }
  // The token: the first non-empty line of the file, trimmed. Throws ProvisionError.
  std::string read_token() const;

 private:
  RemoteAccountSettings settings_;
  std::filesystem::path token_file_;
};

}  // namespace offload::daemon
