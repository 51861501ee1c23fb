#include "offload/daemon/diagnose.h"

#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <optional>

#include "offload/common/fs.h"
#include "offload/dockerctx/context_store.h"

namespace offload::daemon {
namespace asio = boost::asio;
using namespace std::chrono;

namespace {

constexpr std::string_view kPingRequest =
    "GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";
constexpr std::size_t kMaxPingResponse = 64 * 1024;

const char* const kRestartSession =
    "run `docker offload stop`, then `docker offload start` for a new session";

class Checks {
 public:
  std::size_t add(const char* name, bool ok, std::string detail, std::string fix = {}) {
    auto* c = response_.add_checks();
    c->set_name(name);
    c->set_ok(ok);
    c->set_detail(std::move(detail));
    if (!ok) c->set_fix(std::move(fix));
    return static_cast<std::size_t>(response_.checks_size() - 1);
  }
  void fail(std::size_t index, std::string detail, std::string fix) {
    auto* c = response_.mutable_checks(static_cast<int>(index));
    c->set_ok(false);
    c->set_detail(std::move(detail));
    c->set_fix(std::move(fix));
  }
  bool ok(std::size_t index) const { return response_.checks(static_cast<int>(index)).ok(); }
  v1::DiagnoseResponse take() { return std::move(response_); }

