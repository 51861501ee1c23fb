// Who may use this runner: the accounts of its token file and their bearer tokens. An account's
// token creates sessions (CreateSession) and greets the runner (Hello); each session then has a
// token of its own for every other call.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace offload::runner {

// Parses a token file: one `NAME:TOKEN` per line, `#` comments and blank lines ignored.
// Throws std::runtime_error naming the file and line on malformed input.
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
