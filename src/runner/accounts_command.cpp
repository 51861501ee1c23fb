#include "accounts_command.h"

#include <fcntl.h>
#include <cerrno>
#include <cstring>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "offload/common/fs.h"
#include "offload/common/join_string.h"
#include "offload/common/token.h"
#include "offload/runner/accounts_file.h"
#include "offload/tls/tls.h"

namespace offload::runner {
namespace fs = std::filesystem;

namespace {

// Edits by two operators at once must not lose one: the directory is locked (a lock on the file
// itself would not hold across the rename that replaces it).
class DirectoryLock {
 public:
  explicit DirectoryLock(const fs::path& file) {
    const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
    fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0)
      throw AccountsFileError("cannot open " + dir.string() + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX) != 0)
      throw AccountsFileError("cannot lock " + dir.string() + ": " + std::strerror(errno));
  }
  ~DirectoryLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

std::string read_accounts(const fs::path& file, bool absent_is_empty) {
  std::string text;
  if (auto ec = read_file(file, text)) {
    if (absent_is_empty && ec == std::errc::no_such_file_or_directory) return {};
    throw AccountsFileError("cannot read the accounts file " + file.string() + ": " +
                            ec.message() + " (give its place with --token-file)");
  }
  return text;
}

void write_accounts(const fs::path& file, const std::string& text) {
  if (auto ec = write_file_atomic(file, text, fs::perms(0600)))
    throw AccountsFileError("cannot write the accounts file " + file.string() + ": " +
                            ec.message() + " (nothing was changed)");
}

std::string hostname() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return {};
  return host;
}

}  // namespace

AccountsCommand::AccountsCommand(CLI::App& app) {
  accounts_ = app.add_subcommand(
      "accounts", "Add, remove and list the accounts clients use (the --token-file of serve)");
  accounts_->require_subcommand(1);
  auto file_option = [this](CLI::App* cmd) {
    cmd->add_option("--token-file", token_file_,
                    std::string("The accounts file (default ") + kDefaultAccountsFile +
                        ", the packaged service's --token-file)")
        ->option_text("FILE");
  };

  add_ = accounts_->add_subcommand(
      "add",
      "Create an account with a fresh random token and print its join string: one line with "
      "the runner's address, certificate fingerprint and the token, for `docker offload "
      "accounts add NAME JOINSTRING` on the user's machine. A running runner picks the "
      "account up within seconds.");
  add_->add_option("NAME", name_, "The account's name (letters, digits, _ . + - @)")->required();
  file_option(add_);
  add_->add_option("--state-dir", state_dir_,
                   "The runner's --state-dir, whose tls/ holds the certificate (created like "
                   "serve does when absent; default /var/lib/offload-runner)")
      ->option_text("DIR");
  add_->add_option("--tls-dir", tls_dir_, "The runner's --tls-dir, if serve has one")
      ->option_text("DIR");
  add_->add_option("--tls-cert", tls_cert_, "The runner's --tls-cert, if serve has one")
      ->option_text("FILE");
  add_->add_option("--advertise", advertise_,
                   std::string("HOST:PORT clients dial (default this host's name and the port "
                               "of OFFLOAD_RUNNER_LISTEN in ") +
                       kDefaultRunnerEnvFile + ")")
      ->option_text("HOST:PORT");
  add_->add_option("--max-sessions", max_sessions_,
                   "Sessions the account may hold at once (default: serve's "
                   "--max-sessions-per-account)")
      ->option_text("N");
  add_->add_option("--allow", allow_,
                   "What the API policy lets the account's sessions do beyond the defaults: "
                   "privileged, host-namespaces, devices, cap:NAME, comma separated")
      ->option_text("LIST");

  remove_ = accounts_->add_subcommand(
      "remove",
      "Delete an account: a running runner refuses its token for new sessions within seconds; "
      "its running sessions go on until they end");
  remove_->alias("rm");
  remove_->add_option("NAME", name_, "The account to delete")->required();
  file_option(remove_);

  ls_ = accounts_->add_subcommand("ls", "List the accounts and their settings (never tokens)");
  ls_->alias("list");
  file_option(ls_);
}

bool AccountsCommand::parsed() const { return accounts_->parsed(); }

int AccountsCommand::run() {
  ::umask(077);
  const fs::path file = token_file_.empty() ? fs::path(kDefaultAccountsFile) : fs::path(token_file_);
  try {
    if (ls_->parsed()) {
      auto accounts = parse_accounts_file_allow_empty(read_accounts(file, false), file.string());
      std::cout << render_accounts(accounts);
      return 0;
    }
    DirectoryLock lock(file);
    if (remove_->parsed()) {
      write_accounts(file, with_account_removed(read_accounts(file, false), name_, file.string()));
      std::cerr << "offload-runner: removed account \"" << name_
                << "\"; a running runner refuses its token for new sessions within seconds, "
                   "and its running sessions go on until they end\n";
      return 0;
    }

    // add: everything the join string needs first, so a failure adds nothing.
    std::string settings;
    if (!max_sessions_.empty()) settings += "max-sessions=" + max_sessions_;
    if (!allow_.empty()) settings += (settings.empty() ? "" : " ") + std::string("allow=") + allow_;
    const std::string token = random_hex(32);
    const std::string text = with_account_added(read_accounts(file, true), name_, token, settings,
                                                file.string());
    JoinInfo join;
    join.token = token;
    if (!tls_cert_.empty()) {
      std::string pem;
      if (auto ec = read_file(tls_cert_, pem))
        throw AccountsFileError("cannot read --tls-cert " + tls_cert_ + ": " + ec.message());
      join.fingerprint = tls::certificate_fingerprint(pem);
      if (join.fingerprint.empty())
        throw AccountsFileError("--tls-cert " + tls_cert_ + " holds no PEM certificate");
    } else {
      const fs::path dir = tls_dir_.empty() ? fs::path(state_dir_) / "tls" : fs::path(tls_dir_);
      if (auto ec = ensure_private_dir(dir))
        throw AccountsFileError("cannot create the TLS directory " + dir.string() + ": " +
                                ec.message());
      join.fingerprint = tls::load_or_create_identity(dir).fingerprint;
    }
    join.address = advertise_;
    if (join.address.empty()) {
      std::string env;
      (void)read_file(kDefaultRunnerEnvFile, env);
      join.address = default_advertise_address(hostname(), env);
      if (join.address.empty())
        throw AccountsFileError(std::string("cannot tell the address clients dial: ") +
                                kDefaultRunnerEnvFile +
                                " has no OFFLOAD_RUNNER_LISTEN with a port; give it with "
                                "--advertise HOST:PORT (e.g. runner.example.com:7443)");
    }
    std::string line;
    try {
      line = format_join_string(join);
    } catch (const JoinStringError&) {
      throw AccountsFileError("--advertise \"" + join.address +
                              "\" is not HOST:PORT (e.g. runner.example.com:7443)");
    }
    write_accounts(file, text);
    std::cout << line << "\n";
    std::cerr << "offload-runner: added account \"" << name_ << "\" (" << file.string()
              << "); the line above holds its token: give it to the account's user only, "
                 "who runs: docker offload accounts add NAME '<the line>'\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "offload-runner: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace offload::runner
