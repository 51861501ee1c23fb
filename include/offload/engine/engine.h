// One ephemeral Docker engine per session: its own dockerd with its own data-root, exec-root,
// socket and network namespace, and a teardown that proves nothing of it is left.
#pragma once

#include <sys/types.h>

#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "offload/engine/egress_rules.h"
#include "offload/engine/session_disk.h"
#include "offload/engine/session_limits.h"
#include "offload/engine/userns.h"

namespace offload::engine {

// A /30 carved out of the runner's address pool: host side .1, namespace side .2. Published
// ports of the engine are reachable from the host at `engine_address`.
struct NetworkSlot {
  std::uint32_t index = 0;
  boost::asio::ip::address_v4 host_address, engine_address;
  std::string netns;                  // "offload-<session id>"
  std::string host_veth, engine_veth;  // "ofl<id8>h" / "ofl<id8>n": IFNAMSIZ allows 15 chars
};

// Hands out /30 slots of a pool. Thread-safe. Interface names come from the first 8 hex digits
// of the session id, so two live sessions must differ there (random ids always do).
// True when any of `host_addresses` lies inside the slot's /30: the slot would clash with an
// interface that already exists on the runner host.
bool slot_conflicts(const NetworkSlot& slot,
                    const std::vector<boost::asio::ip::address_v4>& host_addresses);
// The IPv4 addresses of this network namespace's interfaces.
std::vector<boost::asio::ip::address_v4> host_ipv4_addresses();

class AddressPool {
 public:
  // Throws std::invalid_argument if the pool is smaller than a /30.
  explicit AddressPool(boost::asio::ip::network_v4 pool);

  // Lowest free slot, or nullopt when the pool is exhausted. Throws std::invalid_argument for a
  // session id that is not lowercase hex of >= 8 chars or whose 8-char prefix is already live.
  std::optional<NetworkSlot> allocate(const std::string& session_id);
  // Like allocate(), skipping slots `unusable` rejects (e.g. addresses another program already
  // uses on this host: a second runner with the same pool, a VPN).
  std::optional<NetworkSlot> allocate(const std::string& session_id,
                                      const std::function<bool(const NetworkSlot&)>& unusable);
  // Claims a specific slot again, e.g. for an engine that survived a runner restart. nullopt if
  // the index is outside the pool or taken.
  std::optional<NetworkSlot> reserve(std::uint32_t index, const std::string& session_id);
  // Releasing a free or unknown index is a no-op.
  void release(std::uint32_t index);

  std::size_t capacity() const;
  std::size_t in_use() const;

 private:
  NetworkSlot make_slot(std::uint32_t index, const std::string& session_id) const;
  bool prefix_in_use(const std::string& session_id) const;

  boost::asio::ip::network_v4 pool_;
  std::size_t capacity_;
  mutable std::mutex mutex_;
  std::map<std::uint32_t, std::string> used_;  // index -> session id
};

// True for lowercase hex of at least 8 chars: what every name derived from it relies on.
bool valid_session_id(const std::string& session_id);

struct EngineSpec {
  std::string session_id;            // lowercase hex, >= 8 chars
  std::filesystem::path data_dir;    // e.g. <state>/sessions/<id>: docker/ (data-root), dockerd.log
  std::filesystem::path run_dir;     // e.g. /run/offload-runner/<id8>: exec/, docker.sock, docker.pid
  NetworkSlot slot;
  std::chrono::milliseconds ready_timeout = std::chrono::seconds(60);
  // Appended to dockerd's command line (e.g. "--default-runtime=nvidia", or a bad flag in tests).
  std::vector<std::string> extra_dockerd_args;
  // Set for a GPU session: registered as dockerd's "nvidia" runtime (`docker run --runtime
  // nvidia`). `--gpus` itself needs only nvidia-container-runtime-hook on dockerd's PATH.
  std::filesystem::path nvidia_runtime;
  // What the session's containers may reach besides the internet (see egress_rules.h).
  EgressPolicy egress;
  // CPU, memory and pids limits of cgroup_parent(), set before dockerd starts; disk_bytes > 0:
  // data_dir is a filesystem of that size in disk_image() (see session_disk.h).
  SessionLimits limits;
  // Set: dockerd runs with --userns-remap to this slot user (see userns.h), so container root is
  // an unprivileged host uid; data_dir and its ancestors get o+x for it.
  std::optional<UsernsMapping> userns;
  // dockerd's `registry-mirrors` (e.g. "http://10.213.255.254:5000", the runner's image cache):
  // dockerd 20.10 consults them for Docker Hub images only, then falls back to the Hub.
  std::vector<std::string> registry_mirrors;
  // Set: a failed start, or a teardown that finds dockerd dead, keeps the tail of dockerd.log
  // here (kept_logs.h), e.g. <state>/failed.
  std::filesystem::path kept_logs_dir;

