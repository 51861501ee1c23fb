#include "admin_cli.h"

#include <chrono>
#include <iostream>
#include <stdexcept>

#include "offload/runner/admin.h"

namespace offload::runner {

void add_sessions_command(CLI::App& app, SessionsCommand& cmd) {
  cmd.socket = kDefaultAdminSocket;
  cmd.command = app.add_subcommand(
      "sessions", "List, inspect and end the sessions of the runner on this host (root only)");
  cmd.command->require_subcommand(1);
  cmd.command
      ->add_option("--admin-socket", cmd.socket,
                   "The admin socket of `offload-runner serve` (default " +
                       std::string(kDefaultAdminSocket) + ")")
      ->option_text("PATH");
  cmd.ls = cmd.command->add_subcommand("ls", "List the sessions");
  cmd.ls->add_option("--format", cmd.format, "table (default) or json")
      ->check(CLI::IsMember({"table", "json"}));
  cmd.inspect = cmd.command->add_subcommand("inspect", "Show one session as JSON");
  cmd.inspect->add_option("ID", cmd.ids, "Session id or a unique prefix of it")
      ->required()
      ->expected(1);
  cmd.rm = cmd.command->add_subcommand(
      "rm", "End sessions now, as an idle end would: their clients see them end with the reason");
  cmd.rm->add_option("ID", cmd.ids, "Session ids or unique prefixes")->required();
  cmd.rm->add_option("--reason", cmd.reason,
                     "What the sessions' clients are told (default \"ended by the runner's "
                     "operator\")")
      ->option_text("TEXT");
}

int run_sessions_command(const SessionsCommand& cmd) {
  try {
    auto stub = connect_admin(cmd.socket);
    auto context = [] {
      auto ctx = std::make_unique<grpc::ClientContext>();
      // Teardown of several sessions can take a while; listing never should.
      ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
      return ctx;
    };
    auto unreachable = [&](const grpc::Status& st) {
      if (st.error_code() == grpc::StatusCode::UNAVAILABLE)
        return std::runtime_error("the runner does not answer on " + cmd.socket + ": " +
                                  st.error_message());
      return std::runtime_error(st.error_message());
    };
    if (cmd.ls->parsed()) {
      v1::ListSessionsResponse response;
      auto ctx = context();
      if (auto st = stub->ListSessions(ctx.get(), {}, &response); !st.ok()) throw unreachable(st);
      std::vector<v1::AdminSession> sessions(response.sessions().begin(),
                                             response.sessions().end());
      std::cout << (cmd.format == "json" ? format_sessions_json(sessions) + "\n"
                                         : format_sessions_table(sessions));
      return 0;
    }
    if (cmd.inspect->parsed()) {
      v1::InspectSessionRequest request;
      request.set_id(cmd.ids.front());
      v1::AdminSession session;
      auto ctx = context();
      if (auto st = stub->InspectSession(ctx.get(), request, &session); !st.ok())
        throw unreachable(st);
      std::cout << format_session_json(session) << "\n";
      return 0;
    }
    v1::RemoveSessionsRequest request;
    for (const auto& id : cmd.ids) request.add_ids(id);
    request.set_reason(cmd.reason);
    v1::RemoveSessionsResponse response;
    auto ctx = context();
    if (auto st = stub->RemoveSessions(ctx.get(), request, &response); !st.ok())
      throw unreachable(st);
    int rc = 0;
    for (const auto& r : response.results()) {
      if (r.error().empty()) {
        std::cout << r.id() << "\n";  // like `docker rm`: what was removed
      } else {
        std::cerr << "offload-runner: " << r.requested() << ": " << r.error() << "\n";
        rc = 1;
      }
    }
    return rc;
  } catch (const std::exception& e) {
    std::cerr << "offload-runner: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace offload::runner
