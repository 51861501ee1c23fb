#include "offload/sync/replica.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <ctime>
#include <deque>
#include <map>
#include <optional>
#include <set>

#include "exchange.h"
#include "pending.h"
#include "offload/sync/reconcile.h"
#include "offload/sync/scanner.h"
#include "offload/sync/tree.h"
#include "offload/sync/watcher.h"

namespace offload::sync {

using namespace std::chrono_literals;

bool valid_mount_id(const std::string& id) {
  if (id.size() != 16) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string conflict_stamp_now() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

namespace {

bool single_component(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         valid_relative_path(name);
}

class Replica {
 public:
  Replica(Transport& t, const ReplicaOptions& o, const std::atomic<bool>& stop)
      : link_(t, stop), options_(o), stop_(stop) {}

  void run() {
    auto first = link_.next();
    if (!first) return;
    if (first->kind_case() != v1::SyncMessage::kOpen) {
      fail("", "the first message of a Sync call must be open");
    } else if (open(first->open())) {
      link_.set_handler([this](const v1::SyncMessage& m) { return handle(m); });
      loop();
      // A handler that ended the call (a change's content interrupted) left its reason queued,
      // and the link sends nothing more: the client would see the call end without a word.
      say_why_it_ended();
      return;
    }
    run_jobs();  // the error that ended it
  }

 private:
  // What handlers decided to send, in order, sent from the loop: a message, the content of a
  // fetched path, or a barrier's answer (after this side's own changes).
  struct Job {
    enum Kind { message, fetch, barrier } kind;
    v1::SyncMessage msg;
    std::string path;
    std::uint64_t id = 0;
  };

  void fail(const std::string& path, const std::string& text) {
    spdlog::warn("sync {}: {}{}", id_, path.empty() ? "" : path + ": ", text);
    jobs_.push_back({Job::message, detail::error_message(path, text), {}, 0});
  }

  bool run_jobs() {
    while (!jobs_.empty() && !broken_) {
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      bool ok = true;
      switch (job.kind) {
        case Job::message: ok = link_.send(std::move(job.msg)); break;
        case Job::fetch: ok = report_subtree(job.path); break;
        case Job::barrier: {
          collect();
          report_dirty();
          if (broken_) return false;
          v1::SyncMessage ack;
          ack.mutable_barrier_ack()->set_id(job.id);
          ok = link_.send(std::move(ack));
          break;
        }
      }
      if (!ok) mark_broken();
    }
    return !broken_;
  }

  // Sends the errors still queued straight through the transport, waiting at most 2 s for it.
  void say_why_it_ended() {
    Transport& t = link_.transport();
    const auto until = std::chrono::steady_clock::now() + 2s;
    for (auto& job : jobs_) {
      if (job.kind != Job::message || !job.msg.has_error()) continue;
      for (;;) {
        auto offer = t.try_send(job.msg);
        if (offer == Transport::Offer::taken) break;
        if (offer == Transport::Offer::broken || stop_.load() ||
            std::chrono::steady_clock::now() >= until)
          return;
        pollfd fd{t.send_fd(), POLLIN, 0};
        ::poll(&fd, 1, 50);
      }
    }
    jobs_.clear();
  }

  bool open(const v1::SyncOpen& open) {
    id_ = open.mount_id();
    if (!valid_mount_id(id_)) {
      fail("", "invalid mount id");
      return false;
    }
    single_file_ = open.single_file();
    if (single_file_ && !single_component(open.file_name())) {
      fail("", "invalid file name for a single-file mount");
      return false;
    }
    file_name_ = single_file_ ? open.file_name() : "";
    if (options_.claim) {
      if (auto refused = options_.claim(id_, single_file_, file_name_); !refused.empty()) {
        fail("", refused);
        return false;
      }
    }
    std::error_code ec;
    auto root = options_.sync_root / id_;
    std::filesystem::create_directories(root, ec);
    if (ec) {
      fail("", "cannot create the sync directory: " + ec.message());
      return false;
    }
    Tree::Options topt;
    topt.in_place_files = single_file_;
    std::uint32_t uid = open.uid(), gid = open.gid();
    if (const auto& shift = options_.id_shift) {
      // 65536: the size of the engine's subordinate range (engine::kSubidCount).
      uid = shift->uid_base + (uid < 65536 ? uid : 0);
      gid = shift->gid_base + (gid < 65536 ? gid : 0);
    }
    topt.uid = static_cast<int>(uid);
    topt.gid = static_cast<int>(gid);
    if (auto e = Tree::open(root, topt, tree_)) {
      fail("", "cannot open the sync directory: " + e.message());
      return false;
    }
    if (::geteuid() == 0 && ::chown(root.c_str(), uid, gid) != 0)
      spdlog::debug("sync {}: cannot chown the root", id_);

    // What is already there: a mount opened again in the same session finds its copy.
    IgnoreRules none;
    if (single_file_) {
      if (auto e = stat_entry(root, file_name_, none)) known_[e->path] = *e;
    } else {
      try {
        known_ = scan_tree(root, none).entries;
      } catch (const std::exception& e) {
        fail("", std::string("cannot scan the sync directory: ") + e.what());
        return false;
      }
    }
    watcher_ = std::make_unique<Watcher>(root, none, file_name_);
    if (watcher_->error()) {
      fail("", "cannot watch the sync directory: " + watcher_->error().message());
      return false;
    }

    // The client only reads until the manifest is complete: no handler is needed yet.
    v1::SyncMessage ready;
    ready.mutable_ready()->set_bind_source((single_file_ ? root / file_name_ : root).string());
    if (!link_.send(std::move(ready))) return false;
    v1::SyncMessage batch;
    for (const auto& [path, entry] : known_) {
      *batch.mutable_manifest()->add_entries() = to_wire(entry);
      if (batch.manifest().entries_size() >= 1000) {
        if (!link_.send(std::move(batch))) return false;
        batch.Clear();
      }
    }
    batch.mutable_manifest()->set_last(true);
    spdlog::info("sync {}: opened ({} entries already present)", id_, known_.size());
    return link_.send(std::move(batch));
  }

  void loop() {
    Transport& t = link_.transport();
    pollfd fds[2] = {{t.inbox().fd(), POLLIN, 0}, {watcher_->fd(), POLLIN, 0}};
    while (!stop_.load() && !broken_) {
      if (!run_jobs()) return;
      if (pending_.due()) {
        report_dirty();
        continue;
      }
      int timeout = pending_.wait_ms(200);
      fds[0].revents = fds[1].revents = 0;
      ::poll(fds, 2, timeout);
      if (fds[1].revents) collect();
      if (!link_.handle_waiting(64)) return;
      if (t.inbox().finished()) return;
    }
  }

  void collect() { pending_.add(watcher_->drain()); }

  std::optional<Entry> stat_path(const std::string& path) {
    std::error_code ec;
    auto e = tree_->stat(path, ec);
    return ec ? std::nullopt : e;
  }

  // Reports what changed on this side since the client last heard of it.
  void report_dirty() {
    WatchBatch batch = pending_.take();
    auto& dirty = batch.dirty;
    for (auto& [from, to] : batch.moves) {
      auto k = known_.find(from);
      auto now_at_to = stat_path(to);
      if (k != known_.end() && now_at_to && !stat_path(from)) {
        Entry expect = k->second;
        expect.path = to;
        if (now_at_to->same_as(expect)) {
          // The client must have the new parent before it can move anything into it.
          if (!report_parents(to)) return mark_broken();
          v1::SyncMessage m;
          m.mutable_rename()->set_from(from);
          m.mutable_rename()->set_to(to);
          if (!link_.send(std::move(m))) return mark_broken();
          move_subtree(known_, from, to);
          continue;
        }
      }
      dirty.insert(from);
      dirty.insert(to);
    }
    if (batch.rescan) {
      for (const auto& [p, e] : known_) dirty.insert(p);
      if (!single_file_) {
        try {
          for (const auto& [p, e] : scan_tree(tree_->root(), IgnoreRules{}).entries) dirty.insert(p);
        } catch (const std::exception&) {
        }
      }
    }
    for (const auto& path : dirty) {
      if (path.empty()) continue;  // the root's own attributes are the client's business
      if (single_file_ && path != file_name_) continue;
      if (!report(path)) return mark_broken();
    }
  }

  // Reports the directories above `path` that the client does not know yet, top down.
  bool report_parents(const std::string& path) {
    std::string parent = parent_path(path);
    std::vector<std::string> missing;
    while (!parent.empty() && !known_.count(parent)) {
      missing.push_back(parent);
      parent = parent_path(parent);
    }
    for (auto it = missing.rbegin(); it != missing.rend(); ++it)
      if (!report(*it)) return false;
    return true;
  }

  // Sends `path` and, for a directory, everything below it, whatever the client knew.
  bool report_subtree(const std::string& path) {
    erase_subtree(known_, path);
    auto now = stat_path(path);
    if (!now) {
      v1::SyncMessage r;
      r.mutable_remove()->set_path(path);
      return link_.send(std::move(r));
    }
    if (!report(path)) return false;
    if (now->type != EntryType::directory) return true;
    try {
      for (const auto& [rel, e] : scan_tree(tree_->root() / path, IgnoreRules{}).entries)
        if (!rel.empty() && !report(path + "/" + rel)) return false;
    } catch (const std::exception& e) {
      fail(path, std::string("cannot list: ") + e.what());
    }
    return true;
  }

  // Sends the current state of `path` if it differs from what the client knows.
  bool report(const std::string& path) {
    auto now = stat_path(path);
    auto k = known_.find(path);
    if (!now) {
      if (k == known_.end()) return true;
      v1::SyncMessage m;
      m.mutable_remove()->set_path(path);
      erase_subtree(known_, path);
      return link_.send(std::move(m));
    }
    if (k != known_.end() && k->second.same_as(*now)) return true;
    Entry sent;
    switch (detail::send_entry(link_, *tree_, *now, path, sent, bytes_out_)) {
      case detail::SendResult::broken: return false;
      case detail::SendResult::gone: pending_.mark(path); return true;
      case detail::SendResult::sent: known_[path] = sent; return true;
    }
    return true;
  }

  void mark_broken() { broken_ = true; }

  // Link's handler: never blocks and never sends (what must be said goes to jobs_).
  bool handle(const v1::SyncMessage& m) {
    if (receiving_.active()) {
      // A change's content comes right after it; nothing else may come in between.
      if (m.kind_case() != v1::SyncMessage::kData) {
        fail("", "unexpected message in a change's content");
        return false;
      }
      receiving_.data(m.data());
      return true;
    }
    switch (m.kind_case()) {
      case v1::SyncMessage::kChange: handle_change(m.change()); return true;
      case v1::SyncMessage::kRemove: handle_remove(m.remove().path()); return true;
      case v1::SyncMessage::kRename: handle_rename(m.rename().from(), m.rename().to()); return true;
      case v1::SyncMessage::kBarrier:
        jobs_.push_back({Job::barrier, {}, {}, m.barrier().id()});
        return true;
      case v1::SyncMessage::kFetch: {
        const auto& path = m.fetch().path();
        if (!valid_relative_path(path)) fail(path, "invalid path");
        else jobs_.push_back({Job::fetch, {}, path, 0});
        return true;
      }
      default:
        fail("", "unexpected message");
        return true;
    }
  }

  // Our own version of `path` changed after the client last heard of it: keep it under a
  // conflict name before the client's change replaces it.
  void keep_conflicting(const std::string& path) {
    auto now = stat_path(path);
    if (!now) return;
    auto k = known_.find(path);
    if (k != known_.end() && k->second.same_as(*now)) return;
    if (now->type == EntryType::directory) return;  // directories merge; their children decide
    std::string stamp = options_.stamp ? options_.stamp() : conflict_stamp_now();
    std::string copy = conflict_name(path, "remote", stamp);
    if (auto ec = tree_->rename(path, copy)) return fail(path, "cannot keep a conflicting copy: " + ec.message());
    v1::SyncMessage c;
    c.mutable_conflict()->set_path(path);
    c.mutable_conflict()->set_copy(copy);
    jobs_.push_back({Job::message, std::move(c), {}, 0});
    known_.erase(path);
    pending_.mark(copy);
    spdlog::info("sync {}: conflict on {}: the runner's version is kept as {}", id_, path, copy);
  }

  void handle_change(const v1::SyncChange& change) {
    auto entry = from_wire(change.entry());
    // A single-file mount holds one regular file: as a symlink (or a directory) it would make
    // dockerd bind whatever it points to, after the API gate checked the file.
    if (!entry || (single_file_ && entry->path != file_name_ && !entry->path.empty()) ||
        (single_file_ && entry->path == file_name_ && entry->type != EntryType::file)) {
      // Consume the content anyway so the call stays in step.
      receiving_.begin(nullptr, Entry{}, "", change, nullptr);
      return fail(change.entry().path(), "invalid entry");
    }
    collect();  // events that happened before this change belong to the old state
    if (!entry->path.empty()) keep_conflicting(entry->path);
    receiving_.begin(tree_.get(), *entry, entry->path, change,
                     [this, path = entry->path](std::error_code ec, std::uint64_t bytes) {
                       bytes_in_ += bytes;
                       if (ec) return fail(path, ec.message());
                       if (auto now = stat_path(path)) known_[path] = *now;
                     });
  }

  void handle_remove(const std::string& path) {
    if (!valid_relative_path(path) || path.empty()) return fail(path, "invalid path");
    collect();
    auto now = stat_path(path);
    auto k = known_.find(path);
    if (now && now->type != EntryType::directory &&
        (k == known_.end() || !k->second.same_as(*now))) {
      // Changed here since the client last heard of it: a modification beats a deletion.
      pending_.mark(path);
      return;
    }
    if (auto ec = tree_->remove(path)) return fail(path, ec.message());
    erase_subtree(known_, path);
  }

  void handle_rename(const std::string& from, const std::string& to) {
    if (!valid_relative_path(from) || !valid_relative_path(to) || from.empty() || to.empty())
      return fail(from, "invalid rename");
    collect();
    if (auto ec = detail::ensure_parents(*tree_, to))
      return fail(to, "cannot create the parent directories: " + ec.message());
    if (auto ec = tree_->rename(from, to)) {
      // The client falls back to sending the content when it sees the error.
      return fail(to, "cannot rename from " + from + ": " + ec.message());
    }
    move_subtree(known_, from, to);
  }

  detail::Link link_;
  detail::Receiving receiving_;
  std::deque<Job> jobs_;
  const ReplicaOptions& options_;
  const std::atomic<bool>& stop_;
  std::string id_;
  bool single_file_ = false;
  std::string file_name_;
  std::unique_ptr<Tree> tree_;
  std::unique_ptr<Watcher> watcher_;
  Manifest known_;
  detail::PendingChanges pending_{options_.settle, options_.max_delay};
  bool broken_ = false;
  std::uint64_t bytes_in_ = 0, bytes_out_ = 0;
};

}  // namespace

void serve_replica(Transport& transport, const ReplicaOptions& options,
                   const std::atomic<bool>& stop) {
  try {
    Replica(transport, options, stop).run();
  } catch (const std::exception& e) {
    spdlog::error("sync: replica failed: {}", e.what());
    // Best effort, never waiting: the call may be stalled or in the middle of a file.
    auto m = detail::error_message("", std::string("runner error: ") + e.what());
    transport.try_send(m);
  }
}

}  // namespace offload::sync
