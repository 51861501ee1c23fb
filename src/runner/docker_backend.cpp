#include "offload/runner/docker_backend.h"
#include "offload/runner/port_watcher.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>

#include "offload/common/fs.h"
#include "offload/common/clock.h"
#include "offload/common/text.h"
#include "offload/engine/unix_http.h"
#include "offload/runner/inventory.h"

namespace offload::runner {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kRecordVersion = 1;

// What a later runner process needs to find and destroy the engine, or (--live-restore) to take
// it over: then also its user-namespace mapping and the session's own state.
struct SessionRecord {
  std::string session_id;
  std::optional<std::uint32_t> slot;
  fs::path run_dir;
  std::int64_t created_unix_ms = 0;
  std::optional<engine::UsernsMapping> userns;
  std::string session_state;  // "" when the session never got that far
  json doc;                   // all of it, kept as it was when the engine is adopted
};

json record_doc(const engine::EngineSpec& spec) {
  json doc = {{"version", kRecordVersion},        {"session_id", spec.session_id},
              {"slot", spec.slot.index},          {"data_dir", spec.data_dir.string()},
              {"run_dir", spec.run_dir.string()}, {"created_unix_ms", unix_now_ms()}};
  if (spec.userns)
    doc["userns"] = {{"user", spec.userns->user},
                     {"root_uid", spec.userns->root_uid},
                     {"root_gid", spec.userns->root_gid}};
  return doc;
}

std::error_code write_record(const fs::path& file, const json& doc) {
  return write_file_atomic(file, doc.dump(2) + "\n");
}

// Reads what it can; `problem` says what could not be trusted. The session id always comes
// from the file name, so a record cannot point teardown at another session.
SessionRecord read_record(const fs::path& file, const std::string& session_id,
                          std::string& problem) {
  SessionRecord record;
  record.session_id = session_id;
  std::string text;
  if (auto ec = read_file(file, text)) {
    if (ec != std::errc::no_such_file_or_directory)
      problem = "unreadable: " + ec.message();
    else
      problem = "no record";
    return record;
  }
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    problem = "not a JSON object";
    return record;
  }
  auto path_of = [&](const char* key) -> fs::path {
    auto it = doc.find(key);
    if (it == doc.end() || !it->is_string()) return {};
    fs::path p = it->get<std::string>();
    return p.is_absolute() ? p : fs::path();
  };
  if (auto it = doc.find("slot");
      it != doc.end() && it->is_number_unsigned() && it->get<std::uint64_t>() <= UINT32_MAX)
    record.slot = static_cast<std::uint32_t>(it->get<std::uint64_t>());
  else
    problem = "no valid slot";
  record.run_dir = path_of("run_dir");
  if (auto it = doc.find("session_id");
      it == doc.end() || !it->is_string() || it->get<std::string>() != session_id)
    problem = "its session_id does not match its file name";
  if (auto it = doc.find("created_unix_ms"); it != doc.end() && it->is_number_integer())
    record.created_unix_ms = it->get<std::int64_t>();
  if (auto it = doc.find("userns"); it != doc.end() && it->is_object()) {
    const json& u = *it;
    if (u.contains("user") && u["user"].is_string() && u.contains("root_uid") &&
        u["root_uid"].is_number_unsigned() && u["root_uid"].get<std::uint64_t>() <= UINT32_MAX &&
        u.contains("root_gid") && u["root_gid"].is_number_unsigned() &&
        u["root_gid"].get<std::uint64_t>() <= UINT32_MAX)
      record.userns = engine::UsernsMapping{u["user"].get<std::string>(),
                                            u["root_uid"].get<std::uint32_t>(),
                                            u["root_gid"].get<std::uint32_t>()};
    else
      problem = "its userns mapping is malformed";
  }
  if (auto it = doc.find("session"); it != doc.end() && it->is_object())
    record.session_state = it->dump();
  record.doc = std::move(doc);
  return record;
}

bool answers_ping(engine::Engine& engine) {
  try {
    std::string body;
    return engine.get("/_ping", body) == 200;
  } catch (const std::exception&) {
    return false;
  }
}

void remove_record(const fs::path& file) {
  std::error_code ec;
  fs::remove(file, ec);
  if (ec) spdlog::warn("cannot remove session record {}: {}", file.string(), ec.message());
}

