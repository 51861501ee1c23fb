#include "offload/daemon/sync_manager.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <algorithm>
#include <future>

#include "offload/common/fs.h"
#include "offload/daemon/bind_rewrite.h"
#include "offload/daemon/sync_transport.h"
#include "offload/http/clean_path.h"

namespace offload::daemon {

using http::clean_path;

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

struct UserError : std::runtime_error {
  UserError(int status, const std::string& what) : std::runtime_error(what), status(status) {}
  int status;
};

// `path` lies strictly inside `dir` (both canonical): the relative path, else nullopt.
std::optional<std::string> inside(const fs::path& path, const fs::path& dir) {
  auto rel = path.lexically_relative(dir);
  if (rel.empty() || rel == "." || *rel.begin() == "..") return std::nullopt;
  return rel.generic_string();
}

sync::IgnoreRules rules_for(const fs::path& dir, const std::vector<std::string>& excludes) {
  sync::IgnoreRules rules;
  for (const auto& e : excludes) rules.add(e);
  std::string text;
  if (!read_file(dir / std::string(sync::kIgnoreFileName), text)) {
    auto own = sync::IgnoreRules::parse(text);
    for (const auto& w : own.warnings())
      spdlog::warn("{}: {}", (dir / std::string(sync::kIgnoreFileName)).string(), w);
    rules.append(own);
  }
  return rules;
}

// What a mount has done so far, as its status shows it: any change here is progress.
struct Progress {
  std::uint64_t files_sent = 0, bytes_sent = 0, files_received = 0, bytes_received = 0;
  std::uint64_t entries = 0;
  sync::MountStatus::State state = sync::MountStatus::State::connecting;

  explicit Progress(const sync::MountStatus& s)
      : files_sent(s.files_sent), bytes_sent(s.bytes_sent), files_received(s.files_received),
        bytes_received(s.bytes_received), entries(s.entries), state(s.state) {}
  // Counters moved, or the mount got a step further (the runner's manifest came: syncing; the
  // first round is done: in sync). Connecting again or failing is no progress.
  bool advanced_from(const Progress& before) const {
    using State = sync::MountStatus::State;
    bool forward = state != before.state && (state == State::syncing || state == State::watching);
    return forward || files_sent != before.files_sent || bytes_sent != before.bytes_sent ||
           files_received != before.files_received || bytes_received != before.bytes_received ||
           entries != before.entries;
  }
};

// Waits for `answer` as long as `mount` makes progress; false once it made none for `stall`.
// A first sync of a large tree may take minutes and is waited for; a runner that never answers
// must not hold the create (and a thread of the pool) forever.
template <class T>
bool wait_while_progressing(std::future<T>& answer, const sync::MountSync& mount,
                            std::chrono::milliseconds stall) {
  using Clock = std::chrono::steady_clock;
  const auto poll = std::clamp<std::chrono::milliseconds>(stall / 10, 10ms, 1s);
  Progress last(mount.status());
  auto last_progress = Clock::now();
  for (;;) {
    auto left = last_progress + stall - Clock::now();
    if (left <= Clock::duration::zero()) return false;
    if (answer.wait_for(std::min<Clock::duration>(poll, left)) == std::future_status::ready)
      return true;
    Progress now(mount.status());
    if (now.advanced_from(last)) last_progress = Clock::now();
    last = now;
  }
}

std::string seconds_text(std::chrono::milliseconds d) {
  if (d < 1s) return std::to_string(d.count()) + " ms";
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + " s";
}

// 503 for a create whose mount is not there yet: where it stands, and what to do.
UserError not_synchronised(const std::string& source, const std::string& what,
                           const sync::MountStatus& status, std::chrono::milliseconds stall) {
  std::string state = sync::to_string(status.state);
  if (!status.error.empty()) state += ": " + status.error;
  return UserError(503, "bind mount " + source + " is not synchronised yet (" +
                            (what.empty() ? "" : what + ", ") + state + ", no progress for " +
                            seconds_text(stall) + "): try again, or see `docker offload status`");
}

}  // namespace

