#include "offload/runner/accounts_file.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <sstream>
#include <vector>

#include "offload/common/fs.h"

namespace offload::runner {
namespace fs = std::filesystem;

namespace {

std::string trim(std::string v) {
  v.erase(0, v.find_first_not_of(" \t"));
  v.erase(v.find_last_not_of(" \t") + 1);
  return v;
}

// The account a line defines, as parse_accounts_file reads it; empty for comments and blanks.
std::string account_of_line(std::string line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  std::size_t start = line.find_first_not_of(' ');
  if (start == std::string::npos || line[start] == '#') return {};
  auto colon = line.find(':', start);
  if (colon == std::string::npos) return {};
  return trim(line.substr(start, colon - start));
}

std::map<std::string, AccountEntry> parse_existing(const std::string& text,
                                                   const std::string& source) {
  try {
    return parse_accounts_file_allow_empty(text, source);
  } catch (const std::exception& e) {
    throw AccountsFileError(std::string(e.what()) + " (fix the file first; nothing was changed)");
  }
}

}  // namespace

bool valid_new_account_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (alnum) continue;
    if (i == 0 || (c != '_' && c != '.' && c != '+' && c != '-' && c != '@')) return false;
  }
  return true;
}

std::map<std::string, AccountEntry> parse_accounts_file_allow_empty(const std::string& text,
                                                                    const std::string& source) {
  std::istringstream in(text);
  std::string line;
  bool any = false;
  while (!any && std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    auto start = line.find_first_not_of(' ');
    any = start != std::string::npos && line[start] != '#';
  }
  if (!any) return {};
  return parse_accounts_file(text, source);
}

std::string with_account_added(const std::string& text, const std::string& name,
                               const std::string& token, const std::string& settings,
                               const std::string& source) {
  if (!valid_new_account_name(name))
    throw AccountsFileError("\"" + name +
                            "\" is not a valid account name (up to 64 letters, digits and "
                            "_ . + - @, starting with a letter or digit)");
  if (parse_existing(text, source).count(name))
    throw AccountsFileError("account \"" + name + "\" exists already in " + source +
                            " (remove it first: offload-runner accounts remove " + name + ")");
  std::string out = text;
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += name + ":" + token + (settings.empty() ? "" : " " + settings) + "\n";
  try {
    parse_accounts_file(out, source);
  } catch (const std::exception& e) {
    // Only the settings can be wrong here; the message names them, never the token.
    throw AccountsFileError(std::string(e.what()) + " (nothing was changed)");
  }
  return out;
}

std::string with_account_removed(const std::string& text, const std::string& name,
                                 const std::string& source) {
  if (!parse_existing(text, source).count(name))
    throw AccountsFileError("there is no account \"" + name + "\" in " + source +
                            " (see offload-runner accounts ls)");
  std::string out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    const std::size_t next = end == std::string::npos ? text.size() : end + 1;
    const std::string line = text.substr(pos, next - pos);
    std::string bare = line;
    if (!bare.empty() && bare.back() == '\n') bare.pop_back();
    if (account_of_line(bare) != name) out += line;
    pos = next;
  }
  return out;
}

std::string format_settings(const AccountSettings& settings) {
  std::string out;
  if (settings.max_sessions) out += "max-sessions=" + std::to_string(*settings.max_sessions);
  std::vector<std::string> allow;
  if (settings.allow.privileged) allow.push_back("privileged");
  if (settings.allow.host_namespaces) allow.push_back("host-namespaces");
  if (settings.allow.devices) allow.push_back("devices");
  for (const auto& cap : settings.allow.capabilities) allow.push_back("cap:" + cap);
  if (!allow.empty()) {
    if (!out.empty()) out += ' ';
    out += "allow=";
    for (std::size_t i = 0; i < allow.size(); ++i) out += (i ? "," : "") + allow[i];
  }
  return out;
}

std::string render_accounts(const std::map<std::string, AccountEntry>& accounts) {
  std::size_t width = 4;
  for (const auto& [name, entry] : accounts) width = std::max(width, name.size());
  auto row = [&](const std::string& name, const std::string& settings) {
    std::string line = name;
    line.resize(width + 3, ' ');
    line += settings;
    while (!line.empty() && line.back() == ' ') line.pop_back();
    return line + "\n";
  };
  std::string out = row("NAME", "SETTINGS");
  for (const auto& [name, entry] : accounts) {
    std::string settings = format_settings(entry.settings);
    out += row(name, settings.empty() ? "(runner defaults)" : settings);
  }
  return out;
}

std::string default_advertise_address(const std::string& hostname, const std::string& runner_env) {
  if (hostname.empty()) return {};
  std::istringstream in(runner_env);
  std::string line, listen;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.rfind("export ", 0) == 0) line = trim(line.substr(7));
    if (line.rfind("OFFLOAD_RUNNER_LISTEN=", 0) != 0) continue;
    listen = trim(line.substr(22));
    if (listen.size() >= 2 && (listen.front() == '"' || listen.front() == '\'') &&
        listen.back() == listen.front())
      listen = listen.substr(1, listen.size() - 2);
  }
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) return {};
  const std::string port = listen.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return {};
  const int number = std::stoi(port);
  // Port 0 picks a free port at each start: nothing a client could be told in advance.
  if (number < 1 || number > 65535) return {};
  return hostname + ":" + port;
}

// --- AccountsFileWatcher ---

AccountsFileWatcher::AccountsFileWatcher(fs::path file, Apply apply)
    : file_(std::move(file)), apply_(std::move(apply)), seen_(look()) {}

AccountsFileWatcher::~AccountsFileWatcher() { stop(); }

AccountsFileWatcher::Signature AccountsFileWatcher::look() const {
  struct stat st {};
  if (::stat(file_.c_str(), &st) != 0) return {};
  return {st.st_ino, st.st_size,
          static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
          static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec};
}

bool AccountsFileWatcher::reload(std::string_view why) {
  std::lock_guard lock(mu_);
  // The signature before the read: a write racing with it is seen again at the next look.
  seen_ = look();
  std::string text;
  if (auto ec = read_file(file_, text)) {
    spdlog::error("accounts file {} ({}): cannot read it: {}; the accounts in force stay",
                  file_.string(), why, ec.message());
    return false;
  }
  std::map<std::string, AccountEntry> accounts;
  try {
    accounts = parse_accounts_file_allow_empty(text, file_.string());
  } catch (const std::exception& e) {
    spdlog::error("accounts file ({}): {}; the accounts in force stay", why, e.what());
    return false;
  }
  std::string names;
  for (const auto& [name, entry] : accounts) names += (names.empty() ? "" : ", ") + name;
  spdlog::info("accounts file {} reloaded ({}): {} accounts{}{}", file_.string(), why,
               accounts.size(), names.empty() ? "" : ": ", names);
  apply_(std::move(accounts));
  return true;
}

bool AccountsFileWatcher::reload_if_changed() {
  {
    std::lock_guard lock(mu_);
    if (look() == seen_) return false;
  }
  return reload("file changed");
}

void AccountsFileWatcher::start_polling(std::chrono::milliseconds every) {
  poller_ = std::thread([this, every] {
    std::unique_lock lock(stop_mu_);
    while (!stop_cv_.wait_for(lock, every, [this] { return stopping_; })) {
      lock.unlock();
      reload_if_changed();
      lock.lock();
    }
  });
}

void AccountsFileWatcher::stop() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (poller_.joinable()) poller_.join();
}

}  // namespace offload::runner