 private:
  v1::DiagnoseResponse response_;
};

std::string milliseconds_text(steady_clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", duration<double, std::milli>(d).count());
  return buf;
}

// Enough of a fingerprint to compare by eye.
std::string short_fingerprint(const std::string& fp) {
  return fp.size() > 19 ? fp.substr(0, 19) + "..." : fp;
}

bool session_running(v1::DaemonState state) {
  return state == v1::DAEMON_STATE_STARTED || state == v1::DAEMON_STATE_RECONNECTING;
}

std::optional<PersistedSession> read_persisted(const StatePaths& paths) {
  std::string text;
  if (read_file(paths.state_file, text)) return std::nullopt;
  try {
    return parse_persisted_session(text, paths.state_file.string());
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// The remote account as configured. The daemon's providers are not reachable from here, so
// config.json is read again: a file edited since offloadd started shows its new settings.
std::optional<RemoteProvider> remote_account(const StatePaths& paths, const std::string& name,
                                             std::string& error) {
  try {
    auto config = load_config(paths.config_file);
    auto it = config.accounts.find(name);
    if (it == config.accounts.end()) {
      error = "account \"" + name + "\" is no longer in " + display_path(paths.config_file);
      return std::nullopt;
    }
    return RemoteProvider(it->second, paths.dir);
  } catch (const std::exception& e) {
    error = e.what();
    return std::nullopt;
  }
}

// RunnerClient's message without what the check's own name and fix already say.
std::string mismatch_detail(std::string message, const std::string& address) {
  const std::string prefix = "refusing the runner at " + address + ": ";
  if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
  if (auto p = message.find(" (is this the right runner?"); p != std::string::npos)
    message.erase(p);
  return address + ": " + message;
}

struct PingOutcome {
  bool ok = false;
  std::string detail;
};

// GET /_ping through a tunnel of the session, on an io_context of our own: the answer must be
// "OK", as dockerd gives it.
PingOutcome ping_engine(RunnerClient& client, milliseconds timeout) {
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  auto stream = client.open_engine_tunnel("GET /_ping (diagnose)");
  asio::steady_timer timer(io, timeout);
  bool timed_out = false;
  timer.async_wait([&](boost::system::error_code ec) {
    if (ec) return;
    timed_out = true;
    stream->cancel("engine ping timed out");
  });
  std::string response;
  bool wrote = false;
  grpc::Status final_status;
  auto started = steady_clock::now();
  steady_clock::duration took{};
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        constexpr auto token = asio::as_tuple(asio::use_awaitable);
        v1::TunnelFrame request;
        request.set_data(std::string(kPingRequest));
        request.set_eof(true);
        auto [sent] = co_await stream->async_write(request, token);
        wrote = sent;
        while (sent && response.size() < kMaxPingResponse) {
          v1::TunnelFrame frame;
          auto [ok] = co_await stream->async_read(frame, token);
          if (!ok) break;
          response += frame.data();
          if (frame.eof()) break;
        }
        took = steady_clock::now() - started;
        timer.cancel();
        stream->release();
        final_status = co_await stream->async_wait_done(asio::use_awaitable);
        work.reset();
      },
      asio::detached);
  io.run();

  if (timed_out)
    return {false, "no answer from the engine within " + std::to_string(timeout.count()) + " ms"};
  auto head_end = response.find("\r\n\r\n");
  if (!wrote || head_end == std::string::npos) {
    std::string why = final_status.ok() ? "the engine closed the connection without an answer"
                                        : final_status.error_message();
    return {false, "the tunnel to the engine failed: " + why};
  }
  std::string status_line = response.substr(0, response.find("\r\n"));
  std::string body = response.substr(head_end + 4);
  bool is_200 = status_line.rfind("HTTP/1.", 0) == 0 && status_line.size() >= 12 &&
                status_line.compare(9, 3, "200") == 0;
  if (!is_200 || body != "OK") return {false, "unexpected answer to GET /_ping: " + status_line};
  return {true, "GET /_ping answered OK in " + milliseconds_text(took)};
}

}  // namespace

v1::DiagnoseResponse diagnose(SessionManager& sessions, const StatePaths& paths,
                              const DiagnoseOptions& options) {
  Checks checks;
  const v1::SessionStatus status = sessions.status();
  const bool running = session_running(status.state());
  const bool has_session = running || status.state() == v1::DAEMON_STATE_ENDED;

  checks.add(
      kCheckDaemon, true,
      std::string("offloadd ") + OFFLOAD_VERSION + " (pid " + std::to_string(::getpid()) + ")");

  // --- account: the session's, else the default ---
  const std::string account = status.account();
  std::string type;
  std::string names;
  const v1::ListAccountsResponse accounts = sessions.accounts();
  for (const auto& a : accounts.accounts()) {
    names += (names.empty() ? "" : ", ") + a.name();
    if (a.name() == account) type = a.type();
  }
  std::optional<PersistedSession> persisted;
  if (has_session) persisted = read_persisted(paths);
  std::optional<RunnerEndpoint> endpoint;
  std::optional<RemoteProvider> remote;
  std::size_t account_check;
  if (type.empty()) {
    account_check = checks.add(
        kCheckAccount, false,
        "account \"" + account + "\" is not configured (accounts: " + names + ")",
        has_session ? "add it back to config.json and restart offloadd, or run `docker offload "
                      "stop`"
                    : "set \"defaultAccount\" in config.json to one of the accounts");
  } else if (type == "remote") {
    std::string error;
    remote = remote_account(paths, account, error);
    std::string token;
    if (remote) {
      try {
        token = remote->read_token();
      } catch (const ProvisionError& e) {
        error = e.what();
      }
    }
    if (error.empty()) {
      account_check = checks.add(kCheckAccount, true,
                                 account + ": remote runner at " + remote->address() +
                                     ", token from " + display_path(remote->token_file()));
    } else {
      account_check = checks.add(kCheckAccount, false, account + ": " + error,
                                 remote ? "write the account's token to " +
                                              display_path(remote->token_file()) + " (chmod 600 it)"
                                        : "fix the account in " + display_path(paths.config_file) +
                                              ", then restart offloadd");
    }
    // The session keeps the endpoint it was created with; otherwise probe the configured one,
    // even without a token (the TLS check needs none).
    if (persisted)
      endpoint = persisted->endpoint;
    else if (remote)
      endpoint = RunnerEndpoint{remote->address(), remote->fingerprint(), token};
  } else {
    std::string why = running ? std::string() : LocalProvider::check_host();
    if (why.empty())
      account_check =
          checks.add(kCheckAccount, true, account + ": embedded runner on this machine");
    else
      account_check = checks.add(kCheckAccount, false, account + ": " + why,
                                 "run `sudo docker offload start`, or pick a remote account "
                                 "(`docker offload accounts`, `docker offload start -a NAME`)");
    // The local runner exists only while its session does.
    if (running && persisted) endpoint = persisted->endpoint;
  }

  // --- runner reachable, TLS fingerprint ---
  bool is_remote = type == "remote";
  if (!endpoint) {
    if (!running && (type == "local" || type.empty()))
      checks.add(kCheckRunnerReachable, true,
                 "no runner now: the local account starts one with `docker offload start`");
  } else {
    RunnerClient probe(*endpoint);
    auto hello = [&]() -> std::optional<RunnerError> {
      try {
        probe.hello(options.step_timeout);
        return std::nullopt;
      } catch (const RunnerError& e) {
        return e;
      }
    };
    auto first = hello();
    bool pin_mismatch =
        first && first->code == grpc::StatusCode::UNAUTHENTICATED &&
        std::string_view(first->what()).find("does not match the pinned") != std::string_view::npos;
    bool unreachable = first && (first->code == grpc::StatusCode::UNAVAILABLE ||
                                 first->code == grpc::StatusCode::DEADLINE_EXCEEDED);
    if (unreachable) {
      checks.add(kCheckRunnerReachable, false, first->what(),
                 is_remote ? "check that offload-runner runs on " + endpoint->address +
                                 " and that this machine can reach that port (firewall, VPN)"
                           : "the local runner is gone: " + std::string(kRestartSession));
    } else if (pin_mismatch) {
      checks.add(kCheckRunnerReachable, true,
                 endpoint->address + " answers (its certificate is refused, see below)");
      checks.add(kCheckTlsFingerprint, false, mismatch_detail(first->what(), endpoint->address),
                 is_remote
                     ? "check the account's fingerprint in " + display_path(paths.config_file) +
                           " against the one offload-runner prints when it starts"
                     : "check the account's fingerprint: " + std::string(kRestartSession));
    } else {
      // The first call paid for TCP and TLS; the second one is the round trip.
      auto t0 = steady_clock::now();
      auto second = hello();
      auto rtt = steady_clock::now() - t0;
      auto refused = first ? first : second;
      bool token_refused = refused && refused->code == grpc::StatusCode::UNAUTHENTICATED;
      if (refused && !token_refused)
        checks.add(kCheckRunnerReachable, false,
                   endpoint->address + " answers, but Hello failed: " + refused->what(),
                   "use offload-runner and docker-offload of the same version");
      else
        checks.add(kCheckRunnerReachable, true,
                   endpoint->address + ", round trip " + milliseconds_text(rtt));
      checks.add(kCheckTlsFingerprint, true,
                 "the runner's certificate matches the pinned " +
                     short_fingerprint(endpoint->fingerprint));
      if (token_refused && checks.ok(account_check))
        checks.fail(account_check, account + ": " + refused->what(),
                    is_remote && remote ? "check that " + display_path(remote->token_file()) +
                                              " holds the token the runner's operator gave you"
                                        : std::string(kRestartSession));
    }
  }

  // --- session, engine ping ---
  std::shared_ptr<RunnerClient> live = sessions.runner();
  bool session_ok = false;
  switch (status.state()) {
    case v1::DAEMON_STATE_STARTED:
      if (!live) {
        checks.add(kCheckSession, false, sessions.unavailable_message(), kRestartSession);
        break;
      }
      try {
        auto info = live->get_session(options.step_timeout);
        std::string detail = info.session_id().substr(0, 12);
        if (!info.runner_hostname().empty()) detail += " on " + info.runner_hostname();
        if (!info.engine_version().empty()) {
          detail += ", Docker " + info.engine_version();
          if (!info.engine_api_version().empty())
            detail += " (API " + info.engine_api_version() + ")";
        }
        checks.add(kCheckSession, true, detail);
        session_ok = true;
      } catch (const RunnerError& e) {
        checks.add(kCheckSession, false, e.what(), kRestartSession);
      }
      break;
    case v1::DAEMON_STATE_RECONNECTING:
      checks.add(
          kCheckSession, false,
          "reconnecting to the runner" +
              (status.reconnect_error().empty() ? std::string() : ": " + status.reconnect_error()),
          "offloadd keeps retrying; check this machine's connection to " + status.runner_address() +
              ", or run `docker offload stop`");
      break;
    case v1::DAEMON_STATE_ENDED:
      checks.add(kCheckSession, false,
                 "the session ended" +
                     (status.ended_reason().empty() ? std::string() : ": " + status.ended_reason()),
                 "run `docker offload start` for a new session, or `docker offload stop` to "
                 "return to your previous docker context");
      break;
    case v1::DAEMON_STATE_STARTING:
    case v1::DAEMON_STATE_STOPPING:
      checks.add(kCheckSession, false,
                 status.state() == v1::DAEMON_STATE_STARTING ? "the session is starting"
                                                             : "the session is stopping",
                 "wait a moment, then run `docker offload diagnose` again");
      break;
    default:
      checks.add(kCheckSession, false, "no session", "run `docker offload start`");
  }
  if (session_ok) {
    auto ping = ping_engine(*live, options.step_timeout);
    checks.add(kCheckEnginePing, ping.ok, ping.detail, kRestartSession);
  }

  // --- docker context ---
  try {
    ContextStore contexts(paths.docker_config);
    const std::string expected = "unix://" + paths.docker_socket.string();
    const std::string current = contexts.current_context();
    const bool exists = contexts.context_exists(kOffloadContextName);
    const auto host = contexts.context_host(kOffloadContextName);
    const std::string name = kOffloadContextName;
    if (!running) {
      checks.add(kCheckDockerContext, true,
                 (exists ? name + " exists"
                         : "no " + name +
                               " context yet (`docker offload "
                               "start` writes it)") +
                     "; the current context is " + current);
    } else if (!exists || !host) {
      checks.add(kCheckDockerContext, false, "the " + name + " context is missing",
                 kRestartSession + std::string(" (it writes the context again)"));
    } else if (*host != expected) {
      checks.add(kCheckDockerContext, false, name + " points at " + *host + ", not " + expected,
                 kRestartSession + std::string(" (it writes the context again)"));
    } else if (current != name) {
      checks.add(kCheckDockerContext, false, "the current context is " + current + ", not " + name,
                 "docker context use " + name);
    } else {
      checks.add(kCheckDockerContext, true, name + " is current and points at " + expected);
    }
  } catch (const std::exception& e) {
    checks.add(kCheckDockerContext, false, e.what(),
               "repair or remove the file named above (the docker CLI cannot use it either)");
  }

  // --- port conflicts ---
  std::string conflicts;
  int forwarded = 0;
  for (const auto& p : status.ports()) {
    if (p.listening()) {
      ++forwarded;
      continue;
    }
    std::string target =
        (p.container_name().empty() ? p.container_id().substr(0, 12) : p.container_name()) + ":" +
        std::to_string(p.container_port()) + "/" + p.protocol();
    conflicts += (conflicts.empty() ? "" : "; ") + p.local_address() + " -> " + target + ": " +
                 (p.error().empty() ? std::string("not forwarded") : p.error());
  }
  if (!conflicts.empty())
    checks.add(kCheckPortConflicts, false, conflicts,
               "stop the program that holds the port on this machine, or publish the container "
               "on another host port (e.g. -p 8082:80)");
  else
    checks.add(kCheckPortConflicts, true,
               forwarded == 0 ? "no published ports"
                              : std::to_string(forwarded) + " published port" +
                                    (forwarded == 1 ? "" : "s") + " forwarded");
  return checks.take();
}

}  // namespace offload::daemon
