// What the data path (the Docker endpoint, port forwarding, bind-mount synchronisation) may ask
// of the daemon's session, and nothing more: it depends on this, not on SessionManager, so the
// control plane can change without touching the data path and no include cycle can form.
#pragma once

#include <memory>
#include <string>

#include "offload/daemon/port_forwarder.h"
#include "offload/daemon/runner_client.h"

namespace offload::daemon {

class SessionAccess : public ActivitySink {
 public:
  // The live session's runner, or nullptr; then `unavailable_message()` says why, for the user.
  // Thread-safe, never blocks on the network.
  virtual std::shared_ptr<RunnerClient> runner() const = 0;
  virtual std::string unavailable_message() const = 0;
  // Queues a message for the next `docker offload` command to print (duplicates dropped).
  virtual void post_notice(std::string notice) = 0;
};

}  // namespace offload::daemon
