// `docker offload diagnose`, the daemon's half: every link between the CLI and the session
// engine, checked in the order a request crosses them, each passing or saying what to try.
#pragma once

#include <chrono>

#include "offload/common/paths.h"
#include "offload/daemon/session_manager.h"
#include "offload/v1/control.pb.h"

namespace offload::daemon {

// Check names, in the order they are reported. A check that needs an earlier one to pass is
// left out when that one failed (no "TLS fingerprint" for a runner that cannot be reached, no
// "engine ping" without a session).
inline constexpr const char* kCheckDaemon = "daemon";
inline constexpr const char* kCheckAccount = "account";
inline constexpr const char* kCheckRunnerReachable = "runner reachable";
inline constexpr const char* kCheckTlsFingerprint = "TLS fingerprint";
inline constexpr const char* kCheckSession = "session";
inline constexpr const char* kCheckEnginePing = "engine ping";
inline constexpr const char* kCheckDockerContext = "docker context";
inline constexpr const char* kCheckPortConflicts = "port conflicts";

struct DiagnoseOptions {
  // Per network step (Hello, GetSession, the engine ping): a runner that answers at all answers
  // well within this.
  std::chrono::milliseconds step_timeout = std::chrono::seconds(5);
};

// Blocking (up to a few step timeouts); never throws. Reads state.json and config.json from
// `paths` for the endpoint and the account's token file, and probes the runner over a channel
// of its own, so a broken session channel does not hide a working runner (or the reverse).
v1::DiagnoseResponse diagnose(SessionManager& sessions, const StatePaths& paths,
                              const DiagnoseOptions& options = {});

}  // namespace offload::daemon
