// What the runner service needs from a session's engine. The real backend starts a dockerd per
// session (DockerSessionBackend); tests plug in an in-process target.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <stdexcept>

#include "offload/runner/gpu.h"
#include "offload/sync/replica.h"
#include "offload/v1/runner.pb.h"

namespace offload::runner {

class SessionEngine {
 public:
  virtual ~SessionEngine() = default;
  // The unix socket of the engine's Docker API: the only thing engine tunnels may dial.
  virtual std::filesystem::path api_socket() const = 0;
  // Where the engine's published ports are reachable from the runner host (the engine's end of
  // its veth pair). Port tunnels dial this address and nothing else.
  virtual boost::asio::ip::address published_address() const = 0;
  // The engine's network namespace (a path to open for setns), or "" when it shares the
  // runner's. Ports published on the engine's loopback (-p 127.0.0.1:...) are reachable only
  // from inside it.
  virtual std::string network_namespace() const { return {}; }
  // Where this session keeps the copies of its clients' bind-mounted trees (deleted with the
  // session), or "" when the backend cannot synchronise (Sync calls are then refused).
  virtual std::filesystem::path sync_root() const { return {}; }
  // Set when the engine remaps user namespaces: how the replica shifts the owners it creates so
  // that container root can write the session's bind mounts.
  virtual std::optional<sync::ReplicaOptions::IdShift> sync_id_shift() const { return {}; }
  // Reports the ports published by the engine's containers (the full set) and how many
  // containers run: now, and again after every change, from any thread, until destroy().
  using PortsCallback = std::function<void(const std::vector<v1::PublishedPort>&)>;
  using RunningCallback = std::function<void(std::size_t running_containers)>;
  virtual void watch(PortsCallback on_ports, RunningCallback on_running) = 0;
  // Fills the engine_* fields of `info`.
  virtual void describe(v1::SessionInfo& info) = 0;
  virtual bool alive() = 0;
  // Throw std::runtime_error with a user-facing line on failure.
  virtual std::vector<v1::Container> list_containers(bool all) = 0;
  virtual std::vector<v1::Image> list_images() = 0;
  // Idempotent teardown; returns what was removed. Throws if something was left behind (the
  // message lists it).
  virtual std::vector<std::string> destroy(const std::string& reason) = 0;
  // Keeps `session_state` (the session's snapshot, opaque here) with the engine's own record,
  // for a runner that restarts with --live-restore. Throws std::runtime_error when it cannot.
  // Backends that cannot restore sessions keep nothing.
  virtual void save_state(const std::string& session_state) { (void)session_state; }
};

// An engine that outlived the runner process that started it, with the session state saved
// beside it (SessionEngine::save_state).
struct AdoptedEngine {
  std::string session_id;
  std::string session_state;
  std::unique_ptr<SessionEngine> engine;
};

class SessionBackend {
 public:
  virtual ~SessionBackend() = default;
  // Blocking; returns a ready engine or throws std::runtime_error with a user-facing line.
  virtual std::unique_ptr<SessionEngine> create(const std::string& session_id) = 0;
  // The runner's NVIDIA GPUs (gpu.h): none, unless the backend found usable ones.
  virtual GpuInventory gpus() const {
    GpuInventory none;
    none.problem = "it has no NVIDIA GPU";
    return none;
  }
  bool gpu_available() const { return gpus().usable(); }
  // Like create(), for a session whose containers may use the GPUs (`docker run --gpus`).
  // Called only when gpu_available().
  virtual std::unique_ptr<SessionEngine> create_with_gpus(const std::string& session_id) {
    (void)session_id;
    throw std::runtime_error("this runner has no GPU for sessions");
  }
  // At start-up with --live-restore, before create(): takes over the engines of an earlier
  // runner process that are still alive and have a session state saved; destroys every other
  // leftover. The caller restores the sessions, or destroys an engine whose state it cannot use.
  virtual std::vector<AdoptedEngine> adopt_engines() { return {}; }
};

}  // namespace offload::runner