class DockerSessionEngine final : public SessionEngine {
 public:
  DockerSessionEngine(std::unique_ptr<engine::Engine> engine,
                      std::shared_ptr<engine::AddressPool> pool, fs::path record, json record_doc)
      : gpu_models_(gpu_models_of(record_doc)),
        engine_(std::move(engine)),
        pool_(std::move(pool)),
        record_(std::move(record)),
        record_doc_(std::move(record_doc)) {}

  ~DockerSessionEngine() override = default;

  fs::path api_socket() const override { return engine_->api_socket(); }
  // Inside the session's data directory: the engine's teardown deletes it with everything else.
  fs::path sync_root() const override { return engine_->spec().data_dir / "sync"; }
  std::optional<sync::ReplicaOptions::IdShift> sync_id_shift() const override {
    const auto& userns = engine_->spec().userns;
    if (!userns) return std::nullopt;
    return sync::ReplicaOptions::IdShift{userns->root_uid, userns->root_gid};
  }
  boost::asio::ip::address published_address() const override {
    return engine_->spec().slot.engine_address;
  }
  std::string network_namespace() const override {
    return "/var/run/netns/" + engine_->spec().slot.netns;
  }
  void watch(PortsCallback on_ports, RunningCallback on_running) override {
    watcher_ = std::make_unique<PortWatcher>(engine_->api_socket(), std::move(on_ports),
                                             clock_, std::chrono::seconds(5),
                                             std::chrono::milliseconds(250),
                                             std::move(on_running));
  }

  void describe(v1::SessionInfo& info) override {
    for (const auto& model : gpu_models_) info.add_gpu_models(model);
    std::lock_guard lock(mu_);
    if (!version_) {
      try {
        version_ = engine_->version();
      } catch (const std::exception& e) {
        // Not cached: the next call asks again. Describing never fails a call.
        spdlog::warn("session {}: {}", short_session_id(engine_->spec().session_id), e.what());
        return;
      }
    }
    info.set_engine_version(version_->version);
    info.set_engine_api_version(version_->api_version);
    if (!version_->os.empty())
      info.set_engine_os(version_->os + (version_->arch.empty() ? "" : "/" + version_->arch));
  }

  bool alive() override {
    std::lock_guard lock(mu_);
    return !destroyed_ && engine_->alive();
  }

  std::vector<v1::Container> list_containers(bool all) override {
    return parse_containers(
        query(all ? "/containers/json?all=1" : "/containers/json", "GET /containers/json"));
  }

  std::vector<v1::Image> list_images() override {
    return parse_images(query("/images/json", "GET /images/json"));
  }

  void save_state(const std::string& session_state) override {
    json state = json::parse(session_state, nullptr, false);
    if (!state.is_object()) throw std::runtime_error("the session state is not a JSON object");
    std::lock_guard lock(mu_);
    if (destroyed_) return;  // its record is gone with it
    record_doc_["session"] = std::move(state);
    if (auto ec = write_record(record_, record_doc_))
      throw std::runtime_error("cannot write " + record_.string() + ": " + ec.message());
  }

  std::vector<std::string> destroy(const std::string& reason) override {
    std::lock_guard lock(mu_);
    if (destroyed_) return {};
    watcher_.reset();  // stop following an engine that is going away
    auto report = engine_->destroy(reason);
    if (!report.clean()) {
      // The record and the slot stay: the next runner start-up retries the teardown, and no new
      // engine is given addresses that the leftovers may still hold.
      throw std::runtime_error("teardown of session " + short_session_id(engine_->spec().session_id) +
                               " left " + join(report.leftovers));
    }
    destroyed_ = true;
    pool_->release(engine_->spec().slot.index);
    remove_record(record_);
    return report.removed;
  }

 private:
  // The HTTP exchange runs outside mu_: a slow engine must not block describe()/alive().
  std::string query(const std::string& target, const char* what) {
    {
      std::lock_guard lock(mu_);
      if (destroyed_) throw std::runtime_error("the session engine has been destroyed");
    }
    engine::HttpReply reply;
    if (auto ec = engine::unix_http_get(engine_->api_socket(), target, reply))
      throw std::runtime_error(std::string("the session engine is not answering ") + what + ": " +
                               ec.message());
    if (reply.status != 200)
      throw std::runtime_error(std::string("the session engine answered ") + what + " with HTTP " +
                               std::to_string(reply.status));
    return std::move(reply.body);
  }

  // In the record, so that an engine a restarted runner adopts still names its GPUs.
  static std::vector<std::string> gpu_models_of(const json& doc) {
    std::vector<std::string> out;
    if (auto it = doc.find("gpu_models"); it != doc.end() && it->is_array())
      for (const auto& m : *it)
        if (m.is_string()) out.push_back(m.get<std::string>());
    return out;
  }

