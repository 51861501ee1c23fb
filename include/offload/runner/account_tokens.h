// Who may use this runner: the accounts of its token file and their bearer tokens. An account's
// token creates sessions (CreateSession) and greets the runner (Hello); each session then has a
// token of its own for every other call.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "offload/runner/api_policy.h"

namespace offload::runner {

// What the operator grants one account beyond the runner's defaults.
struct AccountSettings {
  // Sessions the account may hold at once; nothing = the runner's --max-sessions-per-account.
  std::optional<std::size_t> max_sessions;
  // Requests the API policy lets this account's sessions make (privileged, host namespaces...).
  ApiAllowances allow;
};

struct AccountEntry {
  std::string token;
  AccountSettings settings;
};

// Parses an accounts file: one `NAME:TOKEN [KEY=VALUE...]` per line, `#` comments and blank
// lines ignored. Keys: `max-sessions=N` and `allow=A,B,...` with A one of `privileged`,
// `host-namespaces`, `devices`, `cap:NAME`. Throws std::runtime_error naming the file and line
// on malformed input (never showing the token).
std::map<std::string, AccountEntry> parse_accounts_file(const std::string& text,
                                                        const std::string& source);

// parse_accounts_file without the settings: account name → token.
std::map<std::string, std::string> parse_token_file(const std::string& text,
                                                    const std::string& source);

// The accounts a runner accepts. Holds secrets: nothing here logs, and nothing returns a token.
class AccountTokens {
 public:
  // Account name → token.
  explicit AccountTokens(std::map<std::string, std::string> tokens);

  // The account whose token `presented` is, or nothing (also for an empty token). Compares
  // against every account, so the time taken does not reveal which one matched, nor whether
  // any did.
  std::optional<std::string> authenticate(std::string_view presented) const;

 private:
  std::map<std::string, std::string> tokens_;
};

}  // namespace offload::runner
