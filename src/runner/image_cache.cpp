#include "offload/runner/image_cache.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/token.h"

namespace offload::runner {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr auto kMaxBackoff = std::chrono::seconds(60);
// A registry that ran this long was healthy: its next failure starts the backoff afresh.
constexpr auto kHealthyRun = std::chrono::seconds(60);
// The access record is read as it grows; beyond this it is cut (after reading).
constexpr std::uint64_t kMaxLogBytes = 16ull << 20;

struct UrlParts {
  std::string scheme, host, port;
};

std::optional<UrlParts> split_url(std::string_view url) {
  UrlParts out;
  for (const char* scheme : {"http", "https"}) {
    const std::string prefix = std::string(scheme) + "://";
    if (url.substr(0, prefix.size()) == prefix) {
      out.scheme = scheme;
      url.remove_prefix(prefix.size());
    }
  }
  if (out.scheme.empty()) return std::nullopt;
  if (!url.empty() && url.back() == '/') url.remove_suffix(1);
  if (url.empty() || url.find_first_of("/?#@ ") != std::string_view::npos) return std::nullopt;
  auto colon = url.rfind(':');
  if (colon != std::string_view::npos && url.find(']') == std::string_view::npos) {
    out.host = std::string(url.substr(0, colon));
    out.port = std::string(url.substr(colon + 1));
    if (out.port.empty() || out.port.size() > 5 ||
        out.port.find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
  } else {
    out.host = std::string(url);
    out.port = out.scheme == "https" ? "443" : "80";
  }
  if (out.host.empty()) return std::nullopt;
  return out;
}

// Repository names are paths under repositories/: refuse anything that could step outside.
bool safe_repository_name(const std::string& name) {
  if (name.empty() || name.front() == '/') return false;
  for (auto part : fs::path(name))
    if (part == ".." || part == "." || part.empty()) return false;
  return true;
}

std::string read_link_digest(const fs::path& link) {
  std::ifstream in(link);
  std::string digest;
  std::getline(in, digest);
  return digest;
}

// A TCP connection to the upstream's host and port within 3 s: what the registry's start-up
// (a GET of <upstream>/v2/) needs at the least.
bool tcp_reachable(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return false;
  bool ok = false;
  for (auto* a = found; a && !ok; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ok = true;
    } else if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof err;
      ok = ::poll(&p, 1, 3000) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
           err == 0;
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return ok;
}

}  // namespace

std::string ImageCacheOptions::mirror_url() const {
  return "http://" + address.to_string() + ":" + std::to_string(port);
}

std::string check_upstream(std::string_view url) {
  if (url.substr(0, 7) != "http://" && url.substr(0, 8) != "https://")
    return "--image-cache-upstream \"" + std::string(url) +
           "\" must start with https:// or http:// (e.g. https://registry-1.docker.io)";
  if (!split_url(url))
    return "--image-cache-upstream \"" + std::string(url) +
           "\" must be a registry's base URL: scheme, host and optional port, no path";
  return {};
}

std::string registry_config(const ImageCacheOptions& o, const std::string& http_secret) {
  // JSON-quoted strings are valid YAML scalars.
  auto q = [](const std::string& s) { return nlohmann::json(s).dump(); };
  std::string upstream = o.upstream;
  if (!upstream.empty() && upstream.back() == '/') upstream.pop_back();
  return "# Written by offload-runner at every start of the image cache; edits are lost.\n"
         "version: 0.1\n"
         "log:\n"
         "  level: info\n"
         "  formatter: json\n"
         "  accesslog:\n"
         "    disabled: true\n"
         "storage:\n"
         "  filesystem:\n"
         "    rootdirectory: " + q(o.storage().string()) + "\n"
         "  delete:\n"
         "    enabled: true\n"
         "http:\n"
         "  addr: " + q(o.address.to_string() + ":" + std::to_string(o.port)) + "\n"
         "  secret: " + q(http_secret) + "\n"
         "proxy:\n"
         "  remoteurl: " + q(upstream) + "\n";
}

std::optional<std::string> repository_served(std::string_view line) {
  if (line.find("response completed") == std::string_view::npos) return std::nullopt;
  auto doc = nlohmann::json::parse(line, nullptr, false);
  if (!doc.is_object() || doc.value("msg", "") != "response completed") return std::nullopt;
  auto name = doc.find("vars.name");
  auto status = doc.find("http.response.status");
  if (name == doc.end() || !name->is_string() || status == doc.end() ||
      !status->is_number_integer())
    return std::nullopt;
  const int code = status->get<int>();
  if (code < 200 || code > 299) return std::nullopt;
  return name->get<std::string>();
}

StorageScan scan_storage(const fs::path& root) {
  StorageScan scan;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) scan.total_bytes += it->file_size(fec);
  }
  const fs::path v2 = root / "docker" / "registry" / "v2";
  const fs::path blobs = v2 / "blobs" / "sha256";
  for (auto it = fs::recursive_directory_iterator(blobs, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fec;
    if (it->path().filename() == "data" && it->is_regular_file(fec))
      scan.blob_bytes["sha256:" + it->path().parent_path().filename().string()] =
          it->file_size(fec);
  }
  // A repository is a directory holding _manifests (names may have several path parts).
  const fs::path repos = v2 / "repositories";
  for (auto it = fs::recursive_directory_iterator(repos, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename() != "_manifests") continue;
    it.disable_recursion_pending();
    const fs::path repo_dir = it->path().parent_path();
    const std::string name = repo_dir.lexically_relative(repos).generic_string();
    auto& digests = scan.repositories[name];
    auto& touched = scan.touched[name];
    std::error_code rec;
    for (auto link = fs::recursive_directory_iterator(repo_dir, rec);
         !rec && link != fs::recursive_directory_iterator(); link.increment(rec)) {
      if (link->path().filename() != "link") continue;
      std::error_code lec;
      auto when = fs::last_write_time(link->path(), lec);
      if (!lec && when > touched) touched = when;
      // _layers/sha256/<hex>/link and _manifests/revisions/sha256/<hex>/link name what the
      // repository holds; tag links point at revisions.
      const auto rel = link->path().lexically_relative(repo_dir).generic_string();
      if (rel.rfind("_layers/", 0) == 0 || rel.rfind("_manifests/revisions/", 0) == 0) {
        auto digest = read_link_digest(link->path());
        if (!digest.empty()) digests.insert(digest);
      }
    }
  }
  return scan;
}

