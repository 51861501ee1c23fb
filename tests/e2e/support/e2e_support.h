// What the end-to-end suites share: shell commands with stdout and stderr apart, bounded waits,
// process scans for leftovers, and the offline test image's root filesystem.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
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

// ---- Network reachability, for the isolation tests ---------------------------------------------
// Targets are "address:port" of HTTP servers that serve a page containing "reached".

// Imports a busybox image with sh, httpd, nc, timeout, printf and sleep as `tag` into the engine
// at `engine_socket` (the docker CLI at /usr/local/bin/docker). "" on success, else the error.
std::string import_network_image(const std::filesystem::path& engine_socket,
                                 const std::filesystem::path& scratch, const std::string& tag);

// One HTTP GET per target from a fresh container of `image`: target → "ok" when the page came
// back, "fail" otherwise; each GET is bounded by 4 s. (nc, not wget: Debian's busybox-static
// wget crashes.) A "docker run" key holds the output when the container did not report on every
// target.
std::map<std::string, std::string> probe_from_container(const std::filesystem::path& engine_socket,
                                                        const std::string& image,
                                                        const std::vector<std::string>& targets);

// "ok" when this host itself gets the page from `target`, else "fail: " and what it got.
std::string probe_from_host(const std::string& target);

// The packet counter of the first rule of `chain` (filter table) with `target` whose input
// interface is `in` (or any, when empty) and destination `destination` (or any, when empty);
// -1 when there is no such rule.
long iptables_packets(const std::string& chain, const std::string& target, const std::string& in,
                      const std::string& destination);

}  // namespace offload::e2e