  const std::vector<std::string> gpu_models_;
  std::unique_ptr<engine::Engine> engine_;
  std::shared_ptr<engine::AddressPool> pool_;
  fs::path record_;
  json record_doc_;  // guarded by mu_
  SystemWaitClock clock_;
  std::unique_ptr<PortWatcher> watcher_;
  std::mutex mu_;  // guards destroyed_, version_ and the engine's pid during teardown
  bool destroyed_ = false;
  std::optional<engine::EngineVersion> version_;
};

}  // namespace

DockerSessionBackend::DockerSessionBackend(DockerBackendOptions options)
    : options_(std::move(options)),
      pool_(std::make_shared<engine::AddressPool>(options_.address_pool)) {}

engine::EngineSpec DockerSessionBackend::spec_for(const std::string& session_id,
                                                  const engine::NetworkSlot& slot) const {
  engine::EngineSpec spec;
  spec.session_id = session_id;
  spec.data_dir = sessions_dir() / session_id;
  spec.run_dir = options_.run_dir / short_session_id(session_id);
  spec.slot = slot;
  spec.egress = options_.egress;
  spec.egress.pool = options_.address_pool;  // other sessions are never reachable
  spec.limits = options_.session_limits;
  spec.registry_mirrors = options_.registry_mirrors;
  spec.kept_logs_dir = options_.state_dir / "failed";  // a failed engine's dockerd.log
  return spec;
}

std::unique_ptr<SessionEngine> DockerSessionBackend::create(const std::string& session_id) {
  return start_engine(session_id, /*gpu=*/false);
}

std::unique_ptr<SessionEngine> DockerSessionBackend::create_with_gpus(
    const std::string& session_id) {
  if (!options_.gpus.usable())
    throw std::runtime_error("this runner cannot give sessions a GPU: " + options_.gpus.problem);
  return start_engine(session_id, /*gpu=*/true);
}

std::unique_ptr<SessionEngine> DockerSessionBackend::start_engine(const std::string& session_id,
                                                                  bool gpu) {
  // Skip addresses already on this host's interfaces: another runner with the same pool (two
  // users' local accounts) or any other program must not get a clashing route.
  auto taken = engine::host_ipv4_addresses();
  auto slot = pool_->allocate(session_id, [&taken](const engine::NetworkSlot& s) {
    return engine::slot_conflicts(s, taken);
  });
  if (!slot)
    throw std::runtime_error("the runner has no free network slot in " +
                             options_.address_pool.to_string() +
                             ": too many sessions, or the range is in use on this host (give it "
                             "a larger or another --address-pool)");
  auto spec = spec_for(session_id, *slot);
  const fs::path record = record_path(session_id);
  try {
    if (options_.userns_remap)
      spec.userns = engine::prepare_userns(options_.subid_base, slot->index);
    if (auto ec = ensure_private_dir(sessions_dir()))
      throw std::runtime_error("cannot create " + sessions_dir().string() + ": " + ec.message());
    // Written before anything exists, so a runner killed half-way through start-up still
    // finds and removes what it made.
    json doc = record_doc(spec);
    if (gpu) {
      spec.nvidia_runtime = options_.gpus.runtime;
      doc["gpu_models"] = options_.gpus.models;
    }
    if (auto ec = write_record(record, doc))
      throw std::runtime_error("cannot write session record " + record.string() + ": " +
                               ec.message());
    auto engine = engine::Engine::start(spec);
    return std::make_unique<DockerSessionEngine>(std::move(engine), pool_, record, std::move(doc));
  } catch (const std::exception& e) {
    // Engine::start has already rolled back what it created.
    pool_->release(slot->index);
    remove_record(record);
    throw std::runtime_error(e.what());
  }
}

std::vector<std::string> DockerSessionBackend::destroy_leftovers() {
  std::vector<std::string> done;
  sweep(nullptr, done);
  return done;
}

std::vector<AdoptedEngine> DockerSessionBackend::adopt_engines() {
  std::vector<AdoptedEngine> adopted;
  std::vector<std::string> done;
  sweep(&adopted, done);
  return adopted;
}

