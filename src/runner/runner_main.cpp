#include "offload/runner/runner_main.h"

#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <thread>

#include "offload/common/duration.h"
#include "offload/common/fs.h"
#include "offload/common/log.h"
#include "offload/common/process.h"
#include "offload/common/text.h"
#include "offload/engine/engine.h"
#include "offload/runner/data_channel_server.h"
#include "offload/runner/admin.h"
#include "accounts_command.h"
#include "offload/runner/accounts_file.h"
#include "offload/runner/docker_backend.h"
#include "offload/runner/gpu.h"
#include "offload/runner/image_cache.h"
#include "offload/runner/metrics.h"
#include "offload/runner/runner_service.h"
#include "offload/tls/tls.h"
#include "offload/tunnel/process_tuning.h"
#include "admin_cli.h"

namespace offload::runner {
namespace fs = std::filesystem;
namespace asio = boost::asio;

namespace {

constexpr int kMaxMessageBytes = 16 * 1024 * 1024;
constexpr auto kShutdownGrace = std::chrono::seconds(5);
constexpr int kTunnelThreads = 2;
// How often the accounts file is looked at for changes (one stat; SIGHUP reloads at once).
constexpr auto kAccountsPoll = std::chrono::seconds(1);

struct ServeOptions {
  std::string listen;
  std::string data_listen;  // "" = the --listen host, its port + 1 (or 0 with port 0); "off"
  int data_advertise_port = 0;  // what Hello tells clients; 0 = the port listened on
  fs::path token_file;
  fs::path tls_dir;
  fs::path tls_cert, tls_key;
  fs::path state_dir = "/var/lib/offload-runner";
  fs::path run_dir = "/run/offload-runner";
  std::string address_pool = "10.213.0.0/16";
  bool userns_remap = true;
  bool live_restore = false;
  bool no_gpu = false;           // never give sessions the GPUs
  std::string gpu_probe_root = "/";
  std::uint64_t subid_base = engine::kDefaultSubidBase;
  fs::path ready_file;
  fs::path log_file;
  std::string log_level = "info";
  std::string idle_timeout = "5m";
  std::string client_ttl = "10m";
  std::string max_session_duration = "8h";
  std::vector<std::string> egress_allow, egress_deny;
  std::string session_cpus = "2";
  std::string session_memory = "4GiB";
  std::string session_pids = "4096";
  std::string session_disk = "20GiB";
  // Fair sharing (issue 11): limits per account and per session.
  std::size_t max_sessions_per_account = 4;
  std::string max_client_timeout = "24h";
  std::size_t max_tunnels_per_session = 256;
  std::size_t max_sync_calls_per_session = 64;
  std::string max_sync_buffer_per_session = "256MiB";
  std::size_t max_queued_events = 256;
  // Admin and observability (admin.h, metrics.h).
  fs::path admin_socket;  // default <run-dir>/admin.sock
  std::string metrics_address;
  std::string log_format = "text";
  // The image cache (image_cache.h): on when an upstream is given.
  std::string image_cache_upstream;
  std::string image_cache_size = "20GiB";
  std::string image_cache_address;  // default <last address of the pool>:5000
  std::string image_cache_check = "30s";
};

// A start-up failure: its message is the one line the operator sees.
struct StartupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ListenAddress {
  std::string host;
  int port = 0;
};

ListenAddress parse_listen(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw StartupError("--listen \"" + text + "\" is not HOST:PORT (e.g. 0.0.0.0:7443)");
  ListenAddress out{text.substr(0, colon), -1};
  const std::string port = text.substr(colon + 1);
  if (!port.empty() && port.size() <= 5 &&
      port.find_first_not_of("0123456789") == std::string::npos)
    out.port = std::stoi(port);
  if (out.port < 0 || out.port > 65535)
    throw StartupError("--listen \"" + text + "\": the port must be 0-65535 (0 picks a free one)");
  return out;
}

// The address a client on this host dials: a wildcard listener is reachable on loopback.
std::string dialable_address(const ListenAddress& listen, int port) {
  std::string host = listen.host;
  if (host == "0.0.0.0" || host == "[::]" || host == "::" || host == "*") host = "127.0.0.1";
  return host + ":" + std::to_string(port);
}

// Where the data channel listens: --data-listen, or next to the gRPC port. Throws StartupError.
std::optional<asio::ip::tcp::endpoint> data_channel_endpoint(const ServeOptions& o,
                                                             const ListenAddress& listen) {
  if (o.data_listen == "off") return std::nullopt;
  ListenAddress where;
  if (o.data_listen.empty()) {
    where.host = listen.host;
    where.port = listen.port == 0 ? 0 : listen.port + 1;
    if (where.port > 65535)
      throw StartupError("--listen port 65535 leaves no port for the data channel: set "
                         "--data-listen HOST:PORT or --data-listen off");
  } else {
    try {
      where = parse_listen(o.data_listen);
    } catch (const StartupError&) {
      throw StartupError("--data-listen \"" + o.data_listen +
                         "\" is not HOST:PORT or off (e.g. 0.0.0.0:7444)");
    }
  }
  std::string host = where.host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host == "*") host = "0.0.0.0";
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) {
    asio::io_context io;
    asio::ip::tcp::resolver resolver(io);
    auto found = resolver.resolve(host, std::to_string(where.port), ec);
    if (ec || found.empty())
      throw StartupError("cannot resolve the data channel's host \"" + host +
                         "\": " + (ec ? ec.message() : std::string("no address")));
    return found.begin()->endpoint();
  }
  return asio::ip::tcp::endpoint(address, static_cast<unsigned short>(where.port));
}