std::string unsyncable_reason(const fs::path& path) {
  if (path == "/") return "it is the root of this machine's file system";
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) return {};  // the scan reports unreadable paths itself
  switch (static_cast<unsigned long>(st.f_type)) {
    case PROC_SUPER_MAGIC: return "it is on proc, a kernel pseudo-filesystem";
    case SYSFS_MAGIC: return "it is on sysfs, a kernel pseudo-filesystem";
    case DEVPTS_SUPER_MAGIC: return "it is on devpts, a kernel pseudo-filesystem";
    case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC: return "it is on cgroupfs, a kernel pseudo-filesystem";
    case DEBUGFS_MAGIC: return "it is on debugfs, a kernel pseudo-filesystem";
    case TRACEFS_MAGIC: return "it is on tracefs, a kernel pseudo-filesystem";
    case SECURITYFS_MAGIC: return "it is on securityfs, a kernel pseudo-filesystem";
    case BPF_FS_MAGIC: return "it is on bpffs, a kernel pseudo-filesystem";
    default: break;
  }
  // Mounted below the kernel's own trees, tmpfs too describes this machine (cgroup v1's
  // /sys/fs/cgroup; /dev is a devtmpfs, whose magic is tmpfs's).
  auto under = [&path](const char* top) {
    return path == top || path.string().starts_with(std::string(top) + "/");
  };
  if (under("/dev")) return "it holds this machine's devices";
  if (under("/proc") || under("/sys")) return "it is part of this machine's kernel interfaces";
  return {};
}

SyncManager::SyncManager(SessionAccess& session, std::vector<std::string> excludes)
    : session_(session), excludes_(std::move(excludes)) {}

SyncManager::~SyncManager() {
  stop_all(/*forget=*/false);
  pool_.join();
}

void SyncManager::set_mount_timing(std::chrono::milliseconds settle,
                                   std::chrono::milliseconds max_delay,
                                   std::chrono::milliseconds reconnect_delay) {
  settle_ = settle;
  max_delay_ = max_delay;
  reconnect_delay_ = reconnect_delay;
}

void SyncManager::prepare_create(std::string body, std::function<void(Prepared)> done) {
  boost::asio::post(pool_, [this, body = std::move(body), done = std::move(done)] {
    done(prepare_blocking(body));
  });
}

BindSync::Prepared SyncManager::prepare_blocking(const std::string& body) {
  Prepared out;
  auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  // Not JSON, or no object: the engine gives the proper error itself.
  if (!doc.is_object()) return out;
  std::vector<BindMount> binds;
  try {
    binds = find_bind_mounts(doc);
  } catch (const std::invalid_argument& e) {
    out.ok = false;
    out.status = 400;
    out.message = e.what();
    return out;
  }
  if (binds.empty()) return out;
  std::map<std::string, std::string> replacement;
  try {
    for (const auto& b : binds) {
      if (replacement.count(b.source)) continue;
      // The Docker API, not a file: the runner binds its gated socket of the session's engine.
      if (is_docker_api_socket(b.source)) {
        replacement[b.source] = kDockerSocket;
        continue;
      }
      int status = 500;
      replacement[b.source] = remote_path_for(b.source, b.from_mounts, status);
    }
  } catch (const UserError& e) {
    out.ok = false;
    out.status = e.status;
    out.message = e.what();
    return out;
  }
  // The engine will show these replica paths: the answers show the sources as given again.
  for (const auto& [source, replica] : replacement)
    if (replica != kDockerSocket) paths_->add({replica, clean_path(source), source});
  replace_bind_sources(doc, replacement);
  out.rewritten = true;
  out.body = doc.dump();
  return out;
}

bool SyncManager::is_docker_api_socket(const std::string& source) const {
  const std::string clean = clean_path(source);
  return clean == kDockerSocket || clean == "/run/docker.sock" ||
         (!context_socket_.empty() && clean == clean_path(context_socket_.string()));
}