  // Derived paths, in one place so start, adopt and destroy agree.
  std::filesystem::path data_root() const { return data_dir / "docker"; }
  std::filesystem::path log_file() const { return data_dir / "dockerd.log"; }
  // Beside data_dir; teardown removes it whatever limits.disk_bytes says now.
  std::filesystem::path disk_image() const { return disk_image_of(data_dir); }
  std::filesystem::path exec_root() const { return run_dir / "exec"; }
  // dockerd's temporary directory (DOCKER_TMPDIR): stored on the session's disk (tmp_storage(),
  // so it counts against the session's quota) and bound at this short path, because BuildKit
  // makes unix sockets in it (`RUN --mount=type=ssh`: <tmp>/.buildkit-ssh-sock<N>/ssh_auth_sock)
  // and dockerd's default, <data_root>/<uid>.<gid>/tmp, is too long for sun_path.
  std::filesystem::path tmp_dir() const { return run_dir / "tmp"; }
  std::filesystem::path tmp_storage() const { return data_dir / "tmp"; }
  std::filesystem::path api_socket() const { return run_dir / "docker.sock"; }
  std::filesystem::path pid_file() const { return run_dir / "docker.pid"; }
  // dockerd's own --config-file, so the host's /etc/docker/daemon.json never applies.
  std::filesystem::path config_file() const { return run_dir / "daemon.json"; }
  // cgroup v1 parent of the engine's containers: lets teardown find and kill them by cgroup.
  std::string cgroup_parent() const { return "offload-" + session_id; }
  // The comment on every iptables rule of the engine.
  std::string rule_comment() const { return "offload:" + session_id; }
};

struct EngineVersion {
  std::string version, api_version, os, arch;
};

struct TeardownReport {
  std::vector<std::string> removed;    // what was found and removed, for the log
  std::vector<std::string> leftovers;  // what is still there after teardown
  std::chrono::milliseconds duration{0};
  bool clean() const { return leftovers.empty(); }
};

// Checks what creating engines needs: root, and dockerd, ip, iptables, nsenter on PATH. Returns
// "" or one actionable line.
std::string check_prerequisites();

class Engine {
 public:
  // Blocking: creates the namespace, veth pair, addresses, routes and NAT rules, the private
  // directories, spawns dockerd inside the namespace and waits until /_ping answers OK. On any
  // failure everything created so far is torn down and std::runtime_error with one actionable
  // line is thrown (std::invalid_argument for a malformed spec).
  static std::unique_ptr<Engine> start(const EngineSpec& spec);
  // Takes over an engine started earlier (e.g. by a runner before its restart), found by its
  // pidfile; its dockerd may be dead, so that destroy() can still clean up after it.
  static std::unique_ptr<Engine> adopt(const EngineSpec& spec);

  // Does NOT destroy: engines outlive a runner restart. Call destroy().
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const EngineSpec& spec() const { return spec_; }
  const std::filesystem::path& api_socket() const { return api_socket_; }
  pid_t pid() const { return pid_; }
  bool alive() const;

  // GET /version. Throws std::runtime_error when the engine does not answer.
  EngineVersion version();
  // Blocking HTTP/1.1 GET over the API socket (10 s timeout); returns the status and fills
  // `body`. Throws std::runtime_error when the socket cannot be reached.
  int get(const std::string& target, std::string& body);

  // Idempotent. Kills the containers, stops dockerd (SIGTERM, 20 s grace, then SIGKILL), kills any
  // process still left of this engine, unmounts and deletes its directories and cgroups, deletes
  // its iptables rules, veth and namespace, then verifies that none of it is left. Logs one line.
  TeardownReport destroy(const std::string& reason);

 private:
  explicit Engine(EngineSpec spec, pid_t pid);

  EngineSpec spec_;
  std::filesystem::path api_socket_;
  pid_t pid_ = 0;
  bool destroyed_ = false;
  bool log_kept_ = false;
};

}  // namespace offload::engine
