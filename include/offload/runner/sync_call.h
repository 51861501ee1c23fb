// The runner's end of Runner.Sync calls: each call is a replica (offload::sync) running on a
// thread of its own, because it does blocking file I/O that must not hold up gRPC's threads or
// the tunnels' io_context.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "offload/sync/byte_budget.h"
#include "offload/sync/replica.h"
#include "offload/v1/runner.grpc.pb.h"

namespace offload::runner {

class SyncCall;

// The live Sync calls of one session. Teardown stops them all before the session's directories
// are deleted, so no replica writes into a tree that is going away.
class SyncCalls {
 public:
  // Starts serving a call whose trees live in `sync_root`/<mount id>.
  grpc::ServerBidiReactor<v1::SyncMessage, v1::SyncMessage>* start(
      grpc::CallbackServerContext* ctx, std::filesystem::path sync_root, std::string session_label,
      std::optional<sync::ReplicaOptions::IdShift> id_shift = {});
  // Cancels every call and waits (up to `timeout`) until they are all done. Later calls are
  // refused.
  bool stop_all(std::chrono::milliseconds timeout);
  // At most `max` calls at once (0 = unlimited); more are refused with RESOURCE_EXHAUSTED.
  void set_max_calls(std::size_t max) {
    std::lock_guard lock(mu_);
    max_calls_ = max;
  }
  std::size_t size() const;
  // At most about `max` bytes of received messages the replicas have not taken yet, for all the
  // calls together (0 = unlimited). A call reads its next message only while the session is
  // under it, so the session holds at most `max` plus one message per open call.
  void set_max_buffered_bytes(std::size_t max) { budget_->set_limit(max); }
  // Bytes received and not yet taken by the replicas, now and at the most.
  std::size_t buffered_bytes() const { return budget_->used(); }
  std::size_t peak_buffered_bytes() const { return budget_->peak(); }
  // Test seam: runs on each later call's own thread before its replica starts, so a test can
  // hold replicas back (as busy ones would be) while their clients send.
  void set_replica_gate(std::function<void()> gate) {
    std::lock_guard lock(mu_);
    replica_gate_ = std::move(gate);
  }

  // The mounts the session's calls opened, each in one mode for the session's life: a
  // directory, or one named file. A mount id opened again in the other mode is refused (the
  // returned error; "" when the claim holds), so a directory that was bound as one file's
  // home can never be filled with entries by the client afterwards.
  std::string claim(const std::string& mount_id, bool single_file, const std::string& file_name);
  // True when `relative` (to the sync root) is what a claimed mount offers for binding: a
  // directory mount's own directory ("<id>"), or a single-file mount's file ("<id>/<name>").
  // Nothing inside a directory mount is: its entries change under the API gate's check (the
  // client syncs, containers write), and dockerd would follow a symlink swapped in after it.
  bool is_mount_source(const std::filesystem::path& relative) const;
  // The claims so far, and the claims of a session restored after a runner restart (before
  // any call starts), so that a mount keeps its mode across the restart too.
  std::map<std::string, std::optional<std::string>> claims() const;
  void restore_claims(std::map<std::string, std::optional<std::string>> claims);
  // Runs (outside the lock, on the call's thread) after claim() added a mount: the session
  // records it.
  void set_on_new_claim(std::function<void()> on_new_claim) {
    std::lock_guard lock(mu_);
    on_new_claim_ = std::move(on_new_claim);
  }
  // The ids of the mounts claimed so far (for the runner's admin view).
  std::vector<std::string> mount_ids() const;
  // Bytes of sync messages received from and sent to the session's clients, all calls together.
  std::uint64_t bytes_received() const { return bytes_received_.load(); }
  std::uint64_t bytes_sent() const { return bytes_sent_.load(); }

 private:
  friend class SyncCall;
  void remove(SyncCall* call);
  // mount id → the file of a single-file mount, nullopt for a directory mount
  std::map<std::string, std::optional<std::string>> claims_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::set<SyncCall*> calls_;
  bool stopped_ = false;
  std::size_t max_calls_ = 0;
  // Shared with every call (and its inbox), which may outlive this object's teardown wait.
  const std::shared_ptr<sync::ByteBudget> budget_ = std::make_shared<sync::ByteBudget>();
  std::function<void()> replica_gate_;
  std::function<void()> on_new_claim_;
  std::atomic<std::uint64_t> bytes_received_{0};
  std::atomic<std::uint64_t> bytes_sent_{0};
};

}  // namespace offload::runner
