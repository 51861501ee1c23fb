#include "offload/daemon/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <iostream>

#include "offload/common/fs.h"
#include "offload/common/log.h"
#include "offload/common/process.h"
#include "offload/tunnel/process_tuning.h"

namespace offload::daemon {
namespace fs = std::filesystem;
namespace asio = boost::asio;

Daemon::Daemon(StatePaths paths, OffloadConfig config, SessionManager::Providers providers,
               PortPolicy port_policy, UdpFlowSettings udp)
    : paths_(paths),
      sync_excludes_(config.sync.exclude),
      sessions_(paths, std::move(config), std::move(providers), io_.get_executor(), &streams_),
      control_(sessions_, paths),
      ports_(std::make_shared<PortForwarder>(io_, port_policy, sessions_, std::move(udp))),
      sync_(std::make_shared<SyncManager>(sessions_, sync_excludes_)) {
  sessions_.attach_ports(ports_);
  sync_->set_state_file(paths_.dir / "mounts.json");
  sync_->set_context_socket(paths_.docker_socket);
  sessions_.attach_sync(sync_);
}

Daemon::~Daemon() { stop(); }

void Daemon::start() {
  if (auto ec = ensure_private_dir(paths_.dir))
    throw std::runtime_error("cannot use " + paths_.dir.string() + ": " + ec.message());
  sessions_.recover();
  // A recovered session's containers may still bind synchronised paths: keep them in sync.
  sync_->restore();

  std::error_code ec;
  fs::remove(paths_.control_socket, ec);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + paths_.control_socket.string(),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(&control_);
  server_ = builder.BuildAndStart();
  if (!server_)
    throw std::runtime_error("cannot serve the control socket " + paths_.control_socket.string());
  // umask already keeps it private; make the contract explicit regardless of the caller's umask.
  ::chmod(paths_.control_socket.c_str(), 0600);

  work_.emplace(io_.get_executor());
  endpoint_ = std::make_unique<DockerEndpoint>(io_, paths_.docker_socket, sessions_);
  endpoint_->set_bind_sync(sync_.get());
  endpoint_->start();
  asio::co_spawn(io_, reconcile_ports(), asio::detached);
  for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
  spdlog::info("offloadd {} serving {} and {}", OFFLOAD_VERSION, paths_.control_socket.string(),
               paths_.docker_socket.string());
}

// Snapshots from the runner reconcile the listeners on every change; this also retries ports
// that were busy locally and rebinds listeners that died, when nothing else changes.
asio::awaitable<void> Daemon::reconcile_ports() {
  asio::steady_timer timer(io_);
  for (;;) {
    timer.expires_after(std::chrono::seconds(30));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    if (auto ports = ports_) ports->reconcile();
  }
}

void Daemon::stop() {
  sessions_.detach();  // no runner event may reach the forwarder once io_ stops
  if (endpoint_) endpoint_->stop();
  if (ports_) ports_->clear();
  // End every tunnel and let its coroutine finish while io_ still runs: a gRPC completion
  // arriving after io_ is gone would resume a coroutine whose sockets no longer exist.
  streams_.cancel_all("offloadd is shutting down");
  if (!threads_.empty() && !streams_.wait_empty(std::chrono::seconds(5)))
    spdlog::warn("{} tunnels did not finish in time", streams_.size());
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
  }
  work_.reset();
  io_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  endpoint_.reset();
  ports_.reset();
}

int run_daemon(int argc, char** argv) {
  tunnel::tune_for_data_plane();
  CLI::App app{"offloadd: the docker-offload daemon (started on demand by `docker offload`)",
               "offloadd"};
  std::string docker_config, log_level;
  bool foreground = false;
  app.add_option("--docker-config", docker_config,
                 "Docker configuration directory (default: $DOCKER_CONFIG or ~/.docker)");
  app.add_option("--log-level", log_level,
                 "Log level: trace, debug, info, warn, error (default: from config.json)");
  app.add_flag("--foreground", foreground, "Log to stderr instead of offloadd.log");
  app.add_flag_callback("--version", [] {
    std::cout << "offloadd " << OFFLOAD_VERSION << "\n";
    std::exit(0);
  }, "Print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  ::umask(077);
  StatePaths paths(docker_config.empty() ? docker_config_dir() : fs::path(docker_config));
  if (auto ec = ensure_private_dir(paths.dir)) {
    std::cerr << "offloadd: cannot use " << paths.dir.string() << ": " << ec.message() << "\n";
    return 1;
  }
  // One daemon per docker config directory.
  int lock_fd = ::open(paths.lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0 || ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    std::cerr << "offloadd: already running for " << paths.docker_config.string() << "\n";
    return 0;
  }

  OffloadConfig config;
  try {
    config = load_config(paths.config_file);
    setup_logging("offloadd", foreground ? fs::path() : paths.log_file,
                  log_level.empty() ? config.log_level : log_level);
  } catch (const std::exception& e) {
    std::cerr << "offloadd: " << e.what() << "\n";
    return 1;
  }

  // Signals are taken synchronously by this thread; blocked before any thread starts.
  const sigset_t signals = block_signals_for_sigwait({SIGTERM, SIGINT, SIGHUP});

  SessionManager::Providers providers;
  providers[kLocalAccountName] = std::make_unique<LocalProvider>(paths, config.local);
  for (const auto& [name, account] : config.accounts)
    providers[name] = std::make_unique<RemoteProvider>(account, paths.dir);
  Daemon daemon(paths, config, std::move(providers),
                PortPolicy{.bind_all_interfaces = config.ports.bind_all_interfaces,
                           .data_channel = config.ports.data_channel,
                           .multiplex_data_channel = config.ports.multiplex_data_channel});
  try {
    daemon.start();
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    std::cerr << "offloadd: " << e.what() << "\n";
    return 1;
  }
  write_file_atomic(paths.pid_file, std::to_string(::getpid()) + "\n");

  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    spdlog::info("SIGHUP ignored (configuration is read at start-up)");
  }
  spdlog::info("signal {}: shutting down; the session (if any) keeps running", sig);
  daemon.stop();
  std::error_code ec;
  fs::remove(paths.pid_file, ec);
  fs::remove(paths.docker_socket, ec);
  fs::remove(paths.control_socket, ec);
  return 0;
}

}  // namespace offload::daemon
