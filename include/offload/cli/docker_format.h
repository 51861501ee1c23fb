// Formatting primitives shared by every verb's output: docker's own helpers (go-units durations
// and sizes, Ellipsis, strconv.Quote, TruncateID, DisplayablePorts, tabwriter columns) reproduced
// so our tables read like docker's, plus our timestamps and countdowns. Separate from render.h,
// which composes them into each verb's output, so these can be checked against docker on their
// own; render.h includes this header, so its users see both.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "offload/v1/control.pb.h"

namespace offload::cli {

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

}  // namespace offload::cli