std::vector<std::string> plan_eviction(const StorageScan& scan,
                                       const std::map<std::string, Clock::time_point>& last_used,
                                       std::uint64_t cap_bytes) {
  if (scan.total_bytes <= cap_bytes) return {};
  std::vector<std::pair<Clock::time_point, std::string>> order;
  for (const auto& [name, digests] : scan.repositories) {
    auto used = last_used.find(name);
    order.emplace_back(used == last_used.end() ? Clock::time_point::min() : used->second, name);
  }
  std::sort(order.begin(), order.end());
  // How many kept repositories link each blob: a blob is freed when that count drops to 0.
  std::map<std::string, int> links;
  for (const auto& [name, digests] : scan.repositories)
    for (const auto& d : digests) ++links[d];
  std::uint64_t remaining = scan.total_bytes;
  std::vector<std::string> evict;
  for (const auto& [when, name] : order) {
    if (remaining <= cap_bytes) break;
    evict.push_back(name);
    for (const auto& d : scan.repositories.at(name)) {
      if (--links[d] != 0) continue;
      auto size = scan.blob_bytes.find(d);
      if (size != scan.blob_bytes.end()) remaining -= std::min(remaining, size->second);
    }
  }
  return evict;
}

RegistryControl real_registry_control(const ImageCacheOptions& o) {
  RegistryControl c;
  c.start = [o]() -> pid_t {
    // A registry a killed runner left behind holds the port: end it first.
    std::string text;
    if (!read_file(o.pid_file(), text)) {
      pid_t old = static_cast<pid_t>(std::atol(text.c_str()));
      std::string cmdline;
      if (old > 0 && !read_file("/proc/" + std::to_string(old) + "/cmdline", cmdline) &&
          cmdline.find(o.config_file().string()) != std::string::npos)
        terminate_process(old, 10s);
    }
    if (auto ec = write_file_atomic(o.config_file(), registry_config(o, random_hex(16)),
                                    fs::perms(0600))) {
      spdlog::error("image cache: cannot write {}: {}", o.config_file().string(), ec.message());
      return -1;
    }
    auto registry = find_program("docker-registry");
    if (!registry) {
      spdlog::error("image cache: docker-registry not found: apt-get install docker-registry");
      return -1;
    }
    SpawnOptions options;
    options.log_file = o.log_file();
    std::string error;
    pid_t pid = spawn_process({registry->string(), "serve", o.config_file().string()}, options,
                              error);
    if (pid <= 0) {
      spdlog::error("image cache: cannot start docker-registry: {}", error);
      return -1;
    }
    (void)write_file_atomic(o.pid_file(), std::to_string(pid) + "\n", fs::perms(0600));
    return pid;
  };
  c.alive = [](pid_t pid) { return process_alive(pid); };
  c.stop = [o](pid_t pid) {
    terminate_process(pid, 10s);
    std::error_code ec;
    fs::remove(o.pid_file(), ec);
  };
  c.upstream_answers = [o] {
    auto parts = split_url(o.upstream);
    return parts && tcp_reachable(parts->host, parts->port);
  };
  c.collect_garbage = [o]() -> std::string {
    auto r = run_command({"docker-registry", "garbage-collect", o.config_file().string()},
                         std::chrono::minutes(10));
    if (r.ok()) return {};
    return r.error.empty() ? r.output.substr(r.output.size() > 400 ? r.output.size() - 400 : 0)
                           : r.error;
  };
  return c;
}

