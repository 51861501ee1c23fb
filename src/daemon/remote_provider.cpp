#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>

#include "offload/common/fs.h"
#include "offload/daemon/provider.h"

namespace offload::daemon {
namespace fs = std::filesystem;

RemoteProvider::RemoteProvider(RemoteAccountSettings settings, const fs::path& offload_dir)
    : settings_(std::move(settings)), token_file_(resolve_token_file(settings_, offload_dir)) {}

std::string RemoteProvider::read_token() const {
  // Messages name the file and never quote its content: it is a secret, and it ends up in
  // the CLI's output and the daemon's log.
  const std::string file = display_path(token_file_);
  const std::string fix = " (put the account's token, from the runner's operator, in it)";
  std::string text;
  if (auto ec = read_file(token_file_, text))
    throw ProvisionError("cannot read the account token file " + file + ": " + ec.message() + fix);
  std::string token;
  std::size_t pos = 0;
  while (pos <= text.size() && token.empty()) {
    auto end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
    while (!line.empty() && blank(line.front())) line.remove_prefix(1);
    while (!line.empty() && blank(line.back())) line.remove_suffix(1);
    token = line;
    pos = end + 1;
  }
  if (token.empty()) throw ProvisionError("the account token file " + file + " is empty" + fix);
  // It travels as gRPC metadata, which takes printable ASCII only.
  if (!std::all_of(token.begin(), token.end(), [](char c) { return c > 0x20 && c < 0x7f; }))
    throw ProvisionError("the first line of the account token file " + file +
                         " is not a token (printable characters without spaces)" + fix);
  struct stat st {};
  if (::stat(token_file_.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
    spdlog::warn("the account token file {} can be read by other users; chmod 600 it", file);
  return token;
}

ProvisionedRunner RemoteProvider::provision(std::chrono::milliseconds) {
  ProvisionedRunner runner;
  runner.endpoint.address = settings_.address;
  runner.endpoint.fingerprint = settings_.fingerprint;
  runner.endpoint.account_token = read_token();
  runner.runner_pid = -1;
  return runner;
}

}  // namespace offload::daemon