void DockerSessionBackend::sweep(std::vector<AdoptedEngine>* adopted,
                                 std::vector<std::string>& done) {
  std::error_code ec;
  if (!fs::is_directory(sessions_dir(), ec)) return;

  // Sessions are known by their record; a data directory without one is a leftover too.
  std::set<std::string> ids;
  std::vector<fs::path> junk;
  try {
    for (const auto& entry : fs::directory_iterator(sessions_dir())) {
      const std::string name = entry.path().filename().string();
      if (name.starts_with(".")) {
        // A temporary file of an atomic write that a crash interrupted.
        if (name.find(".tmp-") != std::string::npos) junk.push_back(entry.path());
        continue;
      }
      std::string id = name;
      // The record, the data directory, or the disk image beside it (a session disk quota).
      if (entry.path().extension() == ".json" || entry.path().extension() == ".disk")
        id = entry.path().stem().string();
      else if (!entry.is_directory(ec))
        continue;
      if (!engine::valid_session_id(id)) {
        spdlog::warn("ignoring {} in {}: not named after a session", name, sessions_dir().string());
        continue;
      }
      ids.insert(id);
    }
  } catch (const fs::filesystem_error& e) {
    spdlog::warn("cannot list {}: {}", sessions_dir().string(), e.what());
  }
  for (const auto& file : junk) fs::remove(file, ec);

  for (const auto& id : ids) {
    const fs::path file = record_path(id);
    std::string problem;
    SessionRecord record = read_record(file, id, problem);
    if (!problem.empty())
      spdlog::warn("session {}: record {}: {}; cleaning up what its name tells", short_session_id(id),
                   file.string(), problem);

    // A slot of our own pool keeps its addresses reserved if teardown leaves something. Without
    // one (corrupt record, or the pool changed) teardown still finds everything by the session
    // id: namespace and interface names and rule comments derive from it.
    std::optional<engine::NetworkSlot> slot;
    bool reserved = false;
    if (record.slot) slot = pool_->reserve(*record.slot, id);
    if (slot) {
      reserved = true;
    } else {
      try {
        slot = engine::AddressPool(options_.address_pool).allocate(id);
      } catch (const std::exception&) {
      }
    }
    if (!slot) {
      done.push_back("session " + id + ": cannot derive its network names; left alone");
      spdlog::error("{}", done.back());
      continue;
    }
    auto spec = spec_for(id, *slot);
    // The run directory moves with --run-dir; teardown deletes it recursively, so only a path
    // of the shape we create is taken from the record.
    if (!record.run_dir.empty() && record.run_dir.filename() == short_session_id(id))
      spec.run_dir = record.run_dir;
    spec.userns = record.userns;

    std::string line = "session " + id + ": ";
    try {
      auto engine = engine::Engine::adopt(spec);
      const bool was_running = engine->alive();
      // Taken over only when all of it can be trusted: a whole record with the session's state,
      // its own slot, and a dockerd that answers.
      std::string why_not;
      if (!adopted) why_not = "";
      else if (!problem.empty()) why_not = "its record is damaged";
      else if (record.session_state.empty()) why_not = "it never finished starting";
      else if (!reserved) why_not = "its network slot is not in --address-pool";
      else if (!was_running) why_not = "its dockerd is not running";
      else if (!answers_ping(*engine)) why_not = "its dockerd does not answer";
      if (adopted && why_not.empty()) {
        // The runner's start-up made the state directory private again (0700); the engine's
        // remapped root must still reach its data root, or no new container could start.
        if (spec.userns) engine::grant_traverse(spec.data_dir);
        adopted->push_back({id, record.session_state,
                            std::make_unique<DockerSessionEngine>(std::move(engine), pool_, file,
                                                                  std::move(record.doc))});
        line += "running engine adopted";
        spdlog::info("{}", line);
        done.push_back(line);
        continue;
      }
      if (adopted) spdlog::warn("session {}: not restored: {}", short_session_id(id), why_not);
      auto report = engine->destroy("left over from an earlier runner process");
      line += std::string(was_running ? "running engine" : "dead engine") + " destroyed, removed " +
              std::to_string(report.removed.size()) + " items";
      if (report.clean()) {
        if (reserved) pool_->release(slot->index);
        remove_record(file);
        spdlog::info("{}", line);
      } else {
        line += ", LEFT " + join(report.leftovers);
        spdlog::error("{}", line);
      }
    } catch (const std::exception& e) {
      if (reserved) pool_->release(slot->index);
      line += std::string("cannot clean up: ") + e.what();
      spdlog::error("{}", line);
    }
    done.push_back(line);
  }
}

}  // namespace offload::runner