std::string SyncManager::remote_path_for(const std::string& source, bool must_exist, int&) {
  std::error_code ec;
  fs::path path(source);
  auto st = fs::status(path, ec);
  if (!fs::exists(st)) {
    if (must_exist)
      throw UserError(400, "invalid mount config for type \"bind\": bind source path does not exist: " +
                               source);
    // Docker creates a missing bind source as a directory on its host; ours is this machine.
    fs::create_directories(path, ec);
    if (ec)
      throw UserError(400, "cannot create the bind source " + source + ": " + ec.message());
    st = fs::status(path, ec);
  }
  fs::path canonical = fs::canonical(path, ec);
  if (ec) throw UserError(400, "cannot resolve the bind source " + source + ": " + ec.message());
  if (auto why = unsyncable_reason(canonical); !why.empty())
    throw UserError(400, "cannot bind " + source + " through docker offload: " + why +
                             "; the container runs on the remote engine, which has its own");
  bool single_file = fs::is_regular_file(st);
  if (!single_file && !fs::is_directory(st))
    throw UserError(400, "cannot bind " + source +
                             " through docker offload: only directories and regular files are "
                             "synchronised to the remote engine (this is a socket, device or fifo)");

  // A directory inside a directory that is synchronised already: use the path inside its
  // replica, so both mounts see the same files. Not for single files: the directory replica
  // replaces files by renaming, and a container's single-file bind would keep the old inode; a
  // file mount of its own rewrites the file in place.
  std::shared_ptr<sync::MountSync> parent;
  std::string rel;
  if (!single_file) {
    std::lock_guard lock(mu_);
    for (const auto& [dir, mount] : mounts_) {
      if (mount->status().single_file) continue;
      if (auto r = inside(canonical, dir)) {
        parent = mount;
        rel = *r;
        break;
      }
    }
  }
  if (parent) {
    auto rules = rules_for(parent->status().local_path, excludes_);
    if (rules.excluded(rel)) parent.reset();
  }
  auto mount = parent ? parent : mount_for(canonical, single_file);

  // Shared with the callbacks: they may come after we gave up waiting.
  auto ready = std::make_shared<std::promise<std::pair<bool, std::string>>>();
  auto ready_future = ready->get_future();
  mount->when_ready([ready](bool ok, const std::string& v) { ready->set_value({ok, v}); });
  if (!wait_while_progressing(ready_future, *mount, stall_timeout_))
    throw not_synchronised(source, "", mount->status(), stall_timeout_);
  auto [ok, value] = ready_future.get();
  if (!ok) throw UserError(503, "cannot synchronise " + source + " to the offload session: " + value);
  auto ms = mount->status();
  if (!ms.skipped.empty()) {
    std::string list;
    for (std::size_t i = 0; i < ms.skipped.size() && i < 3; ++i)
      list += (i ? ", " : "") + ms.skipped[i].path + " (" + ms.skipped[i].reason + ")";
    if (ms.skipped.size() > 3) list += ", ...";
    session_.post_notice("bind mount " + ms.local_path + ": " + std::to_string(ms.skipped.size()) +
                          " special file(s) not synchronised: " + list +
                          " (see `docker offload status`)");
  }
  // Changes made since the mount's last round go out before the container starts.
  auto flushed = std::make_shared<std::promise<bool>>();
  auto flushed_future = flushed->get_future();
  mount->flush([flushed](bool ok) { flushed->set_value(ok); });
  if (!wait_while_progressing(flushed_future, *mount, stall_timeout_))
    throw not_synchronised(source, "its latest local changes are not on the runner",
                           mount->status(), stall_timeout_);
  return parent ? value + "/" + rel : value;
}

std::shared_ptr<sync::MountSync> SyncManager::mount_for(const fs::path& canonical,
                                                        bool single_file) {
  std::lock_guard lock(mu_);
  if (auto it = mounts_.find(canonical); it != mounts_.end()) return it->second;
  sync::MountSync::Options o;
  o.local_path = canonical;
  o.single_file = single_file;
  o.rules = single_file ? sync::IgnoreRules{} : rules_for(canonical, excludes_);
  o.uid = ::geteuid();
  o.gid = ::getegid();
  o.settle = settle_;
  o.max_delay = max_delay_;
  o.reconnect_delay = reconnect_delay_;
  Connect connect = connect_override_;
  if (!connect) {
    connect = [this](std::string& why) -> std::unique_ptr<sync::Transport> {
      auto runner = session_.runner();
      if (!runner) {
        why = session_.unavailable_message();
        return nullptr;
      }
      return open_sync_transport(*runner);
    };
  }
  auto mount = std::make_shared<sync::MountSync>(sync::MountSync::id_for(canonical), std::move(o),
                                                 std::move(connect));
  spdlog::info("synchronising {} ({}) with the session", canonical.string(),
               single_file ? "file" : "directory");
  mounts_.emplace(canonical, mount);
  has_mounts_.store(true);
  mount->when_ready([book = paths_, local = canonical.string()](bool ok, const std::string& replica) {
    if (ok) book->add({replica, local, ""});
  });
  if (auto runner = session_.runner()) session_id_ = runner->session_id();
  persist_locked();
  return mount;
}

void SyncManager::persist_locked() const {
  if (state_file_.empty()) return;
  // The session id keeps a restarted daemon from resuming mounts of an earlier session.
  nlohmann::json doc = {{"session", session_id_}, {"mounts", nlohmann::json::array()}};
  for (const auto& [path, mount] : mounts_)
    doc["mounts"].push_back({{"path", path.string()}, {"singleFile", mount->status().single_file}});
  if (auto ec = write_file_atomic(state_file_, doc.dump(2) + "\n"))
    spdlog::warn("cannot write {}: {}", state_file_.string(), ec.message());
}

