#include "offload/runner/account_tokens.h"

#include <sstream>
#include <stdexcept>

#include "offload/common/token.h"

namespace offload::runner {

std::map<std::string, std::string> parse_token_file(const std::string& text,
                                                    const std::string& source) {
  std::map<std::string, std::string> tokens;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    std::size_t start = line.find_first_not_of(' ');
    if (start == std::string::npos || line[start] == '#') continue;
    line = line.substr(start);
    auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == line.size())
      throw std::runtime_error(source + ":" + std::to_string(number) +
                               ": expected NAME:TOKEN (the token itself is not shown)");
    auto trim = [](std::string v) {
      v.erase(0, v.find_first_not_of(" \t"));
      v.erase(v.find_last_not_of(" \t") + 1);
      return v;
    };
    std::string name = trim(line.substr(0, colon)), token = trim(line.substr(colon + 1));
    if (name.empty() || token.empty())
      throw std::runtime_error(source + ":" + std::to_string(number) +
                               ": expected NAME:TOKEN (the token itself is not shown)");
    if (token.size() < 16)
      throw std::runtime_error(source + ":" + std::to_string(number) + ": the token of account \"" +
                               name + "\" is shorter than 16 characters");
    if (!tokens.emplace(name, token).second)
      throw std::runtime_error(source + ":" + std::to_string(number) + ": account \"" + name +
                               "\" appears twice");
  }
  if (tokens.empty()) throw std::runtime_error(source + ": no account tokens");
  return tokens;
}

AccountTokens::AccountTokens(std::map<std::string, std::string> tokens)
    : tokens_(std::move(tokens)) {}

std::optional<std::string> AccountTokens::authenticate(std::string_view presented) const {
  if (presented.empty()) return std::nullopt;
  std::optional<std::string> account;
  for (const auto& [name, token] : tokens_) {
    // secrets_equal first, for every account: stopping at the first match would make the time
    // taken tell which account (and so roughly which token) matched.
    if (secrets_equal(presented, token) && !account) account = name;
  }
  return account;
}

}  // namespace offload::runner