asio::ip::network_v4 parse_pool(const std::string& text) {
  boost::system::error_code ec;
  auto pool = asio::ip::make_network_v4(text, ec);
  if (ec)
    throw StartupError("--address-pool \"" + text + "\" is not an IPv4 CIDR such as 10.213.0.0/16");
  if (pool.prefix_length() > 30)
    throw StartupError("--address-pool " + text + " is smaller than a /30");
  return pool;
}

std::vector<asio::ip::network_v4> parse_cidrs(const std::string& flag,
                                             const std::vector<std::string>& texts) {
  std::vector<asio::ip::network_v4> out;
  for (const auto& text : texts) {
    auto cidr = engine::parse_cidr(text);
    if (!cidr)
      throw StartupError(flag + " \"" + text + "\" is not an IPv4 CIDR such as 10.1.2.3/32");
    out.push_back(*cidr);
  }
  return out;
}

std::map<std::string, AccountEntry> load_accounts(const fs::path& file) {
  std::string text;
  if (auto ec = read_file(file, text))
    throw StartupError("cannot read --token-file " + file.string() + ": " + ec.message());
  struct stat st {};
  if (::stat(file.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
    spdlog::warn("token file {} is readable by other users; chmod 600 it", file.string());
  try {
    return parse_accounts_file(text, file.string());
  } catch (const std::exception& e) {
    throw StartupError(e.what());
  }
}

tls::Identity load_tls(const ServeOptions& o) {
  try {
    if (!o.tls_cert.empty() || !o.tls_key.empty()) {
      if (o.tls_cert.empty() || o.tls_key.empty())
        throw StartupError(
            "--tls-cert and --tls-key go together: give both, or neither to use --tls-dir");
      return tls::load_identity(o.tls_cert, o.tls_key);
    }
    const fs::path dir = o.tls_dir.empty() ? o.state_dir / "tls" : o.tls_dir;
    if (auto ec = ensure_private_dir(dir))
      throw StartupError("cannot create TLS directory " + dir.string() + ": " + ec.message());
    return tls::load_or_create_identity(dir);
  } catch (const StartupError&) {
    throw;
  } catch (const std::exception& e) {
    throw StartupError(e.what());
  }
}

// One runner per state directory: two would adopt, sweep and destroy each other's engines. The
// lock lives as long as the process (the descriptor is never closed, and not inherited: dockerd
// must not hold it after the runner is gone). Holds the pid for the error of the next one.
void lock_state_dir(const fs::path& state_dir) {
  const fs::path file = state_dir / "runner.lock";
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    throw StartupError("cannot open " + file.string() + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    (void)!::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    std::string holder = pid[0] ? " (pid " + std::string(pid, ::strcspn(pid, "\n")) + ")" : "";
    throw StartupError("another offload-runner" + holder + " is using --state-dir " +
                       state_dir.string() + "; stop it first");
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, me.data(), me.size(), 0);
}

// The image cache's address lives on `lo`: an address of the host, so traffic from any session's
// veth to it is delivered locally (INPUT, where each session's rules let only its port in),
// and the slot holding it is skipped by the pool (a host address). Removed at exit if we added it.
class CacheAddress {
 public:
  explicit CacheAddress(asio::ip::address_v4 address) : address_(address) {
    auto present = engine::host_ipv4_addresses();
    if (std::find(present.begin(), present.end(), address) != present.end()) return;
    auto r = run_command({"ip", "addr", "add", address.to_string() + "/32", "dev", "lo"});
    if (!r.ok())
      throw StartupError("cannot add the image cache's address " + address.to_string() +
                         " to lo: " + r.error + r.output);
    added_ = true;
  }
  ~CacheAddress() {
    if (added_) run_command({"ip", "addr", "del", address_.to_string() + "/32", "dev", "lo"});
  }

 private:
  asio::ip::address_v4 address_;
  bool added_ = false;
};

ImageCacheOptions image_cache_options(const ServeOptions& o, const asio::ip::network_v4& pool) {
  ImageCacheOptions c;
  c.upstream = o.image_cache_upstream;
  if (auto problem = check_upstream(c.upstream); !problem.empty()) throw StartupError(problem);
  if (!find_program("docker-registry"))
    throw StartupError("--image-cache-upstream needs the distribution registry: apt-get install "
                       "docker-registry");
  auto size = engine::parse_byte_size(o.image_cache_size);
  if (!size || *size == 0)
    throw StartupError("--image-cache-size \"" + o.image_cache_size +
                       "\" is not a size above 0 (e.g. 20GiB or 512MiB)");
  c.cap_bytes = *size;
  auto check = parse_duration(o.image_cache_check);
  if (!check || *check < std::chrono::seconds(1))
    throw StartupError("--image-cache-check \"" + o.image_cache_check +
                       "\" is not a duration of at least 1s");
  c.check_every = std::chrono::duration_cast<std::chrono::seconds>(*check);
  c.dir = o.state_dir / "image-cache";
  if (o.image_cache_address.empty()) {
    c.address = asio::ip::address_v4(pool.broadcast().to_uint() - 1);
  } else {
    auto listen = parse_listen(o.image_cache_address);
    boost::system::error_code ec;
    c.address = asio::ip::make_address_v4(listen.host, ec);
    if (ec || listen.port <= 0)
      throw StartupError("--image-cache-address \"" + o.image_cache_address +
                         "\" is not IPV4:PORT (e.g. 10.213.255.254:5000)");
    c.port = static_cast<unsigned short>(listen.port);
  }
  if (auto ec = ensure_private_dir(c.dir))
    throw StartupError("cannot create " + c.dir.string() + ": " + ec.message());
  return c;
}

// gRPC's own log lines go to our log, not to a bare stderr next to it. Its errors are mostly
// about single peers (a failed handshake), hence warnings.
void grpc_log_to_spdlog(gpr_log_func_args* args) {
  auto level = args->severity == GPR_LOG_SEVERITY_ERROR  ? spdlog::level::warn
               : args->severity == GPR_LOG_SEVERITY_INFO ? spdlog::level::debug
                                                         : spdlog::level::trace;
  spdlog::log(level, "grpc: {}", args->message);
}

// Tunnel coroutines run here; a work guard keeps the threads up while no tunnel is open.
class TunnelThreads {
 public:
  TunnelThreads() : guard_(asio::make_work_guard(io_)) {
    for (int i = 0; i < kTunnelThreads; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  ~TunnelThreads() { stop(); }
  void stop() {
    guard_.reset();
    io_.stop();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  asio::io_context& io() { return io_; }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::vector<std::thread> threads_;
};

int serve(const ServeOptions& o, const sigset_t& stop_signals) {
  ::umask(077);
  setup_logging("offload-runner", o.log_file, o.log_level, o.log_format == "json");
  gpr_set_log_function(grpc_log_to_spdlog);

  if (::geteuid() != 0)
    throw StartupError(
        "offload-runner must run as root: it creates network namespaces and "
        "starts one dockerd per session");
  if (auto missing = engine::check_prerequisites(); !missing.empty()) throw StartupError(missing);
  const auto listen = parse_listen(o.listen);
  const auto pool = parse_pool(o.address_pool);
  if (auto ec = ensure_private_dir(o.state_dir))
    throw StartupError("cannot create --state-dir " + o.state_dir.string() + ": " + ec.message());
  if (auto ec = ensure_private_dir(o.run_dir))
    throw StartupError("cannot create --run-dir " + o.run_dir.string() + ": " + ec.message());
  lock_state_dir(o.state_dir);

  RunnerOptions runner_options;
  for (auto& [name, entry] : load_accounts(o.token_file)) {
    runner_options.account_tokens[name] = entry.token;
    runner_options.account_settings[name] = entry.settings;
  }
  auto duration_flag = [](const std::string& flag, const std::string& text) {
    auto d = parse_duration(text);
    if (!d) throw StartupError(flag + " \"" + text + "\" is not a duration (use e.g. 90s, 5m, 8h)");
    return *d;
  };
  runner_options.default_limits.idle_timeout = duration_flag("--idle-timeout", o.idle_timeout);
  runner_options.default_limits.client_ttl = duration_flag("--client-ttl", o.client_ttl);
  runner_options.default_limits.max_duration =
      duration_flag("--max-session-duration", o.max_session_duration);
  runner_options.max_sessions_per_account = o.max_sessions_per_account;
  runner_options.max_tunnels_per_session = o.max_tunnels_per_session;
  runner_options.max_sync_calls_per_session = o.max_sync_calls_per_session;
  if (auto bytes = engine::parse_byte_size(o.max_sync_buffer_per_session))
    runner_options.max_sync_buffer_per_session = *bytes;
  else
    throw StartupError("--max-sync-buffer-per-session \"" + o.max_sync_buffer_per_session +
                       "\" is not a size (e.g. 256MiB or 1GiB; 0 for no limit)");
  runner_options.max_queued_events = o.max_queued_events;
  runner_options.max_client_timeout = duration_flag("--max-client-timeout", o.max_client_timeout);
  const auto identity = load_tls(o);

  engine::EgressPolicy egress;
  egress.allow = parse_cidrs("--egress-allow", o.egress_allow);
  egress.deny = parse_cidrs("--egress-deny", o.egress_deny);
  for (const auto& cidr : egress.allow)
    if (cidr.network().to_uint() <= pool.broadcast().to_uint() &&
        pool.network().to_uint() <= cidr.broadcast().to_uint())
      spdlog::warn("--egress-allow {} overlaps --address-pool {}: other sessions stay unreachable",
                   cidr.to_string(), pool.to_string());
  engine::SessionLimits limits;
  if (auto cpus = engine::parse_cpus(o.session_cpus))
    limits.cpus = *cpus;
  else
    throw StartupError("--session-cpus \"" + o.session_cpus +
                       "\" is not a number of CPUs (e.g. 2 or 0.5; 0 for no limit)");
  if (auto bytes = engine::parse_byte_size(o.session_memory))
    limits.memory_bytes = *bytes;
  else
    throw StartupError("--session-memory \"" + o.session_memory +
                       "\" is not a size (e.g. 4GiB or 512MiB; 0 for no limit)");
  if (!o.session_pids.empty() && o.session_pids.size() <= 9 &&
      o.session_pids.find_first_not_of("0123456789") == std::string::npos)
    limits.pids = std::stoull(o.session_pids);
  else
    throw StartupError("--session-pids \"" + o.session_pids +
                       "\" is not a number of processes (e.g. 4096; 0 for no limit)");
  if (auto bytes = engine::parse_byte_size(o.session_disk))
    limits.disk_bytes = *bytes;
  else
    throw StartupError("--session-disk \"" + o.session_disk +
                       "\" is not a size (e.g. 20GiB or 512MiB; 0 for no quota)");
  if (auto problem = engine::check_session_disk(limits.disk_bytes); !problem.empty())
    throw StartupError("--session-disk: " + problem);
  spdlog::info("each session's engine is limited to {}", engine::describe(limits));

  std::optional<ImageCacheOptions> cache_options;
  std::optional<CacheAddress> cache_address;
  if (!o.image_cache_upstream.empty()) {
    cache_options = image_cache_options(o, pool);
    cache_address.emplace(cache_options->address);
    egress.host_service = engine::EgressPolicy::HostService{cache_options->address,
                                                            cache_options->port};
  }
  DockerBackendOptions backend_options{o.state_dir, o.run_dir, pool, egress, limits};
  if (cache_options) backend_options.registry_mirrors = {cache_options->mirror_url()};
  backend_options.userns_remap = o.userns_remap;
  backend_options.subid_base = o.subid_base;
  if (o.no_gpu) {
    backend_options.gpus.problem = "its operator gives sessions no GPU (offload-runner --no-gpu)";
  } else {
    GpuProbe probe;
    probe.root = o.gpu_probe_root;
    backend_options.gpus = detect_gpus(probe);
    if (backend_options.gpus.usable())
      spdlog::info("sessions started with --gpu get {} ({}; toolkit hook {}{})",
                   backend_options.gpus.describe_models(), join(backend_options.gpus.devices),
                   backend_options.gpus.hook.string(),
                   backend_options.gpus.runtime.empty()
                       ? std::string()
                       : ", runtime " + backend_options.gpus.runtime.string());
    else
      spdlog::info("no GPU sessions: {}", backend_options.gpus.problem);
  }
  if (o.userns_remap) {
    // Every slot of the pool needs its own range: refuse now rather than at the n-th session.
    const auto slots = static_cast<std::uint32_t>(engine::AddressPool(pool).capacity());
    try {
      engine::slot_range(o.subid_base, slots - 1);
    } catch (const std::out_of_range& e) {
      throw StartupError(std::string(e.what()) + " (the pool has " + std::to_string(slots) +
                         " slots)");
    }
    if (!find_program("useradd"))
      throw StartupError("useradd not found: install passwd (or run with --no-userns-remap)");
  }
  DockerSessionBackend backend(std::move(backend_options));
  // Each session is logged as it is adopted or destroyed.
  std::vector<AdoptedEngine> adopted;
  if (o.live_restore) adopted = backend.adopt_engines();
  else backend.destroy_leftovers();

  // Outlives the service, which describes it in Hello. Stopped (the registry with it) when serve
  // returns, also with --live-restore: the next runner starts it again on the same storage.
  std::optional<ImageCache> image_cache;
  if (cache_options) {
    image_cache.emplace(*cache_options, SystemClock::instance(),
                        real_registry_control(*cache_options));
    image_cache->start_thread();
    runner_options.describe_image_cache = [&image_cache](v1::ImageCache& out) {
      auto s = image_cache->status();
      out.set_upstream(s.upstream);
      out.set_used_bytes(s.used_bytes);
      out.set_cap_bytes(s.cap_bytes);
      out.set_running(s.running);
      out.set_problem(s.problem);
    };
  }
  TunnelThreads tunnels;
  RunnerService service(tunnels.io(), backend, std::move(runner_options));
  // Before the server listens: a client that reconnects finds its session at once.
  if (o.live_restore && !adopted.empty()) {
    const std::size_t found = adopted.size();
    const std::size_t restored = service.restore(std::move(adopted));
    spdlog::info("restored {} of {} sessions left by the previous runner process", restored,
                 found);
  }
  std::optional<MetricsEndpoint> metrics;
  std::optional<AdminServer> admin;
  try {
    if (!o.metrics_address.empty()) metrics.emplace(o.metrics_address, RunnerMetrics::global());
    admin.emplace(o.admin_socket.empty() ? o.run_dir / "admin.sock" : o.admin_socket, service,
                  SystemClock::instance());
  } catch (const std::exception& e) {
    throw StartupError(e.what());
  }
  // Accounts come and go without a restart: on SIGHUP and when the file changes.
  AccountsFileWatcher accounts_file(o.token_file,
                                    [&service](auto accounts) { service.set_accounts(std::move(accounts)); });
  accounts_file.start_polling(kAccountsPoll);

  int port = 0;
  // grpc.health.v1.Health on the client port, answered without a token (load balancers, probes).
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(o.listen, tls::server_credentials(identity), &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // offloadd pings every 30 s, also between calls, to notice a dead path; gRPC's defaults
  // would answer those pings with GOAWAY (too_many_pings).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // And the runner pings its clients: a laptop that vanished (no FIN) is noticed within a
  // minute, its Events stream ends, and the client TTL starts.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0)
    throw StartupError("cannot listen on " + o.listen +
                       ": the address is in use or not an address of this host");

  // The data channel next to it (forwarded TCP ports; offload/tunnel/data_channel.h).
  std::optional<DataChannelServer> data_channel;
  if (auto where = data_channel_endpoint(o, listen)) {
    try {
      data_channel.emplace(tunnels.io(), tls::asio_server_context(identity), service, *where);
    } catch (const std::exception& e) {
      server->Shutdown();
      throw StartupError("cannot listen for the data channel on " + where->address().to_string() +
                         ":" + std::to_string(where->port()) + ": " + e.what() +
                         "; choose another with --data-listen HOST:PORT, or --data-listen off "
                         "(forwarded ports then go through gRPC, slower)");
    }
    const auto advertised = o.data_advertise_port > 0
                                ? static_cast<unsigned short>(o.data_advertise_port)
                                : data_channel->port();
    service.set_data_channel_port(advertised);
    if (advertised != data_channel->port())
      spdlog::info("data channel on port {}, announced to clients as port {}",
                   data_channel->port(), advertised);
    else
      spdlog::info("data channel on port {}", data_channel->port());
  }

  const std::string address = dialable_address(listen, port);
  if (!o.ready_file.empty()) {
    nlohmann::json ready = {
        {"address", address}, {"fingerprint", identity.fingerprint}, {"pid", ::getpid()},
        {"data_channel_port", data_channel ? data_channel->port() : 0}};
    if (auto ec = write_file_atomic(o.ready_file, ready.dump() + "\n", fs::perms(0600))) {
      server->Shutdown();
      throw StartupError("cannot write --ready-file " + o.ready_file.string() + ": " +
                         ec.message());
    }
  }
  spdlog::info("listening on {}, fingerprint {}", address, identity.fingerprint);
  // Under systemd (Type=notify), the unit is "started" only now: dependants and
  // `systemctl start` wait for a runner that listens. A no-op without $NOTIFY_SOCKET.
  ::sd_notifyf(0, "READY=1\nSTATUS=listening on %s\nMAINPID=%d", address.c_str(),
               static_cast<int>(::getpid()));

  int signal = 0;
  while (::sigwait(&stop_signals, &signal) != 0 || signal == SIGHUP) {
    if (signal == SIGHUP) accounts_file.reload("SIGHUP");
    signal = 0;
  }
  accounts_file.stop();
  admin.reset();  // no admin command races the shutdown
  if (o.live_restore) {
    // The sessions' engines, containers, namespaces and rules stay; the next runner process
    // adopts them and the clients reconnect as after a network cut.
    ::sd_notifyf(0, "STOPPING=1\nSTATUS=leaving %zu sessions running", service.session_count());
    spdlog::info("received {}: shutting down, leaving {} sessions running (--live-restore)",
                 ::strsignal(signal), service.session_count());
    server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
    service.detach_all();
  } else {
    ::sd_notifyf(0, "STOPPING=1\nSTATUS=destroying %zu sessions", service.session_count());
    spdlog::info("received {}: destroying {} sessions and shutting down", ::strsignal(signal),
                 service.session_count());
    service.destroy_all("runner shutting down");
    server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
  }
  if (data_channel) data_channel->stop();
  tunnels.stop();
  if (!o.ready_file.empty()) {
    std::error_code ec;
    fs::remove(o.ready_file, ec);
  }
  spdlog::info("stopped");
  return 0;
}

struct CleanupOptions {
  fs::path state_dir = "/var/lib/offload-runner";
  fs::path run_dir = "/run/offload-runner";
  std::string address_pool = "10.213.0.0/16";
};

// `offload-runner cleanup`: what the package's removal runs after stopping the service, so that
// removing the runner never leaves engines of a --live-restore stop behind.
int cleanup(const CleanupOptions& c) {
  setup_logging("offload-runner", {}, "warn");
  if (::geteuid() != 0)
    throw StartupError("offload-runner cleanup must run as root: it removes network namespaces "
                       "and session engines");
  if (auto missing = engine::check_prerequisites(); !missing.empty()) throw StartupError(missing);
  const auto pool = parse_pool(c.address_pool);
  std::error_code ec;
  if (!fs::is_directory(c.state_dir / "sessions", ec)) {
    std::cout << "no sessions in " << c.state_dir.string() << "\n";
    return 0;
  }
  lock_state_dir(c.state_dir);
  DockerBackendOptions options{c.state_dir, c.run_dir, pool, {}, {}};
  DockerSessionBackend backend(std::move(options));
  const auto lines = backend.destroy_leftovers();
  for (const auto& line : lines) std::cout << line << "\n";
  // A session whose teardown left something keeps its record: say so, and fail.
  std::size_t left = 0;
  for (const auto& entry : fs::directory_iterator(c.state_dir / "sessions", ec))
    left += entry.path().extension() == ".json";
  if (left > 0) {
    std::cerr << "offload-runner: " << left << " sessions could not be removed completely; "
              << "see the lines above, fix the cause and run cleanup again\n";
    return 1;
  }
  std::cout << "destroyed " << lines.size() << " sessions\n";
  return 0;
}

}  // namespace

int run_runner(int argc, char** argv) {
  tunnel::tune_for_data_plane();
  // Blocked before any thread exists, so only sigwait in the main thread sees them.
  const sigset_t stop_signals = block_signals_for_sigwait({SIGTERM, SIGINT, SIGHUP});

  CLI::App app{
      "offload-runner: creates one ephemeral Docker engine per docker-offload session "
      "and tunnels clients to it over TLS gRPC",
      "offload-runner"};
  app.require_subcommand(1);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("offload-runner: ") + e.what() + " (see --help)\n";
  });

  ServeOptions o;
  auto* serve_cmd = app.add_subcommand(
      "serve",
      "Serve the runner API until SIGTERM or SIGINT; the accounts file is reloaded on SIGHUP and "
      "when it changes, without touching running sessions");
  serve_cmd
      ->add_option("--listen", o.listen,
                   "Required: HOST:PORT to accept clients on; port 0 picks a free one (see "
                   "--ready-file)")
      ->option_text("HOST:PORT")
      ->required();
  serve_cmd
      ->add_option("--data-listen", o.data_listen,
                   "HOST:PORT of the data channel (forwarded TCP ports on TLS connections of "
                   "their own; clients learn the port in Hello), or `off` to carry them over "
                   "gRPC; default: the --listen host and port + 1 (a free port with port 0)")
      ->option_text("HOST:PORT|off");
  serve_cmd
      ->add_option("--data-advertise-port", o.data_advertise_port,
                   "The data channel port clients are told to dial, when a NAT, load balancer "
                   "or relay in front of the runner forwards another port to --data-listen "
                   "(default: the port listened on)")
      ->check(CLI::Range(1, 65535))
      ->option_text("PORT");
  serve_cmd
      ->add_option("--token-file", o.token_file,
                   "Required: accounts file, one `NAME:TOKEN [max-sessions=N] [allow=LIST]` per "
                   "line (# comments); clients need one of the tokens to create sessions; "
                   "edit it with `offload-runner accounts`, reloaded on change and SIGHUP")
      ->option_text("FILE")
      ->required();
  serve_cmd
      ->add_option("--tls-dir", o.tls_dir,
                   "Directory of the server certificate and key (runner.crt, runner.key), "
                   "generated on first start; default <state-dir>/tls")
      ->option_text("DIR");
  auto* cert = serve_cmd
                   ->add_option("--tls-cert", o.tls_cert,
                                "Server certificate (PEM) to use instead of --tls-dir")
                   ->option_text("FILE");
  auto* key = serve_cmd->add_option("--tls-key", o.tls_key, "Private key (PEM) of --tls-cert")
                  ->option_text("FILE");
  cert->needs(key);
  key->needs(cert);
  serve_cmd
      ->add_option(
          "--state-dir", o.state_dir,
          "Where session engines keep their data and records (default /var/lib/offload-runner)")
      ->option_text("DIR");
  serve_cmd
      ->add_option("--run-dir", o.run_dir,
                   "Where session engines keep sockets and exec roots; keep it short (default "
                   "/run/offload-runner)")
      ->option_text("DIR");
  serve_cmd
      ->add_option("--address-pool", o.address_pool,
                   "IPv4 range carved into one /30 per session engine (default 10.213.0.0/16)")
      ->option_text("CIDR");
  serve_cmd->add_flag("--userns-remap,!--no-userns-remap", o.userns_remap,
                      "Run each session's dockerd with --userns-remap, so container root is an "
                      "unprivileged host uid of the session's own (default on; --no-userns-remap runs "
                      "rootful engines, for a runner only trusted people use)");
  serve_cmd->add_flag("--no-gpu", o.no_gpu,
                      "Never give sessions this machine's NVIDIA GPUs (`docker offload start "
                      "--gpu` is then refused); by default sessions may ask for them when the "
                      "GPUs and the NVIDIA Container Toolkit are found");
  serve_cmd
      ->add_option("--gpu-probe-root", o.gpu_probe_root,
                   "Look for GPUs (dev/nvidia<N>, etc/cdi, var/run/cdi, proc/driver/nvidia, "
                   "usr/bin/nvidia-smi and the toolkit) under DIR instead of / (tests describe a "
                   "GPU machine with a fake tree; default /)")
      ->option_text("DIR");
  serve_cmd->add_flag("--live-restore", o.live_restore,
                      "Keep sessions running while the runner is stopped or restarted (an "
                      "upgrade): their engines stay up, the next start takes them over and "
                      "clients reconnect. Without it, stopping destroys every session; "
                      "`offload-runner cleanup` destroys what a stopped runner left");
  serve_cmd
      ->add_option("--subid-base", o.subid_base,
                   "First subordinate uid/gid of session engines; slot n gets 65536 ids from "
                   "base + n * 65536, added to /etc/subuid and /etc/subgid (default 1000000000)")
      ->option_text("ID");
  serve_cmd
      ->add_option("--egress-allow", o.egress_allow,
                   "Repeatable: a private or otherwise blocked IPv4 range session containers may "
                   "reach anyway, e.g. a registry at 10.1.2.3/32 (never the address pool)")
      ->option_text("CIDR")
      ->allow_extra_args(false);
  serve_cmd
      ->add_option("--egress-deny", o.egress_deny,
                   "Repeatable: an IPv4 range session containers must not reach, in addition to "
                   "private, link-local, loopback, CGNAT, multicast and reserved ranges")
      ->option_text("CIDR")
      ->allow_extra_args(false);
  serve_cmd
      ->add_option("--ready-file", o.ready_file,
                   "Once listening, write {\"address\",\"fingerprint\",\"pid\",\"data_channel_port\"} JSON here "
                   "(mode 0600)")
      ->option_text("FILE");
  serve_cmd
      ->add_option("--idle-timeout", o.idle_timeout,
                   "End a session after this long without activity, unless its client asks "
                   "otherwise (default 5m)")
      ->option_text("DUR");
  serve_cmd
      ->add_option("--client-ttl", o.client_ttl,
                   "Keep a session this long after its client went away, unless the client "
                   "asks otherwise (default 10m)")
      ->option_text("DUR");
  serve_cmd
      ->add_option("--max-session-duration", o.max_session_duration,
                   "End every session this long after it was created; also a cap on what "
                   "clients ask for; 0 = unlimited (default 8h)")
      ->option_text("DUR");
  serve_cmd
      ->add_option("--session-cpus", o.session_cpus,
                   "CPU time each session's containers may use together, in cores; 0 = "
                   "unlimited (default 2)")
      ->option_text("N");
  serve_cmd
      ->add_option("--session-memory", o.session_memory,
                   "Memory (no swap beyond it) each session's containers may use together; "
                   "0 = unlimited (default 4GiB)")
      ->option_text("SIZE");
  serve_cmd
      ->add_option("--session-pids", o.session_pids,
                   "Processes and threads each session's containers may have together; 0 = "
                   "unlimited (default 4096)")
      ->option_text("N");
  serve_cmd
      ->add_option("--session-disk", o.session_disk,
                   "Disk each session may fill (images, containers, volumes, build cache, "
                   "synced files), a loop-mounted ext4 image; 0 = no quota (default 20GiB)")
      ->option_text("SIZE");
  // --- fair sharing: limits per account and per session ---
  serve_cmd
      ->add_option("--max-sessions-per-account", o.max_sessions_per_account,
                   "Sessions one account may hold at once; an account's max-sessions= in the "
                   "accounts file overrides it; 0 = unlimited (default 4)")
      ->option_text("N");
  serve_cmd
      ->add_option("--max-client-timeout", o.max_client_timeout,
                   "Longest idle timeout and client TTL a client may ask for; longer wishes are "
                   "cut to it; 0 = no cap (default 24h)")
      ->option_text("DUR");
  serve_cmd
      ->add_option("--max-tunnels-per-session", o.max_tunnels_per_session,
                   "Concurrent tunnels (docker API connections, port connections) per session; "
                   "0 = unlimited (default 256)")
      ->option_text("N");
  serve_cmd
      ->add_option("--max-sync-calls-per-session", o.max_sync_calls_per_session,
                   "Concurrent bind-mount sync calls per session; 0 = unlimited (default 64)")
      ->option_text("N");
  serve_cmd
      ->add_option("--max-sync-buffer-per-session", o.max_sync_buffer_per_session,
                   "Received bind-mount sync data each session's replicas may have waiting, all "
                   "its sync calls together (plus one message per call); 0 = unlimited "
                   "(default 256MiB)")
      ->option_text("SIZE");
  serve_cmd
      ->add_option("--max-queued-events", o.max_queued_events,
                   "Events a slow `Events` reader may fall behind before it is dropped "
                   "(default 256)")
      ->option_text("N");
  serve_cmd->add_option("--log-file", o.log_file, "Log to this file (rotated; default stderr)")
      ->option_text("FILE");
  serve_cmd
      ->add_option("--log-level", o.log_level, "trace, debug, info, warn or error (default info)")
      ->option_text("LEVEL");

  serve_cmd
      ->add_option("--log-format", o.log_format,
                   "text (default) or json: one JSON object per line (time, level, message, fields)")
      ->check(CLI::IsMember({"text", "json"}))
      ->option_text("FORMAT");
  serve_cmd
      ->add_option("--admin-socket", o.admin_socket,
                   "Unix socket (0600, root only) for `offload-runner sessions` (default "
                   "<run-dir>/admin.sock, i.e. " + std::string(kDefaultAdminSocket) + ")")
      ->option_text("PATH");
  serve_cmd
      ->add_option("--image-cache-upstream", o.image_cache_upstream,
                   "Run an image cache (docker-registry as a pull-through mirror) for every "
                   "session's engine, kept across sessions: Docker Hub names (busybox, me/app) "
                   "are pulled through it from this registry, e.g. https://registry-1.docker.io; "
                   "off by default")
      ->option_text("URL");
  serve_cmd
      ->add_option("--image-cache-size", o.image_cache_size,
                   "Disk the image cache may fill; beyond it the least recently used "
                   "repositories are evicted (default 20GiB)")
      ->option_text("SIZE");
  serve_cmd
      ->add_option("--image-cache-address", o.image_cache_address,
                   "Where the image cache listens for session engines, added to lo (default the "
                   "last address of --address-pool, port 5000)")
      ->option_text("IPV4:PORT");
  serve_cmd
      ->add_option("--image-cache-check", o.image_cache_check,
                   "How often the image cache is measured against --image-cache-size (default "
                   "30s)")
      ->option_text("DUR");
  serve_cmd
      ->add_option("--metrics-address", o.metrics_address,
                   "Serve Prometheus metrics (offload_runner_*) on HOST:PORT/metrics; off by "
                   "default")
      ->option_text("HOST:PORT");
  SessionsCommand sessions;
  add_sessions_command(app, sessions);
  CleanupOptions c;
  auto* cleanup_cmd = app.add_subcommand(
      "cleanup",
      "Destroy every session engine a stopped runner left behind (after a --live-restore stop, "
      "or a crash); refuses while a runner uses --state-dir");
  cleanup_cmd->add_option("--state-dir", c.state_dir, "As given to serve (default /var/lib/offload-runner)")
      ->option_text("DIR");
  cleanup_cmd->add_option("--run-dir", c.run_dir, "As given to serve (default /run/offload-runner)")
      ->option_text("DIR");
  cleanup_cmd
      ->add_option("--address-pool", c.address_pool,
                   "As given to serve (default 10.213.0.0/16)")
      ->option_text("CIDR");

  auto* version_cmd = app.add_subcommand("version", "Print the version and exit");
  AccountsCommand accounts_cmd(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Help is a success; any usage error is the usual exit 1 of a failed start.
    return app.exit(e) == 0 ? 0 : 1;
  }

  if (sessions.command->parsed()) return run_sessions_command(sessions);
  if (accounts_cmd.parsed()) return accounts_cmd.run();
  if (version_cmd->parsed()) {
    std::cout << "offload-runner " << OFFLOAD_VERSION << "\n";
    return 0;
  }
  if (cleanup_cmd->parsed()) {
    try {
      return cleanup(c);
    } catch (const std::exception& e) {
      std::cerr << "offload-runner: " << e.what() << "\n";
      return 1;
    }
  }
  try {
    return serve(o, stop_signals);
  } catch (const std::exception& e) {
    // When logging goes to a file, the operator still sees the reason on the terminal.
    if (!o.log_file.empty() && spdlog::default_logger()->name() == "offload-runner")
      spdlog::error("{}", e.what());
    std::cerr << "offload-runner: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace offload::runner
