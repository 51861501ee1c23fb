// Reading the host's state to tell what belongs to an engine: pure functions over the text of
// /proc/self/mountinfo, /proc/<pid>/cgroup, /proc/<pid>/cmdline and iptables-save, so teardown's
// decisions are unit-testable without root.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace offload::engine {

// True if `path` is `dir` or lies below it (component-wise, so /a/bc is not under /a/b).
bool path_within(const std::filesystem::path& path, const std::filesystem::path& dir);

// Mount points (field 5 of mountinfo, octal escapes decoded) lying within any of `dirs`,
// deepest first: the order in which they can be unmounted.
std::vector<std::filesystem::path> mount_points_within(
    std::string_view mountinfo, const std::vector<std::filesystem::path>& dirs);

// True if a /proc/<pid>/cgroup text places the process in `parent` (first path component,
// e.g. "offload-<id>" for "/offload-<id>/<container id>") in any hierarchy.
bool cgroup_under(std::string_view proc_cgroup, std::string_view parent);

// True if any NUL-separated argument of a /proc/<pid>/cmdline mentions `dir` as a path (dir
// itself or something below it), so /run/x/ab does not match /run/x/abc.
bool cmdline_mentions(std::string_view cmdline, const std::filesystem::path& dir);

// From iptables-save output of one table, the argument lists that delete every rule carrying
// exactly `comment` ("-D CHAIN <match...>"), to be run as `iptables -t <table> <args...>`.
std::vector<std::vector<std::string>> iptables_deletions(std::string_view save_output,
                                                         std::string_view comment);

// The ttrpc socket a containerd-shim-runc-v2 with this /proc/<pid>/cmdline listens on:
// /run/containerd/s/<sha256 of "<-address>/<-namespace>/<-id>">, shared by every containerd on
// the host. A shim that is killed instead of shut down leaves it behind. nullopt for other
// processes.
std::optional<std::filesystem::path> shim_socket(std::string_view cmdline);

// Last `n` lines of `text` joined with " | ": quoting a log tail in a one-line error.
std::string last_lines(std::string_view text, std::size_t n);

}  // namespace offload::engine
