#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <ostream>

#include "offload/cli/render.h"
#include "offload/common/fs.h"
#include "offload/common/join_string.h"
#include "offload/common/paths.h"
#include "offload/config/config.h"
#include "verb.h"

namespace offload::cli {
namespace fs = std::filesystem;

namespace {

// Two edits at once must not lose one: the offload directory is locked while config.json is
// read, changed and replaced.
class DirLock {
 public:
  explicit DirLock(const fs::path& dir)
      : fd_(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    if (fd_ < 0 || ::flock(fd_, LOCK_EX) != 0)
      throw CliError("cannot lock " + display_path(dir) + ": " + std::strerror(errno));
  }
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_;
};

std::string read_config_text(const fs::path& file) {
  std::string text;
  if (auto ec = read_file(file, text); ec && ec != std::errc::no_such_file_or_directory)
    throw CliError(display_path(file) + ": cannot be read: " + ec.message());
  return text;
}

// offloadd reads its accounts at start-up: a running one is restarted to see the change.
void reload_daemon(CommandContext& cli) {
  if (!cli.daemon.restart_if_running())
    cli.console.err << "WARNING: offloadd is running with the accounts it read when it started; "
                       "stop it (kill $(cat "
                    << display_path(cli.daemon.paths().pid_file)
                    << ")) so that the next command starts one that knows the change\n";
}

int add_account(CommandContext& cli, const std::string& name, const std::string& join_text) {
  JoinInfo join;
  try {
    join = parse_join_string(join_text);
  } catch (const JoinStringError& e) {
    throw CliError(e.what());
  }
  const StatePaths& paths = cli.daemon.paths();
  if (auto ec = ensure_private_dir(paths.dir))
    throw CliError("cannot create " + display_path(paths.dir) + ": " + ec.message());
  DirLock lock(paths.dir);
  RemoteAccountSettings account{join.address, name + ".token", join.fingerprint};
  const std::string source = display_path(paths.config_file);
  std::string updated;
  try {
    updated = with_remote_account(read_config_text(paths.config_file), name, account, source);
  } catch (const ConfigError& e) {
    throw CliError(e.what());
  }
  // The token first: a config that names a token file that is not there would fail at start.
  const fs::path token_file = resolve_token_file(account, paths.dir);
  if (auto ec = write_file_atomic(token_file, join.token + "\n", fs::perms(0600)))
    throw CliError("cannot write " + display_path(token_file) + ": " + ec.message());
  if (auto ec = write_file_atomic(paths.config_file, updated, fs::perms(0600))) {
    std::error_code ignored;
    fs::remove(token_file, ignored);
    throw CliError("cannot write " + source + ": " + ec.message() + " (nothing was changed)");
  }
  reload_daemon(cli);
  cli.console.out << "Added account \"" << name << "\" (runner " << join.address
                  << "). Start a session with: docker offload start --account " << name << "\n";
  return 0;
}

int remove_account(CommandContext& cli, const std::string& name) {
  const StatePaths& paths = cli.daemon.paths();
  if (!fs::is_directory(paths.dir))
    throw CliError("there is no remote account \"" + name + "\" (see docker offload accounts)");
  DirLock lock(paths.dir);
  const std::string source = display_path(paths.config_file);
  const std::string text = read_config_text(paths.config_file);
  std::string updated;
  std::string token_file;
  try {
    updated = without_remote_account(text, name, source);
    token_file = parse_config(text, source).accounts.at(name).token_file;
  } catch (const ConfigError& e) {
    throw CliError(e.what());
  }
  if (auto ec = write_file_atomic(paths.config_file, updated, fs::perms(0600)))
    throw CliError("cannot write " + source + ": " + ec.message() + " (nothing was changed)");
  // Only the token file `accounts add` made: one the user keeps elsewhere stays theirs.
  if (token_file == name + ".token") {
    std::error_code ignored;
    fs::remove(paths.dir / token_file, ignored);
  }
  reload_daemon(cli);
  cli.console.out << "Removed account \"" << name << "\"\n";
  return 0;
}

}  // namespace

CLI::App* new_accounts_command(CLI::App& parent, AccountsOptions& options) {
  CLI::App* cmd =
      detail::add_verb(parent, "accounts", "List the accounts you can start sessions with");
  detail::format_flag(*cmd, "--format", options.format);
  CLI::App* add = detail::add_verb(
      *cmd, "add",
      "Add a remote account from the join string its runner's operator gave you (printed by "
      "`offload-runner accounts add`); the token goes to a file of its own, mode 0600");
  add->add_option("args", options.args)->type_name("NAME JOINSTRING");
  add->final_callback([&options] { options.action = "add"; });
  CLI::App* remove = detail::add_verb(*cmd, "remove", "Remove a remote account and its token file");
  remove->alias("rm");
  remove->add_option("args", options.args)->type_name("NAME");
  remove->final_callback([&options] { options.action = "remove"; });
  return cmd;
}

int run_accounts(CommandContext& cli, const AccountsOptions& options) {
  if (options.action == "add") return add_account(cli, options.args.at(0), options.args.at(1));
  if (options.action == "remove") return remove_account(cli, options.args.at(0));
  v1::Control::Stub& stub = detail::connect(cli);
  auto list = detail::call(cli, stub, &v1::Control::Stub::ListAccounts, {});
  if (options.format == "json") cli.console.out << accounts_json(list).dump() << "\n";
  else cli.console.out << render_accounts_table(list);
  return 0;
}

}  // namespace offload::cli
