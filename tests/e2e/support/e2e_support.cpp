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

std::string import_network_image(const fs::path& engine_socket, const fs::path& scratch,
                                 const std::string& tag) {
  const fs::path rootfs = scratch / "rootfs";
  fs::create_directories(rootfs / "bin");
  std::error_code ec;
  fs::copy_file("/bin/busybox", rootfs / "bin" / "busybox", fs::copy_options::overwrite_existing,
                ec);
  if (ec) return "cannot copy /bin/busybox: " + ec.message();
  for (const char* applet : {"sh", "httpd", "nc", "timeout", "printf", "sleep"})
    fs::create_symlink("busybox", rootfs / "bin" / applet, ec);
  auto tar = run_command({"tar", "-C", rootfs.string(), "-cf", (scratch / "rootfs.tar").string(),
                          "."});
  if (!tar.ok()) return "tar: " + tar.output + tar.error;
  auto imported = run_command({"/usr/local/bin/docker", "-H", "unix://" + engine_socket.string(),
                               "import", (scratch / "rootfs.tar").string(), tag},
                              std::chrono::seconds(120));
  return imported.ok() ? "" : "docker import: " + imported.output + imported.error;
}

std::map<std::string, std::string> probe_from_container(const fs::path& engine_socket,
                                                        const std::string& image,
                                                        const std::vector<std::string>& targets) {
  std::string script;
  for (const auto& t : targets)
    script += "t=" + t +
              "; out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 4 nc -w 2 ${t%:*} ${t##*:} "
              "2>/dev/null); case \"$out\" in *reached*) echo \"$t ok\";; *) echo \"$t fail\";; "
              "esac; ";
  auto r = run_command({"/usr/local/bin/docker", "-H", "unix://" + engine_socket.string(), "run",
                        "--rm", image, "sh", "-c", script},
                       std::chrono::seconds(90));
  std::map<std::string, std::string> results;
  std::istringstream lines(r.output);
  std::string line;
  while (std::getline(lines, line)) {
    auto space = line.find(' ');
    if (space != std::string::npos) results[line.substr(0, space)] = line.substr(space + 1);
  }
  if (results.size() != targets.size()) results["docker run"] = r.output + r.error;
  return results;
}

std::string probe_from_host(const std::string& target) {
  const auto colon = target.rfind(':');
  auto r = run_command({"sh", "-c",
                        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox timeout 4 busybox nc -w 2 " +
                            target.substr(0, colon) + " " + target.substr(colon + 1)},
                       std::chrono::seconds(10));
  return r.output.find("reached") != std::string::npos ? "ok" : "fail: " + r.output + r.error;
}

long iptables_packets(const std::string& chain, const std::string& target, const std::string& in,
                      const std::string& destination) {
  auto r = run_command({"iptables", "-w", "10", "-t", "filter", "-L", chain, "-v", "-n", "-x"});
  std::istringstream lines(r.output);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream w(line);
    long packets = 0;
    std::string bytes, rule_target, prot, opt, rule_in, out, source, rule_destination;
    if (!(w >> packets >> bytes >> rule_target >> prot >> opt >> rule_in >> out >> source >>
          rule_destination))
      continue;
    if (rule_target == target && (in.empty() || rule_in == in) &&
        (destination.empty() || rule_destination == destination))
      return packets;
  }
  return -1;
}

}  // namespace offload::e2e
