#include "exchange.h"

#include <poll.h>
#include <spdlog/spdlog.h>

namespace offload::sync::detail {

using namespace std::chrono_literals;

namespace {
// Messages handled between two attempts to send: enough to empty a full inbox, few enough that
// a peer sending without pause does not hold our own sending up for long.
constexpr std::size_t kHandleBatch = 64;
}  // namespace

Link::Link(Transport& transport, const std::atomic<bool>& stop)
    : transport_(transport), stop_(stop) {}

bool Link::send(v1::SyncMessage message) {
  if (handling_) {
    // A handler that sent would nest a send inside a send (inside a file's pieces, even).
    spdlog::error("sync: a message handler tried to send; ending the call");
    over_ = true;
    return false;
  }
  for (;;) {
    if (over_ || stop_.load()) return false;
    switch (transport_.try_send(message)) {
      case Transport::Offer::taken: return true;
      case Transport::Offer::broken: over_ = true; return false;
      case Transport::Offer::busy: break;
    }
    // The peer is not reading: it may be sending too, and wait for us to read. We do.
    if (handler_ && !handle_waiting(kHandleBatch)) return false;
    if (transport_.inbox().finished()) {
      over_ = true;
      return false;
    }
    pollfd fds[2] = {{transport_.send_fd(), POLLIN, 0}, {transport_.inbox().fd(), POLLIN, 0}};
    ::poll(fds, handler_ ? 2 : 1, 200);
  }
}

bool Link::handle_waiting(std::size_t max) {
  if (!handler_) return !over_;
  for (std::size_t i = 0; i < max; ++i) {
    if (over_ || stop_.load()) return false;
    auto m = transport_.inbox().try_pop();
    if (!m) return true;
    handling_ = true;
    bool ok = handler_(*m);
    handling_ = false;
    if (!ok) {
      over_ = true;
      return false;
    }
  }
  return !over_;
}

std::optional<v1::SyncMessage> Link::next() {
  while (!over_ && !stop_.load()) {
    if (auto m = transport_.inbox().pop_wait(200ms)) return m;
    if (transport_.inbox().finished()) over_ = true;
  }
  return std::nullopt;
}

SendResult send_entry(Link& link, const Tree& tree, const Entry& entry,
                      const std::string& as_path, Entry& sent, std::uint64_t& bytes) {
  v1::SyncMessage m;
  auto* change = m.mutable_change();
  if (entry.type != EntryType::file) {
    sent = entry;
    *change->mutable_entry() = to_wire(entry);
    change->mutable_entry()->set_path(as_path);
    return link.send(std::move(m)) ? SendResult::sent : SendResult::broken;
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
  if (!link.send(std::move(m))) return SendResult::broken;
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
    if (!link.send(std::move(d))) return SendResult::broken;
  }
  return SendResult::sent;
}

void Receiving::begin(Tree* tree, const Entry& entry, const std::string& as_path,
                      const v1::SyncChange& change, Done done) {
  reset();
  entry_ = entry;
  done_ = std::move(done);
  if (tree) {
    switch (entry.type) {
      case EntryType::directory:
        ec_ = as_path.empty() ? tree->set_attributes("", entry.mode, entry.mtime_ns)
                              : tree->make_directory(as_path, entry.mode);
        break;
      case EntryType::symlink:
        ec_ = tree->make_symlink(as_path, entry.link_target, entry.mtime_ns);
        break;
      case EntryType::file:
        writer_.emplace();
        ec_ = tree->begin_file(as_path, *writer_);
        break;
    }
  }
  feed(change.data());
  active_ = change.more();
  if (!active_) finish();
}

bool Receiving::data(const v1::SyncData& data) {
  if (!active_) return false;
  feed(data.data());
  if (data.last()) {
    active_ = false;
    finish();
  }
  return true;
}

void Receiving::reset() {
  active_ = false;
  writer_.reset();
  ec_.clear();
  bytes_ = 0;
  done_ = nullptr;
}

void Receiving::feed(const std::string& data) {
  bytes_ += data.size();
  if (!ec_ && writer_ && !data.empty()) ec_ = writer_->append(data);
}

void Receiving::finish() {
  if (writer_ && !ec_) ec_ = writer_->commit(entry_.mode, entry_.mtime_ns);
  writer_.reset();
  // `done` may begin the next change on this very object: take what it needs first.
  auto done = std::move(done_);
  done_ = nullptr;
  if (done) done(ec_, bytes_);
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
