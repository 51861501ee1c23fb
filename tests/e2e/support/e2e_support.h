// What the end-to-end suites share: shell commands with stdout and stderr apart, bounded waits,
// process scans for leftovers, and the offline test image's root filesystem.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace offload::e2e {

struct Shell {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `command` with `sh -c`; stderr goes through a file in `scratch`, so it stays apart.
Shell run_shell(const std::filesystem::path& scratch, const std::string& command,
                std::chrono::milliseconds timeout);

// Without trailing newlines, carriage returns and spaces.
std::string trim(std::string s);

// Polls `condition` every `every` until it holds or `limit` passed; returns its last value.
bool wait_for(const std::function<bool()>& condition, std::chrono::seconds limit,
              std::chrono::milliseconds every = std::chrono::milliseconds(100));

// "pid: cmdline" of live processes whose command line contains `needle`, except our own.
std::vector<std::string> processes_mentioning(const std::string& needle);

// A root filesystem from busybox-static (every applet linked) plus `echo_server` as
// /bin/echo-server, ready for `tar -C rootfs -c . | docker import -`.
void make_busybox_rootfs(const std::filesystem::path& rootfs,
                         const std::filesystem::path& echo_server);

// A user's docker configuration directory as the suites need it: the plugin from `bin_dir`
// linked into cli-plugins/, the user's own config.json, and offload's config.json (when not
// empty). Throws std::runtime_error naming the file that could not be written.
void make_docker_config(const std::filesystem::path& dir, const std::filesystem::path& bin_dir,
                        const std::string& user_config, const std::string& offload_config);

}  // namespace offload::e2e
