// Moving one entry over a Sync call, used by both ends (replica and mount).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <system_error>

#include "offload/sync/tree.h"
#include "offload/sync/wire.h"

namespace offload::sync::detail {

enum class SendResult {
  sent,    // `sent` holds the entry as it was read (fstat of the open file)
  gone,    // the path vanished or changed type meanwhile: the caller re-stats it
  broken,  // the call is over
};

// Sends `entry` as a change (files: with their content, read from `tree` in kSyncChunk pieces;
// memory stays bounded whatever the file size). `as_path` is the path to announce (the entry's
// own unless a copy is sent under another name).
SendResult send_entry(Transport& transport, const Tree& tree, const Entry& entry,
                      const std::string& as_path, Entry& sent, std::uint64_t& bytes);

// Reads the remaining SyncData of a change from the inbox. Returns false if the call ended or the
// peer broke the protocol.
using DataSink = std::function<std::error_code(std::string_view)>;
bool receive_data(Inbox& inbox, const v1::SyncChange& change, const DataSink& sink,
                  std::error_code& sink_error, std::uint64_t& bytes, const std::atomic<bool>& stop);

// Applies a received change to `tree` at `as_path` (consuming its data from the inbox). The
// write error (if any) is returned in `ec`; the return value is false only when the call is over.
bool apply_change(Tree& tree, const Entry& entry, const std::string& as_path,
                  const v1::SyncChange& change, Inbox& inbox, const std::atomic<bool>& stop,
                  std::error_code& ec, std::uint64_t& bytes);

// Waits for the next message; nullopt when the call is over or `stop` is set.
std::optional<v1::SyncMessage> next_message(Inbox& inbox, const std::atomic<bool>& stop);

v1::SyncMessage error_message(const std::string& path, const std::string& text);

// Creates the missing directories above `path` (mode 0755; the peer's own entries for them,
// which follow, set the real modes). A rename into a directory created a moment ago must not
// fail because that directory's own change has not been applied yet.
std::error_code ensure_parents(Tree& tree, const std::string& path);

}  // namespace offload::sync::detail