void SyncManager::restore() {
  if (state_file_.empty()) return;
  std::string text;
  if (read_file(state_file_, text)) return;
  auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("mounts") || !doc["mounts"].is_array()) {
    spdlog::warn("ignoring {}: not a list of mounts", state_file_.string());
    return;
  }
  auto runner = session_.runner();
  std::string session = runner ? runner->session_id() : std::string();
  if (session.empty() || doc.value("session", "") != session) return;  // another session's
  for (const auto& m : doc["mounts"]) {
    if (!m.is_object() || !m.contains("path") || !m["path"].is_string()) continue;
    fs::path path = m["path"].get<std::string>();
    bool single_file = m.value("singleFile", false);
    std::error_code ec;
    auto st = fs::symlink_status(path, ec);
    bool fits = single_file ? fs::is_regular_file(st) : fs::is_directory(st);
    if (!path.is_absolute() || !fits || !unsyncable_reason(path).empty()) {
      spdlog::info("not resuming the synchronisation of {}: it is gone or changed", path.string());
      continue;
    }
    spdlog::info("resuming the synchronisation of {}", path.string());
    mount_for(path, single_file);
  }
}

void SyncManager::flush(std::function<void()> done) {
  boost::asio::post(pool_, [this, done = std::move(done)] {
    std::vector<std::shared_ptr<sync::MountSync>> mounts;
    {
      std::lock_guard lock(mu_);
      for (auto& [p, m] : mounts_) mounts.push_back(m);
    }
    std::vector<std::future<bool>> pending;
    std::vector<std::shared_ptr<std::promise<bool>>> promises;
    for (auto& m : mounts) {
      auto p = std::make_shared<std::promise<bool>>();
      pending.push_back(p->get_future());
      m->flush([p](bool ok) { p->set_value(ok); });
    }
    // A mount that does not answer in time must not hold a container's start or exit forever.
    auto deadline = std::chrono::steady_clock::now() + 30s;
    for (auto& f : pending) f.wait_until(deadline);
    done();
  });
}

void describe_mounts(const std::vector<sync::MountStatus>& mounts, v1::SessionStatus& status) {
  for (const auto& m : mounts) {
    auto* out = status.add_mounts();
    out->set_local_path(m.local_path);
    out->set_single_file(m.single_file);
    out->set_state(sync::to_string(m.state));
    out->set_error(m.error);
    out->set_files_sent(m.files_sent);
    out->set_bytes_sent(m.bytes_sent);
    out->set_files_received(m.files_received);
    out->set_bytes_received(m.bytes_received);
    out->set_entries(m.entries);
    for (const auto& c : m.conflicts) out->add_conflicts(c);
    for (const auto& k : m.skipped) out->add_skipped(k.path + " (" + k.reason + ")");
    out->set_last_change_unix_ms(m.last_change_unix_ms);
  }
}

std::vector<sync::MountStatus> SyncManager::status() const {
  std::vector<std::shared_ptr<sync::MountSync>> mounts;
  {
    std::lock_guard lock(mu_);
    for (auto& [p, m] : mounts_) mounts.push_back(m);
  }
  std::vector<sync::MountStatus> out;
  for (auto& m : mounts) out.push_back(m->status());
  return out;
}

void SyncManager::PathBook::add(PathMapping m) {
  std::lock_guard lock(mu);
  // A mount's root keeps its canonical path unless a create spelled it otherwise; past the
  // bound only the roots are kept (paths inside them still map through their root).
  if (by_replica.size() >= kMaxEntries && !by_replica.count(m.replica)) return;
  by_replica[m.replica] = std::move(m);
}

std::vector<PathMapping> SyncManager::path_mappings() const {
  std::lock_guard lock(paths_->mu);
  std::vector<PathMapping> out;
  out.reserve(paths_->by_replica.size());
  for (const auto& [replica, m] : paths_->by_replica) out.push_back(m);
  return out;
}

void SyncManager::stop_all(bool forget) {
  {
    std::lock_guard lock(paths_->mu);
    paths_->by_replica.clear();
  }
  std::map<fs::path, std::shared_ptr<sync::MountSync>> mounts;
  {
    std::lock_guard lock(mu_);
    mounts.swap(mounts_);
    has_mounts_.store(false);
    if (forget && !state_file_.empty()) {
      std::error_code ec;
      fs::remove(state_file_, ec);
    }
  }
  for (auto& [p, m] : mounts) m->stop();
}

}  // namespace offload::daemon
