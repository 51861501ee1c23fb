// Conversions between the synchroniser's own types and the offload.v1 Sync messages, and the
// blocking message transport both ends run their loops on.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "offload/sync/byte_budget.h"
#include "offload/sync/entry.h"
#include "offload/v1/runner.pb.h"

namespace offload::sync {

v1::SyncEntry to_wire(const Entry& entry);
// nullopt when the message is not acceptable (invalid path, unknown type, oversized target).
std::optional<Entry> from_wire(const v1::SyncEntry& entry);

// Received messages waiting for the loop that handles them. Bounded: a full inbox blocks the
// producer (gRPC's reader), which is what pushes back on a fast sender. poll() on fd() says when
// something is waiting; close() ends it (pending messages are still delivered first).
class Inbox {
 public:
  explicit Inbox(std::size_t capacity = 16);
  ~Inbox();
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  // Blocks while full. False if the inbox is closed.
  bool push(v1::SyncMessage message);
  // Never blocks: false (and `message` untouched) when full or closed. For producers that must
  // not block (gRPC reactor callbacks); they resume when on_space fires.
  bool try_push(v1::SyncMessage& message);
  // Called (outside the lock, on the consumer's thread) when a pop frees a slot of a full inbox.
  void set_on_space(std::function<void()> on_space);
  // Charges every message pushed from now on (its ByteSizeLong) to `budget`, whatever its room
  // (the message is already in memory: the producer checks the room before it reads the next),
  // and gives it back when the message is popped or the inbox is destroyed.
  void set_budget(std::shared_ptr<ByteBudget> budget);
  // Non-blocking: a message, or nullopt if none is waiting.
  std::optional<v1::SyncMessage> try_pop();
  // Blocks up to `timeout` for a message; nullopt on timeout or when finished.
  std::optional<v1::SyncMessage> pop_wait(std::chrono::milliseconds timeout);
  // True once closed and drained.
  bool finished() const;
  bool closed() const;
  void close();
  // An eventfd: readable while messages are waiting or the inbox is closed.
  int fd() const { return fd_; }
  // An eventfd: readable while there is room (or the inbox is closed), for a producer that
  // waits with poll() (the in-process transport).
  int space_fd() const { return space_fd_; }

 private:
  void update_signal_locked();
  void enqueue_locked(v1::SyncMessage&& message);
  mutable std::mutex mu_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::function<void()> on_space_;
  std::deque<v1::SyncMessage> queue_;
  std::deque<std::size_t> charges_;  // what each queued message costs budget_
  std::shared_ptr<ByteBudget> budget_;
  std::size_t capacity_;
  bool closed_ = false;
  bool signalled_ = false;
  bool space_signalled_ = false;
  int fd_ = -1;
  int space_fd_ = -1;
};

// One end of a Sync call as the synchroniser loops see it. Sending never blocks: a side that
// waited to send while its peer waited to send too would never read again, and neither would
// the peer (both sides carry bulk data at once). detail::Link builds the waiting on top, reading
// meanwhile.
class Transport {
 public:
  enum class Offer {
    taken,   // the message is on its way (moved from)
    busy,    // the transport holds as much as it may: try again when send_fd() is readable
    broken,  // the call is over
  };
  virtual ~Transport() = default;
  // Hands `message` over if the transport can take it now; never blocks.
  virtual Offer try_send(v1::SyncMessage& message) = 0;
  // An fd for poll(): readable while try_send would not answer busy.
  virtual int send_fd() = 0;
  virtual Inbox& inbox() = 0;
  // Ends the call from this side (the peer's inbox closes, so does ours).
  virtual void cancel() = 0;
  // Why the call ended (e.g. the runner's status message), once the inbox is finished.
  virtual std::string end_reason() const { return {}; }
};

// Two connected in-process transports (tests, and benchmarks of the synchroniser alone); each
// end's inbox holds `capacity` messages, like the real ends' inboxes.
std::pair<std::unique_ptr<Transport>, std::unique_ptr<Transport>> make_transport_pair(
    std::size_t capacity = 16);

// Largest content carried by one SyncChange / SyncData message.
inline constexpr std::size_t kSyncChunk = 256 * 1024;

}  // namespace offload::sync
