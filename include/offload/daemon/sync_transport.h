// offloadd's end of a Runner.Sync call as a sync::Transport (gRPC's synchronous streaming API on
// the session's channel, with a reader thread feeding the inbox and a writer thread draining a
// one-message outbox).
#pragma once

#include <memory>
#include <string>

#include "offload/daemon/runner_client.h"
#include "offload/sync/wire.h"

namespace offload::daemon {

// Never blocks on the network; a refused call shows up as a finished inbox with end_reason().
std::unique_ptr<sync::Transport> open_sync_transport(RunnerClient& runner);

}  // namespace offload::daemon
