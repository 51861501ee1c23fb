// One mount's connection protocol, the MountSync::Worker declared in mount_worker.h: handshake,
// first synchronisation, live exchange. Apart from mount.cpp (the mount's public face) because it
// is the whole sync algorithm of the local side and runs only on the mount's thread.
#include "mount_worker.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "exchange.h"
#include "offload/sync/replica.h"

namespace offload::sync {

MountSync::Worker::Worker(MountSync& owner) : m_(owner), o_(owner.options_) {
  root_ = o_.single_file ? o_.local_path.parent_path() : o_.local_path;
  file_name_ = o_.single_file ? o_.local_path.filename().string() : "";
}

void MountSync::Worker::run() {
  while (!m_.stop_.load()) {
    std::string why;
    if (!connect(why)) {
      if (!ready_sent_) m_.set_ready(false, why);
      if (!m_.wait_retry(o_.reconnect_delay)) break;
      continue;
    }
    session();
    std::string reason = transport_ ? transport_->end_reason() : std::string();
    if (!ready_sent_) {
      auto st = m_.status();
      std::string detail = !reason.empty() ? reason : st.error;
      m_.set_ready(false, "the first synchronisation did not complete" +
                              (detail.empty() ? std::string() : ": " + detail));
    }
    for (auto& [id, callbacks] : pending_flushes_)
      for (auto& c : callbacks) c(false);
    pending_flushes_.clear();
    receiving_.reset();
    replies_.clear();
    link_.reset();
    if (transport_) transport_->cancel();
    transport_.reset();
    watcher_.reset();
    m_.fail_flushes();
    if (m_.stop_.load()) break;
    m_.set_state(MountStatus::State::reconnecting,
                 "the sync call ended" + (reason.empty() ? std::string() : ": " + reason));
    if (!m_.wait_retry(o_.reconnect_delay)) break;
  }
  m_.set_state(MountStatus::State::stopped, "");
  m_.set_ready(false, "the mount was stopped");
  m_.fail_flushes();
}

bool MountSync::Worker::connect(std::string& why) {
  m_.set_state(MountStatus::State::connecting, "");
  if (auto ec = Tree::open(root_, Tree::Options{}, tree_)) {
    why = "cannot open " + root_.string() + ": " + ec.message();
    m_.set_state(MountStatus::State::failed, why);
    return false;
  }
  transport_ = m_.connect_(why);
  if (!transport_) {
    m_.set_state(MountStatus::State::failed, why);
    return false;
  }
  return true;
}

// One connection: handshake, first synchronisation, then live changes until it breaks.
void MountSync::Worker::session() {
  v1::SyncMessage open;
  open.mutable_open()->set_mount_id(m_.id_);
  open.mutable_open()->set_single_file(o_.single_file);
  open.mutable_open()->set_file_name(file_name_);
  open.mutable_open()->set_uid(o_.uid);
  open.mutable_open()->set_gid(o_.gid);
  link_ = std::make_unique<detail::Link>(*transport_, m_.stop_);
  if (!link_->send(std::move(open))) return;

  // The watch starts before the scan: a change during the scan is then seen twice, never zero
  // times.
  watcher_ = std::make_unique<Watcher>(root_, o_.rules, file_name_);
  if (watcher_->error()) {
    m_.set_state(MountStatus::State::failed, "cannot watch " + root_.string() + ": " +
                                                 watcher_->error().message());
    return;
  }
  Manifest remote;
  if (!receive_manifest(remote)) return;
  m_.set_state(MountStatus::State::syncing, "");
  Manifest local;
  if (o_.single_file) {
    Skipped skipped;
    if (auto e = stat_entry(root_, file_name_, o_.rules, &skipped)) local[e->path] = *e;
  } else {
    try {
      auto scan = scan_tree(root_, o_.rules);
      local = std::move(scan.entries);
      for (auto& s : scan.skipped) note_skipped(s);
    } catch (const std::exception& e) {
      m_.set_state(MountStatus::State::failed, std::string("cannot scan: ") + e.what());
      return;
    }
  }
  for (auto it = remote.begin(); it != remote.end();) {
    if (!wanted(it->first)) it = remote.erase(it);
    else ++it;
  }
  auto actions = reconcile(local, remote, base_);
  // What needs no message goes first: the base of what agrees and the local deletions are in
  // place before anything the replica sends is handled (which happens while a send waits).
  for (const auto& a : actions) act_locally(a, local);
  link_->set_handler([this](const v1::SyncMessage& m) { return handle(m); });
  std::set<std::string> fetched;
  for (const auto& a : actions) {
    if (!act(a, fetched)) return;
  }
  if (!send_replies()) return;
  initial_barrier_ = send_barrier();
  if (!initial_barrier_) return;
  live();
}

// Only what the mount covers: one file for single-file mounts, nothing excluded.
bool MountSync::Worker::wanted(const std::string& path) const {
  if (o_.single_file) return path == file_name_;
  return path.empty() || !o_.rules.excluded(path);
}

bool MountSync::Worker::receive_manifest(Manifest& remote) {
  bool ready = false;
  for (;;) {
    auto m = link_->next();
    if (!m) return false;
    if (m->kind_case() == v1::SyncMessage::kError) {
      m_.set_state(MountStatus::State::failed, "runner: " + m->error().message());
      return false;
    }
    if (m->kind_case() == v1::SyncMessage::kReady) {
      bind_source_ = m->ready().bind_source();
      ready = true;
      continue;
    }
    if (!ready || m->kind_case() != v1::SyncMessage::kManifest) {
      m_.set_state(MountStatus::State::failed, "the runner broke the sync protocol");
      return false;
    }
    for (const auto& w : m->manifest().entries())
      if (auto e = from_wire(w)) remote[e->path] = *e;
    if (m->manifest().last()) return true;
  }
}

void MountSync::Worker::act_locally(const Action& a, const Manifest& local) {
  switch (a.kind) {
    case Action::agree:
      base_[a.path] = local.at(a.path);
      return;
    case Action::delete_local:
      if (auto ec = tree_->remove(a.path)) return note_error(a.path, ec);
      erase_subtree(base_, a.path);
      return;
    default:
      return;
  }
}

// The actions that send. Replica messages handled while an earlier one was sent may have
// changed the local side since the scan: each looks at the path as it is now.
bool MountSync::Worker::act(const Action& a, std::set<std::string>& fetched) {
  switch (a.kind) {
    case Action::push: {
      auto l = local_entry(a.path);
      if (!l) {
        pending_.mark(a.path);
        return true;
      }
      return push(*l);
    }
    case Action::pull:
    case Action::conflict: {
      // The answer is handled like any change of the replica's: compared with the local
      // entry and the base, which turns it into an update or a conflict copy. It holds
      // everything below the path, so what is below a path fetched already comes with that
      // (actions are in path order); asked again, it would travel twice.
      for (std::string up = a.path; !up.empty();) {
        up = parent_path(up);
        if (fetched.count(up)) return true;
      }
      v1::SyncMessage f;
      f.mutable_fetch()->set_path(a.path);
      fetched.insert(a.path);
      return link_->send(std::move(f));
    }
    case Action::delete_remote:
      if (local_entry(a.path)) {
        pending_.mark(a.path);  // back meanwhile (a change of the replica's won): look again
        return true;
      }
      return send_remove(a.path);
    case Action::agree:
    case Action::delete_local:
      return true;
  }
  return true;
}

bool MountSync::Worker::send_remove(const std::string& path) {
  v1::SyncMessage r;
  r.mutable_remove()->set_path(path);
  if (!link_->send(std::move(r))) return false;
  erase_subtree(base_, path);
  m_.changed();
  return true;
}

bool MountSync::Worker::push(const Entry& entry) {
  Entry sent;
  std::uint64_t bytes = 0;
  auto r = detail::send_entry(*link_, *tree_, entry, entry.path, sent, bytes);
  if (r == detail::SendResult::broken) return false;
  if (r == detail::SendResult::gone) {
    pending_.mark(entry.path);  // changed while we looked: look again next round
    return true;
  }
  base_[entry.path] = sent;
  m_.count_sent(bytes, entry.type == EntryType::file);
  return true;
}

// Sends the directories above `path` that the replica does not have yet, top down.
bool MountSync::Worker::push_parents(const std::string& path) {
  std::string parent = parent_path(path);
  std::vector<std::string> missing;
  while (!parent.empty() && !base_.count(parent)) {
    missing.push_back(parent);
    parent = parent_path(parent);
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    auto l = local_entry(*it);
    if (l && !push(*l)) return false;
  }
  return true;
}

// Sends the local state of `path` if it differs from the base: the content, or its removal.
bool MountSync::Worker::send_local(const std::string& path) {
  if (!wanted(path)) return true;
  auto l = local_entry(path);
  auto b = base_.find(path);
  if (!l) return b == base_.end() || send_remove(path);
  if (b != base_.end() && b->second.same_as(*l)) return true;  // an echo, or nothing new
  if (!push(*l)) return false;
  m_.changed();
  return true;
}

bool MountSync::Worker::send_replies() {
  while (!replies_.empty()) {
    auto m = std::move(replies_.front());
    replies_.pop_front();
    if (!link_->send(std::move(m))) return false;
  }
  return true;
}

std::uint64_t MountSync::Worker::send_barrier() {
  v1::SyncMessage b;
  b.mutable_barrier()->set_id(++barrier_id_);
  return link_->send(std::move(b)) ? barrier_id_ : 0;
}

void MountSync::Worker::live() {
  pollfd fds[3] = {{transport_->inbox().fd(), POLLIN, 0},
                   {watcher_->fd(), POLLIN, 0},
                   {m_.wake_fd_, POLLIN, 0}};
  while (!m_.stop_.load()) {
    if (!send_replies()) return;
    if (pending_.due()) {
      if (!process_local()) return;
      continue;
    }
    int timeout = pending_.wait_ms(200);
    for (auto& f : fds) f.revents = 0;
    ::poll(fds, 3, timeout);
    if (fds[2].revents) {
      std::uint64_t v;
      [[maybe_unused]] auto n = ::read(m_.wake_fd_, &v, sizeof v);
    }
    if (fds[1].revents) collect();
    if (!link_->handle_waiting(64)) return;
    if (transport_->inbox().finished()) return;
    // Flushes: local changes so far go out first, then the barrier; its ack completes them.
    auto requests = m_.take_flush_requests();
    if (!requests.empty()) {
      collect();
      if (!process_local() || !send_replies()) {
        for (auto& r : requests) r(false);
        return;
      }
      auto id = send_barrier();
      if (!id) {
        for (auto& r : requests) r(false);
        return;
      }
      pending_flushes_.emplace(id, std::move(requests));
    }
  }
}

void MountSync::Worker::collect() { pending_.add(watcher_->drain()); }

std::optional<Entry> MountSync::Worker::local_entry(const std::string& path) {
  Skipped skipped;
  skipped.path.clear();
  auto e = stat_entry(root_, path, o_.rules, &skipped);
  if (!skipped.path.empty()) note_skipped(skipped);
  return e;
}

// Sends what changed locally since the last round.
bool MountSync::Worker::process_local() {
  WatchBatch batch = pending_.take();
  auto& dirty = batch.dirty;
  for (auto& [from, to] : batch.moves) {
    auto b = base_.find(from);
    if (b != base_.end() && wanted(from) && wanted(to) && !local_entry(from)) {
      auto now = local_entry(to);
      Entry expect = b->second;
      expect.path = to;
      if (now && now->same_as(expect)) {
        // The replica must have the new parent before it can move anything into it.
        if (!push_parents(to)) return false;
        v1::SyncMessage r;
        r.mutable_rename()->set_from(from);
        r.mutable_rename()->set_to(to);
        if (!link_->send(std::move(r))) return false;
        move_subtree(base_, from, to);
        m_.changed();
        continue;
      }
    }
    dirty.insert(from);
    dirty.insert(to);
  }
  if (batch.rescan) {
    for (const auto& [p, e] : base_) dirty.insert(p);
    if (!o_.single_file) {
      try {
        for (const auto& [p, e] : scan_tree(root_, o_.rules).entries) dirty.insert(p);
      } catch (const std::exception&) {
      }
    }
  }
  for (const auto& path : dirty)
    if (!send_local(path)) return false;
  return true;
}

bool MountSync::Worker::handle(const v1::SyncMessage& msg) {
  if (receiving_.active()) {
    // A change's content comes right after it; nothing else may come in between.
    if (msg.kind_case() != v1::SyncMessage::kData) return protocol_error();
    receiving_.data(msg.data());
    return true;
  }
  switch (msg.kind_case()) {
    case v1::SyncMessage::kChange: remote_change(msg.change()); return true;
    case v1::SyncMessage::kRemove: remote_remove(msg.remove().path()); return true;
    case v1::SyncMessage::kRename: remote_rename(msg.rename().from(), msg.rename().to()); return true;
    case v1::SyncMessage::kBarrierAck: {
      auto id = msg.barrier_ack().id();
      if (id == initial_barrier_) {
        initial_barrier_ = 0;
        m_.set_state(MountStatus::State::watching, "");
        m_.set_entries(base_.size());
        if (!ready_sent_) {
          ready_sent_ = true;
          m_.set_ready(true, bind_source_);
        }
      }
      if (auto it = pending_flushes_.find(id); it != pending_flushes_.end()) {
        auto callbacks = std::move(it->second);
        pending_flushes_.erase(it);
        m_.set_entries(base_.size());
        for (auto& c : callbacks) c(true);
      }
      return true;
    }
    case v1::SyncMessage::kConflict:
      m_.note_conflict(msg.conflict().path() + ": changed on both sides; the runner's version is kept as " +
                       msg.conflict().copy());
      return true;
    case v1::SyncMessage::kError:
      m_.note_error(msg.error().path(), "runner: " + msg.error().message());
      return true;
    default:
      return protocol_error();
  }
}

bool MountSync::Worker::protocol_error() {
  m_.set_state(MountStatus::State::failed, "the runner broke the sync protocol");
  return false;
}

void MountSync::Worker::discard(const v1::SyncChange& change) {
  receiving_.begin(nullptr, Entry{}, "", change, nullptr);
}

// Applies the change as its content arrives; `then` runs once it is complete.
void MountSync::Worker::apply(const Entry& r, const std::string& as_path,
                              const v1::SyncChange& change, std::function<void()> then) {
  bool file = r.type == EntryType::file;
  receiving_.begin(tree_.get(), r, as_path, change,
                   [this, as_path, file, then = std::move(then)](std::error_code ec,
                                                                 std::uint64_t bytes) {
                     if (ec) {
                       note_error(as_path, ec);
                     } else {
                       m_.count_received(bytes, file);
                       if (auto now = local_entry(as_path)) base_[as_path] = *now;
                       m_.changed();
                     }
                     if (then) then();
                   });
}

void MountSync::Worker::remote_change(const v1::SyncChange& change) {
  auto r = from_wire(change.entry());
  if (!r || !wanted(r->path)) return discard(change);
  collect();  // local events so far belong to the state we compare with
  const std::string& p = r->path;
  auto l = local_entry(p);
  auto b = base_.find(p);
  bool has_base = b != base_.end();
  if (l && l->same_as(*r)) {
    base_[p] = *l;
    return discard(change);
  }
  bool local_unchanged = (!l && !has_base) || (l && has_base && l->same_as(b->second));
  // Deleted here, changed there: the change wins, nothing is lost.
  if (local_unchanged || (!l && has_base)) return apply(*r, p, change, nullptr);
  if (l->type == EntryType::directory && r->type == EntryType::directory) {
    // Directories merge; only the mode differed: ours goes back in the next round.
    discard(change);
    pending_.mark(p);
    return;
  }
  // Both sides changed `p`. Ours stays at `p`, theirs becomes a copy next to it, on both sides.
  std::string stamp = o_.stamp ? o_.stamp() : conflict_stamp_now();
  std::string copy = conflict_name(p, "remote", stamp);
  if (r->type == EntryType::directory) {
    // A whole directory cannot ride in one change: move it aside over there and fetch it.
    discard(change);
    v1::SyncMessage mv;
    mv.mutable_rename()->set_from(p);
    mv.mutable_rename()->set_to(copy);
    replies_.push_back(std::move(mv));
    v1::SyncMessage f;
    f.mutable_fetch()->set_path(copy);
    replies_.push_back(std::move(f));
  } else {
    apply(*r, copy, change, [this, copy] {
      base_.erase(copy);  // unknown over there under this name: the next round sends it
      pending_.mark(copy);
    });
  }
  m_.note_conflict(p + ": changed on both sides; the runner's version is kept as " + copy);
  spdlog::info("sync {}: conflict on {}: the runner's version is kept as {}", m_.id_, p, copy);
  base_.erase(p);
  pending_.mark(p);
}

void MountSync::Worker::remote_remove(const std::string& path) {
  if (!valid_relative_path(path) || path.empty() || !wanted(path)) return;
  collect();
  auto l = local_entry(path);
  auto b = base_.find(path);
  if (!l) {
    erase_subtree(base_, path);
    return;
  }
  bool unchanged = b != base_.end() && b->second.same_as(*l);
  if (unchanged && l->type == EntryType::directory) unchanged = subtree_unchanged(path);
  if (!unchanged) {
    // Changed here, deleted there: keep ours and send it back.
    erase_subtree(base_, path);
    mark_subtree_dirty(path);
    m_.note_conflict(path + ": deleted on the runner but changed locally; the local version is kept");
    return;
  }
  if (auto ec = tree_->remove(path)) return note_error(path, ec);
  erase_subtree(base_, path);
  m_.changed();
}

void MountSync::Worker::remote_rename(const std::string& from, const std::string& to) {
  if (!valid_relative_path(from) || !valid_relative_path(to) || from.empty() || to.empty())
    return;
  collect();
  auto b = base_.find(from);
  auto l = local_entry(from);
  if (wanted(from) && wanted(to) && b != base_.end() && l && b->second.same_as(*l) &&
      !local_entry(to) && (l->type != EntryType::directory || subtree_unchanged(from))) {
    if (!detail::ensure_parents(*tree_, to) && !tree_->rename(from, to)) {
      move_subtree(base_, from, to);
      m_.changed();
      return;
    }
  }
  // Not a clean move here: treat it as a removal and ask for the new path.
  remote_remove(from);
  if (!wanted(to)) return;
  v1::SyncMessage f;
  f.mutable_fetch()->set_path(to);
  replies_.push_back(std::move(f));
}

bool MountSync::Worker::subtree_unchanged(const std::string& dir) {
  try {
    auto scan = scan_tree(root_ / dir, IgnoreRules{});
    for (const auto& [rel, e] : scan.entries) {
      if (rel.empty()) continue;
      std::string path = dir + "/" + rel;
      if (!wanted(path)) continue;
      auto b = base_.find(path);
      Entry mine = e;
      mine.path = path;
      if (b == base_.end() || !b->second.same_as(mine)) return false;
    }
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

void MountSync::Worker::mark_subtree_dirty(const std::string& dir) {
  pending_.mark(dir);
  try {
    for (const auto& [rel, e] : scan_tree(root_ / dir, IgnoreRules{}).entries)
      if (!rel.empty()) pending_.mark(dir + "/" + rel);
  } catch (const std::exception&) {
  }
}

void MountSync::Worker::note_skipped(const Skipped& s) { m_.note_skipped(s); }

void MountSync::Worker::note_error(const std::string& path, std::error_code ec) {
  m_.note_error(path, ec.message());
}

}  // namespace offload::sync
