// The runner's side of one Sync call: a copy of a client's tree in the session's sync root.
//
// The replica is deliberately simple: it applies what the client sends, in order, and reports
// what changes under it that the client did not send (a container wrote it). It remembers, per
// path, the last state both sides know of (`known`): a watcher event whose stat matches it is an
// echo of our own write and is not reported, and a client change that would overwrite a newer
// local one keeps the local one as a conflict copy first. All decisions about what to send live
// in the client (MountSync).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "offload/sync/wire.h"

namespace offload::sync {

struct ReplicaOptions {
  // The session's sync root; each mount gets <sync_root>/<mount_id>.
  std::filesystem::path sync_root;
  // Changes the replica sees are reported after this much quiet (a file being written produces
  // a burst of events) and never later than max_delay after the first one; barriers report at
  // once.
  std::chrono::milliseconds settle{50};
  std::chrono::milliseconds max_delay{300};
  // A stamp for conflict copy names ("20261129-174501"); injectable for tests.
  std::function<std::string()> stamp;
  // Set when the session's engine remaps user namespaces: the owner the client asks for (its
  // uid/gid U, what containers see) becomes host id base + U, so container root (host id base)
  // owns and can write what the replica creates. Ids past the 65536 the engine maps become base.
  struct IdShift {
    std::uint32_t uid_base = 0, gid_base = 0;
  };
  std::optional<IdShift> id_shift;
  // Asked when a call opens a mount: "" lets it open, anything else refuses the open with that
  // message (the runner keeps each mount id in one mode for a session's life).
  std::function<std::string(const std::string& mount_id, bool single_file,
                            const std::string& file_name)>
      claim;
};

// Serves one call until the transport ends or `stop` is set (checked at least every 200 ms).
// Blocking: run it on a thread of its own. Errors that end the call are sent as SyncError and
// logged; the function never throws.
void serve_replica(Transport& transport, const ReplicaOptions& options,
                   const std::atomic<bool>& stop);

// A sync root's mount directory name: 16 lowercase hex digits.
bool valid_mount_id(const std::string& id);

// "20261129-174501" in UTC, for conflict copy names.
std::string conflict_stamp_now();

}  // namespace offload::sync
