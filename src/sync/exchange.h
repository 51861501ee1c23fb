// Moving entries over a Sync call, used by both ends (replica and mount).
//
// Both ends may carry bulk data at the same time (the laptop pushes a large file while a
// container writes one), so neither may wait to send without reading: the peer's reader would
// stall on a full inbox, the peer would stop reading us in turn, and both would wait for ever.
// Link therefore handles what arrives while the transport cannot take the next message, and a
// change's content is applied a message at a time (Receiving), whatever the side is sending
// meanwhile. Handlers never send: what they must say goes into a queue their side sends from
// its loop.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <system_error>

#include "offload/sync/tree.h"
#include "offload/sync/wire.h"

namespace offload::sync::detail {

class Link {
 public:
  // Handles one received message without blocking and without sending. False: the call is over
  // (the peer broke the protocol; the handler has said why).
  using Handler = std::function<bool(v1::SyncMessage&)>;

  Link(Transport& transport, const std::atomic<bool>& stop);

  // Until a handler is set (the handshake, where the peer only reads) send() just waits.
  void set_handler(Handler handler) { handler_ = std::move(handler); }
  // Sends `message`, handling received messages while the transport is busy. False once the call
  // is over, `stop` is set or a handler failed.
  bool send(v1::SyncMessage message);
  // Handles at most `max` messages waiting now. False as for send().
  bool handle_waiting(std::size_t max);
  // The next message, for a side that has no handler yet (the handshake): nullopt when the call
  // is over or `stop` is set.
  std::optional<v1::SyncMessage> next();
  Transport& transport() { return transport_; }

 private:
  Transport& transport_;
  const std::atomic<bool>& stop_;
  Handler handler_;
  bool handling_ = false;
  bool over_ = false;
};

enum class SendResult {
  sent,    // `sent` holds the entry as it was read (fstat of the open file)
  gone,    // the path vanished or changed type meanwhile: the caller re-stats it
  broken,  // the call is over
};

// Sends `entry` as a change (files: with their content, read from `tree` in kSyncChunk pieces;
// memory stays bounded whatever the file size). `as_path` is the path to announce (the entry's
// own unless a copy is sent under another name). Received messages are handled meanwhile.
SendResult send_entry(Link& link, const Tree& tree, const Entry& entry,
                      const std::string& as_path, Entry& sent, std::uint64_t& bytes);

// A received change being applied: its content arrives in the SyncData messages that follow it,
// possibly while the side is busy sending, so the state lives here rather than on a stack. One
// change at a time (a sender sends a change's data right after it).
class Receiving {
 public:
  // The change is complete: `ec` is the first error applying it (content dropped from then on),
  // `bytes` its content size.
  using Done = std::function<void(std::error_code ec, std::uint64_t bytes)>;

  // Applies `change` (parsed as `entry`) to `tree` at `as_path`, or with `tree` null only
  // consumes it. `done` (may be empty) runs when the last piece is in: at once without `more`.
  void begin(Tree* tree, const Entry& entry, const std::string& as_path,
             const v1::SyncChange& change, Done done);
  // Waiting for SyncData.
  bool active() const { return active_; }
  // The next piece; false if no change is being received (the peer broke the protocol).
  bool data(const v1::SyncData& data);
  // The call ended: an unfinished file is dropped (its temporary file removed).
  void reset();

 private:
  void feed(const std::string& data);
  void finish();

  bool active_ = false;
  Entry entry_;
  std::optional<FileWriter> writer_;
  std::error_code ec_;
  std::uint64_t bytes_ = 0;
  Done done_;
};

v1::SyncMessage error_message(const std::string& path, const std::string& text);

// Creates the missing directories above `path` (mode 0755; the peer's own entries for them,
// which follow, set the real modes). A rename into a directory created a moment ago must not
// fail because that directory's own change has not been applied yet.
std::error_code ensure_parents(Tree& tree, const std::string& path);

}  // namespace offload::sync::detail
