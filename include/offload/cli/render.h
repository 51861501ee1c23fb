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

#include "offload/cli/docker_format.h"
#include "offload/v1/control.pb.h"

namespace offload::cli {

using TimePoint = std::chrono::system_clock::time_point;

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
// Its first line: "Usage:  docker offload status [OPTIONS]" (also in usage errors).
std::string render_usage_line(const CLI::App& app, const std::string& command_path);

}  // namespace offload::cli
