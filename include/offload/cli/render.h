// Output of the verbs as pure functions of the daemon's messages and the current time, so every
// byte the user sees can be golden-tested.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "offload/v1/control.pb.h"

namespace offload::cli {

using TimePoint = std::chrono::system_clock::time_point;

// --- docker's formatting helpers, reproduced so our tables read like docker's own ---

// go-units HumanDuration: "Less than a second", "About a minute", "3 minutes", "2 days", ...
std::string docker_human_duration(std::chrono::seconds d);
// go-units HumanSizeWithPrecision(size, 3): decimal units, "4.26MB", "1kB", "0B".
std::string docker_human_size(std::int64_t bytes);
// docker's formatter.Ellipsis: at most `max` characters, the last one "…" when cut.
std::string ellipsis(std::string_view text, std::size_t max);
// Go's strconv.Quote for the COMMAND column.
std::string go_quote(std::string_view text);
// stringid.TruncateID: drops an "algo:" prefix and keeps 12 characters.
std::string short_id(std::string_view id);
// docker ps PORTS: "0.0.0.0:8081->80/tcp, [::]:8081->80/tcp, 443/tcp".
std::string format_ports(const google::protobuf::RepeatedPtrField<v1::Port>& ports);
// Columns padded like docker's tabwriter (min width 10, padding 3; the last column unpadded).
std::string render_table(const std::vector<std::vector<std::string>>& rows);

// "2026-11-29 15:04:05 UTC" and "2026-11-29T15:04:05Z"; empty for 0.
std::string format_utc(std::int64_t unix_ms);
std::string format_rfc3339(std::int64_t unix_ms);

// A countdown, rounded up to whole seconds: "45s", "4m 12s", "7h 59m"; "0s" when past.
std::string format_countdown(std::chrono::milliseconds left);

// --- status ---

// "Stopped", "Starting", "Started (Active)" / "Started (Idle)" (plain "Started" when the daemon
// sends no lifecycle), "Reconnecting (<why>)", "Stopping", "Ended (<reason>)".
std::string state_label(const v1::SessionStatus& status);
// "stopped", "starting", "started", "reconnecting", "stopping", "ended", "unknown": the JSON
// `state`.
std::string state_key(v1::DaemonState state);
// Aligned like `docker info`.
std::string render_status_pretty(const v1::SessionStatus& status, TimePoint now);
// Stable camelCase object; every key always present (strings empty when unknown).
nlohmann::ordered_json status_json(const v1::SessionStatus& status);
// One frame of `status --watch`: pretty frames clear the screen on a terminal and are separated
// by a blank line otherwise; JSON frames are one object per line.
std::string render_status_frame(const v1::SessionStatus& status, bool json, bool terminal,
                                bool first, TimePoint now);

// --- ps / images / accounts / version ---

std::string render_containers_table(const v1::ListContainersResponse& list, TimePoint now);
std::string render_container_ids(const v1::ListContainersResponse& list);
nlohmann::ordered_json containers_json(const v1::ListContainersResponse& list);

std::string render_images_table(const v1::ListImagesResponse& list, TimePoint now);
std::string render_image_ids(const v1::ListImagesResponse& list);
nlohmann::ordered_json images_json(const v1::ListImagesResponse& list);

std::string render_accounts_table(const v1::ListAccountsResponse& list);
nlohmann::ordered_json accounts_json(const v1::ListAccountsResponse& list);

struct VersionInfo {
  std::string plugin;                      // ours, always known
  std::optional<v1::VersionResponse> daemon;  // nullopt: offloadd is not running
};
std::string render_version_pretty(const VersionInfo& info);
nlohmann::ordered_json version_json(const VersionInfo& info);

// --- diagnose ---

// One line per check ("✔ name: detail" / "✘ name: detail — try: fix"), then a summary line.
std::string render_diagnose_pretty(const v1::DiagnoseResponse& report);
// An array of {name, ok, detail, fix}.
nlohmann::ordered_json diagnose_json(const v1::DiagnoseResponse& report);

// --- help ---

// docker-style help for `app` (the root or a verb): Usage, description, Commands or Options.
// `command_path` is what the user types, e.g. "docker offload status".
std::string render_help(const CLI::App& app, const std::string& command_path);

}  // namespace offload::cli
