// The runner's image cache: the distribution registry (Debian's `docker-registry` 2.8) as a
// pull-through mirror of one upstream, shared by every session's engine and kept across sessions,
// supervised by the runner and held under a disk cap by evicting the least recently used
// repositories. See docs/architecture.md, "Image cache".
#pragma once

#include <sys/types.h>

#include <boost/asio/ip/address_v4.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "offload/common/clock.h"

namespace offload::runner {

struct ImageCacheOptions {
  // What the mirror pulls from: "https://registry-1.docker.io" (Docker Hub) or any registry the
  // operator names. dockerd sends only Docker Hub names (`busybox`, `me/app`) to a mirror, so
  // this is what those names resolve to for sessions.
  std::string upstream;
  std::uint64_t cap_bytes = 20ull << 30;
  // <state-dir>/image-cache: config.yml, storage/, registry.log, registry.pid.
  std::filesystem::path dir;
  // Where the registry listens; the session engines' INPUT exception names it.
  boost::asio::ip::address_v4 address;
  unsigned short port = 5000;
  // How often the storage is measured against the cap.
  std::chrono::seconds check_every{30};

  std::filesystem::path storage() const { return dir / "storage"; }
  std::filesystem::path config_file() const { return dir / "config.yml"; }
  std::filesystem::path log_file() const { return dir / "registry.log"; }
  std::filesystem::path pid_file() const { return dir / "registry.pid"; }
  // dockerd's registry-mirrors entry.
  std::string mirror_url() const;
};

// What `docker offload status` shows.
struct ImageCacheStatus {
  std::string upstream;
  std::string mirror;
  std::uint64_t used_bytes = 0;
  std::uint64_t cap_bytes = 0;
  bool running = false;
  std::string problem;  // the last thing that went wrong, "" when all is well
};

// "" when `url` is http:// or https:// with a host, an optional port and no path; else one line
// saying what is wrong with it.
std::string check_upstream(std::string_view url);

// The registry's config.yml: filesystem storage, pull-through proxy of the upstream, deletes
// enabled (garbage-collect needs them), JSON logs with one "response completed" line per
// request (the cache's access record), listening on address:port only.
std::string registry_config(const ImageCacheOptions& options, const std::string& http_secret);

// The repository a line of the registry's JSON log served successfully (a 2xx "response
// completed" with `vars.name`), e.g. "library/busybox"; nullopt for any other line.
std::optional<std::string> repository_served(std::string_view log_line);

// What the registry's storage holds.
struct StorageScan {
  std::uint64_t total_bytes = 0;  // every file under the storage root
  // Repository name → the digests ("sha256:…") it links: its layers, configs and manifests.
  std::map<std::string, std::set<std::string>> repositories;
  std::map<std::string, std::uint64_t> blob_bytes;  // digest → size of its data file
  // Repository name → newest modification time under its _manifests (a pull that reached the
  // upstream re-tags and so touches it): the last use known from disk, across runner restarts.
  std::map<std::string, std::filesystem::file_time_type> touched;
};
StorageScan scan_storage(const std::filesystem::path& storage_root);

// The least recently used repositories (never-seen ones first, then by name) to delete so that
// what stays fits the cap: blobs only they link are freed (garbage-collect removes them); blobs
// another kept repository links stay. Empty when the storage fits.
std::vector<std::string> plan_eviction(const StorageScan& scan,
                                       const std::map<std::string, Clock::time_point>& last_used,
                                       std::uint64_t cap_bytes);

// The runner's hands on the registry process; tests replace them.
struct RegistryControl {
  std::function<pid_t()> start;           // <= 0: could not start
  std::function<bool(pid_t)> alive;
  std::function<void(pid_t)> stop;
  std::function<bool()> upstream_answers;  // distribution 2.8 cannot start without it
  std::function<std::string()> collect_garbage;  // "" or what went wrong
};
// The real thing: `docker-registry serve|garbage-collect <dir>/config.yml`.
RegistryControl real_registry_control(const ImageCacheOptions& options);

class ImageCache {
 public:
  ImageCache(ImageCacheOptions options, const Clock& clock, RegistryControl control);
  // Stops the thread and the registry.
  ~ImageCache();
  ImageCache(const ImageCache&) = delete;
  ImageCache& operator=(const ImageCache&) = delete;

  // One round: notes which repositories the registry served since the last round, (re)starts the
  // registry when it is not running and its backoff has passed, and every check_every measures
  // the storage and evicts down to the cap. Called by the thread; tests call it directly.
  void tick();
  // Runs tick() about once a second until stop().
  void start_thread();
  // Stops the thread, then the registry.
  void stop();

  ImageCacheStatus status() const;
  const ImageCacheOptions& options() const { return options_; }

 private:
  void read_new_log_lines();
  void supervise(Clock::time_point now);
  void enforce_cap(Clock::time_point now);
  // Copies the state status() shows (under mu_): status() never waits for a round, which may
  // run garbage-collect for minutes.
  void publish();

  ImageCacheOptions options_;
  const Clock& clock_;
  RegistryControl control_;

  mutable std::mutex mu_;  // everything below
  pid_t pid_ = 0;
  Clock::time_point started_at_{}, next_start_{}, next_check_{};
  std::chrono::seconds backoff_{1};
  std::uint64_t log_offset_ = 0;
  std::map<std::string, Clock::time_point> last_used_;
  std::uint64_t used_bytes_ = 0;
  std::string problem_;

  mutable std::mutex status_mu_;
  ImageCacheStatus published_;

  std::mutex thread_mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace offload::runner
