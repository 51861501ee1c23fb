// offloadd's side of one synchronised bind mount: the local tree, mirrored to the session's
// replica on the runner and back.
//
// The mount decides everything: at (re)connection it merges the local tree, the replica's
// manifest and the base (what both sides last agreed on, kept across reconnections) and sends,
// fetches, deletes or keeps conflicting copies; afterwards it sends local changes (inotify) and
// applies the replica's, comparing each against the base so that echoes of its own writes do
// nothing and changes on both sides become conflicts instead of losses. It runs on a thread of
// its own: file I/O blocks, and the Docker API proxy must never wait on a disk.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "offload/sync/entry.h"
#include "offload/sync/ignore.h"
#include "offload/sync/scanner.h"
#include "offload/sync/wire.h"

namespace offload::sync {

struct MountStatus {
  enum class State { connecting, syncing, watching, reconnecting, failed, stopped };
  std::string local_path;
  std::string mount_id;
  bool single_file = false;
  State state = State::connecting;
  std::string error;  // the last error (state failed/reconnecting, or a path that failed)
  std::uint64_t files_sent = 0, bytes_sent = 0;
  std::uint64_t files_received = 0, bytes_received = 0;
  std::uint64_t entries = 0;  // paths known to be in sync
  std::vector<std::string> conflicts;  // user-facing lines, newest last (bounded)
  std::vector<Skipped> skipped;        // special files left out (bounded)
  std::int64_t last_change_unix_ms = 0;
};

const char* to_string(MountStatus::State state);

class MountSync {
 public:
  struct Options {
    std::filesystem::path local_path;  // absolute; a directory, or a file when single_file
    bool single_file = false;
    IgnoreRules rules;
    std::uint32_t uid = 0, gid = 0;  // owner of the replica's files
    std::chrono::milliseconds settle{50};
    std::chrono::milliseconds max_delay{300};
    std::chrono::milliseconds reconnect_delay{1000};
    std::function<std::string()> stamp;  // conflict copy names; default conflict_stamp_now
  };
  // Opens a Sync call to the session's runner; nullptr (and a reason) when there is none.
  using Connect = std::function<std::unique_ptr<Transport>(std::string& why_not)>;

  MountSync(std::string mount_id, Options options, Connect connect);
  ~MountSync();
  MountSync(const MountSync&) = delete;
  MountSync& operator=(const MountSync&) = delete;

  // Calls `done(true, bind_source)` once the first synchronisation is complete, or
  // `done(false, message)` if it failed. Immediately (on the calling thread) when already known.
  using ReadyCallback = std::function<void(bool ok, const std::string& bind_source_or_error)>;
  void when_ready(ReadyCallback done);
  // A barrier in both directions (see BindSync::flush). `done(false)` when the mount is not
  // connected: the caller goes on without it.
  void flush(std::function<void(bool ok)> done);
  MountStatus status() const;
  // Ends the call and joins the thread. Idempotent.
  void stop();

  // The mount's id for a local path: 16 hex digits of its SHA-256.
  static std::string id_for(const std::filesystem::path& local_path);

 private:
  class Worker;
  friend class Worker;

  // For the worker thread.
  void set_state(MountStatus::State state, const std::string& error);
  void set_ready(bool ok, const std::string& value);  // first call wins
  // Sleeps up to `delay` unless stopped (false) or woken by a new request (true).
  bool wait_retry(std::chrono::milliseconds delay);
  std::vector<std::function<void(bool)>> take_flush_requests();
  void fail_flushes();
  void changed();
  void set_entries(std::size_t entries);
  void count_sent(std::uint64_t bytes, bool file);
  void count_received(std::uint64_t bytes, bool file);
  void note_conflict(const std::string& line);
  void note_error(const std::string& path, const std::string& message);
  void note_skipped(const Skipped& skipped);

  std::string id_;
  Options options_;
  Connect connect_;
  mutable std::mutex mu_;
  MountStatus status_;
  std::vector<ReadyCallback> ready_waiters_;
  bool ready_known_ = false;
  bool ready_ok_ = false;
  std::string ready_value_;
  std::vector<std::function<void(bool)>> flush_requests_;
  std::atomic<bool> stop_{false};
  std::condition_variable retry_cv_;
  bool retry_now_ = false;
  int wake_fd_ = -1;
  std::unique_ptr<Worker> worker_;
  std::thread thread_;
};

}  // namespace offload::sync
