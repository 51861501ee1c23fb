#include "exchange.h"

namespace offload::sync::detail {

using namespace std::chrono_literals;

SendResult send_entry(Transport& transport, const Tree& tree, const Entry& entry,
                      const std::string& as_path, Entry& sent, std::uint64_t& bytes) {
  v1::SyncMessage m;
  auto* change = m.mutable_change();
  if (entry.type != EntryType::file) {
    sent = entry;
    *change->mutable_entry() = to_wire(entry);
    change->mutable_entry()->set_path(as_path);
    return transport.send(m) ? SendResult::sent : SendResult::broken;
  }
  FileReader reader;
  if (tree.open_file(entry.path, reader)) return SendResult::gone;
  sent = reader.entry();
  sent.path = entry.path;
  *change->mutable_entry() = to_wire(sent);
  change->mutable_entry()->set_path(as_path);
  // The first chunk rides in the change itself: small files (the common case) cost one message.
  std::string chunk;
  if (reader.read(chunk, kSyncChunk)) return SendResult::gone;
  std::uint64_t total = chunk.size();
  bool more = total < sent.size;
  change->set_data(std::move(chunk));
  change->set_more(more);
  if (!transport.send(m)) return SendResult::broken;
  bytes += total;
  while (more) {
    v1::SyncMessage d;
    std::string* data = d.mutable_data()->mutable_data();
    std::error_code ec = reader.read(*data, kSyncChunk);
    // A file that shrank while we read it ends early: the peer gets what there was, and the
    // watcher reports the file again, so the next round sends the final content.
    if (ec || data->empty()) {
      data->clear();
      more = false;
    } else {
      total += data->size();
      bytes += data->size();
      more = total < sent.size;
    }
    d.mutable_data()->set_last(!more);
    if (!transport.send(d)) return SendResult::broken;
  }
  return SendResult::sent;
}

std::optional<v1::SyncMessage> next_message(Inbox& inbox, const std::atomic<bool>& stop) {
  while (!stop.load()) {
    if (auto m = inbox.pop_wait(200ms)) return m;
    if (inbox.finished()) return std::nullopt;
  }
  return std::nullopt;
}

bool receive_data(Inbox& inbox, const v1::SyncChange& change, const DataSink& sink,
                  std::error_code& sink_error, std::uint64_t& bytes, const std::atomic<bool>& stop) {
  auto feed = [&](const std::string& data) {
    bytes += data.size();
    if (!sink_error && !data.empty()) sink_error = sink(data);
  };
  feed(change.data());
  bool more = change.more();
  while (more) {
    auto m = next_message(inbox, stop);
    if (!m || m->kind_case() != v1::SyncMessage::kData) return false;
    feed(m->data().data());
    more = !m->data().last();
  }
  return true;
}

bool apply_change(Tree& tree, const Entry& entry, const std::string& as_path,
                  const v1::SyncChange& change, Inbox& inbox, const std::atomic<bool>& stop,
                  std::error_code& ec, std::uint64_t& bytes) {
  ec.clear();
  switch (entry.type) {
    case EntryType::directory:
      ec = as_path.empty() ? tree.set_attributes("", entry.mode, entry.mtime_ns)
                           : tree.make_directory(as_path, entry.mode);
      return receive_data(inbox, change, [](std::string_view) { return std::error_code{}; }, ec,
                          bytes, stop);
    case EntryType::symlink:
      ec = tree.make_symlink(as_path, entry.link_target, entry.mtime_ns);
      return receive_data(inbox, change, [](std::string_view) { return std::error_code{}; }, ec,
                          bytes, stop);
    case EntryType::file: {
      FileWriter writer;
      ec = tree.begin_file(as_path, writer);
      std::error_code write_ec = ec;
      bool alive = receive_data(
          inbox, change, [&writer](std::string_view d) { return writer.append(d); }, write_ec,
          bytes, stop);
      if (!alive) return false;
      if (write_ec) {
        ec = write_ec;
        return true;
      }
      ec = writer.commit(entry.mode, entry.mtime_ns);
      return true;
    }
  }
  return true;
}

v1::SyncMessage error_message(const std::string& path, const std::string& text) {
  v1::SyncMessage m;
  m.mutable_error()->set_path(path);
  m.mutable_error()->set_message(text);
  return m;
}

std::error_code ensure_parents(Tree& tree, const std::string& path) {
  std::string parent = parent_path(path);
  if (parent.empty()) return {};
  std::size_t pos = 0;
  for (;;) {
    pos = parent.find('/', pos);
    std::string prefix = pos == std::string::npos ? parent : parent.substr(0, pos);
    std::error_code ec;
    auto e = tree.stat(prefix, ec);
    if (ec) return ec;
    if (!e) {
      if (auto mk = tree.make_directory(prefix, 0755)) return mk;
    } else if (e->type != EntryType::directory) {
      return std::make_error_code(std::errc::not_a_directory);
    }
    if (pos == std::string::npos) return {};
    ++pos;
  }
}

}  // namespace offload::sync::detail
