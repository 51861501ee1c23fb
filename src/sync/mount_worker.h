// The protocol of one mount's connection to its replica, run on the mount's thread: handshake,
// first synchronisation (reconcile the local tree, the replica's manifest and the base), then the
// live exchange of changes until the call breaks, and again on the next connection. Apart from
// MountSync (mount.cpp), the mount's public face, which only keeps status, readiness, flush
// requests and the retry wait for this worker and its callers. Private to src/sync.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "offload/sync/entry.h"
#include "offload/sync/mount.h"
#include "offload/sync/reconcile.h"
#include "offload/sync/tree.h"
#include "offload/sync/watcher.h"
#include "offload/sync/wire.h"
#include "exchange.h"
#include "pending.h"

namespace offload::sync {

// Everything the mount's thread owns. One connection at a time; the base survives reconnection.
class MountSync::Worker {
 public:
  explicit Worker(MountSync& owner);

  void run();

 private:
  // A connection and its first synchronisation.
  bool connect(std::string& why);
  void session();
  bool wanted(const std::string& path) const;
  bool receive_manifest(Manifest& remote);
  void act_locally(const Action& a, const Manifest& local);
  bool act(const Action& a, std::set<std::string>& fetched);

  // What goes to the replica. Every send may handle the replica's messages meanwhile (Link).
  bool send_remove(const std::string& path);
  bool send_local(const std::string& path);
  bool push(const Entry& entry);
  bool push_parents(const std::string& path);
  bool send_replies();
  std::uint64_t send_barrier();

  // The live exchange: local changes out, the replica's messages in.
  void live();
  void collect();
  std::optional<Entry> local_entry(const std::string& path);
  bool process_local();
  // Link's handler: never blocks, never sends (replies go to replies_).
  bool handle(const v1::SyncMessage& msg);
  bool protocol_error();

  // The replica's changes, compared with the local tree and the base.
  void discard(const v1::SyncChange& change);
  void apply(const Entry& r, const std::string& as_path, const v1::SyncChange& change,
             std::function<void()> then);
  void remote_change(const v1::SyncChange& change);
  void remote_remove(const std::string& path);
  void remote_rename(const std::string& from, const std::string& to);
  bool subtree_unchanged(const std::string& dir);
  void mark_subtree_dirty(const std::string& dir);

  void note_skipped(const Skipped& s);
  void note_error(const std::string& path, std::error_code ec);

  MountSync& m_;
  const Options& o_;
  std::filesystem::path root_;
  std::string file_name_;
  std::unique_ptr<Tree> tree_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<detail::Link> link_;
  detail::Receiving receiving_;
  // What handlers decided to send (fetches, renames): small, sent from the loop.
  std::deque<v1::SyncMessage> replies_;
  std::unique_ptr<Watcher> watcher_;
  std::string bind_source_;
  Manifest base_;
  detail::PendingChanges pending_{o_.settle, o_.max_delay};
  std::uint64_t barrier_id_ = 0;
  std::uint64_t initial_barrier_ = 0;
  bool ready_sent_ = false;
  std::map<std::uint64_t, std::vector<std::function<void(bool)>>> pending_flushes_;
};

}  // namespace offload::sync
