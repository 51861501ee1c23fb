// The real session backend: one dockerd per session, each in its own network namespace, with a
// record on disk so that a runner that crashed or was killed cleans up after itself on restart.
#pragma once

#include <boost/asio/ip/network_v4.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "offload/engine/engine.h"
#include "offload/runner/gpu.h"
#include "offload/runner/session_backend.h"

namespace offload::runner {

struct DockerBackendOptions {
  // Engines' data live in state_dir/sessions/<id>/, their records in state_dir/sessions/<id>.json.
  std::filesystem::path state_dir;
  // Sockets and exec roots: run_dir/<id8>/. Keep it short (unix socket paths are limited).
  std::filesystem::path run_dir;
  boost::asio::ip::network_v4 address_pool;
  // The operator's egress allow/deny lists; the pool is filled in from address_pool.
  engine::EgressPolicy egress;
  // CPU, memory, pids and disk limits of every session's engine.
  engine::SessionLimits session_limits;
  // Each engine runs `dockerd --userns-remap` as slot user offload-s<slot> with subordinate ids
  // subid_base + slot * 65536 (see engine/userns.h); opt-in until the
  // end-to-end suites are proven with it on.
  bool userns_remap = false;
  // Every engine's registry mirrors (the image cache; egress.host_service lets it in).
  std::vector<std::string> registry_mirrors = {};
  std::uint64_t subid_base = engine::kDefaultSubidBase;
  // The runner's NVIDIA GPUs (detect_gpus() at start-up): what create_with_gpus() hands out.
  GpuInventory gpus = no_gpus();

  static GpuInventory no_gpus() {
    GpuInventory none;
    none.problem = "it has no NVIDIA GPU";
    return none;
  }
};

class DockerSessionBackend final : public SessionBackend {
 public:
  // Throws std::invalid_argument for a pool smaller than a /30.
  explicit DockerSessionBackend(DockerBackendOptions options);

  // Allocates a network slot, writes the session's record, then starts its engine. On failure
  // nothing is left (slot released, record removed) and std::runtime_error carries the reason.
  std::unique_ptr<SessionEngine> create(const std::string& session_id) override;
  // A GPU session's engine also gets the nvidia runtime (when the toolkit has one); --gpus works
  // through dockerd's own nvidia driver (nvidia-container-runtime-hook on PATH).
  std::unique_ptr<SessionEngine> create_with_gpus(const std::string& session_id) override;
  GpuInventory gpus() const override { return options_.gpus; }

  // Destroys every engine recorded by an earlier runner process (which crashed or was killed)
  // and returns one line per session saying what was done. Call once at start-up, before
  // create(). Never throws for a corrupt or unreadable record: what can be derived from its
  // file name is cleaned up. A session whose teardown left something keeps its record (the next
  // start-up tries again) and its slot (so no new engine collides with its leftovers).
  std::vector<std::string> destroy_leftovers();

  // --live-restore: like destroy_leftovers(), except that a session whose engine still runs and
  // answers, whose record is whole and holds the session's state, and whose slot lies in this
  // runner's pool is taken over instead (its slot reserved again), not destroyed.
  std::vector<AdoptedEngine> adopt_engines() override;

  std::filesystem::path sessions_dir() const { return options_.state_dir / "sessions"; }
  std::filesystem::path record_path(const std::string& session_id) const {
    return sessions_dir() / (session_id + ".json");
  }

 private:
  std::unique_ptr<SessionEngine> start_engine(const std::string& session_id, bool gpu);
  engine::EngineSpec spec_for(const std::string& session_id, const engine::NetworkSlot& slot) const;
  // Goes through every recorded session: adopts it into `adopted` when allowed (non-null) and
  // possible, destroys it otherwise; one line per session into `done`.
  void sweep(std::vector<AdoptedEngine>* adopted, std::vector<std::string>& done);

  DockerBackendOptions options_;
  std::shared_ptr<engine::AddressPool> pool_;  // shared with the engines it handed slots to
};

}  // namespace offload::runner
