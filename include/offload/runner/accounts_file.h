// The accounts file as operators edit it (`offload-runner accounts add|remove|ls`) and as a
// running runner follows it (reload on SIGHUP and when the file changes). The format is
// account_tokens.h's: one `NAME:TOKEN [KEY=VALUE...]` per line, `#` comments.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "offload/runner/account_tokens.h"

namespace offload::runner {

// Where the packaged runner keeps its accounts and settings.
inline constexpr const char* kDefaultAccountsFile = "/etc/offload-runner/accounts";
inline constexpr const char* kDefaultRunnerEnvFile = "/etc/offload-runner/runner.env";

// A refused edit or a missing piece of information: the message is the line the operator sees.
struct AccountsFileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Names `accounts add` gives out: a letter or digit, then letters, digits and _ . + - @
// (at most 64). Older files may hold other names; they keep working.
bool valid_new_account_name(std::string_view name);

// parse_accounts_file, except that a file without accounts is valid (every account removed:
// the runner then refuses every new session). Throws std::runtime_error like it.
std::map<std::string, AccountEntry> parse_accounts_file_allow_empty(const std::string& text,
                                                                    const std::string& source);

// `text` with `NAME:TOKEN[ SETTINGS]` appended as a line of its own; every other byte is kept.
// `settings` are accounts-file words ("max-sessions=2 allow=devices"), may be empty. Throws
// AccountsFileError when the name is invalid or taken, or when the file or the new line does
// not parse (the message never holds a token).
std::string with_account_added(const std::string& text, const std::string& name,
                               const std::string& token, const std::string& settings,
                               const std::string& source);

// `text` without the line of account `name`; every other byte is kept. Throws AccountsFileError
// when there is no such account or the file does not parse.
std::string with_account_removed(const std::string& text, const std::string& name,
                                 const std::string& source);

// An account's settings as accounts-file words, "" for the defaults.
std::string format_settings(const AccountSettings& settings);

// `NAME  SETTINGS` per account, with a header; never a token.
std::string render_accounts(const std::map<std::string, AccountEntry>& accounts);

// The address clients dial when `accounts add` gets no --advertise: this host's name with the
// port of OFFLOAD_RUNNER_LISTEN in `runner_env` (the text of runner.env). Empty when that
// does not say.
std::string default_advertise_address(const std::string& hostname, const std::string& runner_env);

// The accounts file that a running runner follows. `apply` gets every version that parses;
// a version that does not is logged as an error and the accounts in force stay.
class AccountsFileWatcher {
 public:
  using Apply = std::function<void(std::map<std::string, AccountEntry>)>;

  // Remembers the file as it is now: the version the runner started with is not applied again.
  AccountsFileWatcher(std::filesystem::path file, Apply apply);
  ~AccountsFileWatcher();
  AccountsFileWatcher(const AccountsFileWatcher&) = delete;
  AccountsFileWatcher& operator=(const AccountsFileWatcher&) = delete;

  // Reads and applies the file now (SIGHUP). False when it could not be read or parsed.
  bool reload(std::string_view why);
  // reload() when the file differs from the last look (inode, size, modification or change
  // time): one stat when nothing changed. True when a new version was applied.
  bool reload_if_changed();

  // A thread that calls reload_if_changed every `every`, until stop() or destruction.
  void start_polling(std::chrono::milliseconds every);
  void stop();

 private:
  struct Signature {
    ino_t inode = 0;
    off_t size = -1;
    std::int64_t mtime_ns = 0, ctime_ns = 0;
    bool operator==(const Signature&) const = default;
  };
  Signature look() const;

  const std::filesystem::path file_;
  const Apply apply_;
  std::mutex mu_;  // one reload at a time; guards seen_
  Signature seen_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;  // guarded by stop_mu_
  std::thread poller_;
};

}  // namespace offload::runner
