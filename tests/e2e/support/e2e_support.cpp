#include "e2e_support.h"

#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <thread>

#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/token.h"

namespace offload::e2e {
namespace fs = std::filesystem;

Shell run_shell(const fs::path& scratch, const std::string& command,
                std::chrono::milliseconds timeout) {
  fs::path err = scratch / ("stderr-" + random_hex(4));
  auto r = run_command({"sh", "-c", "exec 2>" + err.string() + "; " + command}, timeout);
  Shell s;
  s.exit_code = r.exit_code;
  s.out = r.output;
  read_file(err, s.err);
  fs::remove(err);
  if (!r.error.empty()) s.err += r.error;
  return s;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

bool wait_for(const std::function<bool()>& condition, std::chrono::seconds limit,
              std::chrono::milliseconds every) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(every);
  }
  return condition();
}

std::vector<std::string> processes_mentioning(const std::string& needle) {
  std::vector<std::string> found;
  std::error_code ec;
  for (auto& e : fs::directory_iterator("/proc", ec)) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (std::stoi(name) == ::getpid()) continue;
    std::string cmdline;
    if (read_file(e.path() / "cmdline", cmdline)) continue;
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(needle) != std::string::npos) found.push_back(name + ": " + cmdline);
  }
  return found;
}

void make_busybox_rootfs(const fs::path& rootfs, const fs::path& echo_server) {
  fs::create_directories(rootfs / "bin");
  fs::create_directories(rootfs / "tmp");
  fs::create_directories(rootfs / "etc");
  fs::copy_file("/usr/bin/busybox", rootfs / "bin" / "busybox");
  fs::copy_file(echo_server, rootfs / "bin" / "echo-server");
  auto list = run_command({"/usr/bin/busybox", "--list"});
  std::istringstream names(list.output);
  std::string name;
  while (std::getline(names, name))
    if (!name.empty() && name != "busybox") fs::create_symlink("busybox", rootfs / "bin" / name);
}

void make_docker_config(const fs::path& dir, const fs::path& bin_dir,
                        const std::string& user_config, const std::string& offload_config) {
  fs::create_directories(dir / "cli-plugins");
  fs::create_symlink(bin_dir / "docker-offload", dir / "cli-plugins" / "docker-offload");
  auto write = [](const fs::path& file, const std::string& text) {
    if (auto ec = write_file_atomic(file, text))
      throw std::runtime_error("cannot write " + file.string() + ": " + ec.message());
  };
  write(dir / "config.json", user_config);
  if (offload_config.empty()) return;
  fs::create_directories(dir / "offload");
  fs::permissions(dir / "offload", fs::perms::owner_all);
  write(dir / "offload" / "config.json", offload_config);
}

}  // namespace offload::e2e