ImageCache::ImageCache(ImageCacheOptions options, const Clock& clock, RegistryControl control)
    : options_(std::move(options)), clock_(clock), control_(std::move(control)) {
  const auto now = clock_.now();
  next_start_ = now;
  next_check_ = now;
  // Only what the registry logs from now on is news.
  std::error_code ec;
  auto size = fs::file_size(options_.log_file(), ec);
  log_offset_ = ec ? 0 : size;
}

ImageCache::~ImageCache() { stop(); }

void ImageCache::start_thread() {
  thread_ = std::thread([this] {
    std::unique_lock lock(thread_mu_);
    while (!stopping_) {
      lock.unlock();
      try {
        tick();
      } catch (const std::exception& e) {
        spdlog::error("image cache: {}", e.what());
      }
      lock.lock();
      wake_.wait_for(lock, 1s, [this] { return stopping_; });
    }
  });
}

void ImageCache::stop() {
  {
    std::lock_guard lock(thread_mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  if (pid_ > 0) {
    control_.stop(pid_);
    spdlog::info("image cache: registry (pid {}) stopped", pid_);
    pid_ = 0;
  }
  publish();
}

void ImageCache::read_new_log_lines() {
  std::ifstream in(options_.log_file(), std::ios::binary);
  if (!in) return;
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::uint64_t>(in.tellg());
  if (size < log_offset_) log_offset_ = 0;  // cut by us or by the operator
  in.seekg(static_cast<std::streamoff>(log_offset_));
  const auto now = clock_.now();
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a line still being written: read it whole next time
    log_offset_ += line.size() + 1;
    if (auto repo = repository_served(line)) last_used_[*repo] = now;
  }
  if (log_offset_ > kMaxLogBytes) {
    // The registry appends (O_APPEND), so cutting the file under it is safe.
    std::error_code ec;
    fs::resize_file(options_.log_file(), 0, ec);
    if (!ec) log_offset_ = 0;
  }
}

void ImageCache::supervise(Clock::time_point now) {
  if (pid_ > 0 && control_.alive(pid_)) {
    if (now - started_at_ >= kHealthyRun) backoff_ = 1s;
    return;
  }
  if (pid_ > 0) {
    problem_ = "the registry (pid " + std::to_string(pid_) + ") exited; see " +
               options_.log_file().string();
    // distribution 2.8's most likely reason, and the one the operator can act on.
    if (!control_.upstream_answers())
      problem_ += " (it cannot start while the upstream " + options_.upstream +
                  " does not answer)";
    spdlog::warn("image cache: {}; restarting in {} s", problem_, backoff_.count());
    pid_ = 0;
    next_start_ = now + backoff_;
    backoff_ = std::min<std::chrono::seconds>(backoff_ * 2, kMaxBackoff);
    return;
  }
  if (now < next_start_) return;
  pid_ = control_.start();
  started_at_ = now;
  if (pid_ <= 0) {
    pid_ = 0;
    problem_ = "the registry could not be started; see the runner's log";
    next_start_ = now + backoff_;
    backoff_ = std::min<std::chrono::seconds>(backoff_ * 2, kMaxBackoff);
    return;
  }
  spdlog::info("image cache: registry (pid {}) serving {} as a mirror of {}", pid_,
               options_.mirror_url(), options_.upstream);
}

void ImageCache::enforce_cap(Clock::time_point now) {
  next_check_ = now + options_.check_every;
  auto scan = scan_storage(options_.storage());
  used_bytes_ = scan.total_bytes;
  // Repositories known only from disk (served before this runner started) get their last
  // re-tag as last use.
  const auto wall_now = fs::file_time_type::clock::now();
  for (const auto& [name, touched] : scan.touched)
    if (!last_used_.count(name) && touched != fs::file_time_type{})
      last_used_[name] = now - std::chrono::duration_cast<Clock::duration>(
                                   std::max(wall_now - touched, fs::file_time_type::duration{0}));
  auto evict = plan_eviction(scan, last_used_, options_.cap_bytes);
  if (evict.empty()) return;
  // distribution 2.8 pings its upstream when it starts and exits if it cannot: stopping it for
  // garbage collection while the upstream is down would leave sessions without the cache.
  if (!control_.upstream_answers()) {
    problem_ = "over the cap, but eviction waits until the upstream " + options_.upstream +
               " answers (the registry cannot restart without it)";
    spdlog::warn("image cache: {} bytes used, cap {}: {}", used_bytes_, options_.cap_bytes,
                 problem_);
    return;
  }
  spdlog::info("image cache: {} bytes used, cap {}: evicting {} least recently used repositories",
               used_bytes_, options_.cap_bytes, evict.size());
  // The registry's garbage-collect must not race the registry writing blobs: stop it first.
  if (pid_ > 0) {
    control_.stop(pid_);
    pid_ = 0;
  }
  problem_ = "evicting " + std::to_string(evict.size()) + " repositories";
  publish();
  const fs::path repos = options_.storage() / "docker" / "registry" / "v2" / "repositories";
  for (const auto& name : evict) {
    last_used_.erase(name);
    if (!safe_repository_name(name)) continue;
    std::error_code ec;
    fs::remove_all(repos / name, ec);
    if (ec)
      spdlog::warn("image cache: cannot remove repository {}: {}", name, ec.message());
    else
      spdlog::info("image cache: evicted {}", name);
  }
  if (auto error = control_.collect_garbage(); !error.empty()) {
    problem_ = "garbage-collect failed: " + error;
    spdlog::error("image cache: {}", problem_);
  } else {
    problem_.clear();
  }
  used_bytes_ = scan_storage(options_.storage()).total_bytes;
  next_start_ = now;  // back at once, in this round
  backoff_ = 1s;
}

void ImageCache::tick() {
  std::lock_guard lock(mu_);
  const auto now = clock_.now();
  read_new_log_lines();
  if (now >= next_check_) enforce_cap(now);
  supervise(now);
  if (pid_ > 0 && problem_.rfind("the registry", 0) == 0) problem_.clear();
  publish();
}

void ImageCache::publish() {
  ImageCacheStatus s;
  s.upstream = options_.upstream;
  s.mirror = options_.mirror_url();
  s.used_bytes = used_bytes_;
  s.cap_bytes = options_.cap_bytes;
  s.running = pid_ > 0;
  s.problem = problem_;
  std::lock_guard lock(status_mu_);
  published_ = std::move(s);
}

ImageCacheStatus ImageCache::status() const {
  std::lock_guard lock(status_mu_);
  ImageCacheStatus s = published_;
  if (s.upstream.empty()) {  // before the first round
    s.upstream = options_.upstream;
    s.mirror = options_.mirror_url();
    s.cap_bytes = options_.cap_bytes;
  }
  return s;
}

}  // namespace offload::runner
