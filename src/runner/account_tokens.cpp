#include "offload/runner/account_tokens.h"

#include <cctype>
#include <sstream>
#include <stdexcept>

#include "offload/common/token.h"

namespace offload::runner {

namespace {

[[noreturn]] void fail(const std::string& source, int line, const std::string& what) {
  throw std::runtime_error(source + ":" + std::to_string(line) + ": " + what);
}

std::string trim(std::string v) {
  v.erase(0, v.find_first_not_of(" \t"));
  v.erase(v.find_last_not_of(" \t") + 1);
  return v;
}

// One `allow=` item.
void add_allowance(ApiAllowances& allow, std::string item, const std::string& source, int line) {
  if (item == "privileged") {
    allow.privileged = true;
  } else if (item == "host-namespaces") {
    allow.host_namespaces = true;
  } else if (item == "devices") {
    allow.devices = true;
  } else if (item.rfind("cap:", 0) == 0 && item.size() > 4) {
    std::string cap = item.substr(4);
    for (auto& c : cap) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (cap.rfind("CAP_", 0) == 0) cap.erase(0, 4);
    if (cap.empty() || cap.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789") !=
                           std::string::npos)
      fail(source, line, "allow=: \"" + item + "\" is not a capability name (e.g. cap:SYS_PTRACE)");
    allow.capabilities.insert(cap);
  } else {
    fail(source, line,
         "allow=: unknown allowance \"" + item +
             "\" (known: privileged, host-namespaces, devices, cap:NAME)");
  }
}

// The `KEY=VALUE` words after the token.
void parse_settings(AccountSettings& settings, const std::string& words,
                    const std::string& source, int line) {
  std::istringstream in(words);
  std::string word;
  while (in >> word) {
    auto eq = word.find('=');
    std::string key = word.substr(0, eq);
    std::string value = eq == std::string::npos ? std::string() : word.substr(eq + 1);
    if (key == "max-sessions") {
      if (value.empty() || value.size() > 6 ||
          value.find_first_not_of("0123456789") != std::string::npos)
        fail(source, line, "max-sessions= needs a whole number (0 = unlimited), not \"" + value +
                               "\"");
      settings.max_sessions = static_cast<std::size_t>(std::stoul(value));
    } else if (key == "allow") {
      std::istringstream items(value);
      std::string item;
      while (std::getline(items, item, ',')) add_allowance(settings.allow, trim(item), source, line);
    } else {
      // Only the key: the rest of the line after the token is not secret, but keep it short.
      fail(source, line, "unknown setting \"" + key + "\" (known: max-sessions=N, allow=LIST)");
    }
  }
}

}  // namespace

std::map<std::string, AccountEntry> parse_accounts_file(const std::string& text,
                                                        const std::string& source) {
  std::map<std::string, AccountEntry> accounts;
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
      fail(source, number, "expected NAME:TOKEN (the token itself is not shown)");
    std::string name = trim(line.substr(0, colon)), rest = trim(line.substr(colon + 1));
    // Tokens hold no blanks: the first blank ends the token and starts the settings.
    auto blank = rest.find_first_of(" \t");
    std::string token = rest.substr(0, blank);
    std::string words = blank == std::string::npos ? std::string() : rest.substr(blank);
    if (name.empty() || token.empty())
      fail(source, number, "expected NAME:TOKEN (the token itself is not shown)");
    if (token.size() < 16)
      fail(source, number, "the token of account \"" + name + "\" is shorter than 16 characters");
    AccountEntry entry{token, {}};
    parse_settings(entry.settings, words, source, number);
    if (!accounts.emplace(name, std::move(entry)).second)
      fail(source, number, "account \"" + name + "\" appears twice");
  }
  if (accounts.empty()) throw std::runtime_error(source + ": no account tokens");
  return accounts;
}

std::map<std::string, std::string> parse_token_file(const std::string& text,
                                                    const std::string& source) {
  std::map<std::string, std::string> tokens;
  for (auto& [name, entry] : parse_accounts_file(text, source)) tokens.emplace(name, entry.token);
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
